#include "proc/process_cache.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace httptraced::proc {
namespace {

std::string SelfExe() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf));
  REQUIRE(n > 0);
  return std::string(buf, static_cast<size_t>(n));
}

TEST_CASE("ProcessCache reads /proc/<pid>/exe") {
  ProcessCache cache;
  CHECK(cache.Executable(static_cast<uint32_t>(getpid()), 1) == SelfExe());
}

TEST_CASE("ProcessCache gives empty for a missing process and caches within the ttl") {
  char tmpl[] = "/tmp/httptraced-proc-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::filesystem::path root(tmpl);
  ProcessCache cache(root.string(), /*ttl_ns=*/100);
  CHECK(cache.Executable(42, 1000).empty());
  std::filesystem::create_directory(root / "42");
  std::filesystem::create_symlink("/usr/bin/first", root / "42" / "exe");
  CHECK(cache.Executable(42, 1050).empty());  // still cached
  CHECK(cache.Executable(42, 1101) == "/usr/bin/first");
  std::filesystem::remove(root / "42" / "exe");
  std::filesystem::create_symlink("/usr/bin/second", root / "42" / "exe");
  CHECK(cache.Executable(42, 1150) == "/usr/bin/first");
  CHECK(cache.Executable(42, 1202) == "/usr/bin/second");
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace httptraced::proc
