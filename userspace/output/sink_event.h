// What the sinks tell the daemon besides Write()'s return value, and the
// small state machine that decides when a failure is worth reporting.
//
// Reporting policy (shared by RotatingLog and StdoutSink):
//  - A failing condition (e.g. "write .../httptraced.json: No space left on
//    device") is reported ONCE, when it starts: by the non-OK Status that
//    Write() returns, or, when it starts outside Write() (Tick(), a retry),
//    by a kFailing event. While the same condition persists, Write() still
//    counts every lost record in stats().records_lost and every failed call in
//    stats().write_errors, but returns OkStatus(), so a daemon that logs every
//    non-OK status logs each condition once instead of once per batch.
//    If the cause changes (disk full -> directory removed), the new cause is
//    reported once as well.
//  - When a write succeeds again the outage ends with ONE kRecovered event
//    carrying the cause, how long it lasted and how many records were lost
//    during it (all of them, including those of the first failing batch).
//  - Problems that lose no records (a backup that could not be compressed or
//    pruned, a rotation that had to be skipped, a removed directory that was
//    recreated) are kWarning events; consecutive identical warnings are
//    reported once.
// Events are delivered synchronously on the thread calling Write()/Tick()/
// Reopen(), never from a background thread.
#ifndef HTTPTRACED_OUTPUT_SINK_EVENT_H_
#define HTTPTRACED_OUTPUT_SINK_EVENT_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace httptraced::output {

// Wall clock, injected so tests control timestamps (backup names, file age,
// outage durations). Production passes absl::Now.
using Clock = std::function<absl::Time()>;

struct SinkEvent {
  enum class Kind {
    kFailing,    // a failing condition started outside Write()
    kRecovered,  // output works again after a failing condition
    kWarning,    // something went wrong, no records were lost
  };
  Kind kind = Kind::kWarning;
  // kFailing/kWarning: what went wrong. kRecovered: the cause of the outage
  // that just ended (the last cause if it changed during the outage).
  absl::Status status = absl::OkStatus();
  // kRecovered only:
  uint64_t records_lost = 0;   // records lost during the outage
  uint64_t failed_writes = 0;  // Write() calls that failed during the outage
  absl::Duration duration = absl::ZeroDuration();  // first failure to recovery

  // One human-readable line for the daemon's log.
  std::string ToString() const;
};

using EventCallback = std::function<void(const SinkEvent&)>;

// Tracks one sink's failing/healthy state. Not thread-safe.
class OutageTracker {
 public:
  explicit OutageTracker(Clock clock) : clock_(std::move(clock)) {}

  // A failed attempt (`cause`) that lost `records` records. Returns `cause`
  // annotated with the loss if this starts a new condition (healthy -> failing,
  // or a different cause than the one already reported), OkStatus() if this
  // condition was already reported.
  absl::Status Failed(const absl::Status& cause, uint64_t records,
                      bool count_failed_write);

  // Output worked. Returns the kRecovered event if an outage just ended.
  std::optional<SinkEvent> Succeeded();

  bool failing() const { return failing_; }
  // Records lost so far in the current outage (0 when healthy).
  uint64_t outage_records_lost() const { return records_lost_; }

 private:
  Clock clock_;
  bool failing_ = false;
  absl::Status cause_;
  absl::Time since_;
  uint64_t records_lost_ = 0;
  uint64_t failed_writes_ = 0;
};

// Suppresses consecutive warnings about the same condition. The key names the
// condition without the details that vary from one occurrence to the next
// (e.g. "gzip: No space left on device", not the file name). Not thread-safe.
class WarningDeduper {
 public:
  // True if `key` differs from the previous warning's key (and remembers it).
  bool ShouldReport(absl::string_view key);
  // The condition is gone; the next warning is reported even if identical.
  void Clear() { last_.clear(); }

 private:
  std::string last_;
};

// write(2)'s signature; sinks take one so tests can inject short writes and
// failures. Null means ::write.
using WriteFn = std::function<ssize_t(int fd, const void* buf, size_t count)>;

// A de-duplication key for a condition: `op` + the status message's last
// ": "-separated part (normally the strerror text), so "gzip: No space left on
// device" whatever the file.
std::string ConditionKey(absl::string_view op, const absl::Status& status);

// `what` + ": " + strerror(err), with the matching absl status code.
absl::Status ErrnoError(int err, absl::string_view what);

}  // namespace httptraced::output

#endif  // HTTPTRACED_OUTPUT_SINK_EVENT_H_
