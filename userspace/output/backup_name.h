// Names of the files RotatingLog owns in its directory. Everything else in the
// directory is left alone.
//
//   <base>.json                                  the active file
//   <base>-20261121T204559.123Z.json             a backup (UTC, milliseconds)
//   <base>-20261121T204559.123Z-2.json           the 3rd backup of that ms
//   <base>-20261121T204559.123Z.json.gz          a compressed backup
//   .<base>-20261121T204559.123Z.json.gz.tmp     a compression in progress
//
// Backups never match the active name (nor a glob for it), so a shipper that
// follows <base>.json never reads a backup a second time. Backups sort
// chronologically by (stamp, counter); the fixed-width stamp sorts as a string.
#ifndef HTTPTRACED_OUTPUT_BACKUP_NAME_H_
#define HTTPTRACED_OUTPUT_BACKUP_NAME_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace httptraced::output {

struct BackupName {
  std::string stamp;     // "20261121T204559.123Z"
  uint64_t counter = 0;  // 0: no "-N" suffix
  bool compressed = false;

  // Same backup (compressed or not)?
  bool SameBackup(const BackupName& other) const {
    return stamp == other.stamp && counter == other.counter;
  }
  // Chronological order; ignores `compressed`.
  bool OlderThan(const BackupName& other) const {
    if (stamp != other.stamp) return stamp < other.stamp;
    return counter < other.counter;
  }
};

// "20261121T204559.123Z": UTC, milliseconds truncated.
std::string FormatBackupStamp(absl::Time t);

// "<base>.json"
std::string ActiveFileName(absl::string_view base);
// "<base>-<stamp>[-<counter>].json[.gz]"
std::string BackupFileName(absl::string_view base, const BackupName& name);
// ".<base>-<stamp>[-<counter>].json.gz.tmp"
std::string TempGzipFileName(absl::string_view base, const BackupName& name);

// Inverse of BackupFileName; nullopt for any other name.
std::optional<BackupName> ParseBackupFileName(absl::string_view base,
                                              absl::string_view file_name);
// Inverse of TempGzipFileName; nullopt for any other name.
std::optional<BackupName> ParseTempGzipFileName(absl::string_view base,
                                                absl::string_view file_name);

// A usable base name: non-empty, [A-Za-z0-9_.-], not starting with '.'.
bool IsValidBaseName(absl::string_view base);

}  // namespace httptraced::output

#endif  // HTTPTRACED_OUTPUT_BACKUP_NAME_H_
