// libFuzzer target for DataStream: one direction's reassembly by position.
//
// The stream's content is a fixed function of the position (ByteAt), so any
// byte delivered can be checked against where the consumer believes it is.
// Two ways of making chunks, chosen by the first input byte:
//  - tiling (what the kernel does): the stream is cut into consecutive chunks
//    [pos, pos + len) followed by `skip` uncaptured bytes, and the fuzzer
//    decides the order in which they arrive, which are lost (ring-buffer
//    drops), which arrive twice, when time passes and when holes are flushed;
//  - free: chunks at arbitrary positions, overlapping, duplicated, late.
// Then the opcode stream: see Op below.
//
// Invariants checked after every operation:
//  - bytes come out in stream order, each byte is the one at its position, and
//    only bytes that were given come out (never invented, never twice);
//  - the consumer's position (bytes + gaps) equals DataStream::next_pos(), and
//    the gap count and bytes equal DataStream::stats();
//  - bytes waiting behind a hole stay within max_pending_bytes;
//  - tiling only: a gap never covers a byte that had already been given, and at
//    Finish every byte given ahead of the stream's position has come out.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "conn/data_stream.h"
#include "fuzz_input.h"
#include "http/message.h"

namespace httptraced::conn {
namespace {

using fuzz::Input;

uint8_t ByteAt(uint64_t p) { return static_cast<uint8_t>((p * 0x9E3779B97F4A7C15ull) >> 56 ^ p); }

std::string Content(uint64_t pos, size_t len) {
  std::string s(len, '\0');
  for (size_t i = 0; i < len; ++i) s[i] = static_cast<char>(ByteAt(pos + i));
  return s;
}

// A set of half-open intervals [a, b), merged.
class Intervals {
 public:
  void Add(uint64_t a, uint64_t b) {
    if (a >= b) return;
    auto it = map_.upper_bound(a);
    if (it != map_.begin()) {
      auto prev = std::prev(it);
      if (prev->second >= a) {
        a = prev->first;
        b = std::max(b, prev->second);
        it = map_.erase(prev);
      }
    }
    while (it != map_.end() && it->first <= b) {
      b = std::max(b, it->second);
      it = map_.erase(it);
    }
    map_[a] = b;
  }
  bool Contains(uint64_t a, uint64_t b) const {
    if (a >= b) return true;
    auto it = map_.upper_bound(a);
    if (it == map_.begin()) return false;
    --it;
    return it->first <= a && it->second >= b;
  }
  bool Intersects(uint64_t a, uint64_t b) const {
    if (a >= b) return false;
    auto it = map_.lower_bound(b);  // first interval starting at or after b
    if (it == map_.begin()) return false;
    --it;
    return it->second > a;
  }
  const std::map<uint64_t, uint64_t>& map() const { return map_; }

 private:
  std::map<uint64_t, uint64_t> map_;
};

class Checker final : public StreamConsumer {
 public:
  explicit Checker(bool tiling) : tiling_(tiling) {}

  void Begin(uint64_t at) {
    if (started_) return;
    started_ = true;
    cursor_ = at;
  }

  void OnBytes(std::string_view bytes, const http::ChunkMeta& /*meta*/) override {
    FUZZ_CHECK(started_);
    FUZZ_CHECK(!bytes.empty());
    const uint64_t end = cursor_ + bytes.size();
    FUZZ_CHECK(end > cursor_);  // no wrap-around
    for (size_t i = 0; i < bytes.size(); ++i) {
      FUZZ_CHECK(static_cast<uint8_t>(bytes[i]) == ByteAt(cursor_ + i));
    }
    FUZZ_CHECK(given_.Contains(cursor_, end));
    delivered_.Add(cursor_, end);
    cursor_ = end;
  }

  void OnGap(uint64_t len, const http::ChunkMeta& /*meta*/) override {
    FUZZ_CHECK(started_);
    FUZZ_CHECK(len > 0);
    const uint64_t end = cursor_ + len;
    FUZZ_CHECK(end > cursor_);
    if (tiling_) FUZZ_CHECK(!given_.Intersects(cursor_, end));
    ++gaps_;
    gap_bytes_ += len;
    cursor_ = end;
  }

  // A chunk's payload is about to be handed to the stream (after Begin).
  void Given(uint64_t pos, size_t len) {
    given_.Add(pos, pos + len);
    if (pos + len > cursor_) given_ahead_.Add(std::max(pos, cursor_), pos + len);
  }

  void CheckState(const DataStream& s, const DataStreamLimits& limits) const {
    FUZZ_CHECK(s.started() == started_);
    if (!started_) return;
    // cursor_ is where the stream began plus every byte and gap delivered: the
    // stream advanced by exactly what it delivered.
    FUZZ_CHECK(s.next_pos() == cursor_);
    FUZZ_CHECK(s.pending_bytes() <= limits.max_pending_bytes);
    FUZZ_CHECK(s.has_pending() || s.pending_bytes() == 0);
    // Every gap the consumer saw is counted once: a hole (loss) or a
    // chunk's uncopied bytes.
    FUZZ_CHECK(s.stats().gaps + s.stats().uncopied == gaps_);
    FUZZ_CHECK(s.stats().gap_bytes + s.stats().uncopied_bytes == gap_bytes_);
  }

  // After Finish: every byte given ahead of the position has come out.
  void CheckFinished() const {
    if (!tiling_) return;
    for (const auto& [a, b] : given_ahead_.map()) FUZZ_CHECK(delivered_.Contains(a, b));
  }

  bool started() const { return started_; }
  uint64_t cursor() const { return cursor_; }

 private:
  bool tiling_;
  bool started_ = false;
  uint64_t cursor_ = 0;
  Intervals given_;
  Intervals given_ahead_;
  Intervals delivered_;
  uint64_t gaps_ = 0;
  uint64_t gap_bytes_ = 0;
};

struct Chunk {
  uint64_t pos = 0;
  uint32_t len = 0;
  uint32_t skip = 0;
  bool stream_start = false;
};

enum Op : uint8_t {
  kNewChunk = 0,   // tiling: cut the next chunk; free: add a chunk anywhere
  kDeliver = 1,    // tiling: an in-flight chunk arrives
  kDrop = 2,       // tiling: an in-flight chunk is lost
  kAdvance = 3,    // time passes
  kFlush = 4,      // FlushHoles (forced or by age)
  kDuplicate = 5,  // a chunk seen before arrives again
  kStartAt = 6,    // the open event's start position
  kOps = 7,
};

void Add(DataStream& s, Checker& c, const Chunk& k, uint64_t now) {
  const std::string payload = Content(k.pos, k.len);
  if (!s.started()) c.Begin(k.stream_start || k.pos == 0 ? k.pos : 0);
  c.Given(k.pos, k.len);
  s.Add(k.pos, payload, k.skip, k.stream_start, http::ChunkMeta{now, 1}, now, c);
}

}  // namespace
}  // namespace httptraced::conn

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace httptraced::conn;
  httptraced::fuzz::Input in(data, size);
  const uint8_t mode = in.U8();
  const bool tiling = (mode & 1) == 0;
  DataStreamLimits limits;
  static constexpr size_t kPending[] = {0, 1, 16, 300, 4096, 256 * 1024};
  static constexpr uint64_t kTimeout[] = {0, 1, 1000, 20'000'000};
  limits.max_pending_bytes = kPending[(mode >> 1) % 6];
  limits.hole_timeout_ns = kTimeout[(mode >> 4) & 3];
  const bool finish = (mode & 0x40) == 0;

  DataStreamStats counters;
  DataStream stream(limits, &counters);
  Checker checker(tiling);
  uint64_t now = 1'000'000'000;
  // Where the kernel started counting this direction: 0, or far in (a
  // connection discovered mid-stream).
  const uint64_t start = (mode & 0x80) ? in.U32() * uint64_t{4096} + in.U16() : 0;
  uint64_t frontier = start;  // tiling: end of the last chunk cut
  std::vector<Chunk> inflight;
  std::vector<Chunk> history;
  size_t ops = 0;

  while (!in.empty() && ops++ < 4096) {
    const uint8_t op = in.U8() % kOps;
    switch (op) {
      case kNewChunk: {
        Chunk k;
        const uint8_t shape = in.U8();
        k.len = static_cast<uint32_t>((shape & 3) == 3 ? in.Below(20'000) : in.Below(64));
        k.skip = (shape & 0x0c) == 0x0c ? in.U32() : (shape & 0x0c) == 0x08 ? in.Below(64) : 0;
        if (tiling) {
          k.pos = frontier;
          k.stream_start = frontier == start;
          frontier += k.len + uint64_t{k.skip};
          inflight.push_back(k);
        } else {
          // Anywhere around where the stream is: behind, overlapping, ahead.
          const uint64_t base = (shape & 0x30) == 0x00   ? stream.next_pos()
                                : (shape & 0x30) == 0x10 ? start
                                : (shape & 0x30) == 0x20 ? frontier
                                                         : in.U32();
          const int64_t delta = static_cast<int64_t>(in.Below(512)) - 256;
          k.pos = delta < 0 && base < static_cast<uint64_t>(-delta) ? 0 : base + delta;
          k.stream_start = (shape & 0x40) != 0;
          frontier = std::max(frontier, k.pos + k.len + k.skip);
          history.push_back(k);
          Add(stream, checker, k, now);
        }
        break;
      }
      case kDeliver:
      case kDrop: {
        if (inflight.empty()) break;
        const size_t i = in.Below(inflight.size());
        const Chunk k = inflight[i];
        inflight.erase(inflight.begin() + static_cast<std::ptrdiff_t>(i));
        if (op == kDeliver) {
          history.push_back(k);
          Add(stream, checker, k, now);
        }
        break;
      }
      case kAdvance:
        now += in.U8() % 2 == 0 ? in.Below(100) : in.U32() * uint64_t{16};
        break;
      case kFlush:
        stream.FlushHoles(now, in.U8() % 2 == 0, checker);
        break;
      case kDuplicate:
        if (!history.empty()) Add(stream, checker, history[in.Below(history.size())], now);
        break;
      case kStartAt: {
        // The open event: in tiling mode it names the true start; otherwise anything.
        const uint64_t at = tiling ? start : in.U32();
        if (!stream.started()) checker.Begin(at);
        stream.StartAt(at);
        break;
      }
      default:
        break;
    }
    checker.CheckState(stream, limits);
  }

  if (finish) {
    // The close event carries the direction's final length.
    const uint64_t end = tiling ? frontier : frontier + (mode & 8);
    const uint64_t before = stream.started() ? stream.next_pos() : 0;
    stream.Finish(end, httptraced::http::ChunkMeta{now, 0}, checker);
    checker.CheckState(stream, limits);
    FUZZ_CHECK(!stream.has_pending());
    if (stream.started()) {
      // Tiling: every byte up to the end is accounted for, as bytes or gaps.
      FUZZ_CHECK(tiling ? stream.next_pos() == end : stream.next_pos() >= std::max(before, end));
    }
    checker.CheckFinished();
  }
  return 0;
}
