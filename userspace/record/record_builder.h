// Builds one ECS-shaped JSON line per exchange (schema/httptraced-record.schema.json).
#ifndef HTTPTRACED_RECORD_RECORD_BUILDER_H_
#define HTTPTRACED_RECORD_RECORD_BUILDER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "conn/conn_info.h"
#include "http/message.h"

namespace httptraced::record {

struct RecordOptions {
  // Header names (lowercase) whose values are replaced by "[REDACTED]".
  std::vector<std::string> redact_headers = {"authorization", "proxy-authorization",
                                             "cookie", "set-cookie"};
  bool capture_bodies = true;  // false: body.content is never written
  std::string host_name;       // host.name
};

// Monotonic kernel timestamps to wall-clock time.
struct ClockOffset {
  int64_t realtime_minus_monotonic_ns = 0;
  int64_t ToWallNs(uint64_t mono_ns) const {
    return static_cast<int64_t>(mono_ns) + realtime_minus_monotonic_ns;
  }
};

struct ProcessDetails {
  std::string_view executable;  // /proc/<pid>/exe target, "" when unknown
};

class RecordBuilder {
 public:
  explicit RecordBuilder(RecordOptions options);

  // Appends one JSON object and a trailing '\n' to `out`. Never fails: invalid
  // UTF-8 in bodies becomes base64 with an encoding marker; in other strings it
  // is replaced with U+FFFD.
  void Append(const conn::ConnInfo& conn, const http::Exchange& exchange,
              const ProcessDetails& process, const ClockOffset& clock,
              std::string& out) const;

 private:
  RecordOptions options_;
};

}  // namespace httptraced::record

#endif  // HTTPTRACED_RECORD_RECORD_BUILDER_H_
