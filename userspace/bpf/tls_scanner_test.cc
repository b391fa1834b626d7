#include "bpf/tls_scanner.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/status/status.h"

namespace httptraced::bpf {
namespace {

TEST_CASE("IsLibsslName: OpenSSL's libssl and its renamed copies, nothing else") {
  for (const char* yes : {"libssl.so", "libssl.so.3", "libssl.so.1.1", "libssl.so.1.0.2",
                          "libssl-1a2b3c4d.so.1.1", "libssl-8b4a1c.so.3", "libssl-x.so"}) {
    INFO(yes);
    CHECK(IsLibsslName(yes));
  }
  for (const char* no : {"libssl3.so", "libssl.so.3.bak", "libssl.so.", "libssl.so.3x",
                         "libssl-.so.3", "libssl-abc", "libssl", "libcrypto.so.3", "libssl.a",
                         "xlibssl.so.3", "libssl.so3", ""}) {
    INFO(no);
    CHECK_FALSE(IsLibsslName(no));
  }
}

TEST_CASE("IsGnutlsName: GnuTLS's library, not its companions") {
  for (const char* yes : {"libgnutls.so", "libgnutls.so.30", "libgnutls.so.30.34.3"}) {
    INFO(yes);
    CHECK(IsGnutlsName(yes));
  }
  for (const char* no : {"libgnutls-dane.so.0", "libgnutlsxx.so.30", "libgnutls-openssl.so.27",
                         "libgnutls.so.", "libgnutls.so.30x", "libgnutls", "libssl.so.3", ""}) {
    INFO(no);
    CHECK_FALSE(IsGnutlsName(no));
  }
}

TEST_CASE("ParseMappedTlsLibraries: each libssl and libgnutls file once, deleted ones too") {
  const std::string maps =
      "55d0c0a00000-55d0c0a28000 r--p 00000000 fe:01 1835045                    "
      "/usr/bin/python3.11\n"
      "7f3a1c000000-7f3a1c020000 r--p 00000000 fe:01 1837321                    "
      "/usr/lib/x86_64-linux-gnu/libssl.so.3\n"
      "7f3a1c020000-7f3a1c07e000 r-xp 00020000 fe:01 1837321                    "
      "/usr/lib/x86_64-linux-gnu/libssl.so.3\n"
      "7f3a1d000000-7f3a1d001000 rw-p 00000000 00:00 0 \n"
      "7f3a1e000000-7f3a1e010000 r--p 00000000 00:2a 44                         "
      "/opt/my app/lib/libssl.so.1.1 (deleted)\n"
      "7f3a1f000000-7f3a1f010000 r--p 00000000 00:2b 44                         "
      "/wheel/libssl-1a2b3c4d.so.1.1\n"
      "7f3a20000000-7f3a20010000 r--p 00000000 fe:01 99                         "
      "/usr/lib/x86_64-linux-gnu/libssl3.so\n"
      "7f3a20100000-7f3a20110000 r--p 00000000 fe:01 120                        "
      "/usr/lib/x86_64-linux-gnu/libgnutls.so.30\n"
      "7f3a20110000-7f3a20120000 r-xp 00037000 fe:01 120                        "
      "/usr/lib/x86_64-linux-gnu/libgnutls.so.30\n"
      "7f3a20200000-7f3a20210000 r--p 00000000 fe:01 121                        "
      "/usr/lib/x86_64-linux-gnu/libgnutls-dane.so.0\n"
      "7ffd8e5e9000-7ffd8e60a000 rw-p 00000000 00:00 0                          [stack]\n"
      "garbage line\n"
      "zz-yy r--p 00000000 fe:01 5 /lib/libssl.so.3\n"
      "7f3a21000000-7f3a21010000 r--p 00000000 fe:01 7 libssl.so.3\n"
      "7f3a22000000-7f3a22010000 r--p";  // cut, no newline
  CHECK(ParseMappedTlsLibraries(maps) ==
        std::vector<MappedLibrary>{
            {"7f3a1c000000-7f3a1c020000", "/usr/lib/x86_64-linux-gnu/libssl.so.3", false},
            {"7f3a1e000000-7f3a1e010000", "/opt/my app/lib/libssl.so.1.1", true},
            {"7f3a1f000000-7f3a1f010000", "/wheel/libssl-1a2b3c4d.so.1.1", false},
            {"7f3a20100000-7f3a20110000", "/usr/lib/x86_64-linux-gnu/libgnutls.so.30", false},
        });
  CHECK(ParseMappedTlsLibraries("").empty());
  CHECK(ParseMappedTlsLibraries("\n\n\n").empty());
}

// A procfs tree in a scratch directory: <pid>/maps and <pid>/map_files/<range>
// (a symbolic link to a file, as in /proc).
struct FakeProc {
  std::string root;
  FakeProc() {
    char tmpl[] = "/tmp/tls_scanner_test.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    root = tmpl;
    REQUIRE(mkdir((root + "/files").c_str(), 0755) == 0);
  }
  ~FakeProc() { std::system(("rm -rf '" + root + "'").c_str()); }
  std::string File(const std::string& name) const {
    const std::string p = root + "/files/" + name;
    std::ofstream(p) << name;
    return p;
  }
  // Process pid maps these files, at ranges of its own.
  void Process(uint32_t pid, const std::vector<std::string>& files) const {
    const std::string dir = root + "/" + std::to_string(pid);
    std::system(("rm -rf '" + dir + "'").c_str());
    REQUIRE(mkdir(dir.c_str(), 0755) == 0);
    REQUIRE(mkdir((dir + "/map_files").c_str(), 0755) == 0);
    std::ofstream maps(dir + "/maps");
    for (size_t i = 0; i < files.size(); ++i) {
      const std::string page = std::to_string(1000 + i);
      const std::string range = page + "000-" + page + "fff";
      struct stat st;
      REQUIRE(stat(files[i].c_str(), &st) == 0);
      maps << range << " r--p 00000000 fe:01 " << st.st_ino << "   /usr/lib/"
           << files[i].substr(files[i].rfind('/') + 1) << "\n";
      REQUIRE(symlink(files[i].c_str(), (dir + "/map_files/" + range).c_str()) == 0);
    }
  }
  // Process pid's /proc/<pid>/statm ("size resident shared ...", in pages).
  void Statm(uint32_t pid, const char* text) const {
    std::ofstream(root + "/" + std::to_string(pid) + "/statm") << text;
  }
  // Process pid runs the executable `file` (its /proc/<pid>/exe).
  void Exe(uint32_t pid, const std::string& file) const {
    REQUIRE(symlink(file.c_str(), (root + "/" + std::to_string(pid) + "/exe").c_str()) == 0);
  }
  void Exit(uint32_t pid) const {
    std::system(("rm -rf '" + root + "/" + std::to_string(pid) + "'").c_str());
  }
};

struct ProbeCall {
  std::string target_of;  // the file the probed path leads to
  pid_t pid;
  bool operator==(const ProbeCall&) const = default;
};

std::string Resolve(const std::string& path) {
  char buf[4096];
  const ssize_t n = readlink(path.c_str(), buf, sizeof(buf));
  return n < 0 ? path : std::string(buf, static_cast<size_t>(n));
}

constexpr uint64_t kSec = 1'000'000'000;

void NoRelease(uint64_t id) { FAIL("released " << id); }

// A scanner of every process whose probe counts its calls and answers `result`.
TlsScanner Counting(const std::string& root, int& calls, absl::StatusOr<int> result) {
  return TlsScanner(
      root, {},
      [&calls, result](uint64_t, const std::string&, pid_t) {
        ++calls;
        return result;
      },
      NoRelease);
}

TEST_CASE("TlsScanner: every process's libssl files, each probed once") {
  FakeProc proc;
  const std::string system = proc.File("libssl.so.3");
  const std::string bundled = proc.File("libssl-abc.so.1.1");
  const std::string other = proc.File("libcrypto.so.3");
  std::vector<ProbeCall> calls;
  TlsScanner scanner(proc.root, {}, [&](uint64_t, const std::string& path, pid_t target) {
    calls.push_back({Resolve(path), target});
    return absl::StatusOr<int>(5);
  }, NoRelease);
  scanner.AlreadyProbed(system);
  proc.Process(10, {system, other});
  proc.Process(11, {bundled, system});
  proc.Process(12, {bundled});

  std::vector<TlsScanner::Found> found = scanner.Scan(0);
  CHECK(calls == std::vector<ProbeCall>{{bundled, -1}});
  REQUIRE(found.size() == 1);
  CHECK(found[0].pid == 11);
  CHECK(found[0].path == "/usr/lib/libssl-abc.so.1.1");
  CHECK_FALSE(found[0].deleted);
  CHECK(*found[0].probes == 5);
  CHECK(scanner.tracked() == 3);

  // Process 10 loads a library late; it is seen at its rescan, 1 s after
  // the first scan, not before.
  const std::string late = proc.File("libssl.so.1.1");
  proc.Process(10, {system, other, late});
  CHECK(scanner.Scan(kSec / 2).empty());
  found = scanner.Scan(kSec);
  REQUIRE(found.size() == 1);
  CHECK(found[0].pid == 10);
  CHECK(calls.back() == ProbeCall{late, -1});

  // Then 2 s later (at 3 s), then 4 s later (at 7 s).
  const std::string later = proc.File("libssl.so.1.0.2");
  proc.Process(12, {bundled, later});
  CHECK(scanner.Scan(3 * kSec - 1).empty());
  CHECK(scanner.Scan(3 * kSec).size() == 1);
  const std::string latest = proc.File("libssl.so");
  proc.Process(12, {latest});
  CHECK(scanner.Scan(7 * kSec - 1).empty());
  CHECK(scanner.Scan(7 * kSec).size() == 1);
  CHECK(calls.size() == 4);

  // A process gone is forgotten; a new one is scanned when first seen.
  proc.Exit(11);
  const std::string fresh = proc.File("libssl-fresh.so.3");
  proc.Process(13, {fresh});
  found = scanner.Scan(7 * kSec + 1);
  REQUIRE(found.size() == 1);
  CHECK(found[0].pid == 13);
  CHECK(scanner.tracked() == 3);
}

TEST_CASE("TlsScanner: the rescan interval stops doubling at its cap") {
  FakeProc proc;
  const std::string lib = proc.File("libssl.so.3");
  int calls = 0;
  TlsScanner scanner = Counting(proc.root, calls, 5);
  proc.Process(20, {});
  uint64_t t = 0;
  scanner.Scan(t);
  for (uint64_t interval = TlsScanner::kFirstRescanNs; interval < TlsScanner::kMaxRescanNs;
       interval *= 2) {
    t += interval;
    scanner.Scan(t);
  }
  // Now every kMaxRescanNs: a library mapped now is found no later than that.
  proc.Process(20, {lib});
  CHECK(scanner.Scan(t + TlsScanner::kMaxRescanNs - 1).empty());
  CHECK(scanner.Scan(t + TlsScanner::kMaxRescanNs).size() == 1);
  CHECK(calls == 1);
}

TEST_CASE("TlsScanner: maps are read again only when the address space changed size") {
  FakeProc proc;
  const std::string lib = proc.File("libssl.so.3");
  int calls = 0;
  TlsScanner scanner = Counting(proc.root, calls, 5);
  proc.Process(60, {});
  proc.Statm(60, "2000 300 200 10 0 150 0\n");
  proc.Process(61, {});
  proc.Statm(61, "0 0 0 0 0 0 0\n");  // a kernel thread: no maps to read
  CHECK(scanner.Scan(0).empty());
  CHECK(scanner.maps_read() == 1);
  // The maps change but not the size (a test's trick; the kernel would
  // change both): not read again.
  proc.Process(60, {lib});
  proc.Statm(60, "2000 300 200 10 0 150 0\n");
  CHECK(scanner.Scan(TlsScanner::kFirstRescanNs).empty());
  CHECK(scanner.maps_read() == 1);
  // A library loaded: the size grows, the maps are read at the next look.
  proc.Statm(60, "2400 310 210 10 0 150 0\n");
  CHECK(scanner.Scan(3 * TlsScanner::kFirstRescanNs).size() == 1);
  CHECK(scanner.maps_read() == 2);
  CHECK(calls == 1);
}

TEST_CASE("TlsScanner: with --pid, only those processes, each file probed in each") {
  FakeProc proc;
  const std::string system = proc.File("libssl.so.3");
  const std::string bundled = proc.File("libssl.so.1.1");
  std::vector<ProbeCall> calls;
  TlsScanner scanner(proc.root, {30, 31, 33}, [&](uint64_t, const std::string& path, pid_t target) {
    calls.push_back({Resolve(path), target});
    return absl::StatusOr<int>(3);
  }, NoRelease);
  scanner.AlreadyProbed(system);  // in 30, 31 and 33
  proc.Process(30, {system, bundled});
  proc.Process(31, {bundled});
  proc.Process(32, {bundled});  // not listed
  // 33 is not running.
  scanner.Scan(0);
  CHECK(calls == std::vector<ProbeCall>{{bundled, 30}, {bundled, 31}});
  CHECK(scanner.tracked() == 2);  // 33 when it runs
}

TEST_CASE("TlsScanner: a file that cannot be probed is reported once, not retried") {
  FakeProc proc;
  const std::string lib = proc.File("libssl.so.3");
  int calls = 0;
  TlsScanner scanner = Counting(proc.root, calls, absl::FailedPreconditionError("no SSL_read"));
  proc.Process(40, {lib});
  proc.Process(41, {lib});
  std::vector<TlsScanner::Found> found = scanner.Scan(0);
  REQUIRE(found.size() == 1);
  CHECK(found[0].probes.status().message() == "no SSL_read");
  CHECK(scanner.Scan(10 * kSec).empty());
  CHECK(calls == 1);
}

TEST_CASE("TlsScanner: a file's probes go when the last process mapping it is gone") {
  FakeProc proc;
  const std::string lib = proc.File("libssl.so.3");
  std::vector<uint64_t> probed, released;
  TlsScanner scanner(
      proc.root, {},
      [&](uint64_t id, const std::string&, pid_t) {
        probed.push_back(id);
        return absl::StatusOr<int>(5);
      },
      [&](uint64_t id) { released.push_back(id); });
  proc.Process(70, {lib});
  proc.Process(71, {lib});
  CHECK(scanner.Scan(0).size() == 1);
  CHECK(probed == std::vector<uint64_t>{1});
  CHECK(scanner.probed_files() == 1);
  proc.Exit(70);
  CHECK(scanner.Scan(kSec).empty());
  CHECK(released.empty());  // 71 still maps it
  proc.Exit(71);
  CHECK(scanner.Scan(2 * kSec).empty());
  CHECK(released == std::vector<uint64_t>{1});
  CHECK(scanner.probed_files() == 0);
  // Mapped again by a new process: probed anew, under a new handle.
  proc.Process(72, {lib});
  CHECK(scanner.Scan(3 * kSec).size() == 1);
  CHECK(probed == std::vector<uint64_t>{1, 2});
  CHECK(scanner.tracked() == 1);  // 72 alone
}

TEST_CASE("TlsScanner: with --pid, a listed process's probes go when it exits") {
  FakeProc proc;
  const std::string lib = proc.File("libssl.so.3");
  std::vector<std::pair<uint64_t, pid_t>> probed;
  std::vector<uint64_t> released;
  TlsScanner scanner(
      proc.root, {80, 81, 82},
      [&](uint64_t id, const std::string&, pid_t target) {
        probed.emplace_back(id, target);
        return absl::StatusOr<int>(5);
      },
      [&](uint64_t id) { released.push_back(id); });
  proc.Process(80, {lib});
  proc.Process(81, {lib});
  proc.Process(82, {lib});
  CHECK(scanner.Scan(0).size() == 3);
  CHECK(probed == std::vector<std::pair<uint64_t, pid_t>>{{1, 80}, {2, 81}, {3, 82}});
  CHECK(scanner.probed_files() == 3);
  // 81's exit event: its probes go at once.
  proc.Exit(81);
  scanner.ProcessExited(81);
  CHECK(released == std::vector<uint64_t>{2});
  CHECK(scanner.probed_files() == 2);
  // 82 exits and its event is lost: the next scan finds it gone.
  proc.Exit(82);
  CHECK(scanner.Scan(kSec).empty());
  CHECK(released == std::vector<uint64_t>{2, 3});
  CHECK(scanner.probed_files() == 1);
  CHECK(scanner.tracked() == 1);
  // An exit of a process that was never scanned changes nothing.
  scanner.ProcessExited(12345);
  CHECK(released == std::vector<uint64_t>{2, 3});
  // A new process under a listed pid is probed as a new one.
  proc.Process(81, {lib});
  CHECK(scanner.Scan(2 * kSec).size() == 1);
  CHECK(probed.back() == std::pair<uint64_t, pid_t>{4, 81});
  CHECK(scanner.probed_files() == 2);
}

TEST_CASE("TlsScanner: a pid used again after an exit event is scanned at once, same size or not") {
  FakeProc proc;
  const std::string lib = proc.File("libssl.so.3");
  int calls = 0;
  TlsScanner scanner = Counting(proc.root, calls, 5);
  proc.Process(90, {});
  proc.Statm(90, "2000 300 200 10 0 150 0\n");
  CHECK(scanner.Scan(0).empty());
  CHECK(scanner.maps_read() == 1);
  // Between two scans 90 exits and a new process takes its pid, with an
  // address space of the same size that maps libssl. Without the exit event
  // it would wait for a change of size; with it, it is read at the next scan.
  proc.Exit(90);
  scanner.ProcessExited(90);
  proc.Process(90, {lib});
  proc.Statm(90, "2000 300 200 10 0 150 0\n");
  const std::vector<TlsScanner::Found> found = scanner.Scan(kSec / 10);
  REQUIRE(found.size() == 1);
  CHECK(found[0].pid == 90);
  CHECK(scanner.maps_read() == 2);
  CHECK(calls == 1);
}

TEST_CASE("TlsScanner: an executable that exports libssl's functions is probed once, others read once") {
  FakeProc proc;
  const std::string node = proc.File("node");
  const std::string python = proc.File("python3");
  const std::string lib = proc.File("libssl.so.3");
  std::vector<ProbeCall> probed;
  std::vector<uint64_t> released;
  std::vector<std::string> checked;
  TlsScanner scanner(
      proc.root, {},
      [&](uint64_t, const std::string& path, pid_t target) {
        probed.push_back({Resolve(path), target});
        return absl::StatusOr<int>(5);
      },
      [&](uint64_t id) { released.push_back(id); });
  scanner.ProbeExecutables([&](const std::string& path) {
    checked.push_back(Resolve(path));
    return Resolve(path) == node;
  });
  proc.Process(50, {});
  proc.Exe(50, node);
  proc.Process(51, {});
  proc.Exe(51, node);
  proc.Process(52, {lib});
  proc.Exe(52, python);
  const std::vector<TlsScanner::Found> found = scanner.Scan(0);
  REQUIRE(found.size() == 2);
  CHECK(found[0].pid == 50);
  CHECK(found[0].path == node);
  CHECK_FALSE(found[0].deleted);
  CHECK(found[1].pid == 52);
  CHECK(found[1].path == "/usr/lib/libssl.so.3");
  CHECK(probed == std::vector<ProbeCall>{{node, -1}, {lib, -1}});
  CHECK(checked == std::vector<std::string>{node, python});
  // Looked at again (maps read again: no statm here): nothing new, no check.
  CHECK(scanner.Scan(10 * kSec).empty());
  CHECK(checked.size() == 2);
  CHECK(scanner.probed_files() == 2);
  // The executable's probes go with the last process that runs it.
  proc.Exit(50);
  CHECK(scanner.Scan(20 * kSec).empty());
  CHECK(released.empty());
  proc.Exit(51);
  scanner.ProcessExited(51);
  CHECK(released == std::vector<uint64_t>{1});
  CHECK(scanner.probed_files() == 1);
}

TEST_CASE("TlsScanner: a missing procfs root or unreadable entries find nothing") {
  int calls = 0;
  TlsScanner scanner = Counting("/nonexistent/proc", calls, 1);
  CHECK(scanner.Scan(0).empty());
  FakeProc proc;
  // A maps line whose map_files entry is missing (unmapped since), and a
  // directory named like a process without maps.
  REQUIRE(mkdir((proc.root + "/50").c_str(), 0755) == 0);
  std::ofstream(proc.root + "/50/maps") << "1000-2000 r--p 00000000 fe:01 9 /lib/libssl.so.3\n";
  REQUIRE(mkdir((proc.root + "/51").c_str(), 0755) == 0);
  TlsScanner fake = Counting(proc.root, calls, 1);
  CHECK(fake.Scan(0).empty());
  CHECK(fake.tracked() == 2);
  CHECK(calls == 0);
}

}  // namespace
}  // namespace httptraced::bpf
