// Says on standard error when the kernel's ring buffer overflows, as it
// happens, rather than only in the periodic stats line (every 60 s by
// default, or never): events lost there leave gaps in records, and an operator
// should hear of it while the burst that caused it can still be found.
//
// The first loss is reported at once (the daemon looks every second), later ones
// at most once per interval, each line with what was lost since the one
// before; at shutdown, what no line reported yet. The lines' counts add up to
// the stats line's kernel_drops and kernel_drop_bytes.
#ifndef HTTPTRACED_DAEMON_DROP_WARNINGS_H_
#define HTTPTRACED_DAEMON_DROP_WARNINGS_H_

#include <cstdint>
#include <string>

namespace httptraced::daemon {

class DropWarnings {
 public:
  static constexpr uint64_t kDefaultIntervalNs = 10'000'000'000;

  // ring_buffer_mb: the --ring_buffer_mb in effect, named in the advice.
  explicit DropWarnings(uint32_t ring_buffer_mb, uint64_t interval_ns = kDefaultIntervalNs)
      : ring_buffer_mb_(ring_buffer_mb), interval_ns_(interval_ns) {}

  // The kernel's running totals (KernelCounters::ring_drops,
  // ring_drop_bytes) at now_ns (CLOCK_MONOTONIC). Returns the line to print
  // (no trailing newline), or an empty string.
  std::string Observe(uint64_t now_ns, uint64_t drops, uint64_t drop_bytes);
  // At shutdown: the line for what no earlier line reported, or empty.
  std::string Final(uint64_t now_ns, uint64_t drops, uint64_t drop_bytes);

 private:
  std::string Report(uint64_t now_ns, uint64_t drops, uint64_t drop_bytes);

  uint32_t ring_buffer_mb_;
  uint64_t interval_ns_;
  uint64_t reported_drops_ = 0;
  uint64_t reported_bytes_ = 0;
  uint64_t last_report_ns_ = 0;
  bool reported_ = false;
};

}  // namespace httptraced::daemon

#endif  // HTTPTRACED_DAEMON_DROP_WARNINGS_H_
