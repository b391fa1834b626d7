#include "proc/process_cache.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

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
  CHECK(cache.Lookup({.tgid = static_cast<uint32_t>(getpid())}, 1).executable == SelfExe());
}

TEST_CASE("ProcessCache gives empty for a missing process and caches within the ttl") {
  char tmpl[] = "/tmp/httptraced-proc-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::filesystem::path root(tmpl);
  ProcessCache cache(root.string(), /*ttl_ns=*/100);
  const ProcessImage p42{.tgid = 42, .start = 7, .exec_id = 1};
  CHECK(cache.Lookup(p42, 1000).executable.empty());
  std::filesystem::create_directory(root / "42");
  std::filesystem::create_symlink("/usr/bin/first", root / "42" / "exe");
  CHECK(cache.Lookup(p42, 1050).executable.empty());  // still cached
  CHECK(cache.Lookup(p42, 1101).executable == "/usr/bin/first");
  std::filesystem::remove(root / "42" / "exe");
  std::filesystem::create_symlink("/usr/bin/second", root / "42" / "exe");
  CHECK(cache.Lookup(p42, 1150).executable == "/usr/bin/first");
  CHECK(cache.Lookup(p42, 1202).executable == "/usr/bin/second");
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
  CHECK(cache.Lookup({.tgid = 42, .start = 7, .exec_id = 1}, 1000).executable == "/usr/bin/python3");
  link("/usr/bin/curl");  // the same process exec()ed curl
  CHECK(cache.Lookup({.tgid = 42, .start = 7, .exec_id = 1}, 1001).executable == "/usr/bin/python3");
  CHECK(cache.Lookup({.tgid = 42, .start = 7, .exec_id = 2}, 1002).executable == "/usr/bin/curl");
  link("/usr/sbin/nginx");  // the pid was reused by another process
  CHECK(cache.Lookup({.tgid = 42, .start = 9, .exec_id = 2}, 1003).executable == "/usr/sbin/nginx");
  link("/usr/bin/wget");
  CHECK(cache.Lookup({.tgid = 42, .start = 9, .exec_id = 2}, 1004).executable == "/usr/sbin/nginx");
  std::filesystem::remove_all(root);
}

TEST_CASE("ProcessCache forgets an exited process, not a later one with its pid") {
  char tmpl[] = "/tmp/httptraced-proc-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::filesystem::path root(tmpl);
  std::filesystem::create_directory(root / "42");
  std::filesystem::create_symlink("/usr/bin/curl", root / "42" / "exe");
  ProcessCache cache(root.string(), /*ttl_ns=*/1'000'000);
  CHECK(cache.Lookup({.tgid = 42, .start = 7, .exec_id = 1}, 1000).executable == "/usr/bin/curl");
  CHECK(cache.Lookup({.tgid = 43, .start = 8, .exec_id = 1}, 1000).executable.empty());
  REQUIRE(cache.size() == 2);
  cache.Forget(42, 9);  // another process that had pid 42
  CHECK(cache.size() == 2);
  cache.Forget(42, 7);
  CHECK(cache.size() == 1);
  cache.Forget(42, 7);
  cache.Forget(44, 1);
  CHECK(cache.size() == 1);
  std::filesystem::remove_all(root);
}

constexpr std::string_view kId = "4f1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff0";

TEST_CASE("ContainerIdFromCgroup finds the runtimes' container cgroups") {
  const std::string id(kId);
  // Docker with cgroup v1, and with v2 under systemd.
  CHECK(ContainerIdFromCgroup("12:pids:/docker/" + id + "\n0::/docker/" + id + "\n") == kId);
  CHECK(ContainerIdFromCgroup("0::/system.slice/docker-" + id + ".scope\n") == kId);
  // Kubernetes with containerd, CRI-O; Podman.
  CHECK(ContainerIdFromCgroup("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-"
                              "pod0b2a8f0e_1c2d_4e5f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-" +
                              id + ".scope\n") == kId);
  CHECK(ContainerIdFromCgroup("0::/kubepods/besteffort/pod0b2a8f0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b/" +
                              id + "\n") == kId);
  CHECK(ContainerIdFromCgroup("0::/machine.slice/crio-" + id + ".scope") == kId);
  CHECK(ContainerIdFromCgroup("0::/user.slice/user-1000.slice/user@1000.service/user.slice/"
                              "libpod-" + id + ".scope/container\n") == kId);
  // The first line that has one: v1 hierarchies list it before the v2 line.
  CHECK(ContainerIdFromCgroup("4:memory:/\n3:cpu:/docker/" + id + "\n0::/\n") == kId);
}

TEST_CASE("ContainerIdFromCgroup finds none on the host or in other ids") {
  CHECK(ContainerIdFromCgroup("0::/\n").empty());
  CHECK(ContainerIdFromCgroup("0::/user.slice/user-0.slice/session-3.scope\n").empty());
  // 32 hex digits (a machine or session id), 63 and 65: not a container's.
  CHECK(ContainerIdFromCgroup("4:memory:/process_api/53b9943239865f9abea937efc6af19d9\n").empty());
  CHECK(ContainerIdFromCgroup("0::/docker/" + std::string(kId.substr(1)) + "\n").empty());
  CHECK(ContainerIdFromCgroup("0::/docker/" + std::string(kId) + "a\n").empty());
  CHECK(ContainerIdFromCgroup("").empty());
  CHECK(ContainerIdFromCgroup("garbage without colons " + std::string(kId)).empty());
  CHECK(ContainerIdFromCgroup(std::string("0::/docker/\0\n", 13)).empty());
}

TEST_CASE("ProcessCache reads the container id with the executable") {
  char tmpl[] = "/tmp/httptraced-proc-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::filesystem::path root(tmpl);
  std::filesystem::create_directory(root / "42");
  std::filesystem::create_symlink("/usr/sbin/nginx", root / "42" / "exe");
  std::ofstream(root / "42" / "cgroup") << "0::/system.slice/docker-" << kId << ".scope\n";
  ProcessCache cache(root.string(), /*ttl_ns=*/1'000'000);
  const ProcessInfo& info = cache.Lookup({.tgid = 42, .start = 7, .exec_id = 1}, 1000);
  CHECK(info.executable == "/usr/sbin/nginx");
  CHECK(info.container_id == kId);
  // A process on the host, and one with no cgroup file (gone): no container.
  std::filesystem::create_directory(root / "43");
  std::ofstream(root / "43" / "cgroup") << "0::/user.slice/user-0.slice/session-3.scope\n";
  CHECK(cache.Lookup({.tgid = 43, .start = 7, .exec_id = 1}, 1000).container_id.empty());
  CHECK(cache.Lookup({.tgid = 44, .start = 7, .exec_id = 1}, 1000).container_id.empty());
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace httptraced::proc
