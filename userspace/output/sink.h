// Where finished JSON lines go: the rotating log file, or standard output.
#ifndef HTTPTRACED_OUTPUT_SINK_H_
#define HTTPTRACED_OUTPUT_SINK_H_

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"

namespace httptraced::output {

struct SinkStats {
  uint64_t records_written = 0;
  uint64_t bytes_written = 0;
  uint64_t records_lost = 0;  // could not be written (disk full, dir removed...)
  uint64_t rotations = 0;
  uint64_t write_errors = 0;  // failed write attempts
};

class RecordSink {
 public:
  virtual ~RecordSink() = default;
  // `lines` holds whole JSON lines, each ending in '\n'. A line is never split
  // between files and never written partially. An error means the records in
  // `lines` were counted as lost (the sink stays usable and retries next time).
  virtual absl::Status Write(std::string_view lines) = 0;
  // Reopen the output (SIGUSR1/SIGHUP after an external logrotate).
  virtual absl::Status Reopen() = 0;
  // Time-based work (age rotation, retrying a failed directory); call periodically.
  virtual void Tick() {}
  virtual const SinkStats& stats() const = 0;
};

}  // namespace httptraced::output

#endif  // HTTPTRACED_OUTPUT_SINK_H_
