// Writes JSON lines to standard output (or another fd it does not own), for
// `httptraced --stdout`, containers and journald.
//
// One write(2) per batch; short writes, EINTR and EAGAIN (a non-blocking
// pipe that is full) are handled. A full pipe makes Write() wait up to
// Options::max_block without progress, then give up: a line that was only
// partly written is remembered and completed first by the next Write() or
// Tick() (a pipe cannot be truncated, so this is how lines stay whole), and
// the batch's remaining lines are counted as lost. Failures are reported as
// described in sink_event.h: once per condition, recovery with the lost count
// through Options::on_event.
#ifndef HTTPTRACED_OUTPUT_STDOUT_SINK_H_
#define HTTPTRACED_OUTPUT_STDOUT_SINK_H_

#include <unistd.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "output/sink.h"
#include "output/sink_event.h"

namespace httptraced::output {

class StdoutSink final : public RecordSink {
 public:
  struct Options {
    int fd = STDOUT_FILENO;  // not owned, not closed
    // How long a write may make no progress on a full non-blocking fd.
    absl::Duration max_block = absl::Seconds(1);
    EventCallback on_event;  // may be null
    WriteFn write_fn;        // test hook; null: ::write
  };

  // Standard output, default options.
  StdoutSink();
  // `clock` times outages for kRecovered events; null means absl::Now.
  explicit StdoutSink(Options options, Clock clock = absl::Now);

  absl::Status Write(std::string_view lines) override;
  absl::Status Reopen() override { return absl::OkStatus(); }
  // Tries (without waiting) to complete a partly written line.
  void Tick() override;
  const SinkStats& stats() const override { return stats_; }
  bool failing() const { return outage_.failing(); }

 private:
  // Writes `data`; on error returns it with *done = bytes written.
  absl::Status WriteAll(std::string_view data, absl::Duration max_block,
                        size_t* done);
  void Emit(SinkEvent event);

  const Options options_;
  // The unwritten rest (ending in '\n') of a line whose beginning was written.
  std::string pending_;
  SinkStats stats_;
  OutageTracker outage_;
};

}  // namespace httptraced::output

#endif  // HTTPTRACED_OUTPUT_STDOUT_SINK_H_
