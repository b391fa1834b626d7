#include "record/timestamp.h"

#include <cstdint>
#include <cstring>

namespace httptraced::record {
namespace {

constexpr int64_t kNanosPerSecond = 1'000'000'000;
constexpr int64_t kSecondsPerDay = 86'400;

struct CivilDate {
  int64_t year;
  unsigned month;  // 1..12
  unsigned day;    // 1..31
};

// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
// civil_from_days, http://howardhinnant.github.io/date_algorithms.html).
CivilDate CivilFromDays(int64_t days) {
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;                                       // [0, 146096]
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                // [0, 365]
  const int64_t mp = (5 * doy + 2) / 153;                                     // [0, 11]
  const unsigned day = static_cast<unsigned>(doy - (153 * mp + 2) / 5 + 1);
  const unsigned month = static_cast<unsigned>(mp < 10 ? mp + 3 : mp - 9);
  return {yoe + era * 400 + (month <= 2 ? 1 : 0), month, day};
}

// Writes `v` as exactly `width` decimal digits ending just before `end`.
void PutDigits(char* end, int width, uint64_t v) {
  for (int i = 0; i < width; ++i) {
    *--end = static_cast<char>('0' + v % 10);
    v /= 10;
  }
}

}  // namespace

void FormatRfc3339Nanos(int64_t wall_ns, char (&buf)[kRfc3339NanosSize]) {
  // Floor division: times before the epoch still get a positive fraction.
  int64_t seconds = wall_ns / kNanosPerSecond;
  int64_t nanos = wall_ns % kNanosPerSecond;
  if (nanos < 0) {
    nanos += kNanosPerSecond;
    --seconds;
  }
  int64_t days = seconds / kSecondsPerDay;
  int64_t second_of_day = seconds % kSecondsPerDay;
  if (second_of_day < 0) {
    second_of_day += kSecondsPerDay;
    --days;
  }
  const CivilDate date = CivilFromDays(days);

  //         0123456789012345678901234567890
  // layout  YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ
  PutDigits(buf + 4, 4, static_cast<uint64_t>(date.year));  // 1677..2262
  buf[4] = '-';
  PutDigits(buf + 7, 2, date.month);
  buf[7] = '-';
  PutDigits(buf + 10, 2, date.day);
  buf[10] = 'T';
  PutDigits(buf + 13, 2, static_cast<uint64_t>(second_of_day / 3600));
  buf[13] = ':';
  PutDigits(buf + 16, 2, static_cast<uint64_t>(second_of_day / 60 % 60));
  buf[16] = ':';
  PutDigits(buf + 19, 2, static_cast<uint64_t>(second_of_day % 60));
  buf[19] = '.';
  PutDigits(buf + 29, 9, static_cast<uint64_t>(nanos));
  buf[29] = 'Z';
}

void FormatRfc3339NanosAfter(int64_t base_ns, const char (&base)[kRfc3339NanosSize],
                             int64_t wall_ns, char (&buf)[kRfc3339NanosSize]) {
  // Same second: the same floor(ns / 1e9). Only non-negative times take the
  // short cut, where truncating division is the floor.
  if (base_ns >= 0 && wall_ns >= 0 && base_ns / kNanosPerSecond == wall_ns / kNanosPerSecond) {
    std::memcpy(buf, base, 20);  // "YYYY-MM-DDTHH:MM:SS."
    PutDigits(buf + 29, 9, static_cast<uint64_t>(wall_ns % kNanosPerSecond));
    buf[29] = 'Z';
    return;
  }
  FormatRfc3339Nanos(wall_ns, buf);
}

void AppendRfc3339Nanos(int64_t wall_ns, std::string& out) {
  char buf[kRfc3339NanosSize];
  FormatRfc3339Nanos(wall_ns, buf);
  out.append(buf, sizeof(buf));
}

}  // namespace httptraced::record
