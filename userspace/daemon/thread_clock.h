// Where a thread's time went: running, or runnable and waiting for a CPU.
// The daemon's main thread reads it around its writes and once a second, to
// tell a loss of events caused by a slow output from one caused by a busy
// host (DropWarnings).
#ifndef HTTPTRACED_DAEMON_THREAD_CLOCK_H_
#define HTTPTRACED_DAEMON_THREAD_CLOCK_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include "output/unique_fd.h"

namespace httptraced::daemon {

struct ThreadTimes {
  uint64_t cpu_ns = 0;       // running
  uint64_t runnable_ns = 0;  // ready to run, waiting for a CPU
};

// The first two fields of /proc/<pid>/task/<tid>/schedstat ("<run ns>
// <wait ns> <slices>\n"), or nullopt for anything else.
std::optional<ThreadTimes> ParseSchedstat(std::string_view text);

// The running totals of the thread that made it (to be read on that thread):
// its CPU time from CLOCK_THREAD_CPUTIME_ID, exact to the call (schedstat's
// run time is brought up to date only at the scheduler's tick), and its wait
// for a CPU from its schedstat file (one pread(2)); 0 where the file cannot
// be read (a kernel without CONFIG_SCHED_INFO).
class ThreadClock {
 public:
  ThreadClock();
  ThreadClock(ThreadClock&&) = default;
  ThreadClock& operator=(ThreadClock&&) = default;
  ThreadTimes Read() const;

 private:
  output::UniqueFd schedstat_;
};

}  // namespace httptraced::daemon

#endif  // HTTPTRACED_DAEMON_THREAD_CLOCK_H_
