#include "daemon/drop_warnings.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace httptraced::daemon {
namespace {

uint64_t Grown(uint64_t now, uint64_t before) { return now >= before ? now - before : 0; }

double Seconds(uint64_t ns) { return static_cast<double>(ns) / 1e9; }

// "In the 1.2 s in which they were lost the daemon ran 0.6 s, waited 0.0 s for
// a CPU and 0.3 s for the disk of its log"; empty without a span.
std::string Breakdown(uint64_t wall_ns, const DrainTimes& t, Output output) {
  if (wall_ns == 0) return {};
  return absl::StrFormat(
      "In the %.1f s in which they were lost the daemon ran %.1f s, waited %.1f s for a CPU "
      "and %.1f s for %s",
      Seconds(wall_ns), Seconds(t.cpu_ns), Seconds(t.cpu_wait_ns), Seconds(t.output_wait_ns),
      output == Output::kStdout ? "the reader of standard output" : "the disk of its log");
}

// What to do about it. A fifth of the time blocked on the output, or waiting
// for a CPU, is far beyond a healthy daemon's (its writes go to the page
// cache); four fifths of a CPU is a daemon that could not have kept up however
// large the ring.
std::string Advice(uint64_t wall_ns, const DrainTimes& t, Output output) {
  if (wall_ns > 0 && t.output_wait_ns * 5 >= wall_ns) {
    return output == Output::kStdout
               ? "read standard output faster, or trace less (--pid, --port)"
               : "give --log_dir a faster or less busy disk, or trace less (--pid, --port)";
  }
  if (wall_ns > 0 && t.cpu_wait_ns * 5 >= wall_ns) {
    return "other processes kept it off the CPUs: give it a higher priority (a lower nice "
           "value), or trace less (--pid, --port)";
  }
  if (wall_ns > 0 && t.cpu_ns * 10 >= wall_ns * 8) return "trace less (--pid, --port)";
  return "raise --ring_buffer_mb, or trace less (--pid, --port)";
}

}  // namespace

void DropWarnings::Account(uint64_t now_ns, uint64_t drops, uint64_t drop_bytes,
                           DrainTimes times) {
  const bool moved = drops != seen_drops_ || drop_bytes != seen_bytes_;
  if (observed_ && moved && now_ns > seen_now_ns_) {
    // Totals only grow; anything else (a clock read out of order) counts 0.
    const uint64_t wall = now_ns - seen_now_ns_;
    lossy_wall_ns_ += wall;
    lossy_.cpu_ns += std::min(Grown(times.cpu_ns, seen_times_.cpu_ns), wall);
    lossy_.cpu_wait_ns += std::min(Grown(times.cpu_wait_ns, seen_times_.cpu_wait_ns), wall);
    lossy_.output_wait_ns +=
        std::min(Grown(times.output_wait_ns, seen_times_.output_wait_ns), wall);
  }
  observed_ = true;
  seen_now_ns_ = now_ns;
  seen_drops_ = drops;
  seen_bytes_ = drop_bytes;
  seen_times_ = times;
}

std::string DropWarnings::Observe(uint64_t now_ns, uint64_t drops, uint64_t drop_bytes,
                                  DrainTimes times) {
  Account(now_ns, drops, drop_bytes, times);
  if (drops == reported_drops_ && drop_bytes == reported_bytes_) return {};
  if (reported_ && now_ns - last_report_ns_ < interval_ns_) return {};
  return Report(now_ns, drops, drop_bytes);
}

std::string DropWarnings::Final(uint64_t now_ns, uint64_t drops, uint64_t drop_bytes,
                                DrainTimes times) {
  Account(now_ns, drops, drop_bytes, times);
  if (drops == reported_drops_ && drop_bytes == reported_bytes_) return {};
  return Report(now_ns, drops, drop_bytes);
}

std::string DropWarnings::Report(uint64_t now_ns, uint64_t drops, uint64_t drop_bytes) {
  // Counters only grow; should they ever not (a reloaded map), report the
  // totals rather than a wrapped difference.
  const bool grew = drops >= reported_drops_ && drop_bytes >= reported_bytes_;
  const uint64_t n = grew ? drops - reported_drops_ : drops;
  const uint64_t bytes = grew ? drop_bytes - reported_bytes_ : drop_bytes;
  const std::string breakdown = Breakdown(lossy_wall_ns_, lossy_, output_);
  std::string line;
  if (!reported_) {
    // Without a span (a loss at the first look) there is nothing to tell a
    // burst from the rest by.
    const std::string advice =
        breakdown.empty() ? "Raise --ring_buffer_mb, or trace less (--pid, --port)"
                          : absl::StrCat(breakdown, ": ", Advice(lossy_wall_ns_, lossy_, output_));
    line = absl::StrFormat(
        "httptraced: warning: the ring buffer (--ring_buffer_mb=%d) was full: %d %s "
        "(%d bytes of payload) lost; the records of their connections have gaps. %s. "
        "Further losses are reported at most every %d s",
        ring_buffer_mb_, n, n == 1 ? "event" : "events", bytes, advice,
        interval_ns_ / 1'000'000'000);
  } else {
    line = absl::StrFormat(
        "httptraced: warning: %d more %s (%d bytes of payload) lost to a full ring "
        "buffer in the last %.1f s; %d in all",
        n, n == 1 ? "event" : "events", bytes, Seconds(now_ns - last_report_ns_), drops);
    if (!breakdown.empty()) absl::StrAppend(&line, ". ", breakdown);
  }
  reported_ = true;
  reported_drops_ = drops;
  reported_bytes_ = drop_bytes;
  last_report_ns_ = now_ns;
  lossy_wall_ns_ = 0;
  lossy_ = {};
  return line;
}

}  // namespace httptraced::daemon
