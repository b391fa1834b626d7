#include "output/stdout_sink.h"

#include <errno.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "output/lines.h"

namespace httptraced::output {
StdoutSink::StdoutSink() : StdoutSink(Options{}, absl::Now) {}

StdoutSink::StdoutSink(Options options, Clock clock)
    : options_(std::move(options)),
      outage_(clock ? std::move(clock) : Clock(absl::Now)) {}

absl::Status StdoutSink::WriteAll(std::string_view data,
                                  absl::Duration max_block, size_t* done) {
  using SteadyClock = std::chrono::steady_clock;
  const auto block = absl::ToChronoNanoseconds(max_block);
  auto deadline = SteadyClock::now() + block;
  *done = 0;
  while (*done < data.size()) {
    const void* buf = data.data() + *done;
    const size_t count = data.size() - *done;
    const ssize_t n = options_.write_fn
                          ? options_.write_fn(options_.fd, buf, count)
                          : ::write(options_.fd, buf, count);
    if (n > 0) {
      *done += static_cast<size_t>(n);
      deadline = SteadyClock::now() + block;  // progress: wait afresh
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const auto left = deadline - SteadyClock::now();
      if (left <= SteadyClock::duration::zero()) {
        return absl::UnavailableError(
            absl::StrCat("write to fd ", options_.fd,
                         ": output blocked (reader too slow) "
                         "for ",
                         absl::FormatDuration(max_block)));
      }
      struct pollfd pfd = {.fd = options_.fd, .events = POLLOUT, .revents = 0};
      const auto ms =
          std::chrono::ceil<std::chrono::milliseconds>(left).count();
      ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(ms, 60'000)));
      continue;  // EINTR, timeout and POLLERR are all sorted out by write()
    }
    return ErrnoError(n < 0 ? errno : EIO,
                      absl::StrCat("write to fd ", options_.fd));
  }
  return absl::OkStatus();
}

absl::Status StdoutSink::Write(std::string_view lines) {
  if (lines.empty()) return absl::OkStatus();
  if (lines.back() != '\n') {
    const uint64_t records = CountLines(lines) + 1;
    stats_.records_lost += records;
    ++stats_.write_errors;
    return absl::InvalidArgumentError(
        absl::StrCat("StdoutSink::Write: batch does not end in a newline; ",
                     records, " records dropped"));
  }
  // A line left half-written by the last failure goes out first, in the same
  // write(2). Rare, so the copy does not matter.
  std::string joined;
  std::string_view data = lines;
  const size_t pending_size = pending_.size();
  if (pending_size > 0) {
    joined =
        absl::StrCat(pending_, absl::string_view(lines.data(), lines.size()));
    data = joined;
  }

  size_t done = 0;
  absl::Status s = WriteAll(data, options_.max_block, &done);
  stats_.bytes_written += done;
  stats_.records_written += CountLines(data.substr(0, done));
  if (s.ok()) {
    pending_.clear();
    if (std::optional<SinkEvent> event = outage_.Succeeded()) Emit(*event);
    return absl::OkStatus();
  }

  // Keep the unwritten rest of a line that has begun, so it can be completed.
  std::string new_pending;
  const bool mid_line = done > 0 ? data[done - 1] != '\n' : pending_size > 0;
  if (mid_line) {
    const size_t end = data.find('\n', done) + 1;
    new_pending = std::string(data.substr(done, end - done));
  }
  const uint64_t unwritten = CountLines(data.substr(done));
  const uint64_t lost = unwritten - (mid_line ? 1 : 0);
  pending_ = std::move(new_pending);
  stats_.records_lost += lost;
  ++stats_.write_errors;
  return outage_.Failed(s, lost, /*count_failed_write=*/true);
}

void StdoutSink::Tick() {
  if (pending_.empty()) return;
  size_t done = 0;
  absl::Status s = WriteAll(pending_, absl::ZeroDuration(), &done);
  stats_.bytes_written += done;
  pending_.erase(0, done);
  if (s.ok()) {
    ++stats_.records_written;
    if (std::optional<SinkEvent> event = outage_.Succeeded()) Emit(*event);
  }
}

void StdoutSink::Emit(SinkEvent event) {
  if (options_.on_event) options_.on_event(event);
}

}  // namespace httptraced::output
