#include "record/record_builder.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "record/json_writer.h"
#include "record/timestamp.h"
#include "record/url.h"

namespace httptraced::record {
namespace {

constexpr std::string_view kRedacted = "[REDACTED]";
constexpr std::string_view kEcsMember = R"("ecs":{"version":"8.11.0"})";

std::string_view RoleName(http::Role role) {
  switch (role) {
    case http::Role::kClient:
      return "client";
    case http::Role::kServer:
      return "server";
    case http::Role::kUnknown:
      break;
  }
  return "unknown";
}

std::string_view OriginName(conn::Origin origin) {
  switch (origin) {
    case conn::Origin::kAccept:
      return "accept";
    case conn::Origin::kConnect:
      return "connect";
    case conn::Origin::kDiscovered:
      break;
  }
  return "discovered";
}

bool HasNonAscii(std::string_view s) {
  for (const char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  }
  return false;
}

// Case-insensitive (ASCII) ordering of header names.
int CompareIgnoreCase(std::string_view a, std::string_view b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char ca = absl::ascii_tolower(static_cast<unsigned char>(a[i]));
    const unsigned char cb = absl::ascii_tolower(static_cast<unsigned char>(b[i]));
    if (ca != cb) return ca < cb ? -1 : 1;
  }
  if (a.size() == b.size()) return 0;
  return a.size() < b.size() ? -1 : 1;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CompareIgnoreCase(a, b) == 0;
}

const http::Header* FindHeader(const std::vector<http::Header>& headers, std::string_view name) {
  for (const http::Header& h : headers) {
    if (EqualsIgnoreCase(h.name, name)) return &h;
  }
  return nullptr;
}

// Address text as inet_ntop gives it ("10.0.0.1", "2001:db8::1",
// "::ffff:127.0.0.1"); "" for an unknown family.
std::string_view FormatIp(int family, const conn::Endpoint& endpoint,
                          char (&buf)[INET6_ADDRSTRLEN]) {
  if (family != AF_INET && family != AF_INET6) return {};
  if (inet_ntop(family, endpoint.addr.data(), buf, sizeof(buf)) == nullptr) return {};
  return buf;
}

void WriteEndpoint(JsonWriter& w, std::string_view key, int family,
                   const conn::Endpoint& endpoint) {
  if (family == AF_UNIX) {
    // ECS: "address" holds a Unix socket's name; an unnamed end has none.
    if (endpoint.text.empty()) return;
    w.Key(key);
    w.BeginObject();
    w.StringField("address", endpoint.text);
    w.EndObject();
    return;
  }
  char buf[INET6_ADDRSTRLEN];
  const std::string_view ip =
      endpoint.text.empty() ? FormatIp(family, endpoint, buf) : std::string_view(endpoint.text);
  if (ip.empty()) return;
  w.Key(key);
  w.BeginObject();
  w.StringField("ip", ip);
  w.UintField("port", endpoint.port);
  w.EndObject();
}

void WriteConnectionId(JsonWriter& w, const conn::ConnKey& key) {
  // "<tgid>-<fd>-<gen>": at most 10 + 1 + 11 + 1 + 20 characters.
  char buf[48];
  char* const end = buf + sizeof(buf);
  char* p = std::to_chars(buf, end, key.tgid).ptr;
  if (end - p < 2) return;  // cannot happen; keeps the compiler sure of the bounds
  *p++ = '-';
  p = std::to_chars(p, end, key.fd).ptr;
  if (end - p < 2) return;
  *p++ = '-';
  p = std::to_chars(p, end, key.gen).ptr;
  w.StringField("id", std::string_view(buf, static_cast<size_t>(p - buf)));
}

void WriteVersion(JsonWriter& w, int version_minor) {
  char buf[16] = {'1', '.'};
  char* const p = std::to_chars(buf + 2, buf + sizeof(buf), version_minor).ptr;
  w.StringField("version", std::string_view(buf, static_cast<size_t>(p - buf)));
}

// Bytes a message adds to a record, roughly: enough that Append grows `out` once.
size_t EstimateMessageSize(const http::Message& m) {
  size_t n = 256 + m.method.size() * 2 + m.target.size() * 3 + Base64Size(m.body.content.size());
  for (const http::Header& h : m.headers) n += h.name.size() + h.value.size() + 8;
  for (const http::Header& h : m.trailers) n += h.name.size() + h.value.size() + 8;
  return n;
}

// One header name as it appears in the record: sanitized to UTF-8 (compared
// and written lowercased), with the index of the header it came from.
struct NamedHeader {
  std::string_view name;
  uint32_t index;
};

bool IsRedacted(const RecordOptions& options, std::string_view name) {
  for (const std::string& redacted : options.redact_headers) {
    if (redacted.size() == name.size() && EqualsIgnoreCase(name, redacted)) return true;
  }
  return false;
}

// A cheap fingerprint of a header name as it will be written (ASCII letters
// lowercased): equal names have equal fingerprints.
uint32_t NameFingerprint(std::string_view name) {
  if (name.empty()) return 0;
  const auto lower = [](unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; };
  return static_cast<uint32_t>(name.size()) << 16 |
         static_cast<uint32_t>(lower(static_cast<unsigned char>(name.front()))) << 8 |
         static_cast<uint32_t>(lower(static_cast<unsigned char>(name.back())));
}

// True when no two headers can end up with the same written name, checked
// without sorting: the common case, written in order straight away.
bool AllNamesDistinct(const std::vector<http::Header>& headers) {
  if (headers.size() > 32) return false;
  uint32_t prints[32];
  for (size_t i = 0; i < headers.size(); ++i) {
    if (HasNonAscii(headers[i].name)) return false;
    prints[i] = NameFingerprint(headers[i].name);
    for (size_t j = 0; j < i; ++j) {
      if (prints[j] == prints[i] && EqualsIgnoreCase(headers[i].name, headers[j].name)) {
        return false;
      }
    }
  }
  return true;
}

void WriteHeaders(JsonWriter& w, const RecordOptions& options, std::string_view key,
                  const std::vector<http::Header>& headers) {
  w.Key(key);
  w.BeginObject();
  if (AllNamesDistinct(headers)) {
    for (const http::Header& h : headers) {
      w.KeyLowerAscii(h.name);
      w.String(IsRedacted(options, h.name) ? kRedacted : std::string_view(h.value));
    }
    w.EndObject();
    return;
  }
  // Names are compared as they will be written (ill-formed UTF-8 replaced,
  // ASCII lowercased) so that no key can appear twice in the object. Only
  // names with non-ASCII bytes need the sanitized copy.
  size_t scratch_size = 0;
  for (const http::Header& h : headers) {
    if (HasNonAscii(h.name)) scratch_size += h.name.size() * 3;
  }
  std::string scratch;
  scratch.reserve(scratch_size);  // never reallocates below: the views stay valid
  absl::InlinedVector<NamedHeader, 32> names;
  names.reserve(headers.size());
  for (size_t i = 0; i < headers.size(); ++i) {
    std::string_view name = headers[i].name;
    if (HasNonAscii(name)) {
      const size_t at = scratch.size();
      AppendSanitizedUtf8(name, scratch);
      name = std::string_view(scratch).substr(at);
    }
    names.push_back({name, static_cast<uint32_t>(i)});
  }
  // Same names become adjacent, each run in header order. (std::sort with the
  // index as tie-break: std::stable_sort would allocate.)
  std::sort(names.begin(), names.end(), [](const NamedHeader& a, const NamedHeader& b) {
    const int c = CompareIgnoreCase(a.name, b.name);
    return c != 0 ? c < 0 : a.index < b.index;
  });
  // Runs [begin, end), written in order of their first header.
  absl::InlinedVector<std::pair<uint32_t, uint32_t>, 32> runs;
  for (size_t begin = 0; begin < names.size();) {
    size_t end = begin + 1;
    while (end < names.size() && CompareIgnoreCase(names[begin].name, names[end].name) == 0) ++end;
    runs.emplace_back(static_cast<uint32_t>(begin), static_cast<uint32_t>(end));
    begin = end;
  }
  std::sort(runs.begin(), runs.end(), [&names](const auto& a, const auto& b) {
    return names[a.first].index < names[b.first].index;
  });
  for (const auto& [begin, end] : runs) {
    const std::string_view name = names[begin].name;
    const bool redacted = IsRedacted(options, name);
    w.KeyLowerAscii(name);
    if (end - begin == 1) {
      w.String(redacted ? kRedacted : std::string_view(headers[names[begin].index].value));
      continue;
    }
    w.BeginArray();
    for (uint32_t i = begin; i < end; ++i) {
      w.String(redacted ? kRedacted : std::string_view(headers[names[i].index].value));
    }
    w.EndArray();
  }
  w.EndObject();
}

// http.request / http.response. Sets *base64 when the body content went out
// base64-encoded.
void WriteMessage(JsonWriter& w, const RecordOptions& options, const http::Message& m,
                  bool* base64) {
  w.Key(m.kind == http::Message::Kind::kRequest ? "request" : "response");
  w.BeginObject();
  if (m.kind == http::Message::Kind::kRequest) {
    w.StringField("method", m.method);
  } else {
    w.IntField("status_code", m.status_code);
  }
  WriteHeaders(w, options, "headers", m.headers);
  if (!m.trailers.empty()) WriteHeaders(w, options, "trailers", m.trailers);
  w.Key("body");
  w.BeginObject();
  w.UintField("bytes", m.body.size);
  *base64 = false;
  if (options.capture_bodies && !m.body.content.empty()) {
    w.Key("content");
    if (!w.StringIfValidUtf8(m.body.content)) {
      w.StringBase64(m.body.content);
      *base64 = true;
    }
  }
  w.EndObject();
  w.EndObject();
}

// httptraced.request / httptraced.response: only the markers that are set,
// and no object at all for a message that was seen whole. Without body
// capture the content's markers say nothing (no content to be short of), so
// only framing_lost, which qualifies the body's size, is written.
void WriteMarkers(JsonWriter& w, const RecordOptions& options, std::string_view key,
                  const http::Message& m, bool base64) {
  const bool content_markers = options.capture_bodies && (m.body.truncated || m.body.gap ||
                                                          base64 || !m.body.decoded.empty());
  const bool body_markers = content_markers || m.body.framing_lost;
  if (m.complete && !m.headers_truncated && !m.gap_before && !body_markers) return;
  w.Key(key);
  w.BeginObject();
  if (!m.complete) w.BoolField("incomplete", true);
  if (m.headers_truncated) w.BoolField("headers_truncated", true);
  if (m.gap_before) w.BoolField("gap_before", true);
  if (body_markers) {
    w.Key("body");
    w.BeginObject();
    if (content_markers) {
      if (m.body.truncated) w.BoolField("truncated", true);
      if (m.body.gap) w.BoolField("gap", true);
      if (base64) w.StringField("encoding", "base64");
      if (!m.body.decoded.empty()) w.StringField("decoded", m.body.decoded);
    }
    if (m.body.framing_lost) w.BoolField("framing_lost", true);
    w.EndObject();
  }
  w.EndObject();
}

void WriteUrl(JsonWriter& w, const RecordOptions& options, const http::Message& request) {
  const TargetParts target = SplitTarget(request.method, request.target);
  w.Key("url");
  w.BeginObject();
  w.StringField("original", request.target);
  if (!target.scheme.empty()) w.StringField("scheme", target.scheme);
  if (!target.path.empty()) w.StringField("path", target.path);
  if (target.query) w.StringField("query", *target.query);
  if (target.fragment) w.StringField("fragment", *target.fragment);
  // The request-target's authority wins over Host (RFC 9112 section 3.2.2).
  HostPort host;
  if (target.authority) host = SplitHostPort(*target.authority);
  if (host.host.empty() && !IsRedacted(options, "host")) {
    if (const http::Header* h = FindHeader(request.headers, "host")) host = SplitHostPort(h->value);
  }
  if (!host.host.empty()) {
    w.StringField("domain", host.host);
    if (host.port) w.UintField("port", *host.port);
  }
  w.EndObject();
}

// A connection's slot in a RecordCache: a fixed mix of its key (the same
// in every run, unlike absl::Hash, so that benchmarks repeat).
size_t SlotIndex(const conn::ConnKey& k) {
  uint64_t x = (uint64_t{k.tgid} << 32 | static_cast<uint32_t>(k.fd)) ^
               (k.gen * 0x9E3779B97F4A7C15ULL);
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 29;
  return static_cast<size_t>(x % RecordCache::kSlots);
}

// Keeps members just written (the writer's text since a mark) for
// JsonWriter::RawMembers, which places the separating comma itself.
void KeepMembers(std::string_view written, std::string& kept) {
  if (!written.empty() && written.front() == ',') written.remove_prefix(1);
  kept.assign(written.data(), written.size());
}

}  // namespace

RecordBuilder::RecordBuilder(RecordOptions options) : options_(std::move(options)) {
  for (std::string& name : options_.redact_headers) absl::AsciiStrToLower(&name);
}

void RecordBuilder::Append(const conn::ConnInfo& conn, const http::Exchange& exchange,
                           const ProcessDetails& process, const ClockOffset& clock,
                           OutBuffer& out, RecordCache* cache) const {
  const http::Message* request = exchange.request ? &*exchange.request : nullptr;
  const http::Message* response = exchange.response ? &*exchange.response : nullptr;

  size_t estimate = 1024 + conn.comm.size() + process.executable.size() + conn.container_id.size() +
                    options_.host_name.size();
  if (request) estimate += EstimateMessageSize(*request);
  if (response) estimate += EstimateMessageSize(*response);

  // Start: the request's first byte, else the response's. End: the response's
  // last byte, else the last byte seen.
  uint64_t start_mono = conn.open_ts_ns;
  uint32_t tid = 0;
  if (const http::Message* first = request ? request : response) {
    start_mono = first->first.ts_ns;
    tid = first->first.tid;
  }
  uint64_t end_mono = start_mono;
  if (const http::Message* last = response ? response : request) end_mono = last->last.ts_ns;
  end_mono = std::max(end_mono, start_mono);
  const int64_t start_wall = clock.ToWallNs(start_mono);
  const int64_t duration = static_cast<int64_t>(end_mono - start_mono);
  const int64_t end_wall = start_wall + duration;

  // The three timestamps share one formatting of the start time, which
  // shares the date and time of day with the previous record's when the
  // cache holds one of the same second.
  char start_buf[kRfc3339NanosSize];
  char end_buf[kRfc3339NanosSize];
  if (cache != nullptr) {
    FormatRfc3339NanosAfter(cache->last_start_wall_, cache->last_start_text_, start_wall,
                            start_buf);
    cache->last_start_wall_ = start_wall;
    std::memcpy(cache->last_start_text_, start_buf, sizeof(start_buf));
  } else {
    FormatRfc3339Nanos(start_wall, start_buf);
  }
  FormatRfc3339NanosAfter(start_wall, start_buf, end_wall, end_buf);
  const std::string_view start_text(start_buf, sizeof(start_buf));
  const std::string_view end_text(end_buf, sizeof(end_buf));

  JsonWriter w(out, estimate);
  w.BeginObject();
  w.RawStringField("@timestamp", start_text);
  // Constant members go out as literal JSON in one append each.
  w.RawMembers(kEcsMember);
  w.RawOpen(R"("event":{)");
  w.RawMembers(
      R"("kind":"event","category":["web","network"],"type":["access"],)"
      R"("dataset":"httptraced.session")");
  w.RawStringField("start", start_text);
  w.RawStringField("end", end_text);
  w.IntField("duration", duration);
  if (!response) {
    w.RawMembers(R"("outcome":"unknown")");
  } else if (response->status_code < 400) {
    w.RawMembers(R"("outcome":"success")");
  } else {
    w.RawMembers(R"("outcome":"failure")");
  }
  w.EndObject();

  bool request_base64 = false;
  bool response_base64 = false;
  w.Key("http");
  w.BeginObject();
  if (const http::Message* m = request ? request : response) WriteVersion(w, m->version_minor);
  if (request) WriteMessage(w, options_, *request, &request_base64);
  if (response) WriteMessage(w, options_, *response, &response_base64);
  w.EndObject();

  if (request) {
    WriteUrl(w, options_, *request);
    if (const http::Header* ua = FindHeader(request->headers, "user-agent")) {
      w.Key("user_agent");
      w.BeginObject();
      w.StringField("original",
                    IsRedacted(options_, "user-agent") ? kRedacted : std::string_view(ua->value));
      w.EndObject();
    }
  }

  // The parts that are the same for every exchange of the connection, around
  // the two that are not: the thread and the exchange's seq. A cache slot that
  // does not hold this connection's is refilled from what is written here.
  RecordCache::Slot* slot = nullptr;
  bool hit = false;
  if (cache != nullptr) {
    slot = &cache->slots_[SlotIndex(conn.key)];
    hit = SlotHolds(*slot, conn, process);
    ++(hit ? cache->hits_ : cache->misses_);
  }
  if (hit) {
    w.RawMembers(slot->process_part);
  } else {
    const size_t mark = w.Mark();
    WriteProcessPart(w, conn, process);
    if (slot) KeepMembers(w.Written().substr(mark), slot->process_part);
  }
  if (tid != 0) {
    w.Key("thread");
    w.BeginObject();
    w.UintField("id", tid);
    w.EndObject();
  }
  w.EndObject();  // process
  if (hit) {
    w.RawMembers(slot->conn_part);
  } else {
    const size_t mark = w.Mark();
    WriteConnPart(w, conn);
    if (slot) {
      KeepMembers(w.Written().substr(mark), slot->conn_part);
      Fill(*slot, conn, process);
    }
  }
  w.UintField("seq", exchange.seq);
  w.EndObject();  // httptraced.connection
  const bool incomplete = exchange.incomplete || request == nullptr || response == nullptr ||
                          !request->complete || !response->complete;
  w.BoolField("incomplete", incomplete);
  if (exchange.interim_responses > 0) w.UintField("interim_responses", exchange.interim_responses);
  if (request) WriteMarkers(w, options_, "request", *request, request_base64);
  if (response) WriteMarkers(w, options_, "response", *response, response_base64);
  w.EndObject();

  w.EndObject();
  w.RawByte('\n');
}

// client, server, network and the process, left open after its executable.
void RecordBuilder::WriteProcessPart(JsonWriter& w, const conn::ConnInfo& conn,
                                     const ProcessDetails& process) const {
  // client: the side that sent the request.
  if (conn.role == http::Role::kServer) {
    WriteEndpoint(w, "client", conn.family, conn.remote);
    WriteEndpoint(w, "server", conn.family, conn.local);
  } else if (conn.role == http::Role::kClient) {
    WriteEndpoint(w, "client", conn.family, conn.local);
    WriteEndpoint(w, "server", conn.family, conn.remote);
  }

  if (conn.family == AF_INET) {
    w.RawMembers(R"("network":{"transport":"tcp","type":"ipv4","protocol":"http"})");
  } else if (conn.family == AF_INET6) {
    w.RawMembers(R"("network":{"transport":"tcp","type":"ipv6","protocol":"http"})");
  } else if (conn.family == AF_UNIX) {
    w.RawMembers(R"("network":{"type":"unix","protocol":"http"})");
  } else {
    // Its open event was lost: TCP or Unix, not known.
    w.RawMembers(R"("network":{"protocol":"http"})");
  }
  // ECS tls.established: the exchange went over TLS (read at libssl, in the clear).
  if (conn.tls) w.RawMembers(R"("tls":{"established":true})");

  w.Key("process");
  w.BeginObject();
  w.UintField("pid", conn.key.tgid);
  if (!conn.comm.empty()) w.StringField("name", conn.comm);
  if (!process.executable.empty()) w.StringField("executable", process.executable);
}

// container, host, and httptraced with its connection left open after the origin (and
// the raw ends when the role is unknown).
void RecordBuilder::WriteConnPart(JsonWriter& w, const conn::ConnInfo& conn) const {
  if (!conn.container_id.empty()) {
    w.Key("container");
    w.BeginObject();
    w.StringField("id", conn.container_id);
    w.EndObject();
  }
  if (!options_.host_name.empty()) {
    w.Key("host");
    w.BeginObject();
    w.StringField("name", options_.host_name);
    w.EndObject();
  }

  w.Key("httptraced");
  w.BeginObject();
  w.StringField("role", RoleName(conn.role));
  w.Key("connection");
  w.BeginObject();
  WriteConnectionId(w, conn.key);
  w.StringField("origin", OriginName(conn.origin));
  if (conn.peer_pid != 0) w.UintField("peer_pid", conn.peer_pid);
  if (conn.role == http::Role::kUnknown) {
    // Which end is the client is not known: the raw endpoints instead.
    WriteEndpoint(w, "local", conn.family, conn.local);
    WriteEndpoint(w, "remote", conn.family, conn.remote);
  }
}

bool RecordBuilder::SlotHolds(const RecordCache::Slot& slot, const conn::ConnInfo& conn,
                              const ProcessDetails& process) const {
  const RecordCache::Inputs& in = slot.inputs;
  return slot.used && in.key == conn.key && in.role == conn.role && in.family == conn.family &&
         in.origin == conn.origin && in.local == conn.local && in.remote == conn.remote &&
         in.comm == conn.comm && in.peer_pid == conn.peer_pid &&
         in.executable == process.executable &&
         in.container_id == conn.container_id && in.host_name == options_.host_name;
}

void RecordBuilder::Fill(RecordCache::Slot& slot, const conn::ConnInfo& conn,
                         const ProcessDetails& process) const {
  RecordCache::Inputs& in = slot.inputs;
  in.key = conn.key;
  in.role = conn.role;
  in.family = conn.family;
  in.origin = conn.origin;
  in.local = conn.local;
  in.remote = conn.remote;
  in.comm = conn.comm;
  in.peer_pid = conn.peer_pid;
  in.executable.assign(process.executable.data(), process.executable.size());
  in.container_id = conn.container_id;
  in.host_name = options_.host_name;
  slot.used = true;
}

}  // namespace httptraced::record
