#include "daemon/thread_clock.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <charconv>

namespace httptraced::daemon {
namespace {

// Parses a decimal number at the start of `text` and what follows it.
bool TakeNumber(std::string_view& text, char after, uint64_t* out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *out);
  if (ec != std::errc() || ptr == text.data() || ptr == end || *ptr != after) return false;
  text.remove_prefix(static_cast<size_t>(ptr - text.data()) + 1);
  return true;
}

}  // namespace

std::optional<ThreadTimes> ParseSchedstat(std::string_view text) {
  ThreadTimes t;
  uint64_t slices = 0;
  if (!TakeNumber(text, ' ', &t.cpu_ns) || !TakeNumber(text, ' ', &t.runnable_ns) ||
      !TakeNumber(text, '\n', &slices) || !text.empty()) {
    return std::nullopt;
  }
  return t;
}

ThreadClock::ThreadClock()
    : schedstat_(::open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC)) {}

ThreadTimes ThreadClock::Read() const {
  ThreadTimes t;
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  t.cpu_ns =
      static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
  if (schedstat_) {
    char buf[96];
    const ssize_t n = ::pread(schedstat_.get(), buf, sizeof(buf), 0);
    if (n > 0) {
      if (std::optional<ThreadTimes> s =
              ParseSchedstat(std::string_view(buf, static_cast<size_t>(n)))) {
        t.runnable_ns = s->runnable_ns;
      }
    }
  }
  return t;
}

}  // namespace httptraced::daemon
