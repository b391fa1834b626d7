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
  CHECK(cache.Executable({.tgid = static_cast<uint32_t>(getpid())}, 1) == SelfExe());
}

TEST_CASE("ProcessCache gives empty for a missing process and caches within the ttl") {
  char tmpl[] = "/tmp/httptraced-proc-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::filesystem::path root(tmpl);
  ProcessCache cache(root.string(), /*ttl_ns=*/100);
  const ProcessImage p42{.tgid = 42, .start = 7, .exec_id = 1};
  CHECK(cache.Executable(p42, 1000).empty());
  std::filesystem::create_directory(root / "42");
  std::filesystem::create_symlink("/usr/bin/first", root / "42" / "exe");
  CHECK(cache.Executable(p42, 1050).empty());  // still cached
  CHECK(cache.Executable(p42, 1101) == "/usr/bin/first");
  std::filesystem::remove(root / "42" / "exe");
  std::filesystem::create_symlink("/usr/bin/second", root / "42" / "exe");
  CHECK(cache.Executable(p42, 1150) == "/usr/bin/first");
  CHECK(cache.Executable(p42, 1202) == "/usr/bin/second");
  std::filesystem::remove_all(root);
}

TEST_CASE("ProcessCache reads again for another image of the same pid, within the ttl") {
  char tmpl[] = "/tmp/httptraced-proc-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::filesystem::path root(tmpl);
  std::filesystem::create_directory(root / "42");
  const auto link = [&](const char* target) {
    std::filesystem::remove(root / "42" / "exe");
    std::filesystem::create_symlink(target, root / "42" / "exe");
  };
  ProcessCache cache(root.string(), /*ttl_ns=*/1'000'000);
  link("/usr/bin/python3");
  CHECK(cache.Executable({.tgid = 42, .start = 7, .exec_id = 1}, 1000) == "/usr/bin/python3");
  link("/usr/bin/curl");  // the same process exec()ed curl
  CHECK(cache.Executable({.tgid = 42, .start = 7, .exec_id = 1}, 1001) == "/usr/bin/python3");
  CHECK(cache.Executable({.tgid = 42, .start = 7, .exec_id = 2}, 1002) == "/usr/bin/curl");
  link("/usr/sbin/nginx");  // the pid was reused by another process
  CHECK(cache.Executable({.tgid = 42, .start = 9, .exec_id = 2}, 1003) == "/usr/sbin/nginx");
  link("/usr/bin/wget");
  CHECK(cache.Executable({.tgid = 42, .start = 9, .exec_id = 2}, 1004) == "/usr/sbin/nginx");
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace httptraced::proc
