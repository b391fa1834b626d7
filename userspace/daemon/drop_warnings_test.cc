#include "daemon/drop_warnings.h"

#include <catch2/catch.hpp>
#include <string>

namespace httptraced::daemon {
namespace {

constexpr uint64_t kSec = 1'000'000'000;
constexpr uint64_t kMs = 1'000'000;

DrainTimes Times(uint64_t cpu_ms, uint64_t cpu_wait_ms, uint64_t output_wait_ms) {
  return {.cpu_ns = cpu_ms * kMs, .cpu_wait_ns = cpu_wait_ms * kMs,
          .output_wait_ns = output_wait_ms * kMs};
}

TEST_CASE("No loss, no line", "[drop_warnings]") {
  DropWarnings w(16, Output::kLog);
  CHECK(w.Observe(1 * kSec, 0, 0, {}).empty());
  CHECK(w.Observe(100 * kSec, 0, 0, Times(90'000, 5000, 5000)).empty());
  CHECK(w.Final(200 * kSec, 0, 0, Times(90'000, 5000, 5000)).empty());
}

TEST_CASE("The first loss is reported at once, with where the time went and the advice",
          "[drop_warnings]") {
  DropWarnings w(16, Output::kLog);
  CHECK(w.Observe(5 * kSec, 0, 0, Times(100, 0, 0)).empty());
  CHECK(w.Observe(6 * kSec, 677, 123456, Times(300, 10, 20)) ==
        "httptraced: warning: the ring buffer (--ring_buffer_mb=16) was full: 677 events "
        "(123456 bytes of payload) lost; the records of their connections have gaps. In the "
        "1.0 s in which they were lost the daemon ran 0.2 s, waited 0.0 s for a CPU and 0.0 s "
        "for the disk of its log: raise --ring_buffer_mb, or trace less (--pid, --port). "
        "Further losses are reported at most every 10 s");
  // Nothing new: nothing to say, however long after.
  CHECK(w.Observe(60 * kSec, 677, 123456, Times(400, 10, 20)).empty());
  CHECK(w.Final(61 * kSec, 677, 123456, Times(400, 10, 20)).empty());
}

TEST_CASE("A loss seen at the first observation has no span to explain it",
          "[drop_warnings]") {
  DropWarnings w(4, Output::kLog);
  CHECK(w.Final(1 * kSec, 3, 0, Times(900, 0, 900)) ==
        "httptraced: warning: the ring buffer (--ring_buffer_mb=4) was full: 3 events "
        "(0 bytes of payload) lost; the records of their connections have gaps. Raise "
        "--ring_buffer_mb, or trace less (--pid, --port). Further losses are reported at "
        "most every 10 s");
}

TEST_CASE("A daemon that waited on its log's disk is told to move the log",
          "[drop_warnings]") {
  DropWarnings w(16, Output::kLog);
  CHECK(w.Observe(1 * kSec, 0, 0, Times(100, 0, 0)).empty());
  CHECK(w.Observe(2 * kSec, 100, 5000, Times(700, 100, 200)) ==
        "httptraced: warning: the ring buffer (--ring_buffer_mb=16) was full: 100 events "
        "(5000 bytes of payload) lost; the records of their connections have gaps. In the "
        "1.0 s in which they were lost the daemon ran 0.6 s, waited 0.1 s for a CPU and 0.2 s "
        "for the disk of its log: give --log_dir a faster or less busy disk, or trace less "
        "(--pid, --port). Further losses are reported at most every 10 s");
}

TEST_CASE("A daemon that waited on standard output is told to read it faster",
          "[drop_warnings]") {
  DropWarnings w(1, Output::kStdout);
  CHECK(w.Observe(1 * kSec, 0, 0, Times(0, 0, 0)).empty());
  // A write that blocked for 3.2 s: the next observation comes after it.
  CHECK(w.Observe(5 * kSec, 7, 70, Times(100, 0, 3200)) ==
        "httptraced: warning: the ring buffer (--ring_buffer_mb=1) was full: 7 events "
        "(70 bytes of payload) lost; the records of their connections have gaps. In the "
        "4.0 s in which they were lost the daemon ran 0.1 s, waited 0.0 s for a CPU and 3.2 s "
        "for the reader of standard output: read standard output faster, or trace less "
        "(--pid, --port). Further losses are reported at most every 10 s");
}

TEST_CASE("A daemon kept off the CPUs is told to raise its priority", "[drop_warnings]") {
  DropWarnings w(16, Output::kLog);
  CHECK(w.Observe(1 * kSec, 0, 0, Times(0, 0, 0)).empty());
  CHECK(w.Observe(3 * kSec, 3, 30, Times(1200, 600, 100)) ==
        "httptraced: warning: the ring buffer (--ring_buffer_mb=16) was full: 3 events "
        "(30 bytes of payload) lost; the records of their connections have gaps. In the "
        "2.0 s in which they were lost the daemon ran 1.2 s, waited 0.6 s for a CPU and 0.1 s "
        "for the disk of its log: other processes kept it off the CPUs: give it a higher "
        "priority (a lower nice value), or trace less (--pid, --port). Further losses are "
        "reported at most every 10 s");
}

TEST_CASE("A daemon busy all along is told to trace less", "[drop_warnings]") {
  DropWarnings w(16, Output::kLog);
  CHECK(w.Observe(1 * kSec, 0, 0, Times(0, 0, 0)).empty());
  CHECK(w.Observe(2 * kSec, 3, 30, Times(900, 10, 10)) ==
        "httptraced: warning: the ring buffer (--ring_buffer_mb=16) was full: 3 events "
        "(30 bytes of payload) lost; the records of their connections have gaps. In the "
        "1.0 s in which they were lost the daemon ran 0.9 s, waited 0.0 s for a CPU and 0.0 s "
        "for the disk of its log: trace less (--pid, --port). Further losses are reported at "
        "most every 10 s");
}

TEST_CASE("The output comes first when the daemon also waited for a CPU", "[drop_warnings]") {
  DropWarnings w(16, Output::kLog);
  CHECK(w.Observe(1 * kSec, 0, 0, Times(0, 0, 0)).empty());
  CHECK(w.Observe(2 * kSec, 3, 30, Times(300, 300, 300)).find(
            "give --log_dir a faster or less busy disk") != std::string::npos);
}

TEST_CASE("Only the observations in which the ring lost count", "[drop_warnings]") {
  DropWarnings w(16, Output::kLog);
  CHECK(w.Observe(1 * kSec, 0, 0, Times(0, 0, 0)).empty());
  // Busy and waiting, but nothing lost: not the losses' doing.
  CHECK(w.Observe(2 * kSec, 0, 0, Times(900, 500, 900)).empty());
  CHECK(w.Observe(3 * kSec, 5, 50, Times(1000, 500, 900)) ==
        "httptraced: warning: the ring buffer (--ring_buffer_mb=16) was full: 5 events "
        "(50 bytes of payload) lost; the records of their connections have gaps. In the "
        "1.0 s in which they were lost the daemon ran 0.1 s, waited 0.0 s for a CPU and 0.0 s "
        "for the disk of its log: raise --ring_buffer_mb, or trace less (--pid, --port). "
        "Further losses are reported at most every 10 s");
}

TEST_CASE("Later losses are summed up at most once per interval, with their time",
          "[drop_warnings]") {
  DropWarnings w(1, Output::kLog, 10 * kSec);
  CHECK(w.Observe(0, 0, 0, Times(0, 0, 0)).empty());
  REQUIRE_FALSE(w.Observe(1 * kSec, 10, 1000, Times(100, 0, 0)).empty());
  // Within the interval: held back, then reported together.
  CHECK(w.Observe(2 * kSec, 15, 1500, Times(200, 0, 700)).empty());   // lossy, 1.0 s
  CHECK(w.Observe(3 * kSec, 15, 1500, Times(300, 0, 1600)).empty());  // no loss: not counted
  REQUIRE_FALSE(w.Observe(11 * kSec + kSec / 2, 30, 3000, Times(5300, 0, 3600)).empty());
  CHECK(w.Observe(12 * kSec, 30, 3000, Times(5400, 0, 3600)).empty());
  // A loss after a quiet spell longer than the interval: at once.
  CHECK(w.Observe(40 * kSec, 31, 3100, Times(5500, 200, 3600)) ==
        "httptraced: warning: 1 more event (100 bytes of payload) lost to a full ring "
        "buffer in the last 28.5 s; 31 in all. In the 28.0 s in which they were lost the "
        "daemon ran 0.1 s, waited 0.2 s for a CPU and 0.0 s for the disk of its log");
}

TEST_CASE("A later line sums the spans with losses since the line before",
          "[drop_warnings]") {
  DropWarnings w(16, Output::kLog, 10 * kSec);
  CHECK(w.Observe(0, 0, 0, Times(0, 0, 0)).empty());
  REQUIRE_FALSE(w.Observe(1 * kSec, 10, 100, Times(100, 0, 0)).empty());
  CHECK(w.Observe(2 * kSec, 20, 200, Times(200, 0, 700)).empty());    // lossy: 1 s
  CHECK(w.Observe(3 * kSec, 20, 200, Times(300, 0, 1600)).empty());   // not counted
  CHECK(w.Observe(11 * kSec + kSec / 2, 30, 300, Times(5300, 400, 3600)) ==
        "httptraced: warning: 20 more events (200 bytes of payload) lost to a full ring "
        "buffer in the last 10.5 s; 30 in all. In the 9.5 s in which they were lost the "
        "daemon ran 5.1 s, waited 0.4 s for a CPU and 2.7 s for the disk of its log");
}

TEST_CASE("At shutdown, what no line reported yet", "[drop_warnings]") {
  DropWarnings w(1, Output::kLog, 10 * kSec);
  REQUIRE_FALSE(w.Observe(1 * kSec, 10, 1000, {}).empty());
  CHECK(w.Observe(2 * kSec, 12, 1200, {}).empty());
  CHECK(w.Final(3 * kSec, 12, 1200, {}) ==
        "httptraced: warning: 2 more events (200 bytes of payload) lost to a full ring "
        "buffer in the last 2.0 s; 12 in all. In the 1.0 s in which they were lost the "
        "daemon ran 0.0 s, waited 0.0 s for a CPU and 0.0 s for the disk of its log");
  CHECK(w.Final(4 * kSec, 12, 1200, {}).empty());
}

TEST_CASE("Counters that went back are reported whole, not wrapped", "[drop_warnings]") {
  DropWarnings w(16, Output::kLog, 10 * kSec);
  REQUIRE_FALSE(w.Observe(1 * kSec, 100, 1000, {}).empty());
  CHECK(w.Observe(20 * kSec, 5, 50, {}) ==
        "httptraced: warning: 5 more events (50 bytes of payload) lost to a full ring "
        "buffer in the last 19.0 s; 5 in all. In the 19.0 s in which they were lost the "
        "daemon ran 0.0 s, waited 0.0 s for a CPU and 0.0 s for the disk of its log");
}

TEST_CASE("Times that went back count nothing", "[drop_warnings]") {
  DropWarnings w(16, Output::kLog, 10 * kSec);
  CHECK(w.Observe(1 * kSec, 0, 0, Times(500, 500, 500)).empty());
  CHECK(w.Observe(2 * kSec, 1, 10, Times(100, 100, 100)) ==
        "httptraced: warning: the ring buffer (--ring_buffer_mb=16) was full: 1 event "
        "(10 bytes of payload) lost; the records of their connections have gaps. In the "
        "1.0 s in which they were lost the daemon ran 0.0 s, waited 0.0 s for a CPU and 0.0 s "
        "for the disk of its log: raise --ring_buffer_mb, or trace less (--pid, --port). "
        "Further losses are reported at most every 10 s");
}

TEST_CASE("The output named is the one in use after a reload", "[drop_warnings]") {
  DropWarnings w(16, Output::kLog, 10 * kSec);
  w.set_output(Output::kStdout);
  CHECK(w.Observe(0, 0, 0, Times(0, 0, 0)).empty());
  REQUIRE_FALSE(w.Observe(1 * kSec, 1, 10, Times(0, 0, 0)).empty());
  CHECK(w.Observe(12 * kSec, 2, 20, Times(0, 0, 5000)) ==
        "httptraced: warning: 1 more event (10 bytes of payload) lost to a full ring "
        "buffer in the last 11.0 s; 2 in all. In the 11.0 s in which they were lost the "
        "daemon ran 0.0 s, waited 0.0 s for a CPU and 5.0 s for the reader of standard output");
}

}  // namespace
}  // namespace httptraced::daemon
