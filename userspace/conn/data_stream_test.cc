#include "conn/data_stream.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace httptraced::conn {
namespace {

// Records what the stream delivers: bytes as-is, gaps as "[gap N]".
class Recorder final : public StreamConsumer {
 public:
  void OnBytes(std::string_view bytes, const http::ChunkMeta& meta) override {
    out += bytes;
    last_ts = meta.ts_ns;
  }
  void OnGap(uint64_t len, const http::ChunkMeta&) override {
    out += "[gap " + std::to_string(len) + "]";
  }
  std::string out;
  uint64_t last_ts = 0;
};

constexpr http::ChunkMeta kMeta{.ts_ns = 1, .tid = 2};

TEST_CASE("DataStream passes in-order chunks straight through") {
  DataStreamStats counters;
  DataStream s({}, &counters);
  Recorder r;
  s.Add(0, "GET / HT", 0, true, kMeta, 0, r);
  s.Add(8, "TP/1.1\r\n", 0, false, kMeta, 0, r);
  CHECK(r.out == "GET / HTTP/1.1\r\n");
  CHECK(s.next_pos() == 16);
  CHECK(s.stats().reordered == 0);
}

TEST_CASE("DataStream starts where the kernel's first event starts") {
  DataStreamStats counters;
  DataStream s({}, &counters);
  Recorder r;
  s.Add(1000, "abc", 0, true, kMeta, 0, r);
  CHECK(r.out == "abc");
  CHECK(s.next_pos() == 1003);
}

TEST_CASE("DataStream joining late (first event lost) reports the gap") {
  DataStreamStats counters;
  DataStream s({}, &counters);
  Recorder r;
  s.Add(50, "abc", 0, false, kMeta, 0, r);
  CHECK(r.out == "[gap 50]abc");
}

TEST_CASE("DataStream orders out-of-order chunks") {
  DataStreamStats counters;
  DataStream s({}, &counters);
  Recorder r;
  s.Add(0, "aaa", 0, true, kMeta, 0, r);
  s.Add(6, "ccc", 0, false, kMeta, 0, r);
  s.Add(9, "ddd", 0, false, kMeta, 0, r);
  CHECK(r.out == "aaa");
  CHECK(s.pending_bytes() == 6 + 2 * 128);  // bytes plus the cost of two waiting chunks
  s.Add(3, "bbb", 0, false, kMeta, 0, r);
  CHECK(r.out == "aaabbbcccddd");
  CHECK(s.pending_bytes() == 0);
  CHECK(s.stats().reordered == 2);
  CHECK(s.stats().gaps == 0);
}

TEST_CASE("DataStream turns uncaptured bytes into a gap, never glued") {
  DataStreamStats counters;
  DataStream s({}, &counters);
  Recorder r;
  s.Add(0, "head", 10, true, kMeta, 0, r);
  s.Add(14, "tail", 0, false, kMeta, 0, r);
  CHECK(r.out == "head[gap 10]tail");
  // Counted as uncopied (by design), not as a hole (loss).
  CHECK(s.stats().uncopied == 1);
  CHECK(s.stats().uncopied_bytes == 10);
  CHECK(s.stats().gaps == 0);
  CHECK(s.stats().gap_bytes == 0);
  // A hole after it: a gap.
  s.Add(20, "x", 2, false, kMeta, 0, r);
  s.FlushHoles(0, /*force=*/true, r);
  CHECK(r.out == "head[gap 10]tail[gap 2]x[gap 2]");
  CHECK(s.stats().gaps == 1);
  CHECK(s.stats().gap_bytes == 2);
  CHECK(s.stats().uncopied == 2);
  CHECK(s.stats().uncopied_bytes == 12);
}

TEST_CASE("DataStream declares a hole a gap after the timeout, not before") {
  DataStreamLimits limits;
  limits.hole_timeout_ns = 100;
  DataStreamStats counters;
  DataStream s(limits, &counters);
  Recorder r;
  s.Add(0, "aa", 0, true, kMeta, 1000, r);
  s.Add(5, "bb", 0, false, kMeta, 1000, r);
  s.FlushHoles(1099, false, r);
  CHECK(r.out == "aa");
  s.FlushHoles(1100, false, r);
  CHECK(r.out == "aa[gap 3]bb");
  CHECK(s.next_pos() == 7);
  // The missing bytes arriving late are dropped, not inserted after the fact.
  s.Add(2, "xyz", 0, false, kMeta, 1200, r);
  CHECK(r.out == "aa[gap 3]bb");
  CHECK(s.stats().late_chunks == 1);
}

TEST_CASE("DataStream bounds what waits behind a hole") {
  DataStreamLimits limits;
  limits.max_pending_bytes = 8 + 2 * 128;
  DataStreamStats counters;
  DataStream s(limits, &counters);
  Recorder r;
  s.Add(0, "a", 0, true, kMeta, 0, r);
  s.Add(10, "12345", 0, false, kMeta, 0, r);
  CHECK(r.out == "a");
  s.Add(15, "6789", 0, false, kMeta, 0, r);  // 9 bytes pending > 8: forced
  CHECK(r.out == "a[gap 9]123456789");
  CHECK(s.pending_bytes() == 0);
}

TEST_CASE("DataStream trims overlapping retransmits of the same positions") {
  DataStreamStats counters;
  DataStream s({}, &counters);
  Recorder r;
  s.Add(0, "abcdef", 0, true, kMeta, 0, r);
  s.Add(4, "efgh", 0, false, kMeta, 0, r);
  CHECK(r.out == "abcdefgh");
  s.Add(0, "abc", 0, false, kMeta, 0, r);
  CHECK(r.out == "abcdefgh");
}

TEST_CASE("DataStream Finish delivers what waits and the missing tail as gaps") {
  DataStreamStats counters;
  DataStream s({}, &counters);
  Recorder r;
  s.Add(0, "ab", 0, true, kMeta, 0, r);
  s.Add(4, "ef", 0, false, kMeta, 0, r);
  s.Finish(10, kMeta, r);
  CHECK(r.out == "ab[gap 2]ef[gap 4]");
}

TEST_CASE("DataStream Finish on a direction that never started adds nothing") {
  DataStreamStats counters;
  DataStream s({}, &counters);
  Recorder r;
  s.Finish(100, kMeta, r);
  CHECK(r.out.empty());
}

TEST_CASE("DataStream: a skip-only event (sendfile) advances the stream") {
  DataStreamStats counters;
  DataStream s({}, &counters);
  Recorder r;
  s.Add(0, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 0, true, kMeta, 0, r);
  s.Add(38, "", 5, false, kMeta, 0, r);
  s.Add(43, "HTTP/1.1 204 No Content\r\n\r\n", 0, false, kMeta, 0, r);
  CHECK(r.out ==
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n[gap 5]HTTP/1.1 204 No Content\r\n\r\n");
}

}  // namespace
}  // namespace httptraced::conn

namespace httptraced::conn {
namespace {

TEST_CASE("DataStream bounds a flood of payload-less chunks behind a hole") {
  DataStreamLimits limits;
  limits.max_pending_bytes = 10 * 128;
  DataStreamStats counters;
  DataStream s(limits, &counters);
  Recorder r;
  s.Add(0, "a", 0, true, kMeta, 0, r);
  for (uint64_t i = 0; i < 10; ++i) s.Add(100 + 2 * i, "", 1, false, kMeta, 0, r);
  CHECK(s.pending_bytes() == 10 * 128);
  CHECK(r.out == "a");
  s.Add(200, "", 1, false, kMeta, 0, r);  // the eleventh: over the bound, flushed
  CHECK(s.pending_bytes() == 0);
  CHECK(r.out.substr(0, 10) == "a[gap 99][");
}

}  // namespace
}  // namespace httptraced::conn
