#include "record/timestamp.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/time/time.h"

namespace httptraced::record {
namespace {

std::string Format(int64_t wall_ns) {
  std::string out;
  AppendRfc3339Nanos(wall_ns, out);
  return out;
}

TEST_CASE("RFC 3339 timestamps: exact values") {
  CHECK(Format(0) == "1970-01-01T00:00:00.000000000Z");
  CHECK(Format(1) == "1970-01-01T00:00:00.000000001Z");
  CHECK(Format(-1) == "1969-12-31T23:59:59.999999999Z");
  CHECK(Format(-1'000'000'000) == "1969-12-31T23:59:59.000000000Z");
  CHECK(Format(1'795'293'959'123'456'789) == "2026-11-21T20:45:59.123456789Z");
  CHECK(Format(951'825'600'000'000'000) == "2000-02-29T12:00:00.000000000Z");
  CHECK(Format(1'709'251'199'999'999'999) == "2024-02-29T23:59:59.999999999Z");
  CHECK(Format(1'709'251'200'000'000'000) == "2024-03-01T00:00:00.000000000Z");
  CHECK(Format(1'735'689'599'000'000'000) == "2024-12-31T23:59:59.000000000Z");
  CHECK(Format(std::numeric_limits<int64_t>::max()) == "2262-04-11T23:47:16.854775807Z");
  CHECK(Format(std::numeric_limits<int64_t>::min()) == "1677-09-21T00:12:43.145224192Z");
}

TEST_CASE("RFC 3339 timestamps append and keep a fixed width") {
  std::string out = "t=";
  AppendRfc3339Nanos(0, out);
  CHECK(out == "t=1970-01-01T00:00:00.000000000Z");
  CHECK(out.size() == 2 + kRfc3339NanosSize);
}

TEST_CASE("RFC 3339 timestamps agree with absl::FormatTime across the range") {
  // A deterministic spread over the whole int64 range, plus every day
  // boundary of four years around a leap day and a century.
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  for (int i = 0; i < 20000; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const int64_t ns = static_cast<int64_t>(x);
    CAPTURE(ns);
    REQUIRE(Format(ns) == absl::FormatTime("%Y-%m-%d%ET%H:%M:%E9SZ", absl::FromUnixNanos(ns),
                                           absl::UTCTimeZone()));
  }
  for (int64_t base : {int64_t{946'684'800}, int64_t{4'102'444'800}, int64_t{-2'208'988'800}}) {
    for (int64_t day = -800; day < 800; ++day) {
      const int64_t ns = (base + day * 86'400) * 1'000'000'000 - 1;
      CAPTURE(ns);
      REQUIRE(Format(ns) == absl::FormatTime("%Y-%m-%d%ET%H:%M:%E9SZ", absl::FromUnixNanos(ns),
                                             absl::UTCTimeZone()));
    }
  }
}

TEST_CASE("RFC 3339 timestamps after a base are the same text as formatted alone") {
  const auto after = [](int64_t base_ns, int64_t ns) {
    char base[kRfc3339NanosSize];
    char buf[kRfc3339NanosSize];
    FormatRfc3339Nanos(base_ns, base);
    FormatRfc3339NanosAfter(base_ns, base, ns, buf);
    return std::string(buf, sizeof(buf));
  };
  // Same second, the next second, across a day and a year, before the epoch.
  CHECK(after(1'795'293'959'000'000'000, 1'795'293'959'999'999'999) ==
        "2026-11-21T20:45:59.999999999Z");
  CHECK(after(1'795'293'959'999'999'999, 1'795'293'960'000'000'000) ==
        "2026-11-21T20:46:00.000000000Z");
  CHECK(after(1'735'689'599'500'000'000, 1'735'689'600'000'000'001) ==
        "2025-01-01T00:00:00.000000001Z");
  CHECK(after(-1'500'000'000, -1'000'000'000) == "1969-12-31T23:59:59.000000000Z");
  CHECK(after(-1, 0) == "1970-01-01T00:00:00.000000000Z");
  CHECK(after(0, 999'999'999) == "1970-01-01T00:00:00.999999999Z");
  // Pseudo-random bases and durations from 0 to ~4 s.
  uint64_t x = 0x243F6A8885A308D3ULL;
  for (int i = 0; i < 20000; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const int64_t base_ns = static_cast<int64_t>(x >> 2) - (int64_t{1} << 61);
    const int64_t ns = base_ns + static_cast<int64_t>(x % 4'000'000'000);
    CAPTURE(base_ns, ns);
    REQUIRE(after(base_ns, ns) == Format(ns));
  }
}

}  // namespace
}  // namespace httptraced::record
