#include "bpf/tls_libraries.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

namespace httptraced::bpf {
namespace {

// A scratch directory removed with its contents at the end of the test.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/tls_libraries_test.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string Make(const std::string& rel) const {
    const std::string p = path + "/" + rel;
    std::ofstream(p) << "not really a library";
    return p;
  }
};

TEST_CASE("FindTlsLibraries: versioned libssl files, each file once") {
  TempDir t;
  REQUIRE(mkdir((t.path + "/a").c_str(), 0755) == 0);
  REQUIRE(mkdir((t.path + "/b").c_str(), 0755) == 0);
  const std::string three = t.Make("a/libssl.so.3");
  const std::string old = t.Make("a/libssl.so.1.1");
  t.Make("a/libcrypto.so.3");
  t.Make("a/libssl.so.3.bak");
  // The development link and a second path to the same file (merged /usr).
  REQUIRE(symlink("libssl.so.3", (t.path + "/a/libssl.so").c_str()) == 0);
  REQUIRE(symlink((t.path + "/a/libssl.so.3").c_str(), (t.path + "/b/libssl.so.3").c_str()) == 0);
  REQUIRE(mkdir((t.path + "/a/libssl.so.9").c_str(), 0755) == 0);  // a directory

  CHECK(FindTlsLibraries({t.path + "/a", t.path + "/b", t.path + "/missing"}) ==
        std::vector<std::string>{old, three});
  CHECK(FindTlsLibraries({t.path + "/b", t.path + "/a"}) ==
        std::vector<std::string>{t.path + "/b/libssl.so.3", old});
  CHECK(FindTlsLibraries({t.path + "/missing"}).empty());
}

TEST_CASE("CheckTlsLibraries: named files must exist, duplicates dropped") {
  TempDir t;
  const std::string lib = t.Make("libssl.so.3");
  REQUIRE(symlink(lib.c_str(), (t.path + "/link").c_str()) == 0);

  absl::StatusOr<std::vector<std::string>> ok = CheckTlsLibraries({lib, t.path + "/link"});
  REQUIRE(ok.ok());
  CHECK(*ok == std::vector<std::string>{lib});

  absl::StatusOr<std::vector<std::string>> missing = CheckTlsLibraries({t.path + "/nope.so"});
  REQUIRE(!missing.ok());
  CHECK(missing.status().message() ==
        "--tls_libraries: " + t.path + "/nope.so: No such file or directory");

  absl::StatusOr<std::vector<std::string>> dir = CheckTlsLibraries({t.path});
  REQUIRE(!dir.ok());
  CHECK(dir.status().message() == "--tls_libraries: " + t.path + " is not a readable file");
}

}  // namespace
}  // namespace httptraced::bpf
