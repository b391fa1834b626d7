#include "daemon/drop_warnings.h"

#include <catch2/catch.hpp>
#include <string>

namespace httptraced::daemon {
namespace {

constexpr uint64_t kSec = 1'000'000'000;

TEST_CASE("No loss, no line", "[drop_warnings]") {
  DropWarnings w(16);
  CHECK(w.Observe(1 * kSec, 0, 0).empty());
  CHECK(w.Observe(100 * kSec, 0, 0).empty());
  CHECK(w.Final(200 * kSec, 0, 0).empty());
}

TEST_CASE("The first loss is reported at once, with the advice", "[drop_warnings]") {
  DropWarnings w(16);
  CHECK(w.Observe(5 * kSec, 0, 0).empty());
  CHECK(w.Observe(6 * kSec, 677, 123456) ==
        "httptraced: warning: the ring buffer (--ring_buffer_mb=16) was full: 677 events "
        "(123456 bytes of payload) lost; the records of their connections have gaps. Raise "
        "--ring_buffer_mb, or trace less (--pid, --port). Further losses are reported at "
        "most every 10 s");
  // Nothing new: nothing to say, however long after.
  CHECK(w.Observe(60 * kSec, 677, 123456).empty());
  CHECK(w.Final(61 * kSec, 677, 123456).empty());
}

TEST_CASE("Later losses are summed up at most once per interval", "[drop_warnings]") {
  DropWarnings w(1, 10 * kSec);
  REQUIRE_FALSE(w.Observe(1 * kSec, 10, 1000).empty());
  // Within the interval: held back, then reported together.
  CHECK(w.Observe(2 * kSec, 15, 1500).empty());
  CHECK(w.Observe(10 * kSec, 30, 3000).empty());
  CHECK(w.Observe(11 * kSec + kSec / 2, 40, 4000) ==
        "httptraced: warning: 30 more events (3000 bytes of payload) lost to a full ring "
        "buffer in the last 10.5 s; 40 in all");
  CHECK(w.Observe(12 * kSec, 40, 4000).empty());
  // A loss after a quiet spell longer than the interval: at once.
  CHECK(w.Observe(40 * kSec, 41, 4100) ==
        "httptraced: warning: 1 more event (100 bytes of payload) lost to a full ring "
        "buffer in the last 28.5 s; 41 in all");
}

TEST_CASE("At shutdown, what no line reported yet", "[drop_warnings]") {
  DropWarnings w(1, 10 * kSec);
  REQUIRE_FALSE(w.Observe(1 * kSec, 10, 1000).empty());
  CHECK(w.Observe(2 * kSec, 12, 1200).empty());
  CHECK(w.Final(3 * kSec, 12, 1200) ==
        "httptraced: warning: 2 more events (200 bytes of payload) lost to a full ring "
        "buffer in the last 2.0 s; 12 in all");
  CHECK(w.Final(4 * kSec, 12, 1200).empty());
}

TEST_CASE("A loss first seen at shutdown gets the first line", "[drop_warnings]") {
  DropWarnings w(4);
  CHECK(w.Final(1 * kSec, 3, 0) ==
        "httptraced: warning: the ring buffer (--ring_buffer_mb=4) was full: 3 events "
        "(0 bytes of payload) lost; the records of their connections have gaps. Raise "
        "--ring_buffer_mb, or trace less (--pid, --port). Further losses are reported at "
        "most every 10 s");
}

TEST_CASE("Counters that went back are reported whole, not wrapped", "[drop_warnings]") {
  DropWarnings w(16, 10 * kSec);
  REQUIRE_FALSE(w.Observe(1 * kSec, 100, 1000).empty());
  CHECK(w.Observe(20 * kSec, 5, 50) ==
        "httptraced: warning: 5 more events (50 bytes of payload) lost to a full ring "
        "buffer in the last 19.0 s; 5 in all");
}

}  // namespace
}  // namespace httptraced::daemon
