// Names of the files RotatingLog owns in its directory. Everything else in the
// directory is left alone.
//
//   <base>.json                                  the active file
//   <base>-20261121T204559.123Z.json             a backup (UTC, milliseconds)
//   <base>-20261121T204559.123Z-2.json           the 3rd backup of that ms
//   <base>-20261121T204559.123Z.json.zst         a compressed backup (zstd)
//   <base>-20261121T204559.123Z.json.gz          a compressed backup (gzip)
//   .<base>-20261121T204559.123Z.json.zst.tmp    a compression in progress
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

// How rotated backups are compressed (the file name's suffix says which).
enum class Compression : uint8_t {
  kNone,  // .json
  kGzip,  // .json.gz
  kZstd,  // .json.zst
};

// "", ".gz", ".zst"
absl::string_view CompressionSuffix(Compression c);

struct BackupName {
  std::string stamp;     // "20261121T204559.123Z"
  uint64_t counter = 0;  // 0: no "-N" suffix
  Compression compression = Compression::kNone;

  bool compressed() const { return compression != Compression::kNone; }

  // Same backup (compressed or not)?
  bool SameBackup(const BackupName& other) const {
    return stamp == other.stamp && counter == other.counter;
  }
  // Chronological order; ignores `compression`.
  bool OlderThan(const BackupName& other) const {
    if (stamp != other.stamp) return stamp < other.stamp;
    return counter < other.counter;
  }
};

// "20261121T204559.123Z": UTC, milliseconds truncated.
std::string FormatBackupStamp(absl::Time t);

// "<base>.json"
std::string ActiveFileName(absl::string_view base);
// "<base>-<stamp>[-<counter>].json[.gz|.zst]"
std::string BackupFileName(absl::string_view base, const BackupName& name);
// ".<base>-<stamp>[-<counter>].json.<gz|zst>.tmp": where the compression of
// `name` (which must be compressed) is written before it is renamed.
std::string TempFileName(absl::string_view base, const BackupName& name);

// Inverse of BackupFileName; nullopt for any other name.
std::optional<BackupName> ParseBackupFileName(absl::string_view base,
                                              absl::string_view file_name);
// Inverse of TempFileName; nullopt for any other name.
std::optional<BackupName> ParseTempFileName(absl::string_view base,
                                            absl::string_view file_name);

// A usable base name: non-empty, [A-Za-z0-9_.-], not starting with '.'.
bool IsValidBaseName(absl::string_view base);

}  // namespace httptraced::output

#endif  // HTTPTRACED_OUTPUT_BACKUP_NAME_H_
