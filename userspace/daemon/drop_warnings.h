// Says on standard error when the kernel's ring buffer overflows, as it
// happens, rather than only in the periodic stats line (every 60 s by
// default, or never): events lost there leave gaps in records, and an operator
// should hear of it while the burst that caused it can still be found.
//
// The first loss is reported at once (the daemon looks every second), later ones
// at most once per interval, each line with what was lost since the one
// before; at shutdown, what no line reported yet. The lines' counts add up to
// the stats line's kernel_drops and kernel_drop_bytes.
//
// Each line also says where the daemon's main thread (the one that drains the
// ring) spent the seconds in which the count grew, since the remedy differs:
// waiting on its output (a disk slower than the traffic, a reader of standard
// output that does not keep up) needs another disk, not a bigger ring; waiting
// for a CPU, a host whose other work keeps the daemon off the CPUs; running all
// along, less to trace; none of those, a burst, which a bigger ring absorbs.
#ifndef HTTPTRACED_DAEMON_DROP_WARNINGS_H_
#define HTTPTRACED_DAEMON_DROP_WARNINGS_H_

#include <cstdint>
#include <string>

namespace httptraced::daemon {

// Running totals of the daemon's main thread (the one that drains the ring),
// in ns, at the time of an observation.
struct DrainTimes {
  uint64_t cpu_ns = 0;          // running
  uint64_t cpu_wait_ns = 0;     // runnable, waiting for a CPU
  uint64_t output_wait_ns = 0;  // blocked in writes of records
};

enum class Output { kLog, kStdout };

class DropWarnings {
 public:
  static constexpr uint64_t kDefaultIntervalNs = 10'000'000'000;

  // ring_buffer_mb: the --ring_buffer_mb in effect, named in the advice.
  DropWarnings(uint32_t ring_buffer_mb, Output output,
               uint64_t interval_ns = kDefaultIntervalNs)
      : ring_buffer_mb_(ring_buffer_mb), output_(output), interval_ns_(interval_ns) {}

  // Where records go now (after a reload that changed it).
  void set_output(Output output) { output_ = output; }

  // The kernel's running totals (KernelCounters::ring_drops,
  // ring_drop_bytes) at now_ns (CLOCK_MONOTONIC), and the main thread's
  // times then. Returns the line to print (no trailing newline), or an empty
  // string.
  std::string Observe(uint64_t now_ns, uint64_t drops, uint64_t drop_bytes, DrainTimes times);
  // At shutdown: the line for what no earlier line reported, or empty.
  std::string Final(uint64_t now_ns, uint64_t drops, uint64_t drop_bytes, DrainTimes times);

 private:
  // Adds the time since the last observation to the losses' span when the
  // counters moved in it.
  void Account(uint64_t now_ns, uint64_t drops, uint64_t drop_bytes, DrainTimes times);
  std::string Report(uint64_t now_ns, uint64_t drops, uint64_t drop_bytes);

  uint32_t ring_buffer_mb_;
  Output output_;
  uint64_t interval_ns_;
  uint64_t reported_drops_ = 0;
  uint64_t reported_bytes_ = 0;
  uint64_t last_report_ns_ = 0;
  bool reported_ = false;
  // The last observation.
  bool observed_ = false;
  uint64_t seen_now_ns_ = 0;
  uint64_t seen_drops_ = 0;
  uint64_t seen_bytes_ = 0;
  DrainTimes seen_times_;
  // Summed over the observations in which the counters moved, since the last
  // line.
  uint64_t lossy_wall_ns_ = 0;
  DrainTimes lossy_;
};

}  // namespace httptraced::daemon

#endif  // HTTPTRACED_DAEMON_DROP_WARNINGS_H_
