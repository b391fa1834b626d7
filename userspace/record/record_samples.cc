#include "record/record_samples.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace httptraced::record::samples {
namespace {

using std::string_literals::operator""s;

conn::Endpoint V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port) {
  conn::Endpoint e;
  e.addr[0] = a;
  e.addr[1] = b;
  e.addr[2] = c;
  e.addr[3] = d;
  e.port = port;
  return e;
}

conn::Endpoint V6(const char* text, uint16_t port) {
  conn::Endpoint e;
  inet_pton(AF_INET6, text, e.addr.data());  // test-only literals, all valid
  e.port = port;
  return e;
}

Sample Make(std::string name, conn::ConnInfo conn, std::string executable) {
  Sample s;
  s.name = std::move(name);
  s.conn = std::move(conn);
  s.executable = std::move(executable);
  s.options.host_name = "web-1";
  return s;
}

}  // namespace

http::Message Request(std::string method, std::string target, std::vector<http::Header> headers,
                      std::string body) {
  http::Message m;
  m.kind = http::Message::Kind::kRequest;
  m.method = std::move(method);
  m.target = std::move(target);
  m.headers = std::move(headers);
  m.body.size = body.size();
  m.body.content = std::move(body);
  return m;
}

http::Message Response(int status_code, std::vector<http::Header> headers, std::string body) {
  http::Message m;
  m.kind = http::Message::Kind::kResponse;
  m.status_code = status_code;
  m.reason = "Whatever";
  m.headers = std::move(headers);
  m.body.size = body.size();
  m.body.content = std::move(body);
  return m;
}

void SetTiming(http::Message& m, uint64_t first_offset_ns, uint32_t first_tid,
               uint64_t last_offset_ns, uint32_t last_tid) {
  m.first = {kMonoBaseNs + first_offset_ns, first_tid};
  m.last = {kMonoBaseNs + last_offset_ns, last_tid};
}

conn::ConnInfo ServerConnV4() {
  conn::ConnInfo c;
  c.key = {4242, 7, 99};
  c.family = AF_INET;
  c.role = http::Role::kServer;
  c.origin = conn::Origin::kAccept;
  c.local = V4(10, 0, 0, 1, 8080);
  c.remote = V4(192, 168, 1, 20, 51000);
  c.comm = "nginx";
  c.open_ts_ns = kMonoBaseNs - 5'000'000;
  return c;
}

conn::ConnInfo ClientConnV4() {
  conn::ConnInfo c;
  c.key = {5151, 3, 12345};
  c.family = AF_INET;
  c.role = http::Role::kClient;
  c.origin = conn::Origin::kConnect;
  c.local = V4(10, 0, 0, 2, 40000);
  c.remote = V4(93, 184, 216, 34, 80);
  c.comm = "curl";
  c.open_ts_ns = kMonoBaseNs - 1'000'000;
  return c;
}

conn::ConnInfo ServerConnV6() {
  conn::ConnInfo c = ServerConnV4();
  c.family = AF_INET6;
  c.local = V6("2001:db8::1", 443);
  c.remote = V6("2001:db8::abcd", 60000);
  return c;
}

conn::ConnInfo ServerConnV4Mapped() {
  conn::ConnInfo c = ServerConnV4();
  c.family = AF_INET6;
  c.local = V6("::ffff:127.0.0.1", 8080);
  c.remote = V6("::ffff:127.0.0.1", 55555);
  return c;
}

std::string Render(const Sample& sample) {
  const RecordBuilder builder(sample.options);
  OutBuffer out;
  builder.Append(sample.conn, sample.exchange, ProcessDetails{sample.executable},
                 ClockOffset{kRealtimeMinusMonotonicNs}, out);
  return std::string(out.view());
}

Sample ServerGetWithQuery() {
  Sample s = Make("server_get_with_query", ServerConnV4(), "/usr/sbin/nginx");
  http::Message req =
      Request("GET", "/search?q=ebpf&lang=en",
              {{"Host", "example.com:8080"}, {"User-Agent", "curl/8.5.0"}, {"Accept", "*/*"}});
  SetTiming(req, 0, 4243, 0, 4243);
  http::Message resp =
      Response(200, {{"Content-Type", "text/plain"}, {"Content-Length", "5"}}, "hello");
  SetTiming(resp, 1'000'000, 4243, 1'500'000, 4243);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  return s;
}

Sample ClientPostWithBody() {
  Sample s = Make("client_post_with_body", ClientConnV4(), "/usr/bin/curl");
  http::Message req = Request(
      "POST", "/api/items",
      {{"Host", "example.com"}, {"Content-Type", "application/json"}, {"Content-Length", "25"}},
      R"({"name":"widget","qty":3})");
  SetTiming(req, 0, 5151, 10'000, 5151);
  http::Message resp = Response(201, {{"Content-Type", "application/json"}}, R"({"id":17})");
  SetTiming(resp, 2'000'000, 5151, 2'000'500, 5151);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  return s;
}

std::vector<Sample> Pipelined() {
  std::vector<Sample> out;
  const char* const targets[] = {"/a", "/b", "/c"};
  const int statuses[] = {200, 404, 500};
  const char* const bodies[] = {"A", "", "C"};
  for (uint64_t i = 0; i < 3; ++i) {
    Sample s = Make("pipelined_" + std::to_string(i), ServerConnV4(), "/usr/sbin/nginx");
    // All three requests arrive in one read; responses go out one by one.
    http::Message req = Request("GET", targets[i], {{"Host", "example.com"}});
    SetTiming(req, 0, 4243, 0, 4243);
    http::Message resp = Response(statuses[i], {}, bodies[i]);
    SetTiming(resp, 100'000 * (i + 1), 4244, 100'000 * (i + 1) + 10, 4244);
    s.exchange.request = std::move(req);
    s.exchange.response = std::move(resp);
    s.exchange.seq = i;
    out.push_back(std::move(s));
  }
  return out;
}

Sample IncompleteNoResponse() {
  Sample s = Make("incomplete_no_response", ServerConnV4(), "/usr/sbin/nginx");
  http::Message req = Request("GET", "/slow", {{"Host", "example.com"}});
  SetTiming(req, 0, 4243, 20'000, 4243);
  s.exchange.request = std::move(req);
  s.exchange.seq = 5;
  s.exchange.incomplete = true;
  return s;
}

Sample ResponseOnly() {
  Sample s = Make("response_only", ServerConnV4(), "");
  http::Message resp = Response(200, {{"Content-Length", "2"}}, "ok");
  resp.version_minor = 0;
  resp.gap_before = true;
  SetTiming(resp, 3'000, 4250, 4'000, 4250);
  s.exchange.response = std::move(resp);
  return s;
}

Sample Head() {
  Sample s = Make("head", ServerConnV4(), "/usr/sbin/nginx");
  http::Message req = Request("HEAD", "/file.bin", {{"Host", "example.com"}});
  SetTiming(req, 0, 4243, 0, 4243);
  // A HEAD response announces the length but carries no body.
  http::Message resp = Response(200, {{"Content-Length", "1234"}});
  SetTiming(resp, 500, 4243, 500, 4243);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  return s;
}

Sample InvalidUtf8Body() {
  Sample s = Make("invalid_utf8_body", ServerConnV4(), "/usr/sbin/nginx");
  http::Message req =
      Request("POST", "/upload", {{"Content-Type", "image/png"}}, "\x89PNG\r\n\x1a\n\x00\xff"s);
  SetTiming(req, 0, 4243, 0, 4243);
  // Valid multi-byte UTF-8 stays a string.
  http::Message resp =
      Response(200, {{"Content-Type", "text/plain; charset=utf-8"}}, "caf\xc3\xa9");
  SetTiming(resp, 1'000, 4243, 1'000, 4243);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  return s;
}

Sample InvalidUtf8HeaderAndTarget() {
  Sample s = Make("invalid_utf8_header_and_target", ServerConnV4(), "/usr/sbin/nginx");
  http::Message req = Request("G\xc0T", "/caf\xe9?x=\xff\xfe",
                              {{"Host", "ex\xff.com"},
                               {"X-Name", "a\xffz"},
                               {"X-City", "Z\xc3\xbcrich"},
                               {"X-\xfe", "one"},
                               {"x-\xff", "two"}});
  SetTiming(req, 0, 4243, 0, 4243);
  http::Message resp = Response(400, {{"X-Bad", "\xed\xa0\x80"}});
  SetTiming(resp, 1'000, 4243, 1'000, 4243);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  s.conn.comm = "ng\xffinx";
  return s;
}

Sample ControlCharsAndQuotes() {
  Sample s = Make("control_chars_and_quotes", ServerConnV4(), "/usr/sbin/nginx");
  http::Message req =
      Request("GET", "/say?m=\"hi\"\\", {{"X-Quote", "he said \"hi\"\t\x01\x1f\x7f"}},
              "line1\nline2\r\n\0end"s);
  SetTiming(req, 0, 4243, 0, 4243);
  http::Message resp = Response(200, {{"X-Back\\slash", "\b\f"}});
  SetTiming(resp, 1'000, 4243, 1'000, 4243);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  return s;
}

Sample RedactionDefault() {
  Sample s = Make("redaction_default", ServerConnV4(), "/usr/sbin/nginx");
  http::Message req = Request("GET", "/account",
                              {{"Host", "example.com"},
                               {"AUTHORIZATION", "Bearer secret-token"},
                               {"Proxy-Authorization", "Basic dXNlcjpwdw=="},
                               {"Cookie", "session=abc"},
                               {"User-Agent", "Mozilla/5.0"}});
  SetTiming(req, 0, 4243, 0, 4243);
  http::Message resp =
      Response(302, {{"Set-Cookie", "session=def; HttpOnly"},
                     {"set-cookie", "theme=dark; Expires=Wed, 21 Oct 2026 07:28:00 GMT"},
                     {"Location", "/home"}});
  SetTiming(resp, 1'000, 4243, 1'000, 4243);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  return s;
}

Sample RedactionCustom() {
  Sample s = Make("redaction_custom", ServerConnV4(), "/usr/sbin/nginx");
  s.options.redact_headers = {"X-Api-Key", "USER-AGENT", "host"};
  http::Message req = Request("GET", "/data",
                              {{"Host", "internal.example:9000"},
                               {"Authorization", "Bearer visible"},
                               {"x-api-key", "k1"},
                               {"User-Agent", "secret-agent/1.0"}});
  SetTiming(req, 0, 4243, 0, 4243);
  http::Message resp = Response(200, {{"Transfer-Encoding", "chunked"}}, "data");
  resp.chunked = true;
  resp.trailers = {{"X-API-KEY", "k2"}, {"X-Checksum", "abc123"}};
  SetTiming(resp, 1'000, 4243, 2'000, 4243);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  return s;
}

Sample NoBodyCapture() {
  Sample s = ClientPostWithBody();
  s.name = "no_body_capture";
  s.options.capture_bodies = false;
  return s;
}

Sample Ipv6() {
  Sample s = Make("ipv6", ServerConnV6(), "/usr/sbin/nginx");
  http::Message req = Request("GET", "/", {{"Host", "[2001:db8::1]:443"}});
  SetTiming(req, 0, 4243, 0, 4243);
  http::Message resp = Response(204, {});
  SetTiming(resp, 1'000, 4243, 1'000, 4243);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  return s;
}

Sample Ipv4Mapped() {
  Sample s = Make("ipv4_mapped", ServerConnV4Mapped(), "/usr/sbin/nginx");
  http::Message req = Request("GET", "/health", {{"Host", "127.0.0.1:8080"}});
  SetTiming(req, 0, 4243, 0, 4243);
  http::Message resp = Response(200, {}, "ok");
  SetTiming(resp, 1'000, 4243, 1'000, 4243);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  return s;
}

Sample TruncatedBodies() {
  Sample s = Make("truncated_bodies", ServerConnV4(), "/usr/sbin/nginx");
  http::Message req = Request("PUT", "/big", {{"Content-Length", "100000"}}, "0123456789");
  req.body.size = 100000;
  req.body.truncated = true;
  SetTiming(req, 0, 4243, 9'000'000, 4245);
  http::Message resp = Response(200, {{"Content-Length", "70000"}}, "partial");
  resp.body.size = 70000;
  resp.body.truncated = true;
  resp.body.gap = true;
  resp.complete = false;
  resp.headers_truncated = true;
  SetTiming(resp, 10'000'000, 4243, 12'000'000, 4243);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  s.exchange.seq = 2;
  return s;
}

Sample DecodedBodies() {
  Sample s = Make("decoded_bodies", ClientConnV4(), "/usr/bin/python3.11");
  // As BodyDecoder leaves them: a gzip request body decoded whole, a zstd
  // response decoded up to the cap; bytes stay the sizes as sent.
  http::Message req = Request("POST", "/api/items",
                              {{"Host", "api.example"}, {"Content-Encoding", "gzip"},
                               {"Content-Length", "43"}},
                              R"({"name":"widget","count":3})");
  req.body.size = 43;
  req.body.decoded = "gzip";
  SetTiming(req, 0, 5151, 0, 5151);
  http::Message resp = Response(200, {{"Content-Encoding", "zstd"}, {"Content-Length", "912"}},
                                R"({"items":[{"name":"widget","count":3},)");
  resp.body.size = 912;
  resp.body.decoded = "zstd";
  resp.body.truncated = true;
  SetTiming(resp, 2'000'000, 5151, 2'000'000, 5151);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  return s;
}

Sample RepeatedHeadersAndTrailers() {
  Sample s = Make("repeated_headers_and_trailers", ServerConnV4(), "/usr/sbin/nginx");
  http::Message req = Request("GET", "/r?",
                              {{"Host", "example.com"},
                               {"X-Forwarded-For", "10.1.1.1"},
                               {"Accept", "text/html"},
                               {"x-forwarded-for", "10.2.2.2"},
                               {"ACCEPT", "application/json"},
                               {"X-FORWARDED-FOR", "10.3.3.3"}});
  SetTiming(req, 0, 4243, 0, 4243);
  http::Message resp = Response(200, {{"Transfer-Encoding", "chunked"}, {"Vary", "Accept"}}, "ok");
  resp.chunked = true;
  resp.trailers = {{"Server-Timing", "db;dur=53"}, {"server-timing", "app;dur=47.2"}};
  SetTiming(resp, 1'000, 4243, 3'000, 4243);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  return s;
}

Sample UnixServer() {
  conn::ConnInfo c = ServerConnV4();
  c.family = AF_UNIX;
  c.local = {.text = "/run/app/gunicorn.sock"};  // the listener's name
  c.remote = {};                                 // nginx's end: unnamed
  c.comm = "gunicorn";
  c.peer_pid = 4300;  // nginx's worker, which connected
  Sample s = Make("unix_server", std::move(c), "/usr/bin/python3.11");
  http::Message req = Request("GET", "/api/items", {{"Host", "app"}});
  SetTiming(req, 0, 4243, 0, 4243);
  http::Message resp = Response(200, {}, "[]");
  SetTiming(resp, 1'000, 4243, 1'000, 4243);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  return s;
}

Sample UnixClientAbstract() {
  conn::ConnInfo c = ClientConnV4();
  c.family = AF_UNIX;
  c.local = {};
  c.remote = {.text = "@api"};  // an abstract name
  Sample s = Make("unix_client_abstract", std::move(c), "/usr/bin/curl");
  http::Message req = Request("GET", "/v1/ping", {{"Host", "localhost"}});
  SetTiming(req, 0, 5151, 0, 5151);
  http::Message resp = Response(204, {});
  SetTiming(resp, 1'000, 5151, 1'000, 5151);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  return s;
}

Sample UnixUnknownRole() {
  Sample s = UnixServer();
  s.name = "unix_unknown_role";
  s.conn.role = http::Role::kUnknown;
  s.conn.origin = conn::Origin::kDiscovered;
  return s;
}

// HTTPS, taken at libssl: the client's view of a JSON API over TLS.
Sample TlsClient() {
  conn::ConnInfo c = ClientConnV4();
  c.tls = true;
  c.remote.port = 443;
  Sample s = Make("tls_client", std::move(c), "/usr/bin/curl");
  http::Message req = Request("GET", "/v1/items", {{"Host", "api.example.org"}});
  SetTiming(req, 0, 6161, 0, 6161);
  http::Message resp = Response(200, {{"Content-Type", "application/json"}}, "[1,2]");
  SetTiming(resp, 2'000, 6161, 2'000, 6161);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  return s;
}

Sample UnknownFamily() {
  Sample s = ServerGetWithQuery();
  s.name = "unknown_family";
  s.conn.family = 0;  // its open event was lost
  s.conn.local = {};
  s.conn.remote = {};
  return s;
}

Sample UnknownRole() {
  Sample s = Make("unknown_role", ServerConnV4(), "/usr/sbin/nginx");
  s.conn.role = http::Role::kUnknown;
  s.conn.origin = conn::Origin::kDiscovered;
  http::Message req = Request("GET", "/", {{"Host", "example.com"}});
  SetTiming(req, 0, 4243, 0, 4243);
  http::Message resp = Response(200, {}, "ok");
  SetTiming(resp, 1'000, 4243, 1'000, 4243);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  s.exchange.seq = 7;
  return s;
}

Sample AbsoluteFormProxyRequest() {
  Sample s = Make("absolute_form_proxy_request", ClientConnV4(), "/usr/bin/curl");
  http::Message req =
      Request("GET", "http://user:pw@example.org:8081/p/a?x=1#frag", {{"Host", "other.example"}});
  req.version_minor = 0;
  SetTiming(req, 0, 5151, 0, 5151);
  http::Message resp = Response(200, {}, "ok");
  resp.version_minor = 0;
  SetTiming(resp, 1'000, 5151, 1'000, 5151);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  return s;
}

Sample InterimResponses() {
  Sample s = Make("interim_responses", ClientConnV4(), "/usr/bin/curl");
  http::Message req =
      Request("POST", "/upload", {{"Host", "example.com"}, {"Expect", "100-continue"}}, "x");
  SetTiming(req, 0, 5151, 50'000, 5151);
  http::Message resp = Response(200, {}, "done");
  SetTiming(resp, 60'000, 5151, 60'000, 5151);
  s.exchange.request = std::move(req);
  s.exchange.response = std::move(resp);
  s.exchange.interim_responses = 1;
  return s;
}

std::vector<Sample> AllSamples() {
  std::vector<Sample> all = {
      ServerGetWithQuery(),
      ClientPostWithBody(),
      IncompleteNoResponse(),
      ResponseOnly(),
      Head(),
      InvalidUtf8Body(),
      InvalidUtf8HeaderAndTarget(),
      ControlCharsAndQuotes(),
      RedactionDefault(),
      RedactionCustom(),
      NoBodyCapture(),
      Ipv6(),
      Ipv4Mapped(),
      TruncatedBodies(),
      DecodedBodies(),
      RepeatedHeadersAndTrailers(),
      UnknownRole(),
      AbsoluteFormProxyRequest(),
      InterimResponses(),
      UnixServer(),
      UnixClientAbstract(),
      UnixUnknownRole(),
      TlsClient(),
      UnknownFamily(),
  };
  for (Sample& s : Pipelined()) all.push_back(std::move(s));
  return all;
}

}  // namespace httptraced::record::samples
