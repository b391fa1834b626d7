#include "output/backup_name.h"

#include <catch2/catch.hpp>

#include "absl/time/civil_time.h"

namespace httptraced::output {
namespace {

absl::Time At(int y, int mo, int d, int h, int mi, int s, int ms) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s),
                         absl::UTCTimeZone()) +
         absl::Milliseconds(ms);
}

TEST_CASE("FormatBackupStamp is UTC with truncated milliseconds") {
  CHECK(FormatBackupStamp(At(2026, 11, 21, 20, 45, 59, 123)) ==
        "20261121T204559.123Z");
  CHECK(FormatBackupStamp(At(2026, 11, 21, 20, 45, 59, 123) +
                          absl::Microseconds(999)) == "20261121T204559.123Z");
  CHECK(FormatBackupStamp(At(2027, 1, 2, 3, 4, 5, 6)) ==
        "20270102T030405.006Z");
}

TEST_CASE("backup file names") {
  CHECK(ActiveFileName("httptraced") == "httptraced.json");
  BackupName name{.stamp = "20261121T204559.123Z"};
  CHECK(BackupFileName("httptraced", name) ==
        "httptraced-20261121T204559.123Z.json");
  name.counter = 12;
  CHECK(BackupFileName("httptraced", name) ==
        "httptraced-20261121T204559.123Z-12.json");
  name.compression = Compression::kGzip;
  CHECK(BackupFileName("httptraced", name) ==
        "httptraced-20261121T204559.123Z-12.json.gz");
  CHECK(TempFileName("httptraced", name) ==
        ".httptraced-20261121T204559.123Z-12.json.gz.tmp");
  name.compression = Compression::kZstd;
  CHECK(BackupFileName("httptraced", name) ==
        "httptraced-20261121T204559.123Z-12.json.zst");
  CHECK(TempFileName("httptraced", name) ==
        ".httptraced-20261121T204559.123Z-12.json.zst.tmp");
}

TEST_CASE("ParseBackupFileName inverts BackupFileName") {
  for (uint64_t counter : {0, 1, 9, 10, 123456789}) {
    for (Compression compression :
         {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
      BackupName name{.stamp = "20261121T204559.123Z",
                      .counter = counter,
                      .compression = compression};
      std::optional<BackupName> parsed =
          ParseBackupFileName("httptraced", BackupFileName("httptraced", name));
      REQUIRE(parsed.has_value());
      CHECK(parsed->stamp == name.stamp);
      CHECK(parsed->counter == counter);
      CHECK(parsed->compression == compression);
      std::optional<BackupName> temp =
          ParseTempFileName("httptraced", TempFileName("httptraced", name));
      // Only a compression has a temp file.
      REQUIRE(temp.has_value() == name.compressed());
      if (temp) {
        CHECK(temp->counter == counter);
        CHECK(temp->compression == compression);
      }
    }
  }
}

TEST_CASE("ParseBackupFileName rejects every other name") {
  for (const char* name : {
           "httptraced.json",
           "httptraced.json.1",
           "httptraced-.json",
           "httptraced-notes.json",
           "httptraced-20261121T204559.123Z.json.1",
           "httptraced-20261121T204559.123Z.log",
           "httptraced-20261121T204559.123Z.json.gz.tmp",
           "httptraced-20261121T204559.123Z.json.zst.tmp",
           "httptraced-20261121T204559.123Z.json.zstd",
           "httptraced-20261121T204559.123Z.json.gz.zst",
           "httptraced-20261121T204559.123Z.zst",
           ".httptraced-20261121T204559.123Z.json.gz",
           "httptraced-20261121T204559.123.json",
           "httptraced-20261121X204559.123Z.json",
           "httptraced-2026112lT204559.123Z.json",
           "httptraced-20261121T204559.123Z-0.json",
           "httptraced-20261121T204559.123Z-01.json",
           "httptraced-20261121T204559.123Z-.json",
           "httptraced-20261121T204559.123Z-1x.json",
           "httptraced-20261121T204559.123Z-1234567890.json",
           "other-20261121T204559.123Z.json",
           "httptraced-x-20261121T204559.123Z.json",
       }) {
    INFO(name);
    CHECK_FALSE(ParseBackupFileName("httptraced", name).has_value());
  }
  // A temp name is not a backup, and a backup is not a temp name.
  CHECK_FALSE(ParseTempFileName("httptraced",
                                ".httptraced-20261121T204559.123Z.json.tmp")
                  .has_value());
  CHECK_FALSE(ParseTempFileName("httptraced",
                                "httptraced-20261121T204559.123Z.json.gz")
                  .has_value());
  CHECK_FALSE(ParseTempFileName("httptraced",
                                "httptraced-20261121T204559.123Z.json.zst")
                  .has_value());
}

TEST_CASE("backups order by stamp, then counter") {
  BackupName a{.stamp = "20261121T204559.123Z"};
  BackupName b{.stamp = "20261121T204559.123Z", .counter = 1};
  BackupName c{.stamp = "20261121T204559.124Z"};
  BackupName a_gz{.stamp = "20261121T204559.123Z", .compression = Compression::kGzip};
  CHECK(a.OlderThan(b));
  CHECK(b.OlderThan(c));
  CHECK_FALSE(c.OlderThan(a));
  CHECK_FALSE(a.OlderThan(a_gz));
  CHECK(a.SameBackup(a_gz));
  CHECK_FALSE(a.SameBackup(b));
}

TEST_CASE("IsValidBaseName") {
  CHECK(IsValidBaseName("httptraced"));
  CHECK(IsValidBaseName("http-traced_2.x"));
  CHECK_FALSE(IsValidBaseName(""));
  CHECK_FALSE(IsValidBaseName(".hidden"));
  CHECK_FALSE(IsValidBaseName("a/b"));
  CHECK_FALSE(IsValidBaseName("a*"));
}

}  // namespace
}  // namespace httptraced::output
