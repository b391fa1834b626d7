// RFC 3339 formatting of wall-clock nanoseconds, without allocation.
#ifndef HTTPTRACED_RECORD_TIMESTAMP_H_
#define HTTPTRACED_RECORD_TIMESTAMP_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace httptraced::record {

// Length of every string AppendRfc3339Nanos writes.
inline constexpr size_t kRfc3339NanosSize = sizeof("2026-11-21T20:45:59.123456789Z") - 1;

// Appends `wall_ns` (ns since the Unix epoch, UTC) as
// "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ": always nine fractional digits, so the
// strings sort as text. Covers the whole int64 range (years 1677 to 2262).
void AppendRfc3339Nanos(int64_t wall_ns, std::string& out);
// The same text into a fixed buffer (no allocation).
void FormatRfc3339Nanos(int64_t wall_ns, char (&buf)[kRfc3339NanosSize]);
// The same as FormatRfc3339Nanos(wall_ns, buf), given `base`, the text of an
// earlier time `base_ns`: when both fall in the same second (an exchange's
// start and end, usually) only the fraction is formatted.
void FormatRfc3339NanosAfter(int64_t base_ns, const char (&base)[kRfc3339NanosSize],
                             int64_t wall_ns, char (&buf)[kRfc3339NanosSize]);

}  // namespace httptraced::record

#endif  // HTTPTRACED_RECORD_TIMESTAMP_H_
