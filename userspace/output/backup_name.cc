#include "output/backup_name.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace httptraced::output {
namespace {

constexpr absl::string_view kJson = ".json";
constexpr absl::string_view kGz = ".gz";
constexpr absl::string_view kZst = ".zst";
constexpr absl::string_view kTmp = ".tmp";
// "YYYYMMDDTHHMMSS.mmmZ"
constexpr absl::string_view kStampShape = "dddddddd_dddddd.dddZ";

bool IsStamp(absl::string_view s) {
  if (s.size() != kStampShape.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    switch (kStampShape[i]) {
      case 'd':
        if (!absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) {
          return false;
        }
        break;
      case '_':
        if (s[i] != 'T') return false;
        break;
      default:
        if (s[i] != kStampShape[i]) return false;
    }
  }
  return true;
}

}  // namespace

absl::string_view CompressionSuffix(Compression c) {
  switch (c) {
    case Compression::kNone:
      return "";
    case Compression::kGzip:
      return kGz;
    case Compression::kZstd:
      return kZst;
  }
  return "";
}

std::string FormatBackupStamp(absl::Time t) {
  // %E3S truncates to milliseconds.
  return absl::FormatTime("%Y%m%dT%H%M%E3SZ", t, absl::UTCTimeZone());
}

std::string ActiveFileName(absl::string_view base) {
  return absl::StrCat(base, kJson);
}

std::string BackupFileName(absl::string_view base, const BackupName& name) {
  std::string out = absl::StrCat(base, "-", name.stamp);
  if (name.counter != 0) absl::StrAppend(&out, "-", name.counter);
  absl::StrAppend(&out, kJson, CompressionSuffix(name.compression));
  return out;
}

std::string TempFileName(absl::string_view base, const BackupName& name) {
  return absl::StrCat(".", BackupFileName(base, name), kTmp);
}

std::optional<BackupName> ParseBackupFileName(absl::string_view base,
                                              absl::string_view file_name) {
  absl::string_view rest = file_name;
  if (!absl::ConsumePrefix(&rest, base) || !absl::ConsumePrefix(&rest, "-")) {
    return std::nullopt;
  }
  BackupName name;
  if (absl::ConsumeSuffix(&rest, kGz)) {
    name.compression = Compression::kGzip;
  } else if (absl::ConsumeSuffix(&rest, kZst)) {
    name.compression = Compression::kZstd;
  }
  if (!absl::ConsumeSuffix(&rest, kJson)) return std::nullopt;
  if (rest.size() < kStampShape.size()) return std::nullopt;
  absl::string_view stamp = rest.substr(0, kStampShape.size());
  if (!IsStamp(stamp)) return std::nullopt;
  rest.remove_prefix(stamp.size());
  if (!rest.empty()) {
    // "-N": N >= 1, decimal, no leading zero, so names round-trip exactly.
    if (!absl::ConsumePrefix(&rest, "-") || rest.empty() || rest.size() > 9 ||
        rest[0] == '0') {
      return std::nullopt;
    }
    for (char c : rest) {
      if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
        return std::nullopt;
      }
    }
    if (!absl::SimpleAtoi(rest, &name.counter)) return std::nullopt;
  }
  name.stamp = std::string(stamp);
  return name;
}

std::optional<BackupName> ParseTempFileName(absl::string_view base,
                                            absl::string_view file_name) {
  absl::string_view rest = file_name;
  if (!absl::ConsumePrefix(&rest, ".") || !absl::ConsumeSuffix(&rest, kTmp)) {
    return std::nullopt;
  }
  std::optional<BackupName> name = ParseBackupFileName(base, rest);
  if (!name || !name->compressed()) return std::nullopt;
  return name;
}

bool IsValidBaseName(absl::string_view base) {
  if (base.empty() || base[0] == '.') return false;
  for (char c : base) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' &&
        c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

}  // namespace httptraced::output
