#include "conn/data_stream.h"

#include <algorithm>

namespace httptraced::conn {

void DataStream::Add(uint64_t pos, std::string_view payload, uint64_t skip, bool stream_start,
                     const http::ChunkMeta& meta, uint64_t now_ns, StreamConsumer& out) {
  if (!started_) {
    started_ = true;
    next_pos_ = pos;
    if (!stream_start && pos > 0) {
      // The kernel's first event for this direction was lost: we join late.
      ++stats_->gaps;
      stats_->gap_bytes += pos;
      out.OnGap(pos, meta);
    }
  }
  const uint64_t end = pos + payload.size() + skip;
  if (end <= next_pos_) {
    ++stats_->late_chunks;  // a duplicate, or too late: its bytes were declared a gap
    return;
  }
  if (pos <= next_pos_) {
    Deliver(pos, payload, skip, meta, out);
    if (pending_) DrainContiguous(out);
    return;
  }
  // Ahead of a hole: wait for the missing bytes, within bounds.
  ++stats_->reordered;
  if (!pending_) {
    pending_ = std::make_unique<PendingMap>();
    hole_since_ns_ = now_ns;
  }
  auto [it, inserted] = pending_->try_emplace(pos);
  if (!inserted) {
    if (it->second.bytes.size() + it->second.skip >= payload.size() + skip) return;
    pending_bytes_ -= ChunkCost(it->second);
  }
  it->second.bytes.assign(payload);
  it->second.skip = skip;
  it->second.meta = meta;
  pending_bytes_ += ChunkCost(it->second);
  if (pending_bytes_ > limits_.max_pending_bytes) FlushHoles(now_ns, /*force=*/true, out);
}

void DataStream::Deliver(uint64_t pos, std::string_view payload, uint64_t skip,
                         const http::ChunkMeta& meta, StreamConsumer& out) {
  // Trim what overlaps bytes already delivered.
  uint64_t overlap = next_pos_ - pos;
  if (overlap > 0) {
    const uint64_t from_payload = std::min<uint64_t>(overlap, payload.size());
    payload.remove_prefix(from_payload);
    overlap -= from_payload;
    skip -= std::min(overlap, skip);
  }
  if (!payload.empty()) out.OnBytes(payload, meta);
  if (skip > 0) {
    ++stats_->uncopied;
    stats_->uncopied_bytes += skip;
    out.OnGap(skip, meta);
  }
  next_pos_ += payload.size() + skip;
}

void DataStream::DrainContiguous(StreamConsumer& out) {
  while (pending_) {
    auto it = pending_->begin();
    if (it->first > next_pos_) return;
    Pending p = std::move(it->second);
    const uint64_t pos = it->first;
    pending_->erase(it);
    if (pending_->empty()) pending_.reset();
    pending_bytes_ -= ChunkCost(p);
    if (pos + p.bytes.size() + p.skip > next_pos_) {
      Deliver(pos, p.bytes, p.skip, p.meta, out);
    } else {
      ++stats_->late_chunks;
    }
  }
}

void DataStream::DeclareGapTo(uint64_t pos, const http::ChunkMeta& meta, StreamConsumer& out) {
  if (pos <= next_pos_) return;
  ++stats_->gaps;
  stats_->gap_bytes += pos - next_pos_;
  out.OnGap(pos - next_pos_, meta);
  next_pos_ = pos;
}

void DataStream::SkipLost(uint64_t len, const http::ChunkMeta& meta, StreamConsumer& out) {
  if (len == 0) return;
  started_ = true;
  FlushHoles(0, /*force=*/true, out);
  DeclareGapTo(next_pos_ + len, meta, out);
}

void DataStream::FlushHoles(uint64_t now_ns, bool force, StreamConsumer& out) {
  if (!pending_) return;
  if (!force && now_ns - hole_since_ns_ < limits_.hole_timeout_ns) return;
  while (pending_) {
    auto it = pending_->begin();
    DeclareGapTo(it->first, it->second.meta, out);
    DrainContiguous(out);
  }
}

uint64_t DataStream::end_pos() const {
  uint64_t end = next_pos_;
  if (!pending_) return end;
  for (const auto& [pos, p] : *pending_) end = std::max(end, pos + p.bytes.size() + p.skip);
  return end;
}

void DataStream::Finish(uint64_t end_pos, const http::ChunkMeta& meta, StreamConsumer& out) {
  FlushHoles(0, /*force=*/true, out);
  if (started_) DeclareGapTo(end_pos, meta, out);
}

}  // namespace httptraced::conn
