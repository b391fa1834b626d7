#include "output/backup_maintenance.h"

#include <fcntl.h>

#include <cstdlib>

#include <catch2/catch.hpp>

#include "output/test_support.h"

namespace httptraced::output {
namespace {

using testing::Gunzip;
using testing::GunzipMembers;
using testing::ListDir;
using testing::Mode;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

UniqueFd OpenDir(const TempDir& dir) {
  return UniqueFd(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY));
}

TEST_CASE("ListBackups lists only our backups, oldest first") {
  TempDir dir;
  for (const char* name : {
           "httptraced-20261121T204559.124Z.json",
           "httptraced-20261121T204559.123Z-1.json.gz",
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
                     "httptraced-20261121T204559.124Z.json",
                 });
}

TEST_CASE("GzipFileAt compresses exactly and replaces the source") {
  TempDir dir;
  std::string content;
  for (int i = 0; i < 20000; ++i)
    content += "{\"i\":" + std::to_string(i) + "}\n";
  WriteFile(dir / "a.json", content);
  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{false};
  REQUIRE(
      GzipFileAt(fd.get(), "a.json", ".a.json.gz.tmp", "a.json.gz", stop).ok());
  CHECK(ListDir(dir.path()) == std::vector<std::string>{"a.json.gz"});
  CHECK(Gunzip(ReadFile(dir / "a.json.gz")) == content);
  CHECK(Mode(dir / "a.json.gz") == 0640);
}

TEST_CASE("GzipFileAt: a file of several blocks is several members that gzip(1) reads back") {
  TempDir dir;
  std::string content;
  // 1.3 MiB of varied lines: three members of at most 512 KiB of input each.
  for (int i = 0; content.size() < 1300 * 1024; ++i)
    content += "{\"i\":" + std::to_string(i * 7919 % 100003) + ",\"pad\":\"" +
               std::string(static_cast<size_t>(i % 97), 'a' + static_cast<char>(i % 26)) + "\"}\n";
  WriteFile(dir / "a.json", content);
  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{false};
  REQUIRE(GzipFileAt(fd.get(), "a.json", ".a.json.gz.tmp", "a.json.gz", stop).ok());
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

TEST_CASE("GzipFileAt: an empty file becomes a valid empty .gz") {
  TempDir dir;
  WriteFile(dir / "a.json", "");
  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{false};
  REQUIRE(GzipFileAt(fd.get(), "a.json", ".a.json.gz.tmp", "a.json.gz", stop).ok());
  const std::string gz = ReadFile(dir / "a.json.gz");
  const testing::Gunzipped got = GunzipMembers(gz);
  CHECK(got.members == 1);
  CHECK(got.data.empty());
}

TEST_CASE("GzipFileAt stops when asked and leaves the source alone") {
  TempDir dir;
  WriteFile(dir / "a.json", "x\n");
  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{true};
  absl::Status s =
      GzipFileAt(fd.get(), "a.json", ".a.json.gz.tmp", "a.json.gz", stop);
  CHECK(absl::IsCancelled(s));
  CHECK(ListDir(dir.path()) == std::vector<std::string>{"a.json"});
}

TEST_CASE("GzipFileAt refuses a symlink") {
  TempDir dir;
  WriteFile(dir / "target", "secret\n");
  REQUIRE(::symlink((dir / "target").c_str(), (dir / "a.json").c_str()) == 0);
  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{false};
  absl::Status s =
      GzipFileAt(fd.get(), "a.json", ".a.json.gz.tmp", "a.json.gz", stop);
  CHECK(s.message() == "gzip: open a.json: Too many levels of symbolic links");
  CHECK(ListDir(dir.path()) == std::vector<std::string>{"a.json", "target"});
}

TEST_CASE("MaintainBackups prunes, compresses all but the newest, cleans up") {
  TempDir dir;
  const std::vector<std::string> backups = {
      "httptraced-20261121T204559.100Z.json.gz",
      "httptraced-20261121T204559.101Z.json",
      "httptraced-20261121T204559.102Z.json",
      "httptraced-20261121T204559.102Z-1.json",
      "httptraced-20261121T204559.103Z.json",
  };
  for (const std::string& name : backups) WriteFile(dir / name, name + "\n");
  // A crash between renaming X.json.gz into place and removing X.json.
  WriteFile(dir / "httptraced-20261121T204559.102Z-1.json.gz", "gz");
  // A compression interrupted by a crash.
  WriteFile(dir / ".httptraced-20261121T204559.101Z.json.gz.tmp", "half");
  // Not ours.
  WriteFile(dir / "httptraced.json", "active\n");
  WriteFile(dir / "httptraced.json.1", "logrotate\n");
  WriteFile(dir / ".httptraced-x.json.gz.tmp", "?\n");

  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{false};
  std::vector<MaintenanceError> errors = MaintainBackups(
      fd.get(),
      MaintenancePolicy{.base = "httptraced", .max_files = 3, .compress = true},
      stop);
  CHECK(errors.empty());
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
  UniqueFd fd = OpenDir(dir);
  std::atomic<bool> stop{false};
  CHECK(MaintainBackups(
            fd.get(),
            MaintenancePolicy{
                .base = "httptraced", .max_files = 0, .compress = false},
            stop)
            .empty());
  CHECK(ListDir(dir.path()) == std::vector<std::string>{"httptraced.json"});
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
                                        .compress = true});
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
