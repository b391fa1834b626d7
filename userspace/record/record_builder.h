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

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "conn/conn_info.h"
#include "http/message.h"
#include "record/out_buffer.h"
#include "record/timestamp.h"

namespace httptraced::record {

class JsonWriter;

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

// What consecutive records share, kept by the caller between calls to
// RecordBuilder::Append so that the builder stays const:
// - the parts that are the same for every exchange on a connection
//   (client/server, network, the process but its thread, host, the
//   connection's role, id and origin), rendered once and reused. Direct-mapped:
//   a connection takes the slot its key hashes to; a slot serves a record only
//   when everything its text was rendered from is unchanged. A miss costs a
//   copy of the text written anyway, so with many more busy connections than
//   slots little is lost; a hit saves rendering it;
// - the last record's start time and its text: a record that starts in the
//   same second copies the date and time and formats only the fraction.
class RecordCache {
 public:
  RecordCache() = default;
  RecordCache(const RecordCache&) = delete;
  RecordCache& operator=(const RecordCache&) = delete;

  // Records served from a slot, and records that (re)filled one.
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

  // About 200 KB when all are in use.
  static constexpr size_t kSlots = 256;

 private:
  friend class RecordBuilder;
  // What the text depends on.
  struct Inputs {
    conn::ConnKey key;
    int family = 0;
    http::Role role = http::Role::kUnknown;
    conn::Origin origin = conn::Origin::kDiscovered;
    conn::Endpoint local;
    conn::Endpoint remote;
    std::string comm;
    uint32_t peer_pid = 0;
    std::string executable;
    std::string container_id;
    std::string host_name;
  };
  struct Slot {
    bool used = false;
    Inputs inputs;
    std::string process_part;  // from "client" to the process's executable
    std::string conn_part;     // from "container" or "host" to the connection's origin
  };
  std::array<Slot, kSlots> slots_;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
  // The last record's start time and its text (-1: none yet, and
  // FormatRfc3339NanosAfter never reuses a negative time).
  int64_t last_start_wall_ = -1;
  char last_start_text_[kRfc3339NanosSize] = {};
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
  // and touches only `out` (and `cache`, when given: the shared parts come
  // from it, the same bytes as without it).
  void Append(const conn::ConnInfo& conn, const http::Exchange& exchange,
              const ProcessDetails& process, const ClockOffset& clock, OutBuffer& out,
              RecordCache* cache = nullptr) const;

 private:
  // The per-connection parts, written to w (see RecordCache).
  void WriteProcessPart(JsonWriter& w, const conn::ConnInfo& conn,
                        const ProcessDetails& process) const;
  void WriteConnPart(JsonWriter& w, const conn::ConnInfo& conn) const;
  // Whether slot holds conn's parts, rendered from the same inputs.
  bool SlotHolds(const RecordCache::Slot& slot, const conn::ConnInfo& conn,
                 const ProcessDetails& process) const;
  // Records the inputs of the parts just kept in slot.
  void Fill(RecordCache::Slot& slot, const conn::ConnInfo& conn,
            const ProcessDetails& process) const;

  RecordOptions options_;
};

}  // namespace httptraced::record

#endif  // HTTPTRACED_RECORD_RECORD_BUILDER_H_
