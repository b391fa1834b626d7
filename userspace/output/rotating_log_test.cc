#include "output/rotating_log.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "output/test_support.h"

namespace httptraced::output {
namespace {

using testing::EventLog;
using testing::FakeClock;
using testing::FillUp;
using testing::Gunzip;
using testing::Unzstd;
using testing::Lines;
using testing::ListDir;
using testing::Mode;
using testing::ReadFile;
using testing::ScopedUmask;
using testing::TempDir;
using testing::TmpfsMount;
using testing::WriteFile;

using Files = std::vector<std::string>;

constexpr char kB0[] = "httptraced-20261121T204559.123Z.json";
constexpr char kB1[] = "httptraced-20261121T204559.123Z-1.json";
constexpr char kB2[] = "httptraced-20261121T204559.123Z-2.json";
constexpr char kB3[] = "httptraced-20261121T204559.123Z-3.json";
constexpr char kActive[] = "httptraced.json";

constexpr char kLaterRecovers[] =
    " records lost; further losses from this cause are only counted until "
    "output recovers)";

// A RotatingLog in `dir` with a fake clock and recorded events.
struct Fixture {
  explicit Fixture(std::string dir_path) : dir(std::move(dir_path)) {
    options.dir = dir;
    options.compress = Compression::kNone;
    options.on_event = events.AsCallback();
  }
  std::unique_ptr<RotatingLog> Open() {
    absl::StatusOr<std::unique_ptr<RotatingLog>> log =
        RotatingLog::Open(options, clock.AsClock());
    INFO(log.status().ToString());
    REQUIRE(log.ok());
    return *std::move(log);
  }
  std::string operator/(absl::string_view name) const {
    return absl::StrCat(dir, "/", name);
  }

  std::string dir;
  FakeClock clock;
  EventLog events;
  RotatingLog::Options options;
};

// Wraps ::write, counting calls and recording results.
struct CountingWrite {
  std::vector<ssize_t> results;
  WriteFn AsWriteFn() {
    return [this](int fd, const void* buf, size_t count) {
      ssize_t n = ::write(fd, buf, count);
      results.push_back(n);
      return n;
    };
  }
};

TEST_CASE("a batch is one write(2) and lands exactly") {
  TempDir tmp;
  Fixture f(tmp / "logs");
  CountingWrite writes;
  f.options.write_fn = writes.AsWriteFn();
  auto log = f.Open();
  const std::string batch = Lines(0, 100);
  REQUIRE(log->Write(batch).ok());
  CHECK(writes.results == std::vector<ssize_t>{1000});
  REQUIRE(log->Write(Lines(100, 3)).ok());
  CHECK(writes.results == std::vector<ssize_t>{1000, 30});
  CHECK(ReadFile(f / kActive) == batch + Lines(100, 3));
  CHECK(log->active_path() == f / kActive);
  const SinkStats& stats = log->stats();
  CHECK(stats.records_written == 103);
  CHECK(stats.bytes_written == 1030);
  CHECK(stats.records_lost == 0);
  CHECK(stats.rotations == 0);
  CHECK(stats.write_errors == 0);
  CHECK(log->Write("").ok());
  CHECK(writes.results.size() == 2);
  CHECK(f.events.events.empty());
}

TEST_CASE("Open without a clock names backups by the wall clock") {
  TempDir tmp;
  RotatingLog::Options options;
  options.dir = tmp.path();
  options.max_size_bytes = 2;
  const std::string before = FormatBackupStamp(absl::Now());
  absl::StatusOr<std::unique_ptr<RotatingLog>> log = RotatingLog::Open(options);
  REQUIRE(log.ok());
  REQUIRE((*log)->Write("a\nb\n").ok());
  const std::string after = FormatBackupStamp(absl::Now());
  const Files files = ListDir(tmp.path());
  REQUIRE(files.size() == 2);
  std::optional<BackupName> name = ParseBackupFileName("httptraced", files[0]);
  REQUIRE(name.has_value());
  CHECK(before <= name->stamp);
  CHECK(name->stamp <= after);
  CHECK(ReadFile(tmp / files[0]) == "a\n");
}

TEST_CASE("rotates by size at line boundaries, every line exactly once") {
  TempDir tmp;
  Fixture f(tmp.path());
  f.options.max_size_bytes = 50;  // five 10-byte lines
  CountingWrite writes;
  f.options.write_fn = writes.AsWriteFn();
  auto log = f.Open();
  REQUIRE(log->Write(Lines(0, 7)).ok());
  REQUIRE(log->Write(Lines(7, 7)).ok());
  REQUIRE(log->Write(Lines(14, 7)).ok());
  REQUIRE(log->Write(Lines(21, 2)).ok());
  log->WaitForBackgroundWork();

  // Several rotations in the same millisecond get counters, in order.
  CHECK(ListDir(tmp.path()) == Files{kB1, kB2, kB3, kB0, kActive});
  CHECK(ReadFile(f / kB0) == Lines(0, 5));
  CHECK(ReadFile(f / kB1) == Lines(5, 5));
  CHECK(ReadFile(f / kB2) == Lines(10, 5));
  CHECK(ReadFile(f / kB3) == Lines(15, 5));
  CHECK(ReadFile(f / kActive) == Lines(20, 3));
  // Write 1: 5 lines, rotate, 2. Write 2: 3, rotate, 4. Write 3: 1, rotate,
  // 5, rotate, 1. Write 4: 2.
  CHECK(writes.results == std::vector<ssize_t>{50, 20, 30, 40, 10, 50, 10, 20});
  CHECK(log->stats().rotations == 4);
  CHECK(log->stats().records_written == 23);
  CHECK(log->stats().bytes_written == 230);
}

TEST_CASE("a line longer than max_size gets a file of its own") {
  TempDir tmp;
  Fixture f(tmp.path());
  f.options.max_size_bytes = 20;
  auto log = f.Open();
  const std::string big = std::string(49, 'B') + "\n";
  REQUIRE(log->Write("short\n" + big + "x\n").ok());
  CHECK(ListDir(tmp.path()) == Files{kB1, kB0, kActive});
  CHECK(ReadFile(f / kB0) == "short\n");
  CHECK(ReadFile(f / kB1) == big);
  CHECK(ReadFile(f / kActive) == "x\n");

  SECTION("an oversize line into an empty file does not rotate first") {
    f.clock.now += absl::Seconds(1);
    REQUIRE(log->Write("y\n").ok());  // active: "x\ny\n"
    REQUIRE(log->Write(big).ok());    // rotates "x\ny\n" away
    REQUIRE(log->Write(big).ok());    // rotates the first big line away
    CHECK(ListDir(tmp.path()) ==
          Files{kB1, kB0, "httptraced-20261121T204600.123Z-1.json",
                "httptraced-20261121T204600.123Z.json", kActive});
    CHECK(ReadFile(f / "httptraced-20261121T204600.123Z.json") == "x\ny\n");
    CHECK(ReadFile(f / "httptraced-20261121T204600.123Z-1.json") == big);
    CHECK(ReadFile(f / kActive) == big);
    CHECK(log->stats().rotations == 4);
  }
}

TEST_CASE("rotates by age in Tick, measured from the first record") {
  TempDir tmp;
  Fixture f(tmp.path());
  f.options.max_age = absl::Hours(1);
  auto log = f.Open();
  log->Tick();
  f.clock.now += absl::Hours(2);
  log->Tick();  // an empty file never rotates
  CHECK(ListDir(tmp.path()) == Files{kActive});

  REQUIRE(log->Write("a\n").ok());  // 22:45:59.123
  f.clock.now += absl::Minutes(59);
  log->Tick();
  CHECK(ListDir(tmp.path()) == Files{kActive});
  f.clock.now += absl::Minutes(1);
  REQUIRE(log->Write("b\n").ok());
  CHECK(ListDir(tmp.path()) == Files{kActive});  // Write() does not age-rotate
  log->Tick();
  CHECK(ListDir(tmp.path()) ==
        Files{"httptraced-20261121T234559.123Z.json", kActive});
  CHECK(ReadFile(f / "httptraced-20261121T234559.123Z.json") == "a\nb\n");
  CHECK(ReadFile(f / kActive) == "");

  f.clock.now += absl::Hours(5);
  log->Tick();
  REQUIRE(log->Write("c\n").ok());
  f.clock.now += absl::Minutes(30);
  log->Tick();
  CHECK(ListDir(tmp.path()) ==
        Files{"httptraced-20261121T234559.123Z.json", kActive});
  CHECK(ReadFile(f / kActive) == "c\n");
  CHECK(log->stats().rotations == 1);
  CHECK(f.events.events.empty());
}

TEST_CASE("keeps max_files backups and never touches other files") {
  TempDir tmp;
  Fixture f(tmp.path());
  f.options.max_size_bytes = 10;  // one line per file
  f.options.max_files = 3;
  const Files foreign = {"httptraced-notes.json", "httptraced.json.1",
                         "other.json", ".httptraced-x.json.gz.tmp"};
  for (const std::string& name : foreign) WriteFile(f / name, "keep\n");
  WriteFile(f / "httptraced-20200101T000000.000Z.json.gz", "old");
  auto log = f.Open();
  for (int i = 0; i < 10; ++i) {
    REQUIRE(log->Write(Lines(i, 1)).ok());
    f.clock.now += absl::Seconds(1);
  }
  log->WaitForBackgroundWork();
  // Line i is written at 20:45:59 + i s and rotates line i-1 away, so
  // backups 20:46:00 ... 20:46:08 hold lines 0..8; the newest three survive,
  // and so does everything that is not ours.
  CHECK(ListDir(tmp.path()) == Files{".httptraced-x.json.gz.tmp",
                                     "httptraced-20261121T204606.123Z.json",
                                     "httptraced-20261121T204607.123Z.json",
                                     "httptraced-20261121T204608.123Z.json",
                                     "httptraced-notes.json", kActive,
                                     "httptraced.json.1", "other.json"});
  CHECK(ReadFile(f / "httptraced-20261121T204606.123Z.json") == Lines(6, 1));
  CHECK(ReadFile(f / "httptraced-20261121T204607.123Z.json") == Lines(7, 1));
  CHECK(ReadFile(f / "httptraced-20261121T204608.123Z.json") == Lines(8, 1));
  CHECK(ReadFile(f / kActive) == Lines(9, 1));
  for (const std::string& name : foreign) CHECK(ReadFile(f / name) == "keep\n");
  CHECK(log->stats().rotations == 9);
}

TEST_CASE("compresses every backup but the newest, with zstd by default") {
  TempDir tmp;
  Fixture f(tmp.path());
  f.options.max_size_bytes = 1000;
  f.options.compress = RotatingLog::Options{}.compress;
  REQUIRE(f.options.compress == Compression::kZstd);
  auto log = f.Open();
  const std::string all = Lines(0, 35, 100);
  REQUIRE(log->Write(all).ok());
  log->WaitForBackgroundWork();
  CHECK(ListDir(tmp.path()) ==
        Files{"httptraced-20261121T204559.123Z-1.json.zst", kB2,
              "httptraced-20261121T204559.123Z.json.zst", kActive});
  CHECK(Unzstd(ReadFile(f / "httptraced-20261121T204559.123Z.json.zst")) ==
        all.substr(0, 1000));
  CHECK(Unzstd(ReadFile(f / "httptraced-20261121T204559.123Z-1.json.zst")) ==
        all.substr(1000, 1000));
  CHECK(ReadFile(f / kB2) == all.substr(2000, 1000));
  CHECK(ReadFile(f / kActive) == all.substr(3000));
  CHECK(Mode(f / "httptraced-20261121T204559.123Z.json.zst") == 0640);

  // The next rotation compresses the previous newest.
  f.clock.now += absl::Seconds(1);
  REQUIRE(log->Write(Lines(35, 6, 100)).ok());
  log->WaitForBackgroundWork();
  CHECK(ListDir(tmp.path()) ==
        Files{"httptraced-20261121T204559.123Z-1.json.zst",
              "httptraced-20261121T204559.123Z-2.json.zst",
              "httptraced-20261121T204559.123Z.json.zst",
              "httptraced-20261121T204600.123Z.json", kActive});
  CHECK(Unzstd(ReadFile(f / "httptraced-20261121T204559.123Z-2.json.zst")) ==
        all.substr(2000, 1000));
  CHECK(ReadFile(f / "httptraced-20261121T204600.123Z.json") ==
        all.substr(3000) + Lines(35, 5, 100));
  CHECK(ReadFile(f / kActive) == Lines(40, 1, 100));
  CHECK(f.events.events.empty());
}

TEST_CASE("startup prunes and compresses leftover backups (gzip)") {
  TempDir tmp;
  Fixture f(tmp.path());
  f.options.compress = Compression::kGzip;
  f.options.max_files = 2;
  WriteFile(f / "httptraced-20261120T000000.000Z.json", "a\n");
  WriteFile(f / "httptraced-20261120T000001.000Z.json", "b\n");
  WriteFile(f / "httptraced-20261120T000002.000Z.json", "c\n");
  WriteFile(f / ".httptraced-20261120T000001.000Z.json.gz.tmp", "partial");
  auto log = f.Open();
  log->WaitForBackgroundWork();
  CHECK(ListDir(tmp.path()) == Files{"httptraced-20261120T000001.000Z.json.gz",
                                     "httptraced-20261120T000002.000Z.json",
                                     kActive});
  CHECK(Gunzip(ReadFile(f / "httptraced-20261120T000001.000Z.json.gz")) ==
        "b\n");
}

TEST_CASE("backup names stay unique and ordered") {
  TempDir tmp;
  Fixture f(tmp.path());
  f.options.max_size_bytes = 2;
  WriteFile(f / "httptraced-20261121T204559.123Z-5.json.gz", "old");
  // A compressed backup takes its name too, whatever its codec.
  WriteFile(f / "httptraced-20261121T204559.123Z-6.json.zst", "old");
  auto log = f.Open();
  REQUIRE(log->Write("a\nb\n").ok());  // same ms as the existing -5
  f.clock.now -= absl::Hours(1);       // the clock steps back
  REQUIRE(log->Write("c\n").ok());
  f.clock.now += absl::Hours(2);
  REQUIRE(log->Write("d\n").ok());
  CHECK(ListDir(tmp.path()) ==
        Files{"httptraced-20261121T204559.123Z-5.json.gz",
              "httptraced-20261121T204559.123Z-6.json.zst",
              "httptraced-20261121T204559.123Z-7.json",
              "httptraced-20261121T204559.123Z-8.json",
              "httptraced-20261121T214559.123Z.json", kActive});
  CHECK(ReadFile(f / "httptraced-20261121T204559.123Z-7.json") == "a\n");
  CHECK(ReadFile(f / "httptraced-20261121T204559.123Z-8.json") == "b\n");
  CHECK(ReadFile(f / "httptraced-20261121T214559.123Z.json") == "c\n");
  CHECK(ReadFile(f / kActive) == "d\n");
}

TEST_CASE("files are 0640 and the directory 0750 whatever the umask") {
  for (mode_t mask : {mode_t{0}, mode_t{077}}) {
    INFO("umask " << mask);
    ScopedUmask umask(mask);
    TempDir tmp;
    Fixture f(tmp / "a/b/logs");
    f.options.compress = Compression::kZstd;
    f.options.max_size_bytes = 10;
    {
      auto log = f.Open();
      REQUIRE(log->Write(Lines(0, 3)).ok());
      log->WaitForBackgroundWork();
    }
    CHECK(Mode(tmp / "a") == (0755 & ~mask));
    CHECK(Mode(tmp / "a/b") == (0755 & ~mask));
    CHECK(Mode(f.dir) == 0750);
    CHECK(ListDir(f.dir) ==
          Files{kB1, "httptraced-20261121T204559.123Z.json.zst", kActive});
    for (const std::string& name : ListDir(f.dir)) {
      INFO(name);
      CHECK(Mode(f / name) == 0640);
    }
  }
}

TEST_CASE("an existing active file with other modes is set to 0640") {
  TempDir tmp;
  Fixture f(tmp.path());
  WriteFile(f / kActive, "old\n");
  REQUIRE(::chmod((f / kActive).c_str(), 0666) == 0);
  auto log = f.Open();
  REQUIRE(log->Write("new\n").ok());
  CHECK(Mode(f / kActive) == 0640);
  CHECK(ReadFile(f / kActive) == "old\nnew\n");
}

TEST_CASE("refuses a log directory that is a symlink") {
  TempDir tmp;
  REQUIRE(::mkdir((tmp / "real").c_str(), 0750) == 0);
  REQUIRE(::symlink((tmp / "real").c_str(), (tmp / "logs").c_str()) == 0);
  Fixture f(tmp / "logs");
  absl::StatusOr<std::unique_ptr<RotatingLog>> log =
      RotatingLog::Open(f.options, f.clock.AsClock());
  const std::string p = tmp / "logs";
  CHECK(log.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(log.status().message() ==
        absl::StrCat("log directory ", p,
                     " is a symlink; refusing to use it (whoever controls the "
                     "link can redirect the log). Configure the real "
                     "directory instead, or replace the link: rm ",
                     p, " && mkdir -m 0750 ", p));
  CHECK(ListDir(tmp / "real").empty());
}

TEST_CASE("refuses a log directory writable by group or others") {
  for (mode_t mode : {mode_t{0777}, mode_t{0770}, mode_t{01777}}) {
    TempDir tmp;
    const std::string p = tmp / "logs";
    REQUIRE(::mkdir(p.c_str(), 0700) == 0);
    REQUIRE(::chmod(p.c_str(), mode) == 0);
    Fixture f(p);
    absl::StatusOr<std::unique_ptr<RotatingLog>> log =
        RotatingLog::Open(f.options, f.clock.AsClock());
    CHECK(log.status().code() == absl::StatusCode::kFailedPrecondition);
    char mode_text[8];
    snprintf(mode_text, sizeof(mode_text), "%04o", mode);
    CHECK(log.status().message() ==
          absl::StrCat("log directory ", p,
                       " is writable by group or others (mode ", mode_text,
                       "); refusing to use it (whoever can write there can "
                       "replace the log files). Fix: chmod go-w ",
                       p));
    CHECK(ListDir(p).empty());
  }
  SECTION("0755 is fine") {
    TempDir tmp;
    REQUIRE(::chmod(tmp.path().c_str(), 0755) == 0);
    Fixture f(tmp.path());
    f.Open();
    CHECK(Mode(tmp.path()) == 0755);  // an existing directory keeps its mode
  }
}

TEST_CASE("refuses an active file that is a symlink (O_NOFOLLOW)") {
  TempDir tmp;
  Fixture f(tmp / "logs");
  REQUIRE(::mkdir(f.dir.c_str(), 0750) == 0);
  WriteFile(tmp / "target", "");
  REQUIRE(::symlink((tmp / "target").c_str(), (f / kActive).c_str()) == 0);
  absl::StatusOr<std::unique_ptr<RotatingLog>> log =
      RotatingLog::Open(f.options, f.clock.AsClock());
  CHECK(log.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(log.status().message() ==
        absl::StrCat("active log file ", f / kActive,
                     " is a symlink; refusing to follow it (it could point "
                     "anywhere). Remove it: rm ",
                     f / kActive));
  CHECK(ReadFile(tmp / "target") == "");
}

TEST_CASE("rejects bad options") {
  TempDir tmp;
  Fixture f(tmp.path());
  f.options.max_size_bytes = 0;
  CHECK(RotatingLog::Open(f.options, f.clock.AsClock()).status() ==
        absl::InvalidArgumentError("log max_size_bytes must be positive"));
  f.options.max_size_bytes = 1;
  f.options.base_name = "../x";
  CHECK(RotatingLog::Open(f.options, f.clock.AsClock()).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(ListDir(tmp.path()).empty());
}

TEST_CASE("a batch without a final newline is refused and counted") {
  TempDir tmp;
  Fixture f(tmp.path());
  auto log = f.Open();
  CHECK(log->Write("a\nb") ==
        absl::InvalidArgumentError("RotatingLog::Write: batch does not end in "
                                   "a newline; 2 records dropped"));
  CHECK(ReadFile(f / kActive) == "");
  CHECK(log->stats().records_lost == 2);
  CHECK(log->stats().write_errors == 1);
}

TEST_CASE("Reopen after the active file was renamed away") {
  TempDir tmp;
  Fixture f(tmp.path());
  auto log = f.Open();
  REQUIRE(log->Write("a\n").ok());
  REQUIRE(::rename((f / kActive).c_str(), (f / "moved.json").c_str()) == 0);
  // Until the signal, lines follow the renamed file (logrotate's contract).
  REQUIRE(log->Write("b\n").ok());
  CHECK(ListDir(tmp.path()) == Files{"moved.json"});
  REQUIRE(log->Reopen().ok());
  CHECK(ListDir(tmp.path()) == Files{kActive, "moved.json"});
  REQUIRE(log->Write("c\n").ok());
  CHECK(ReadFile(f / "moved.json") == "a\nb\n");
  CHECK(ReadFile(f / kActive) == "c\n");
  CHECK(Mode(f / kActive) == 0640);
  CHECK(log->stats().records_written == 3);
  CHECK(log->stats().rotations == 0);
  CHECK(f.events.events.empty());
}

TEST_CASE("size rotation after an external rename does not move their file") {
  TempDir tmp;
  Fixture f(tmp.path());
  f.options.max_size_bytes = 4;
  auto log = f.Open();
  REQUIRE(log->Write("a\nb\n").ok());
  REQUIRE(::rename((f / kActive).c_str(), (f / "httptraced.json.1").c_str()) ==
          0);
  WriteFile(f / kActive, "");       // logrotate's "create"
  REQUIRE(log->Write("c\n").ok());  // would rotate: switches to the new file
  CHECK(ListDir(tmp.path()) == Files{kActive, "httptraced.json.1"});
  CHECK(ReadFile(f / "httptraced.json.1") == "a\nb\n");
  CHECK(ReadFile(f / kActive) == "c\n");
  CHECK(log->stats().rotations == 0);
}

TEST_CASE("a deleted active file is recreated on the next write") {
  TempDir tmp;
  Fixture f(tmp.path());
  auto log = f.Open();
  REQUIRE(log->Write("a\n").ok());
  REQUIRE(::unlink((f / kActive).c_str()) == 0);
  REQUIRE(log->Write("b\n").ok());
  CHECK(ReadFile(f / kActive) == "b\n");
  REQUIRE(f.events.events.size() == 1);
  CHECK(f.events.events[0].kind == SinkEvent::Kind::kWarning);
  CHECK(
      f.events.events[0].status.message() ==
      absl::StrCat(f / kActive, " was deleted while open; created a new one"));
  CHECK(log->stats().records_lost == 0);
}

TEST_CASE("directory removed: error once, losses counted, then recreated") {
  TempDir tmp;
  Fixture f(tmp / "parent/logs");
  auto log = f.Open();
  REQUIRE(log->Write("a\n").ok());
  const absl::Time start = f.clock.now;

  std::filesystem::remove_all(tmp / "parent");
  WriteFile(tmp / "parent", "blocks mkdir\n");
  const std::string cause =
      absl::StrCat("stat log directory ", f.dir, ": Not a directory");
  absl::Status first = log->Write("b\nc\nd\n");
  CHECK(first.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(first.message() == absl::StrCat(cause, " (3", kLaterRecovers));
  CHECK(log->failing());
  f.clock.now += absl::Seconds(3);
  CHECK(log->Write("e\nf\n").ok());  // same condition: counted, not repeated
  log->Tick();                       // retries, reports nothing new
  CHECK(log->stats().records_lost == 5);
  CHECK(log->stats().write_errors == 2);
  CHECK(f.events.events.empty());

  REQUIRE(::unlink((tmp / "parent").c_str()) == 0);
  f.clock.now += absl::Seconds(2);
  REQUIRE(log->Write("g\n").ok());
  CHECK_FALSE(log->failing());
  CHECK(ReadFile(f / kActive) == "g\n");
  CHECK(Mode(f.dir) == 0750);
  REQUIRE(f.events.events.size() == 2);
  CHECK(f.events.events[0].kind == SinkEvent::Kind::kWarning);
  CHECK(f.events.events[0].status.message() ==
        absl::StrCat("log directory ", f.dir,
                     " was missing (removed while running?); created it"));
  const SinkEvent& recovered = f.events.events[1];
  CHECK(recovered.kind == SinkEvent::Kind::kRecovered);
  CHECK(recovered.records_lost == 5);
  CHECK(recovered.failed_writes == 2);
  CHECK(recovered.duration == f.clock.now - start);
  CHECK(recovered.status.message() == cause);
  CHECK(log->stats().records_written == 2);
  CHECK(log->stats().records_lost == 5);
}

TEST_CASE("a failure first seen by Tick is reported as an event, once") {
  TempDir tmp;
  Fixture f(tmp / "parent/logs");
  auto log = f.Open();
  std::filesystem::remove_all(tmp / "parent");
  WriteFile(tmp / "parent", "blocks mkdir\n");
  REQUIRE(::unlink((f / kActive).c_str()) != 0);  // gone with the directory
  log->Tick();
  log->Tick();
  REQUIRE(f.events.events.size() == 1);
  CHECK(f.events.events[0].kind == SinkEvent::Kind::kFailing);
  CHECK(f.events.events[0].status.message() ==
        absl::StrCat("stat log directory ", f.dir, ": Not a directory"));
  CHECK(log->Write("a\n").ok());  // already reported
  CHECK(log->stats().records_lost == 1);
  CHECK(log->stats().write_errors == 1);

  SECTION("Reopen returns the error every time it is asked") {
    CHECK(log->Reopen().message() ==
          absl::StrCat("stat log directory ", f.dir, ": Not a directory"));
  }
  SECTION("Tick recreates the directory once possible") {
    REQUIRE(::unlink((tmp / "parent").c_str()) == 0);
    log->Tick();
    CHECK(ListDir(f.dir) == Files{kActive});
    REQUIRE(log->Write("b\n").ok());
    CHECK(ReadFile(f / kActive) == "b\n");
    REQUIRE(f.events.events.size() == 3);
    CHECK(f.events.events[1].kind == SinkEvent::Kind::kWarning);
    CHECK(f.events.events[2].kind == SinkEvent::Kind::kRecovered);
    CHECK(f.events.events[2].records_lost == 1);
  }
}

// write(2) that writes at most `max` bytes per call, optionally failing with
// `fail_errno` after `fail_after` bytes in total.
struct FlakyWrite {
  size_t max = 7;
  size_t fail_after = SIZE_MAX;
  int fail_errno = EIO;
  size_t total = 0;
  int calls = 0;
  bool interrupt_first = false;
  WriteFn AsWriteFn() {
    return [this](int fd, const void* buf, size_t count) -> ssize_t {
      ++calls;
      if (interrupt_first && calls == 1) {
        errno = EINTR;
        return -1;
      }
      if (total >= fail_after) {
        errno = fail_errno;
        return -1;
      }
      size_t n = std::min({count, max, fail_after - total});
      ssize_t written = ::write(fd, buf, n);
      if (written > 0) total += static_cast<size_t>(written);
      return written;
    };
  }
};

TEST_CASE("short writes are never visible as partial lines") {
  TempDir tmp;
  Fixture f(tmp.path());
  FlakyWrite flaky;
  f.options.write_fn = flaky.AsWriteFn();
  auto log = f.Open();

  SECTION("short writes and EINTR are retried until the batch is whole") {
    flaky.interrupt_first = true;
    REQUIRE(log->Write(Lines(0, 100)).ok());
    CHECK(flaky.calls == 1 + 143);  // EINTR, then ceil(1000 / 7)
    CHECK(ReadFile(f / kActive) == Lines(0, 100));
    CHECK(log->stats().records_written == 100);
  }

  SECTION("a failure part-way is truncated back to the last whole batch") {
    flaky.max = 64;
    REQUIRE(log->Write(Lines(0, 3)).ok());
    flaky.fail_after = 30 + 64 + 5;  // mid-line, in the second write(2)
    absl::Status s = log->Write(Lines(3, 10));
    CHECK(s.code() == absl::StatusCode::kUnknown);  // EIO
    CHECK(s.message() == absl::StrCat("write ", f / kActive,
                                      ": Input/output error (10",
                                      kLaterRecovers));
    CHECK(flaky.total == 99);  // 69 bytes reached the file before truncation
    CHECK(ReadFile(f / kActive) == Lines(0, 3));
    CHECK(log->Write(Lines(13, 2)).ok());  // same condition: quiet
    CHECK(ReadFile(f / kActive) == Lines(0, 3));
    flaky.fail_after = SIZE_MAX;
    REQUIRE(log->Write(Lines(15, 1)).ok());
    CHECK(ReadFile(f / kActive) == Lines(0, 3) + Lines(15, 1));
    const SinkStats& stats = log->stats();
    CHECK(stats.records_written == 4);
    CHECK(stats.bytes_written == 40);
    CHECK(stats.records_lost == 12);
    CHECK(stats.write_errors == 2);
    REQUIRE(f.events.events.size() == 1);
    CHECK(f.events.events[0].kind == SinkEvent::Kind::kRecovered);
    CHECK(f.events.events[0].records_lost == 12);
  }

  SECTION("a failure after a rotation loses only the rest") {
    log.reset();
    f.options.max_size_bytes = 30;
    auto rotating = f.Open();
    flaky.max = 1000;
    flaky.fail_after = 45;  // the second chunk fails half-way
    absl::Status s = rotating->Write(Lines(0, 6));
    CHECK_FALSE(s.ok());
    CHECK(ListDir(tmp.path()) == Files{kB0, kActive});
    CHECK(ReadFile(f / kB0) == Lines(0, 3));
    CHECK(ReadFile(f / kActive) == "");
    CHECK(rotating->stats().records_written == 3);
    CHECK(rotating->stats().records_lost == 3);
  }
}

TEST_CASE("an active file ending in a partial line is rotated away first") {
  TempDir tmp;
  Fixture f(tmp.path());
  WriteFile(f / kActive, "a\npart");  // e.g. killed mid-write in a past run
  auto log = f.Open();
  REQUIRE(log->Write("b\n").ok());
  CHECK(ListDir(tmp.path()) == Files{kB0, kActive});
  CHECK(ReadFile(f / kB0) == "a\npart");
  CHECK(ReadFile(f / kActive) == "b\n");
  CHECK(log->stats().rotations == 1);
}

TEST_CASE("background problems are reported once, as warnings") {
  TempDir tmp;
  Fixture f(tmp.path());
  f.options.compress = Compression::kZstd;
  f.options.max_size_bytes = 2;
  // Where a backup file is expected there is a directory: zstd refuses it.
  REQUIRE(::mkdir((f / "httptraced-20261121T204559.100Z.json").c_str(), 0700) ==
          0);
  auto log = f.Open();
  REQUIRE(log->Write("a\nb\n").ok());
  log->WaitForBackgroundWork();
  log->Tick();
  REQUIRE(log->Write("c\n").ok());
  log->WaitForBackgroundWork();
  log->Tick();
  REQUIRE(f.events.events.size() == 1);
  CHECK(f.events.events[0].kind == SinkEvent::Kind::kWarning);
  CHECK(f.events.events[0].status.message() ==
        absl::StrCat("log directory ", tmp.path(),
                     ": zstd: httptraced-20261121T204559.100Z.json is not a "
                     "regular file; left alone"));
  CHECK(ListDir(tmp.path()) == Files{"httptraced-20261121T204559.100Z.json",
                                     "httptraced-20261121T204559.123Z-1.json",
                                     "httptraced-20261121T204559.123Z.json.zst",
                                     kActive});
}

// Bytes allocated to a file (st_blocks), and whether `dir` is on ext4 (the
// only filesystem the log reserves space ahead on).
uint64_t Allocated(const std::string& path) {
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}
bool OnExt4(const std::string& dir) {
  struct statfs fs;
  REQUIRE(::statfs(dir.c_str(), &fs) == 0);
  return fs.f_type == EXT4_SUPER_MAGIC;
}

// Wraps ::fallocate, counting calls; fails them with `fail_errno` if set.
struct CountingFallocate {
  int calls = 0;
  int fail_errno = 0;
  std::function<int(int, int, off_t, off_t)> AsFn() {
    return [this](int fd, int mode, off_t offset, off_t len) {
      ++calls;
      CHECK(mode == FALLOC_FL_KEEP_SIZE);
      if (fail_errno != 0) {
        // What a filesystem that runs out midway leaves: part allocated.
        ::fallocate(fd, mode, offset, std::min<off_t>(len, 1 << 20));
        errno = fail_errno;
        return -1;
      }
      return ::fallocate(fd, mode, offset, len);
    };
  }
};

constexpr uint64_t kMiB = 1024 * 1024;

TEST_CASE("on ext4 space is reserved ahead of the active file, released at rotation") {
  TempDir tmp;
  const bool ext4 = OnExt4(tmp.path());
  INFO("log directory " << tmp.path() << (ext4 ? " is" : " is not") << " on ext4");
  Fixture f(tmp.path());
  f.options.max_age = absl::Hours(1);
  CountingFallocate fallocates;
  f.options.fallocate_fn = fallocates.AsFn();
  auto log = f.Open();

  REQUIRE(log->Write(Lines(0, 10, 100)).ok());
  CHECK(ReadFile(f / kActive) == Lines(0, 10, 100));  // the size is unchanged
  if (ext4) {
    // 1000 bytes written, 8 MiB more reserved past them, in one call.
    CHECK(fallocates.calls == 1);
    CHECK(Allocated(f / kActive) >= 8 * kMiB + 1000);
    CHECK(Allocated(f / kActive) < 8 * kMiB + 64 * 1024);
  } else {
    CHECK(fallocates.calls == 0);
    CHECK(Allocated(f / kActive) < 64 * 1024);
  }
  REQUIRE(log->Write(Lines(10, 10, 100)).ok());
  CHECK(fallocates.calls == (ext4 ? 1 : 0));  // still inside the reserve

  f.clock.now += absl::Hours(2);
  log->Tick();  // rotates: the backup keeps its 2000 bytes and no reserve
  const std::string backup = f / "httptraced-20261121T224559.123Z.json";
  CHECK(ReadFile(backup) == Lines(0, 20, 100));
  CHECK(Allocated(backup) < 64 * 1024);

  REQUIRE(log->Write(Lines(20, 1, 100)).ok());  // the new file reserves anew
  CHECK(fallocates.calls == (ext4 ? 2 : 0));
  CHECK(ReadFile(f / kActive) == Lines(20, 1, 100));
}

TEST_CASE("the reserve never goes past max_size, except for an oversize line") {
  TempDir tmp;
  if (!OnExt4(tmp.path())) {
    FAIL(tmp.path() << " is not on ext4: this test checks the reserve's bounds, "
                       "which only ext4 gets; run it with TMPDIR on ext4");
  }
  Fixture f(tmp.path());
  f.options.max_size_bytes = 2 * kMiB;
  f.options.reserve_ahead_bytes = kMiB;
  auto log = f.Open();
  REQUIRE(log->Write(Lines(0, 10, 100)).ok());
  CHECK(Allocated(f / kActive) >= kMiB + 1000);
  CHECK(Allocated(f / kActive) < kMiB + 64 * 1024);
  // 1,500,000 bytes more: the reserve grows to max_size and stops there.
  for (int i = 0; i < 15; ++i) REQUIRE(log->Write(Lines(10 + i * 1000, 1000, 100)).ok());
  CHECK(Allocated(f / kActive) >= 2 * kMiB);
  CHECK(Allocated(f / kActive) < 2 * kMiB + 64 * 1024);
  CHECK(log->stats().rotations == 0);
}

TEST_CASE("a reserve that fails is released and turned off for that file") {
  TempDir tmp;
  const bool ext4 = OnExt4(tmp.path());
  Fixture f(tmp.path());
  f.options.max_age = absl::Hours(1);
  CountingFallocate fallocates;
  fallocates.fail_errno = ENOSPC;
  f.options.fallocate_fn = fallocates.AsFn();
  auto log = f.Open();
  for (int i = 0; i < 3; ++i) REQUIRE(log->Write(Lines(i * 10, 10, 100)).ok());
  CHECK(ReadFile(f / kActive) == Lines(0, 30, 100));
  CHECK(fallocates.calls == (ext4 ? 1 : 0));
  CHECK(Allocated(f / kActive) < 64 * 1024);  // the part it got is freed
  CHECK(f.events.events.empty());             // not an output failure

  f.clock.now += absl::Hours(2);
  log->Tick();
  REQUIRE(log->Write(Lines(30, 10, 100)).ok());
  CHECK(fallocates.calls == (ext4 ? 2 : 0));  // a new file tries again
  CHECK(log->stats().records_written == 40);
  CHECK(log->stats().records_lost == 0);
}

TEST_CASE("nothing is reserved while the filesystem is low on space, or when off") {
  TempDir tmp;
  Fixture f(tmp.path());
  CountingFallocate fallocates;
  f.options.fallocate_fn = fallocates.AsFn();
  SECTION("low on space") { f.options.reserve_min_free_bytes = ~uint64_t{0}; }
  SECTION("off") { f.options.reserve_ahead_bytes = 0; }
  auto log = f.Open();
  for (int i = 0; i < 3; ++i) REQUIRE(log->Write(Lines(i * 10, 10, 100)).ok());
  CHECK(fallocates.calls == 0);
  CHECK(Allocated(f / kActive) < 64 * 1024);
  CHECK(ReadFile(f / kActive) == Lines(0, 30, 100));
}

TEST_CASE("ENOSPC leaves no partial line and writing resumes") {
  TempDir tmp;
  TmpfsMount mount(tmp / "mnt", "64k");
  if (!mount.mounted()) {
    FAIL("cannot mount a 64 KiB tmpfs at " << tmp / "mnt"
                                           << ": " << mount.error()
                                           << ". This test needs root "
                                              "(CAP_SYS_ADMIN) to mount.");
  }
  Fixture f(tmp / "mnt/logs");
  CountingWrite writes;
  f.options.write_fn = writes.AsWriteFn();
  auto log = f.Open();
  const absl::Time start = f.clock.now;
  REQUIRE(log->Write(Lines(0, 1, 100)).ok());
  const std::string filler = FillUp(tmp / "mnt");

  // 10000 bytes: what fits in the file's page goes in, then ENOSPC, then the
  // file is cut back.
  writes.results.clear();
  absl::Status s = log->Write(Lines(1, 100, 100));
  CHECK(s.code() == absl::StatusCode::kResourceExhausted);
  CHECK(s.message() == absl::StrCat("write ", f / kActive,
                                    ": No space left on device (100",
                                    kLaterRecovers));
  REQUIRE(writes.results.size() == 2);
  CHECK(writes.results[0] == 4096 - 100);  // a short write ...
  CHECK(writes.results[1] == -1);          // ... then ENOSPC
  CHECK(ReadFile(f / kActive) == Lines(0, 1, 100));

  f.clock.now += absl::Seconds(10);
  CHECK(log->Write(Lines(101, 50, 100)).ok());  // reported already
  CHECK(ReadFile(f / kActive) == Lines(0, 1, 100));
  CHECK(log->stats().records_lost == 150);
  CHECK(log->stats().write_errors == 2);

  REQUIRE(::unlink(filler.c_str()) == 0);
  REQUIRE(log->Write(Lines(151, 50, 100)).ok());
  CHECK(ReadFile(f / kActive) == Lines(0, 1, 100) + Lines(151, 50, 100));
  REQUIRE(f.events.events.size() == 1);
  CHECK(f.events.events[0].kind == SinkEvent::Kind::kRecovered);
  CHECK(f.events.events[0].records_lost == 150);
  CHECK(f.events.events[0].failed_writes == 2);
  CHECK(f.events.events[0].duration == f.clock.now - start);
  CHECK(f.events.events[0].ToString() ==
        absl::StrCat("output recovered after 10s: 150 records lost in 2 failed "
                     "writes (cause: write ",
                     f / kActive, ": No space left on device)"));
  CHECK(log->stats().records_written == 51);
}

}  // namespace
}  // namespace httptraced::output
