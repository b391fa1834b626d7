#include "record/record_builder.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "record/record_samples.h"

namespace httptraced::record {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
using std::string_literals::operator""s;

// Checks the line shape every record must have, then parses it (nlohmann
// rejects invalid JSON and ill-formed UTF-8).
json ParseLine(const std::string& line) {
  REQUIRE(!line.empty());
  REQUIRE(line.back() == '\n');
  REQUIRE(line.find('\n') == line.size() - 1);
  for (const char c : line.substr(0, line.size() - 1)) {
    REQUIRE(static_cast<unsigned char>(c) >= 0x20);  // control characters escaped
  }
  return json::parse(line);
}

json RenderJson(const samples::Sample& sample) { return ParseLine(samples::Render(sample)); }

// Key order as written, for the checks that care about it.
std::string OrderedDump(const std::string& line, const std::vector<std::string>& path) {
  ordered_json j = ordered_json::parse(line);
  for (const std::string& key : path) j = j.at(key);
  return j.dump();
}

std::string DecodeBase64(const std::string& in) {
  auto value = [](char c) -> uint32_t {
    if (c >= 'A' && c <= 'Z') return static_cast<uint32_t>(c - 'A');
    if (c >= 'a' && c <= 'z') return static_cast<uint32_t>(c - 'a' + 26);
    if (c >= '0' && c <= '9') return static_cast<uint32_t>(c - '0' + 52);
    return c == '+' ? 62 : 63;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (const char c : in) {
    if (c == '=') break;
    acc = (acc << 6) | value(c);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

TEST_CASE("Server-role GET with a query: every field") {
  const std::string line = samples::Render(samples::ServerGetWithQuery());
  CHECK(ParseLine(line) == R"({
    "@timestamp": "2026-11-21T20:45:59.123456789Z",
    "ecs": {"version": "8.11.0"},
    "event": {"kind": "event", "category": ["web", "network"], "type": ["access"],
              "dataset": "httptraced.session",
              "start": "2026-11-21T20:45:59.123456789Z",
              "end": "2026-11-21T20:45:59.124956789Z",
              "duration": 1500000, "outcome": "success"},
    "http": {"version": "1.1",
             "request": {"method": "GET",
                         "headers": {"host": "example.com:8080", "user-agent": "curl/8.5.0",
                                     "accept": "*/*"},
                         "body": {"bytes": 0}},
             "response": {"status_code": 200,
                          "headers": {"content-type": "text/plain", "content-length": "5"},
                          "body": {"bytes": 5, "content": "hello"}}},
    "url": {"original": "/search?q=ebpf&lang=en", "path": "/search", "query": "q=ebpf&lang=en",
            "domain": "example.com", "port": 8080},
    "user_agent": {"original": "curl/8.5.0"},
    "client": {"ip": "192.168.1.20", "port": 51000},
    "server": {"ip": "10.0.0.1", "port": 8080},
    "network": {"transport": "tcp", "type": "ipv4", "protocol": "http"},
    "process": {"pid": 4242, "thread": {"id": 4243}, "name": "nginx",
                "executable": "/usr/sbin/nginx"},
    "host": {"name": "web-1"},
    "httptraced": {"role": "server",
                   "connection": {"id": "4242-7-99", "seq": 0, "origin": "accept"},
                   "incomplete": false}
  })"_json);
  // Top-level order as written, and headers in the order sent.
  CHECK(line.rfind(R"({"@timestamp":"2026-11-21T20:45:59.123456789Z","ecs":{"version":"8.11.0"},)",
                   0) == 0);
  CHECK(OrderedDump(line, {"http", "request", "headers"}) ==
        R"({"host":"example.com:8080","user-agent":"curl/8.5.0","accept":"*/*"})");
}

TEST_CASE("Client-role POST with bodies: client is the traced process") {
  CHECK(RenderJson(samples::ClientPostWithBody()) == R"({
    "@timestamp": "2026-11-21T20:45:59.123456789Z",
    "ecs": {"version": "8.11.0"},
    "event": {"kind": "event", "category": ["web", "network"], "type": ["access"],
              "dataset": "httptraced.session",
              "start": "2026-11-21T20:45:59.123456789Z",
              "end": "2026-11-21T20:45:59.125457289Z",
              "duration": 2000500, "outcome": "success"},
    "http": {"version": "1.1",
             "request": {"method": "POST",
                         "headers": {"host": "example.com", "content-type": "application/json",
                                     "content-length": "25"},
                         "body": {"bytes": 25, "content": "{\"name\":\"widget\",\"qty\":3}"}},
             "response": {"status_code": 201,
                          "headers": {"content-type": "application/json"},
                          "body": {"bytes": 9, "content": "{\"id\":17}"}}},
    "url": {"original": "/api/items", "path": "/api/items", "domain": "example.com"},
    "client": {"ip": "10.0.0.2", "port": 40000},
    "server": {"ip": "93.184.216.34", "port": 80},
    "network": {"transport": "tcp", "type": "ipv4", "protocol": "http"},
    "process": {"pid": 5151, "thread": {"id": 5151}, "name": "curl",
                "executable": "/usr/bin/curl"},
    "host": {"name": "web-1"},
    "httptraced": {"role": "client",
                   "connection": {"id": "5151-3-12345", "seq": 0, "origin": "connect"},
                   "incomplete": false}
  })"_json);
}

TEST_CASE("Pipelined exchanges keep their sequence numbers and pairing") {
  const std::vector<samples::Sample> pipelined = samples::Pipelined();
  REQUIRE(pipelined.size() == 3);
  const json expected_http[3] = {
      R"({"version": "1.1",
          "request": {"method": "GET", "headers": {"host": "example.com"}, "body": {"bytes": 0}},
          "response": {"status_code": 200, "headers": {},
                       "body": {"bytes": 1, "content": "A"}}})"_json,
      R"({"version": "1.1",
          "request": {"method": "GET", "headers": {"host": "example.com"}, "body": {"bytes": 0}},
          "response": {"status_code": 404, "headers": {}, "body": {"bytes": 0}}})"_json,
      R"({"version": "1.1",
          "request": {"method": "GET", "headers": {"host": "example.com"}, "body": {"bytes": 0}},
          "response": {"status_code": 500, "headers": {},
                       "body": {"bytes": 1, "content": "C"}}})"_json,
  };
  const char* const targets[3] = {"/a", "/b", "/c"};
  const json expected_event[3] = {
      R"({"kind": "event", "category": ["web", "network"], "type": ["access"],
          "dataset": "httptraced.session", "start": "2026-11-21T20:45:59.123456789Z",
          "end": "2026-11-21T20:45:59.123556799Z", "duration": 100010,
          "outcome": "success"})"_json,
      R"({"kind": "event", "category": ["web", "network"], "type": ["access"],
          "dataset": "httptraced.session", "start": "2026-11-21T20:45:59.123456789Z",
          "end": "2026-11-21T20:45:59.123656799Z", "duration": 200010,
          "outcome": "failure"})"_json,
      R"({"kind": "event", "category": ["web", "network"], "type": ["access"],
          "dataset": "httptraced.session", "start": "2026-11-21T20:45:59.123456789Z",
          "end": "2026-11-21T20:45:59.123756799Z", "duration": 300010,
          "outcome": "failure"})"_json,
  };
  for (uint64_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    const json j = RenderJson(pipelined[i]);
    CHECK(j["http"] == expected_http[i]);
    CHECK(j["event"] == expected_event[i]);
    CHECK(j["url"] ==
          json{{"original", targets[i]}, {"path", targets[i]}, {"domain", "example.com"}});
    CHECK(j["httptraced"] ==
          json{{"role", "server"},
               {"connection", {{"id", "4242-7-99"}, {"seq", i}, {"origin", "accept"}}},
               {"incomplete", false}});
    CHECK(j["@timestamp"] == "2026-11-21T20:45:59.123456789Z");
  }
}

TEST_CASE("Incomplete exchange: a request and no response") {
  CHECK(RenderJson(samples::IncompleteNoResponse()) == R"({
    "@timestamp": "2026-11-21T20:45:59.123456789Z",
    "ecs": {"version": "8.11.0"},
    "event": {"kind": "event", "category": ["web", "network"], "type": ["access"],
              "dataset": "httptraced.session",
              "start": "2026-11-21T20:45:59.123456789Z",
              "end": "2026-11-21T20:45:59.123476789Z",
              "duration": 20000, "outcome": "unknown"},
    "http": {"version": "1.1",
             "request": {"method": "GET", "headers": {"host": "example.com"},
                         "body": {"bytes": 0}}},
    "url": {"original": "/slow", "path": "/slow", "domain": "example.com"},
    "client": {"ip": "192.168.1.20", "port": 51000},
    "server": {"ip": "10.0.0.1", "port": 8080},
    "network": {"transport": "tcp", "type": "ipv4", "protocol": "http"},
    "process": {"pid": 4242, "thread": {"id": 4243}, "name": "nginx",
                "executable": "/usr/sbin/nginx"},
    "host": {"name": "web-1"},
    "httptraced": {"role": "server",
                   "connection": {"id": "4242-7-99", "seq": 5, "origin": "accept"},
                   "incomplete": true}
  })"_json);
}

TEST_CASE("Response-only exchange: times, version and thread from the response") {
  CHECK(RenderJson(samples::ResponseOnly()) == R"({
    "@timestamp": "2026-11-21T20:45:59.123459789Z",
    "ecs": {"version": "8.11.0"},
    "event": {"kind": "event", "category": ["web", "network"], "type": ["access"],
              "dataset": "httptraced.session",
              "start": "2026-11-21T20:45:59.123459789Z",
              "end": "2026-11-21T20:45:59.123460789Z",
              "duration": 1000, "outcome": "success"},
    "http": {"version": "1.0",
             "response": {"status_code": 200, "headers": {"content-length": "2"},
                          "body": {"bytes": 2, "content": "ok"}}},
    "client": {"ip": "192.168.1.20", "port": 51000},
    "server": {"ip": "10.0.0.1", "port": 8080},
    "network": {"transport": "tcp", "type": "ipv4", "protocol": "http"},
    "process": {"pid": 4242, "thread": {"id": 4250}, "name": "nginx"},
    "host": {"name": "web-1"},
    "httptraced": {"role": "server",
                   "connection": {"id": "4242-7-99", "seq": 0, "origin": "accept"},
                   "incomplete": true,
                   "response": {"gap_before": true}}
  })"_json);
}

TEST_CASE("HEAD: the response announces a length but has no body") {
  const json j = RenderJson(samples::Head());
  CHECK(j["http"] == R"({"version": "1.1",
    "request": {"method": "HEAD", "headers": {"host": "example.com"}, "body": {"bytes": 0}},
    "response": {"status_code": 200, "headers": {"content-length": "1234"},
                 "body": {"bytes": 0}}})"_json);
  CHECK(j["url"] == R"({"original": "/file.bin", "path": "/file.bin",
                        "domain": "example.com"})"_json);
  CHECK(j["event"]["end"] == "2026-11-21T20:45:59.123457289Z");
  CHECK(j["event"]["duration"] == 500);
  CHECK(j["event"]["outcome"] == "success");
  CHECK(j["httptraced"] == R"({"role": "server",
    "connection": {"id": "4242-7-99", "seq": 0, "origin": "accept"},
    "incomplete": false})"_json);
}

TEST_CASE("A body that is not UTF-8 goes out as base64 with a marker") {
  const json j = RenderJson(samples::InvalidUtf8Body());
  CHECK(j["http"] == R"({"version": "1.1",
    "request": {"method": "POST", "headers": {"content-type": "image/png"},
                "body": {"bytes": 10, "content": "iVBORw0KGgoA/w=="}},
    "response": {"status_code": 200, "headers": {"content-type": "text/plain; charset=utf-8"},
                 "body": {"bytes": 5, "content": "café"}}})"_json);
  CHECK(DecodeBase64(j["http"]["request"]["body"]["content"].get<std::string>()) ==
        "\x89PNG\r\n\x1a\n\x00\xff"s);
  CHECK(j["httptraced"] == R"({"role": "server",
    "connection": {"id": "4242-7-99", "seq": 0, "origin": "accept"},
    "incomplete": false,
    "request": {"body": {"encoding": "base64"}}})"_json);
  CHECK(j["url"] == R"({"original": "/upload", "path": "/upload"})"_json);
}

TEST_CASE("Ill-formed UTF-8 in method, target, headers and comm becomes U+FFFD") {
  const std::string line = samples::Render(samples::InvalidUtf8HeaderAndTarget());
  CHECK(ParseLine(line) == R"({
    "@timestamp": "2026-11-21T20:45:59.123456789Z",
    "ecs": {"version": "8.11.0"},
    "event": {"kind": "event", "category": ["web", "network"], "type": ["access"],
              "dataset": "httptraced.session",
              "start": "2026-11-21T20:45:59.123456789Z",
              "end": "2026-11-21T20:45:59.123457789Z",
              "duration": 1000, "outcome": "failure"},
    "http": {"version": "1.1",
             "request": {"method": "G\ufffdT",
                         "headers": {"host": "ex\ufffd.com", "x-name": "a\ufffdz",
                                     "x-city": "Z\u00fcrich", "x-\ufffd": ["one", "two"]},
                         "body": {"bytes": 0}},
             "response": {"status_code": 400,
                          "headers": {"x-bad": "\ufffd\ufffd\ufffd"},
                          "body": {"bytes": 0}}},
    "url": {"original": "/caf\ufffd?x=\ufffd\ufffd", "path": "/caf\ufffd",
            "query": "x=\ufffd\ufffd", "domain": "ex\ufffd.com"},
    "client": {"ip": "192.168.1.20", "port": 51000},
    "server": {"ip": "10.0.0.1", "port": 8080},
    "network": {"transport": "tcp", "type": "ipv4", "protocol": "http"},
    "process": {"pid": 4242, "thread": {"id": 4243}, "name": "ng\ufffdinx",
                "executable": "/usr/sbin/nginx"},
    "host": {"name": "web-1"},
    "httptraced": {"role": "server",
                   "connection": {"id": "4242-7-99", "seq": 0, "origin": "accept"},
                   "incomplete": false}
  })"_json);
  // Two raw names that sanitize to the same key share one array: no
  // duplicate keys.
  CHECK(OrderedDump(line, {"http", "request", "headers"}) ==
        ordered_json::parse(R"({"host":"ex\ufffd.com","x-name":"a\ufffdz",
                                "x-city":"Z\u00fcrich","x-\ufffd":["one","two"]})")
            .dump());
}

TEST_CASE("Quotes, backslashes and control characters are escaped and round-trip") {
  const std::string line = samples::Render(samples::ControlCharsAndQuotes());
  const json j = ParseLine(line);
  CHECK(j["http"] == json{{"version", "1.1"},
                          {"request",
                           {{"method", "GET"},
                            {"headers", {{"x-quote", "he said \"hi\"\t\x01\x1f\x7f"}}},
                            {"body", {{"bytes", 17}, {"content", "line1\nline2\r\n\0end"s}}}}},
                          {"response",
                           {{"status_code", 200},
                            {"headers", {{"x-back\\slash", "\b\f"}}},
                            {"body", {{"bytes", 0}}}}}});
  CHECK(j["url"] ==
        json{{"original", "/say?m=\"hi\"\\"}, {"path", "/say"}, {"query", "m=\"hi\"\\"}});
  CHECK(j["httptraced"]["incomplete"] == false);
  CHECK(j["httptraced"].count("request") == 0);
  // The escapes as written.
  CHECK(line.find(R"("x-quote":"he said \"hi\"\t\u0001\u001f)"
                  "\x7f\"") != std::string::npos);
  CHECK(line.find(R"("content":"line1\nline2\r\n\u0000end")") != std::string::npos);
  CHECK(line.find(R"("x-back\\slash":"\b\f")") != std::string::npos);
}

TEST_CASE("Default redaction: credentials and cookies, any case, both directions") {
  const std::string line = samples::Render(samples::RedactionDefault());
  const json j = ParseLine(line);
  CHECK(j["http"] == R"({"version": "1.1",
    "request": {"method": "GET",
                "headers": {"host": "example.com", "authorization": "[REDACTED]",
                            "proxy-authorization": "[REDACTED]", "cookie": "[REDACTED]",
                            "user-agent": "Mozilla/5.0"},
                "body": {"bytes": 0}},
    "response": {"status_code": 302,
                 "headers": {"set-cookie": ["[REDACTED]", "[REDACTED]"], "location": "/home"},
                 "body": {"bytes": 0}}})"_json);
  CHECK(j["user_agent"] == json{{"original", "Mozilla/5.0"}});
  CHECK(j["event"]["outcome"] == "success");
  for (const char* secret : {"secret-token", "dXNlcjpwdw==", "session=", "theme=dark"}) {
    CAPTURE(secret);
    CHECK(line.find(secret) == std::string::npos);
  }
}

TEST_CASE("Custom redaction list replaces the default, case-insensitively, trailers too") {
  const std::string line = samples::Render(samples::RedactionCustom());
  const json j = ParseLine(line);
  CHECK(j["http"] == R"({"version": "1.1",
    "request": {"method": "GET",
                "headers": {"host": "[REDACTED]", "authorization": "Bearer visible",
                            "x-api-key": "[REDACTED]", "user-agent": "[REDACTED]"},
                "body": {"bytes": 0}},
    "response": {"status_code": 200,
                 "headers": {"transfer-encoding": "chunked"},
                 "trailers": {"x-api-key": "[REDACTED]", "x-checksum": "abc123"},
                 "body": {"bytes": 4, "content": "data"}}})"_json);
  // A redacted Host gives no url.domain / url.port; a redacted User-Agent
  // redacts user_agent.original.
  CHECK(j["url"] == json{{"original", "/data"}, {"path", "/data"}});
  CHECK(j["user_agent"] == json{{"original", "[REDACTED]"}});
  CHECK(j["event"]["duration"] == 2000);
  for (const char* secret : {"k1", "k2", "secret-agent", "internal.example"}) {
    CAPTURE(secret);
    CHECK(line.find(secret) == std::string::npos);
  }
}

TEST_CASE("Redaction list entries match whatever their case") {
  samples::Sample s = samples::RedactionCustom();
  s.options.redact_headers = {"AUTHORIZATION"};
  const json j = RenderJson(s);
  CHECK(j["http"]["request"]["headers"]["authorization"] == "[REDACTED]");
  CHECK(j["http"]["request"]["headers"]["x-api-key"] == "k1");
  CHECK(j["http"]["response"]["trailers"]["x-api-key"] == "k2");
  CHECK(j["url"]["domain"] == "internal.example");
  CHECK(j["url"]["port"] == 9000);

  s.options.redact_headers.clear();
  const json none = RenderJson(s);
  CHECK(none["http"]["request"]["headers"]["authorization"] == "Bearer visible");
}

TEST_CASE("capture_bodies=false: sizes but no content, and no encoding marker") {
  const std::string line = samples::Render(samples::NoBodyCapture());
  const json j = ParseLine(line);
  CHECK(j["http"] == R"({"version": "1.1",
    "request": {"method": "POST",
                "headers": {"host": "example.com", "content-type": "application/json",
                            "content-length": "25"},
                "body": {"bytes": 25}},
    "response": {"status_code": 201, "headers": {"content-type": "application/json"},
                 "body": {"bytes": 9}}})"_json);
  CHECK(line.find("widget") == std::string::npos);

  samples::Sample binary = samples::InvalidUtf8Body();
  binary.options.capture_bodies = false;
  const json b = RenderJson(binary);
  CHECK(b["http"]["request"]["body"] == json{{"bytes", 10}});
  CHECK(b["httptraced"].count("request") == 0);

  // Truncation and gaps are about content: without it, no body marker, and
  // the markers that are not about the body stay.
  samples::Sample big = samples::TruncatedBodies();
  big.options.capture_bodies = false;
  const json t = RenderJson(big);
  CHECK(t["http"]["request"]["body"] == json{{"bytes", 100000}});
  CHECK(t["http"]["response"]["body"] == json{{"bytes", 70000}});
  CHECK(t["httptraced"].count("request") == 0);
  CHECK(t["httptraced"]["response"] == json{{"incomplete", true}, {"headers_truncated", true}});
}

TEST_CASE("framing_lost qualifies the size, with or without body capture") {
  samples::Sample s = samples::TruncatedBodies();
  s.exchange.response->body.framing_lost = true;
  const json j = RenderJson(s);
  CHECK(j["httptraced"]["response"]["body"] ==
        json{{"truncated", true}, {"gap", true}, {"framing_lost", true}});
  s.options.capture_bodies = false;
  const json none = RenderJson(s);
  CHECK(none["httptraced"]["response"] == R"({"incomplete": true, "headers_truncated": true,
                                              "body": {"framing_lost": true}})"_json);
  CHECK(none["http"]["response"]["body"] == json{{"bytes", 70000}});
}

TEST_CASE("IPv6 endpoints and a bracketed Host") {
  CHECK(RenderJson(samples::Ipv6()) == R"({
    "@timestamp": "2026-11-21T20:45:59.123456789Z",
    "ecs": {"version": "8.11.0"},
    "event": {"kind": "event", "category": ["web", "network"], "type": ["access"],
              "dataset": "httptraced.session",
              "start": "2026-11-21T20:45:59.123456789Z",
              "end": "2026-11-21T20:45:59.123457789Z",
              "duration": 1000, "outcome": "success"},
    "http": {"version": "1.1",
             "request": {"method": "GET", "headers": {"host": "[2001:db8::1]:443"},
                         "body": {"bytes": 0}},
             "response": {"status_code": 204, "headers": {}, "body": {"bytes": 0}}},
    "url": {"original": "/", "path": "/", "domain": "[2001:db8::1]", "port": 443},
    "client": {"ip": "2001:db8::abcd", "port": 60000},
    "server": {"ip": "2001:db8::1", "port": 443},
    "network": {"transport": "tcp", "type": "ipv6", "protocol": "http"},
    "process": {"pid": 4242, "thread": {"id": 4243}, "name": "nginx",
                "executable": "/usr/sbin/nginx"},
    "host": {"name": "web-1"},
    "httptraced": {"role": "server",
                   "connection": {"id": "4242-7-99", "seq": 0, "origin": "accept"},
                   "incomplete": false}
  })"_json);
}

TEST_CASE("IPv4-mapped addresses stay IPv6 text on an IPv6 socket") {
  const json j = RenderJson(samples::Ipv4Mapped());
  CHECK(j["client"] == json{{"ip", "::ffff:127.0.0.1"}, {"port", 55555}});
  CHECK(j["server"] == json{{"ip", "::ffff:127.0.0.1"}, {"port", 8080}});
  CHECK(j["network"] == json{{"transport", "tcp"}, {"type", "ipv6"}, {"protocol", "http"}});
  CHECK(
      j["url"] ==
      json{{"original", "/health"}, {"path", "/health"}, {"domain", "127.0.0.1"}, {"port", 8080}});
}

TEST_CASE("Truncation, gap and cut-short markers") {
  const json j = RenderJson(samples::TruncatedBodies());
  CHECK(j["http"] == R"({"version": "1.1",
    "request": {"method": "PUT", "headers": {"content-length": "100000"},
                "body": {"bytes": 100000, "content": "0123456789"}},
    "response": {"status_code": 200, "headers": {"content-length": "70000"},
                 "body": {"bytes": 70000, "content": "partial"}}})"_json);
  CHECK(j["httptraced"] == R"({"role": "server",
    "connection": {"id": "4242-7-99", "seq": 2, "origin": "accept"},
    "incomplete": true,
    "request": {"body": {"truncated": true}},
    "response": {"incomplete": true, "headers_truncated": true,
                 "body": {"truncated": true, "gap": true}}})"_json);
  CHECK(j["event"]["end"] == "2026-11-21T20:45:59.135456789Z");
  CHECK(j["event"]["duration"] == 12000000);
  CHECK(j["event"]["outcome"] == "success");
}

TEST_CASE("Decoded bodies carry the coding they were decoded from") {
  const json j = RenderJson(samples::DecodedBodies());
  CHECK(j["http"]["request"]["body"] ==
        R"({"bytes": 43, "content": "{\"name\":\"widget\",\"count\":3}"})"_json);
  CHECK(j["http"]["response"]["body"] ==
        R"({"bytes": 912, "content": "{\"items\":[{\"name\":\"widget\",\"count\":3},"})"_json);
  CHECK(j["httptraced"]["request"] == R"({"body": {"decoded": "gzip"}})"_json);
  CHECK(j["httptraced"]["response"] == R"({"body": {"truncated": true, "decoded": "zstd"}})"_json);

  // Without body capture there is no content to have decoded.
  samples::Sample s = samples::DecodedBodies();
  s.options.capture_bodies = false;
  const json off = RenderJson(s);
  CHECK(off["httptraced"].count("request") == 0);
  CHECK(off["httptraced"].count("response") == 0);
}

TEST_CASE("Repeated header names become arrays in order, trailers likewise") {
  const std::string line = samples::Render(samples::RepeatedHeadersAndTrailers());
  const json j = ParseLine(line);
  CHECK(j["http"] == R"({"version": "1.1",
    "request": {"method": "GET",
                "headers": {"host": "example.com",
                            "x-forwarded-for": ["10.1.1.1", "10.2.2.2", "10.3.3.3"],
                            "accept": ["text/html", "application/json"]},
                "body": {"bytes": 0}},
    "response": {"status_code": 200,
                 "headers": {"transfer-encoding": "chunked", "vary": "Accept"},
                 "trailers": {"server-timing": ["db;dur=53", "app;dur=47.2"]},
                 "body": {"bytes": 2, "content": "ok"}}})"_json);
  CHECK(OrderedDump(line, {"http", "request", "headers"}) ==
        R"({"host":"example.com","x-forwarded-for":["10.1.1.1","10.2.2.2","10.3.3.3"],)"
        R"("accept":["text/html","application/json"]})");
  // A bare '?' gives an empty query, as ECS specifies.
  CHECK(j["url"] ==
        json{{"original", "/r?"}, {"path", "/r"}, {"query", ""}, {"domain", "example.com"}});
}

TEST_CASE("Many headers: grouping stays exact and ordered") {
  samples::Sample s = samples::ServerGetWithQuery();
  std::vector<http::Header> headers;
  for (int i = 0; i < 3000; ++i) {
    std::string name = "X-H" + std::to_string(i % 10);
    if (i % 3 == 0) name = "x-h" + std::to_string(i % 10);
    headers.push_back({name, std::to_string(i)});
  }
  s.exchange.request->headers = headers;
  const std::string line = samples::Render(s);
  const ordered_json got = ordered_json::parse(line)["http"]["request"]["headers"];
  ordered_json expected = ordered_json::object();
  for (int k = 0; k < 10; ++k) {
    ordered_json values = ordered_json::array();
    for (int i = k; i < 3000; i += 10) values.push_back(std::to_string(i));
    expected["x-h" + std::to_string(k)] = values;
  }
  CHECK(got.dump() == expected.dump());
}

TEST_CASE("Unknown role: no client/server, the raw ends under httptraced.connection") {
  const json j = RenderJson(samples::UnknownRole());
  CHECK(j.count("client") == 0);
  CHECK(j.count("server") == 0);
  CHECK(j["httptraced"] == R"({"role": "unknown",
    "connection": {"id": "4242-7-99", "seq": 7, "origin": "discovered",
                   "local": {"ip": "10.0.0.1", "port": 8080},
                   "remote": {"ip": "192.168.1.20", "port": 51000}},
    "incomplete": false})"_json);
  CHECK(j["network"] == json{{"transport", "tcp"}, {"type", "ipv4"}, {"protocol", "http"}});
}

TEST_CASE("Unix domain socket: the socket's name as server.address, no transport") {
  const json server = RenderJson(samples::UnixServer());
  CHECK(server.count("client") == 0);  // nginx's end of the socket has no name
  CHECK(server["server"] == json{{"address", "/run/app/gunicorn.sock"}});
  CHECK(server["network"] == json{{"type", "unix"}, {"protocol", "http"}});
  CHECK(server["process"]["name"] == "gunicorn");
  CHECK(server["url"] == json{{"original", "/api/items"}, {"path", "/api/items"},
                              {"domain", "app"}});
  CHECK(server["httptraced"]["connection"] == R"({"id": "4242-7-99", "seq": 0,
    "origin": "accept", "peer_pid": 4300})"_json);

  const json client = RenderJson(samples::UnixClientAbstract());
  CHECK(client.count("client") == 0);
  CHECK(client["server"] == json{{"address", "@api"}});
  CHECK(client["network"] == json{{"type", "unix"}, {"protocol", "http"}});

  const json unknown = RenderJson(samples::UnixUnknownRole());
  CHECK(unknown.count("server") == 0);
  CHECK(unknown["httptraced"]["connection"] == R"({"id": "4242-7-99", "seq": 0,
    "origin": "discovered", "peer_pid": 4300, "local": {"address": "/run/app/gunicorn.sock"}})"_json);
  CHECK(client["httptraced"]["connection"].count("peer_pid") == 0);  // not known: absent
}

TEST_CASE("TLS: tls.established on exchanges read at libssl, absent otherwise") {
  const json tls = RenderJson(samples::TlsClient());
  CHECK(tls["tls"] == json{{"established", true}});
  CHECK(tls["server"] == json{{"ip", "93.184.216.34"}, {"port", 443}});
  CHECK(tls["network"] == json{{"transport", "tcp"}, {"type", "ipv4"}, {"protocol", "http"}});
  CHECK(tls["http"]["response"]["body"] == json{{"bytes", 5}, {"content", "[1,2]"}});
  CHECK(RenderJson(samples::UnixServer()).count("tls") == 0);
  CHECK(RenderJson(samples::UnknownFamily()).count("tls") == 0);
}

TEST_CASE("Absolute-form target: scheme, authority over Host, fragment, HTTP/1.0") {
  const json j = RenderJson(samples::AbsoluteFormProxyRequest());
  CHECK(j["url"] == R"({"original": "http://user:pw@example.org:8081/p/a?x=1#frag",
    "scheme": "http", "path": "/p/a", "query": "x=1", "fragment": "frag",
    "domain": "example.org", "port": 8081})"_json);
  CHECK(j["http"]["version"] == "1.0");
  CHECK(j["client"] == json{{"ip", "10.0.0.2"}, {"port", 40000}});
}

TEST_CASE("Interim 1xx responses are counted") {
  const json j = RenderJson(samples::InterimResponses());
  CHECK(j["httptraced"] == R"({"role": "client",
    "connection": {"id": "5151-3-12345", "seq": 0, "origin": "connect"},
    "incomplete": false, "interim_responses": 1})"_json);
  CHECK(j["http"]["response"] == R"({"status_code": 200, "headers": {},
    "body": {"bytes": 4, "content": "done"}})"_json);
  CHECK(j["http"]["request"]["body"] == json{{"bytes", 1}, {"content", "x"}});
  CHECK(j["event"]["duration"] == 60000);
}

TEST_CASE("Unknown address family: no addresses and no network.type") {
  samples::Sample s = samples::ServerGetWithQuery();
  s.conn.family = 0;
  const json j = RenderJson(s);
  CHECK(j.count("client") == 0);
  CHECK(j.count("server") == 0);
  CHECK(j["network"] == json{{"protocol", "http"}});
}

TEST_CASE("A process in a container: container.id, before host") {
  samples::Sample s = samples::ServerGetWithQuery();
  const std::string id = "4f1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff0";
  s.conn.container_id = id;
  const std::string line = samples::Render(s);
  const json j = ParseLine(line);
  CHECK(j["container"] == json{{"id", id}});
  const size_t container = line.find("\"container\":");
  CHECK(container != std::string::npos);
  CHECK(container < line.find("\"host\":{\"name\":"));
  // On the host: no container object.
  s.conn.container_id.clear();
  CHECK(RenderJson(s).count("container") == 0);
}

TEST_CASE("Optional process and host fields are left out when unknown") {
  samples::Sample s = samples::ServerGetWithQuery();
  s.conn.comm.clear();
  s.executable.clear();
  s.options.host_name.clear();
  s.exchange.request->first.tid = 0;
  s.conn.key.fd = -1;
  const json j = RenderJson(s);
  CHECK(j["process"] == json{{"pid", 4242}});
  CHECK(j.count("host") == 0);
  CHECK(j["httptraced"]["connection"]["id"] == "4242--1-99");
}

TEST_CASE("An end before the start is clamped: duration 0") {
  samples::Sample s = samples::ServerGetWithQuery();
  s.exchange.response->last.ts_ns = samples::kMonoBaseNs - 5;
  const json j = RenderJson(s);
  CHECK(j["event"]["start"] == "2026-11-21T20:45:59.123456789Z");
  CHECK(j["event"]["end"] == "2026-11-21T20:45:59.123456789Z");
  CHECK(j["event"]["duration"] == 0);
}

TEST_CASE("Append adds exactly one line after what the buffer holds") {
  const RecordBuilder builder{RecordOptions{}};
  const samples::Sample a = samples::ServerGetWithQuery();
  const samples::Sample b = samples::ClientPostWithBody();
  OutBuffer buffer;
  buffer.Append("x\n");
  builder.Append(a.conn, a.exchange, ProcessDetails{a.executable},
                 ClockOffset{samples::kRealtimeMinusMonotonicNs}, buffer);
  const size_t first_end = buffer.size();
  builder.Append(b.conn, b.exchange, ProcessDetails{b.executable},
                 ClockOffset{samples::kRealtimeMinusMonotonicNs}, buffer);
  const std::string out(buffer.view());
  REQUIRE(out.rfind("x\n", 0) == 0);
  const json first = ParseLine(out.substr(2, first_end - 2));
  const json second = ParseLine(out.substr(first_end));
  CHECK(first["http"]["request"]["method"] == "GET");
  CHECK(second["http"]["request"]["method"] == "POST");
  // Default options: no host.name.
  CHECK(first.count("host") == 0);
}

TEST_CASE("ClockOffset moves every timestamp, durations stay") {
  samples::Sample s = samples::ServerGetWithQuery();
  const RecordBuilder builder(s.options);
  OutBuffer out;
  builder.Append(s.conn, s.exchange, ProcessDetails{s.executable}, ClockOffset{0}, out);
  const json j = ParseLine(std::string(out.view()));
  CHECK(j["@timestamp"] == "1970-01-01T00:16:40.000000000Z");
  CHECK(j["event"]["end"] == "1970-01-01T00:16:40.001500000Z");
  CHECK(j["event"]["duration"] == 1500000);
}

TEST_CASE("Every sample record is one valid line") {
  const std::vector<samples::Sample> all = samples::AllSamples();
  CHECK(all.size() == 27);
  for (const samples::Sample& s : all) {
    CAPTURE(s.name);
    const json j = RenderJson(s);
    CHECK(j.is_object());
  }
}

// The record of `sample` built with `cache` (and its builder's options).
std::string RenderCached(const samples::Sample& sample, RecordCache& cache,
                         const RecordBuilder& builder, std::string_view executable) {
  OutBuffer out;
  builder.Append(sample.conn, sample.exchange, ProcessDetails{executable},
                 ClockOffset{1'700'000'000'000'000'000}, out, &cache);
  return std::string(out.view());
}

std::string RenderPlain(const samples::Sample& sample, const RecordBuilder& builder,
                        std::string_view executable) {
  OutBuffer out;
  builder.Append(sample.conn, sample.exchange, ProcessDetails{executable},
                 ClockOffset{1'700'000'000'000'000'000}, out);
  return std::string(out.view());
}

TEST_CASE("Records built with the per-connection cache are the same bytes") {
  // Every sample, twice each, through one cache: the second is served from it.
  RecordCache cache;
  uint64_t renders = 0;
  for (const samples::Sample& sample : samples::AllSamples()) {
    const RecordBuilder builder(sample.options);
    const std::string plain = RenderPlain(sample, builder, sample.executable);
    CAPTURE(sample.name);
    CHECK(RenderCached(sample, cache, builder, sample.executable) == plain);
    CHECK(RenderCached(sample, cache, builder, sample.executable) == plain);
    ++renders;
  }
  // Samples of one connection (Pipelined) share a slot's text; every other
  // sample made its slot's text once.
  CHECK(cache.hits() + cache.misses() == 2 * renders);
  CHECK(cache.misses() <= renders);
  CHECK(cache.hits() >= renders);
}

TEST_CASE("Start times formatted from the previous record's are the same bytes") {
  // One cache, records whose start moves within a second, to the next one,
  // back to an earlier one, across a day and to before 1970: each is the
  // record built without the cache.
  RecordCache cache;
  samples::Sample s = samples::ServerGetWithQuery();
  const RecordBuilder builder(s.options);
  const uint64_t first = s.exchange.request->first.ts_ns;
  const int64_t offsets_ns[] = {0,           1,          999'999'999, 1'000'000'000, 5,
                                86'400'000'000'000, -1'000'000'000, 2, 0};
  for (const int64_t offset : offsets_ns) {
    s.exchange.request->first.ts_ns = first + static_cast<uint64_t>(offset);
    CAPTURE(offset);
    REQUIRE(RenderCached(s, cache, builder, s.executable) ==
            RenderPlain(s, builder, s.executable));
  }
  // Before 1970 (a clock offset that puts the start there): formatted afresh.
  OutBuffer cached;
  OutBuffer plain;
  const ClockOffset early{-2'000'000'000'000'000'000};
  builder.Append(s.conn, s.exchange, ProcessDetails{s.executable}, early, cached, &cache);
  builder.Append(s.conn, s.exchange, ProcessDetails{s.executable}, early, plain);
  CHECK(cached.view() == plain.view());
  builder.Append(s.conn, s.exchange, ProcessDetails{s.executable}, early, cached, &cache);
  CHECK(cached.view() == std::string(plain.view()) + std::string(plain.view()));
}

TEST_CASE("The per-connection cache notices what its text depends on") {
  RecordCache cache;
  samples::Sample s = samples::ServerGetWithQuery();
  RecordOptions options = s.options;
  const RecordBuilder builder(options);
  const auto same = [&](std::string_view executable) {
    return RenderCached(s, cache, builder, executable) == RenderPlain(s, builder, executable);
  };
  CHECK(same("/usr/sbin/nginx"));
  CHECK(same("/usr/sbin/nginx"));
  CHECK(cache.misses() == 1);
  CHECK(cache.hits() == 1);
  // Each input changes the text; the slot must not serve the old one.
  CHECK(same("/usr/local/bin/other"));  // the executable
  s.conn.comm = "renamed";
  CHECK(same("/usr/local/bin/other"));
  s.conn.role = http::Role::kClient;
  CHECK(same("/usr/local/bin/other"));
  s.conn.role = http::Role::kUnknown;
  CHECK(same("/usr/local/bin/other"));
  s.conn.remote.port = 1;
  CHECK(same("/usr/local/bin/other"));
  s.conn.local.text = "192.0.2.1";
  CHECK(same("/usr/local/bin/other"));
  s.conn.origin = conn::Origin::kConnect;
  CHECK(same("/usr/local/bin/other"));
  s.conn.key.gen += 1;  // a new connection on the same fd
  CHECK(same("/usr/local/bin/other"));
  s.conn.container_id = std::string(64, 'c');
  CHECK(same("/usr/local/bin/other"));
  CHECK(cache.misses() == 10);
  CHECK(cache.hits() == 1);
  // Another builder with another host name, same cache.
  RecordOptions renamed = options;
  renamed.host_name = "elsewhere";
  const RecordBuilder other(renamed);
  CHECK(RenderCached(s, cache, other, "/usr/local/bin/other") ==
        RenderPlain(s, other, "/usr/local/bin/other"));
  CHECK(cache.misses() == 11);
}

TEST_CASE("Connections that share a cache slot each get their own text") {
  // Far more connections than slots, interleaved: slots are taken over again
  // and again, and every record is still exactly the uncached one.
  RecordCache cache;
  const samples::Sample base = samples::ServerGetWithQuery();
  const RecordBuilder builder(base.options);
  const int conns = static_cast<int>(RecordCache::kSlots) * 3;
  for (int round = 0; round < 3; ++round) {
    for (int c = 0; c < conns; ++c) {
      samples::Sample s = base;
      // Half the keys differ only in the pid, half only in gen: such keys
      // meet in slots, and only the whole key tells them apart.
      const bool by_pid = c < conns / 2;
      s.conn.key.tgid = 7000 + static_cast<uint32_t>(by_pid ? c : 0);
      s.conn.key.fd = by_pid ? 100 : 101;
      s.conn.key.gen = 5000 + static_cast<uint64_t>(by_pid ? 0 : c);
      s.exchange.seq = static_cast<uint64_t>(round);
      CAPTURE(round, c);
      REQUIRE(RenderCached(s, cache, builder, base.executable) ==
              RenderPlain(s, builder, base.executable));
    }
  }
  CHECK(cache.hits() + cache.misses() == 3 * static_cast<uint64_t>(conns));
}

}  // namespace
}  // namespace httptraced::record
