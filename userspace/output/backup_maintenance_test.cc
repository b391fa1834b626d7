#include "output/backup_maintenance.h"

#include <fcntl.h>

#include <cstdlib>

#include <catch2/catch.hpp>

#include "output/test_support.h"

namespace httptraced::output {
namespace {

using testing::Gunzip;
using testing::GunzipMembers;
using testing::Unzstd;
using testing::UnzstdFrames;
using testing::ListDir;
using testing::Mode;
using testing::ReadFile;
using testing::TempDir;
using testing::TmpfsMount;
using testing::FillUp;
using testing::WriteFile;

UniqueFd OpenDir(const TempDir& dir) {
  return UniqueFd(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY));
}

TEST_CASE("ListBackups lists only our backups, oldest first") {
  TempDir dir;
  for (const char* name : {
           "httptraced-20261121T204559.124Z.json",
           "httptraced-20261121T204559.123Z-1.json.gz",
           "httptraced-20261121T204559.123Z-1.json.zst",
           "httptraced-20261121T204559.123Z.json",
           "httptraced-20261121T204559.123Z-1.json",
           "httptraced.json",
           "notes.txt",
           "httptraced-notes.json",
       }) {
    WriteFile(dir / name, "x\n");
  }
  UniqueFd fd = OpenDir(dir);
  absl::StatusOr<std::vector<BackupName>> list =
      ListBackups(fd.get(), "httptraced");
  REQUIRE(list.ok());
  std::vector<std::string> names;
  for (const BackupName& name : *list) {
    names.push_back(BackupFileName("httptraced", name));
  }
  CHECK(names == std::vector<std::string>{
                     "httptraced-20261121T204559.123Z.json",
                     "httptraced-20261121T204559.123Z-1.json",
                     "httptraced-20261121T204559.123Z-1.json.gz",
                     "httptraced-20261121T204559.123Z-1.json.zst",
                     "httptraced-20261121T204559.124Z.json",
                 });
}

TEST_CASE("CompressFileAt gzip: compresses exactly and replaces the source") {
  TempDir dir;
  std::string content;
  for (int i = 0; i < 20000; ++i)
    content += "{\"i\":" + std::to_string(i) + "}\n";
  WriteFile(dir / "a.json", content);
  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{false};
  REQUIRE(
      CompressFileAt(fd.get(), Compression::kGzip, "a.json", ".a.json.gz.tmp", "a.json.gz", stop).ok());
  CHECK(ListDir(dir.path()) == std::vector<std::string>{"a.json.gz"});
  CHECK(Gunzip(ReadFile(dir / "a.json.gz")) == content);
  CHECK(Mode(dir / "a.json.gz") == 0640);
}

TEST_CASE("CompressFileAt gzip: a file of several blocks is several members that gzip(1) reads back") {
  TempDir dir;
  std::string content;
  // 1.3 MiB of varied lines: three members of at most 512 KiB of input each.
  for (int i = 0; content.size() < 1300 * 1024; ++i)
    content += "{\"i\":" + std::to_string(i * 7919 % 100003) + ",\"pad\":\"" +
               std::string(static_cast<size_t>(i % 97), 'a' + static_cast<char>(i % 26)) + "\"}\n";
  WriteFile(dir / "a.json", content);
  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{false};
  REQUIRE(CompressFileAt(fd.get(), Compression::kGzip, "a.json", ".a.json.gz.tmp", "a.json.gz", stop).ok());
  const std::string gz = ReadFile(dir / "a.json.gz");
  const testing::Gunzipped got = GunzipMembers(gz);
  CHECK(got.members == 3);
  CHECK(got.data == content);
  CHECK(gz.size() < content.size() / 4);
  // The standard tool, as an operator would use it.
  const std::string cmd = "gzip -dc < '" + (dir / "a.json.gz") + "' > '" + (dir / "b.json") + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  CHECK(ReadFile(dir / "b.json") == content);
}

TEST_CASE("CompressFileAt gzip: an empty file becomes a valid empty .gz") {
  TempDir dir;
  WriteFile(dir / "a.json", "");
  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{false};
  REQUIRE(CompressFileAt(fd.get(), Compression::kGzip, "a.json", ".a.json.gz.tmp", "a.json.gz", stop).ok());
  const std::string gz = ReadFile(dir / "a.json.gz");
  const testing::Gunzipped got = GunzipMembers(gz);
  CHECK(got.members == 1);
  CHECK(got.data.empty());
}

// 1.3 MiB of varied lines: three blocks of 512 KiB of input.
std::string VariedLines() {
  std::string content;
  for (int i = 0; content.size() < 1300 * 1024; ++i)
    content += "{\"i\":" + std::to_string(i * 7919 % 100003) + ",\"pad\":\"" +
               std::string(static_cast<size_t>(i % 97), 'a' + static_cast<char>(i % 26)) + "\"}\n";
  return content;
}

TEST_CASE("CompressFileAt zstd: compresses exactly and replaces the source") {
  TempDir dir;
  std::string content;
  for (int i = 0; i < 20000; ++i)
    content += "{\"i\":" + std::to_string(i) + "}\n";
  WriteFile(dir / "a.json", content);
  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{false};
  REQUIRE(CompressFileAt(fd.get(), Compression::kZstd, "a.json", ".a.json.zst.tmp",
                         "a.json.zst", stop)
              .ok());
  CHECK(ListDir(dir.path()) == std::vector<std::string>{"a.json.zst"});
  CHECK(Unzstd(ReadFile(dir / "a.json.zst")) == content);
  CHECK(Mode(dir / "a.json.zst") == 0640);
}

TEST_CASE("CompressFileAt zstd: a file of several MiB is several checksummed frames that zstd(1) reads back") {
  TempDir dir;
  // 2.5 MiB: frames of 1, 1 and 0.5 MiB of input.
  const std::string content = VariedLines() + VariedLines();
  WriteFile(dir / "a.json", content);
  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{false};
  REQUIRE(CompressFileAt(fd.get(), Compression::kZstd, "a.json", ".a.json.zst.tmp",
                         "a.json.zst", stop)
              .ok());
  const std::string zst = ReadFile(dir / "a.json.zst");
  const testing::Unzstded got = UnzstdFrames(zst);
  CHECK(got.frames == 3);
  CHECK(got.checksummed == 3);
  CHECK(got.data == content);
  CHECK(zst.size() < content.size() / 4);
  // The standard tool, as an operator would use it (it verifies the checksum).
  const std::string cmd =
      "zstd -q -dc < '" + (dir / "a.json.zst") + "' > '" + (dir / "b.json") + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  CHECK(ReadFile(dir / "b.json") == content);
}

TEST_CASE("CompressFileAt zstd: a file of exactly one frame and an empty file") {
  TempDir dir;
  const std::string block = (VariedLines() + VariedLines()).substr(0, 1024 * 1024);
  WriteFile(dir / "a.json", block);
  WriteFile(dir / "e.json", "");
  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{false};
  REQUIRE(CompressFileAt(fd.get(), Compression::kZstd, "a.json", ".a.json.zst.tmp",
                         "a.json.zst", stop)
              .ok());
  REQUIRE(CompressFileAt(fd.get(), Compression::kZstd, "e.json", ".e.json.zst.tmp",
                         "e.json.zst", stop)
              .ok());
  const testing::Unzstded a = UnzstdFrames(ReadFile(dir / "a.json.zst"));
  CHECK(a.frames == 1);
  CHECK(a.data == block);
  const testing::Unzstded e = UnzstdFrames(ReadFile(dir / "e.json.zst"));
  CHECK(e.frames == 1);
  CHECK(e.data.empty());
}

// Incompressible bytes (xorshift64), the same for every run.
std::string RandomBytes(size_t size) {
  std::string out(size, '\0');
  uint64_t x = 0x9e3779b97f4a7c15u;
  for (char& c : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  return out;
}

TEST_CASE("CompressFileAt zstd: incompressible data") {
  // Output larger than the input: each frame is stored raw.
  const std::string content = RandomBytes(1200 * 1024);
  TempDir dir;
  WriteFile(dir / "a.json", content);
  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{false};
  REQUIRE(CompressFileAt(fd.get(), Compression::kZstd, "a.json", ".a.json.zst.tmp",
                         "a.json.zst", stop)
              .ok());
  const testing::Unzstded got = UnzstdFrames(ReadFile(dir / "a.json.zst"));
  CHECK(got.frames == 2);
  CHECK(got.data == content);
}

TEST_CASE("CompressFileAt zstd: smaller than gzip on a record log") {
  // Record-shaped lines: the keys repeat, the values vary.
  std::string content;
  for (int i = 0; content.size() < 1024 * 1024; ++i) {
    content += "{\"@timestamp\":\"2026-11-22T13:29:06." + std::to_string(100000 + i * 37) +
               "Z\",\"event\":{\"duration\":" + std::to_string(i * 7919 % 100003) +
               "},\"url\":{\"path\":\"/items/" + std::to_string(i % 1000) +
               "\"},\"http\":{\"response\":{\"status_code\":" + (i % 10 ? "200" : "404") +
               "}}}\n";
  }
  TempDir dir;
  WriteFile(dir / "a.json", content);
  WriteFile(dir / "b.json", content);
  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{false};
  REQUIRE(CompressFileAt(fd.get(), Compression::kZstd, "a.json", ".a.tmp", "a.json.zst", stop).ok());
  REQUIRE(CompressFileAt(fd.get(), Compression::kGzip, "b.json", ".b.tmp", "b.json.gz", stop).ok());
  const std::string zst = ReadFile(dir / "a.json.zst");
  const std::string gz = ReadFile(dir / "b.json.gz");
  CHECK(Unzstd(zst) == content);
  CHECK(Gunzip(gz) == content);
  INFO("zstd " << zst.size() << " B, gzip " << gz.size() << " B of " << content.size());
  CHECK(zst.size() < gz.size());
}

TEST_CASE("CompressFileAt stops when asked and leaves the source alone") {
  for (Compression codec : {Compression::kGzip, Compression::kZstd}) {
    INFO(CodecName(codec));
    TempDir dir;
    WriteFile(dir / "a.json", "x\n");
    UniqueFd fd = OpenDir(dir);
    std::atomic<bool> stop{true};
    absl::Status s = CompressFileAt(fd.get(), codec, "a.json", ".a.json.x.tmp", "a.json.x", stop);
    CHECK(absl::IsCancelled(s));
    CHECK(ListDir(dir.path()) == std::vector<std::string>{"a.json"});
  }
}

TEST_CASE("CompressFileAt refuses a symlink, and no codec") {
  for (Compression codec : {Compression::kGzip, Compression::kZstd}) {
    INFO(CodecName(codec));
    TempDir dir;
    WriteFile(dir / "target", "secret\n");
    REQUIRE(::symlink((dir / "target").c_str(), (dir / "a.json").c_str()) == 0);
    UniqueFd fd = OpenDir(dir);
    std::atomic<bool> stop{false};
    absl::Status s = CompressFileAt(fd.get(), codec, "a.json", ".a.json.x.tmp", "a.json.x", stop);
    CHECK(s.message() == absl::StrCat(CodecName(codec),
                                      ": open a.json: Too many levels of symbolic links"));
    CHECK(ListDir(dir.path()) == std::vector<std::string>{"a.json", "target"});
  }
  TempDir dir;
  WriteFile(dir / "a.json", "x\n");
  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{false};
  CHECK(absl::IsInvalidArgument(
      CompressFileAt(fd.get(), Compression::kNone, "a.json", ".a.tmp", "a.json.x", stop)));
  CHECK(ListDir(dir.path()) == std::vector<std::string>{"a.json"});
}

TEST_CASE("CompressFileAt on a full disk keeps the source and leaves no temp file") {
  for (Compression codec : {Compression::kZstd, Compression::kGzip}) {
    INFO(CodecName(codec));
    TempDir tmp;
    TmpfsMount mount(tmp / "mnt", "256k");
    if (!mount.mounted()) {
      FAIL("cannot mount a 256 KiB tmpfs at " << tmp / "mnt" << ": " << mount.error()
                                              << ". This test needs root (CAP_SYS_ADMIN).");
    }
    // Incompressible, so the output needs about as much room as the input.
    const std::string content = RandomBytes(160 * 1024);
    WriteFile(tmp / "mnt/a.json", content);
    FillUp(tmp / "mnt");  // no room left for the compressed copy
    UniqueFd fd(::open((tmp / "mnt").c_str(), O_RDONLY | O_DIRECTORY));
    std::atomic<bool> stop{false};
    const std::string dst = absl::StrCat("a.json", CompressionSuffix(codec));
    absl::Status s = CompressFileAt(fd.get(), codec, "a.json", ".a.json.x.tmp", dst, stop);
    CHECK(s.code() == absl::StatusCode::kResourceExhausted);
    CHECK(s.message() == absl::StrCat(CodecName(codec),
                                      ": write .a.json.x.tmp: No space left on device"));
    CHECK(ListDir(tmp / "mnt") == std::vector<std::string>{"a.json", "filler"});
    CHECK(ReadFile(tmp / "mnt/a.json") == content);
  }
}

// Backups holding their own name, then one maintenance pass over the directory.
void WriteSelfNamed(const TempDir& dir, const std::vector<std::string>& names) {
  for (const std::string& name : names) WriteFile(dir / name, name + "\n");
}

std::vector<MaintenanceError> Maintain(const TempDir& dir, size_t max_files,
                                       Compression codec) {
  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{false};
  return MaintainBackups(
      fd.get(),
      MaintenancePolicy{.base = "httptraced", .max_files = max_files, .compress = codec},
      stop);
}

TEST_CASE("MaintainBackups prunes, compresses all but the newest, cleans up") {
  TempDir dir;
  WriteSelfNamed(dir, {
      "httptraced-20261121T204559.100Z.json.gz",
      "httptraced-20261121T204559.101Z.json",
      "httptraced-20261121T204559.102Z.json",
      "httptraced-20261121T204559.102Z-1.json",
      "httptraced-20261121T204559.103Z.json",
  });
  // A crash between renaming X.json.gz into place and removing X.json.
  WriteFile(dir / "httptraced-20261121T204559.102Z-1.json.gz", "gz");
  // A compression interrupted by a crash.
  WriteFile(dir / ".httptraced-20261121T204559.101Z.json.gz.tmp", "half");
  // Not ours.
  WriteFile(dir / "httptraced.json", "active\n");
  WriteFile(dir / "httptraced.json.1", "logrotate\n");
  WriteFile(dir / ".httptraced-x.json.gz.tmp", "?\n");

  CHECK(Maintain(dir, 3, Compression::kGzip).empty());
  CHECK(ListDir(dir.path()) == std::vector<std::string>{
                                   ".httptraced-x.json.gz.tmp",
                                   "httptraced-20261121T204559.102Z-1.json.gz",
                                   "httptraced-20261121T204559.102Z.json.gz",
                                   "httptraced-20261121T204559.103Z.json",
                                   "httptraced.json",
                                   "httptraced.json.1",
                               });
  CHECK(Gunzip(ReadFile(dir / "httptraced-20261121T204559.102Z.json.gz")) ==
        "httptraced-20261121T204559.102Z.json\n");
  CHECK(ReadFile(dir / "httptraced-20261121T204559.102Z-1.json.gz") == "gz");
  CHECK(ReadFile(dir / "httptraced-20261121T204559.103Z.json") ==
        "httptraced-20261121T204559.103Z.json\n");
}

TEST_CASE("MaintainBackups with max_files 0 and no compression") {
  TempDir dir;
  WriteFile(dir / "httptraced-20261121T204559.100Z.json", "a\n");
  WriteFile(dir / "httptraced-20261121T204559.101Z.json.gz", "b\n");
  WriteFile(dir / "httptraced.json", "c\n");
  CHECK(Maintain(dir, 0, Compression::kNone).empty());
  CHECK(ListDir(dir.path()) == std::vector<std::string>{"httptraced.json"});
}

TEST_CASE("MaintainBackups with zstd: gzip backups of an earlier run count and stay") {
  TempDir dir;
  WriteSelfNamed(dir, {
      "httptraced-20261121T204559.099Z.json.zst",
      "httptraced-20261121T204559.100Z.json.gz",
      "httptraced-20261121T204559.101Z.json",
      "httptraced-20261121T204559.102Z.json",
      "httptraced-20261121T204559.103Z.json",
  });
  // A crash after a gzip run renamed X.json.gz into place: X.json goes even
  // though this run compresses with zstd.
  WriteFile(dir / "httptraced-20261121T204559.102Z.json.gz", "gz");
  // Interrupted compressions of either codec.
  WriteFile(dir / ".httptraced-20261121T204559.101Z.json.zst.tmp", "half");
  WriteFile(dir / ".httptraced-20261121T204559.101Z.json.gz.tmp", "half");

  CHECK(Maintain(dir, 4, Compression::kZstd).empty());
  CHECK(ListDir(dir.path()) == std::vector<std::string>{
                                   "httptraced-20261121T204559.100Z.json.gz",
                                   "httptraced-20261121T204559.101Z.json.zst",
                                   "httptraced-20261121T204559.102Z.json.gz",
                                   "httptraced-20261121T204559.103Z.json",
                               });
  CHECK(ReadFile(dir / "httptraced-20261121T204559.100Z.json.gz") ==
        "httptraced-20261121T204559.100Z.json.gz\n");
  CHECK(Unzstd(ReadFile(dir / "httptraced-20261121T204559.101Z.json.zst")) ==
        "httptraced-20261121T204559.101Z.json\n");
  CHECK(ReadFile(dir / "httptraced-20261121T204559.102Z.json.gz") == "gz");
}

TEST_CASE("BackupWorker runs passes in the background and reports errors") {
  TempDir dir;
  WriteFile(dir / "httptraced-20261121T204559.100Z.json", "a\n");
  WriteFile(dir / "httptraced-20261121T204559.101Z.json", "b\n");
  // A directory where a backup should be: gzip refuses it.
  REQUIRE(::mkdir((dir / "httptraced-20261121T204559.099Z.json").c_str(),
                  0700) == 0);
  BackupWorker worker(MaintenancePolicy{.base = "httptraced",
                                        .dir_path = "/l",
                                        .max_files = 10,
                                        .compress = Compression::kGzip});
  worker.Schedule(std::make_shared<const UniqueFd>(OpenDir(dir)));
  worker.WaitIdle();
  CHECK(ListDir(dir.path()) ==
        std::vector<std::string>{"httptraced-20261121T204559.099Z.json",
                                 "httptraced-20261121T204559.100Z.json.gz",
                                 "httptraced-20261121T204559.101Z.json"});
  std::vector<MaintenanceError> errors = worker.TakeErrors();
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].key ==
        "gzip: httptraced-20261121T204559.099Z.json is not a regular file; "
        "left alone");
  CHECK(errors[0].status.message() ==
        "log directory /l: gzip: httptraced-20261121T204559.099Z.json is not "
        "a regular file; left alone");
  CHECK(worker.TakeErrors().empty());
}

}  // namespace
}  // namespace httptraced::output
