#include "daemon/drop_warnings.h"

#include "absl/strings/str_format.h"

namespace httptraced::daemon {

std::string DropWarnings::Observe(uint64_t now_ns, uint64_t drops, uint64_t drop_bytes) {
  if (drops == reported_drops_ && drop_bytes == reported_bytes_) return {};
  if (reported_ && now_ns - last_report_ns_ < interval_ns_) return {};
  return Report(now_ns, drops, drop_bytes);
}

std::string DropWarnings::Final(uint64_t now_ns, uint64_t drops, uint64_t drop_bytes) {
  if (drops == reported_drops_ && drop_bytes == reported_bytes_) return {};
  return Report(now_ns, drops, drop_bytes);
}

std::string DropWarnings::Report(uint64_t now_ns, uint64_t drops, uint64_t drop_bytes) {
  // Counters only grow; should they ever not (a reloaded map), report the
  // totals rather than a wrapped difference.
  const bool grew = drops >= reported_drops_ && drop_bytes >= reported_bytes_;
  const uint64_t n = grew ? drops - reported_drops_ : drops;
  const uint64_t bytes = grew ? drop_bytes - reported_bytes_ : drop_bytes;
  std::string line;
  if (!reported_) {
    line = absl::StrFormat(
        "httptraced: warning: the ring buffer (--ring_buffer_mb=%d) was full: %d %s "
        "(%d bytes of payload) lost; the records of their connections have gaps. Raise "
        "--ring_buffer_mb, or trace less (--pid, --port). Further losses are reported at "
        "most every %d s",
        ring_buffer_mb_, n, n == 1 ? "event" : "events", bytes, interval_ns_ / 1'000'000'000);
  } else {
    line = absl::StrFormat(
        "httptraced: warning: %d more %s (%d bytes of payload) lost to a full ring "
        "buffer in the last %.1f s; %d in all",
        n, n == 1 ? "event" : "events", bytes,
        static_cast<double>(now_ns - last_report_ns_) / 1e9, drops);
  }
  reported_ = true;
  reported_drops_ = drops;
  reported_bytes_ = drop_bytes;
  last_report_ns_ = now_ns;
  return line;
}

}  // namespace httptraced::daemon
