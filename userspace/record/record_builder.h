// Builds one ECS-shaped JSON line per exchange. The contract for the line is
// schema/httptraced-record.schema.json (every field, when it is present, and
// why); tests/schema/validate.py checks records against it.
//
// In short: ECS fields (@timestamp, ecs, event, http, url, user_agent, client,
// server, network, process, host) carry ECS meaning; everything httptraced
// adds (role, connection identity, completeness, truncation and gap markers,
// body encoding) sits under "httptraced". The exceptions are
// http.{request,response}.{headers,trailers}, which ECS leaves undefined:
// lowercase names; a string value, or an array of strings in order when the
// name was repeated.
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
  // Header names whose values are replaced by "[REDACTED]" (matched without
  // regard to case, in headers and trailers of both directions). A redacted
  // User-Agent also redacts user_agent.original; a redacted Host is not used
  // for url.domain / url.port.
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

  // Appends one JSON object and a trailing '\n' to `out` (and no other '\n').
  // Never fails: invalid UTF-8 in bodies becomes base64 with an encoding marker
  // (httptraced.<request|response>.body.encoding = "base64"); in other strings
  // it is replaced with U+FFFD. client/server are derived from conn.role; with
  // kUnknown (nobody knows who sent the request) they are left out and the raw
  // ends go to httptraced.connection.local / remote instead. Thread-safe: const
  // and touches only `out`.
  void Append(const conn::ConnInfo& conn, const http::Exchange& exchange,
              const ProcessDetails& process, const ClockOffset& clock,
              std::string& out) const;

 private:
  RecordOptions options_;
};

}  // namespace httptraced::record

#endif  // HTTPTRACED_RECORD_RECORD_BUILDER_H_
