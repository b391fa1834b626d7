// DataStream: one direction of one connection, put back in byte order.
//
// Each data event carries the position of its first byte in the direction's
// stream, so reassembly is by position: in-order chunks pass straight through
// (zero copy), chunks that arrive ahead of a hole wait (copied, bounded), and a
// hole that does not fill in time becomes an explicit gap. Bytes on either
// side of a gap are never glued together.
#ifndef HTTPTRACED_CONN_DATA_STREAM_H_
#define HTTPTRACED_CONN_DATA_STREAM_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "http/message.h"

namespace httptraced::conn {

// Where reassembled bytes go, in order.
class StreamConsumer {
 public:
  virtual ~StreamConsumer() = default;
  virtual void OnBytes(std::string_view bytes, const http::ChunkMeta& meta) = 0;
  virtual void OnGap(uint64_t len, const http::ChunkMeta& meta) = 0;
};

struct DataStreamLimits {
  size_t max_pending_bytes = 256 * 1024;  // waiting behind a hole, per direction
  uint64_t hole_timeout_ns = 20'000'000;  // a hole older than this is a gap
};

struct DataStreamStats {
  // Holes: bytes that never arrived (lost events, a stream joined late, a
  // direction that ended past what was seen).
  uint64_t gaps = 0;
  uint64_t gap_bytes = 0;
  // Chunks with `skip` bytes, which the kernel counted without copying them
  // (sendfile, splice, MSG_TRUNC, the per-syscall cap, body bytes past the
  // cap, unreadable memory): by design, not loss. The consumer sees a gap
  // either way.
  uint64_t uncopied = 0;
  uint64_t uncopied_bytes = 0;
  uint64_t late_chunks = 0;    // chunks entirely behind the stream (duplicates, too late)
  uint64_t reordered = 0;      // chunks that arrived ahead of a hole
};

class DataStream {
 public:
  // `counters` (not owned, outlives the stream) may be shared by many
  // streams: a table's connections count into one (10k idle connections
  // would otherwise carry 48 bytes of counters per direction).
  DataStream(DataStreamLimits limits, DataStreamStats* counters)
      : limits_(limits), stats_(counters) {}

  // The direction's events begin at `pos` (from the connection's open event).
  void StartAt(uint64_t pos) {
    if (!started_) {
      started_ = true;
      next_pos_ = pos;
    }
  }

  // A chunk: `payload` starts at stream position `pos`, followed by `skip`
  // bytes that were not captured. `stream_start`: the kernel's first event for
  // this direction (its position is where the stream begins for us).
  // `now_ns` is the daemon's monotonic clock, used to age holes.
  void Add(uint64_t pos, std::string_view payload, uint64_t skip, bool stream_start,
           const http::ChunkMeta& meta, uint64_t now_ns, StreamConsumer& out);

  // `len` bytes that will never arrive come next (the kernel saw them before
  // it knew the stream again): a gap, after what waits behind holes.
  void SkipLost(uint64_t len, const http::ChunkMeta& meta, StreamConsumer& out);

  // Declares holes older than the timeout (or all holes when `force`) as gaps
  // and delivers what waited behind them.
  void FlushHoles(uint64_t now_ns, bool force, StreamConsumer& out);

  // The direction ended at `end_pos` (from the close event): everything pending
  // is delivered, and bytes never seen up to end_pos become a final gap.
  void Finish(uint64_t end_pos, const http::ChunkMeta& meta, StreamConsumer& out);

  bool started() const { return started_; }
  uint64_t next_pos() const { return next_pos_; }
  // Where the bytes seen so far end: past what waits behind a hole, if any.
  uint64_t end_pos() const;
  // Memory held by chunks waiting behind a hole: their bytes plus what each
  // costs to keep (so a flood of tiny or payload-less chunks is bounded too).
  size_t pending_bytes() const { return pending_bytes_; }
  bool has_pending() const { return pending_ != nullptr; }
  const DataStreamStats& stats() const { return *stats_; }

 private:
  struct Pending {
    std::string bytes;
    uint64_t skip = 0;
    http::ChunkMeta meta;
  };
  static size_t ChunkCost(const Pending& p) { return p.bytes.size() + kChunkOverhead; }
  // A map node with its Pending: what one waiting chunk costs beyond its bytes.
  static constexpr size_t kChunkOverhead = 128;

  // Delivers a chunk at next_pos_ (possibly overlapping bytes already seen).
  void Deliver(uint64_t pos, std::string_view payload, uint64_t skip,
               const http::ChunkMeta& meta, StreamConsumer& out);
  // Delivers waiting chunks that have become contiguous.
  void DrainContiguous(StreamConsumer& out);
  void DeclareGapTo(uint64_t pos, const http::ChunkMeta& meta, StreamConsumer& out);

  DataStreamLimits limits_;
  bool started_ = false;
  uint64_t next_pos_ = 0;
  // Chunks waiting behind a hole, by position; null when none (the fast path,
  // and what each of 10k idle connections' two streams holds: 8 bytes, not a
  // map's 48), allocated for a hole and freed once it is filled or declared.
  using PendingMap = std::map<uint64_t, Pending>;
  std::unique_ptr<PendingMap> pending_;
  size_t pending_bytes_ = 0;
  uint64_t hole_since_ns_ = 0;
  DataStreamStats* stats_;
};

}  // namespace httptraced::conn

#endif  // HTTPTRACED_CONN_DATA_STREAM_H_
