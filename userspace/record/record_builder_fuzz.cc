// Fuzz target: whatever bytes reach the method, target, headers, bodies and
// comm, the record is one line of valid JSON (ill-formed UTF-8 included). And
// the writer's string escaping (sixteen bytes a step, in 4 KiB slices) gives
// the same bytes as AppendJsonString's separate plain-run path, for the whole
// input as one string, and (flags bit 7) repeated past a slice.
//
// Input: one flags byte, then fields separated by '\0': method, target, then
// header name/value pairs, the last field being the body. Flags: bit 0 role
// client, bit 1 IPv6, bit 2 capture off, bit 3 no response, bit 4 no request,
// bit 5 response body truncated, bit 6 trailers from the headers, bit 7 the
// string check on the input repeated past 4 KiB.
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "record/json_writer.h"
#include "record/record_builder.h"

namespace {

void CheckStringsAgree(std::string_view raw) {
  using namespace httptraced::record;
  std::string expected;
  AppendJsonString(raw, expected);  // quotes included
  OutBuffer out;
  {
    JsonWriter w(out, /*size_hint=*/8);
    w.String(raw);
  }
  if (out.view() != expected) std::abort();
  OutBuffer strict;
  bool valid = false;
  {
    JsonWriter w(strict, /*size_hint=*/8);
    valid = w.StringIfValidUtf8(raw);
  }
  if (valid != IsValidUtf8(raw)) std::abort();
  if (strict.view() != (valid ? std::string_view(expected) : std::string_view())) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace httptraced;
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::vector<std::string_view> fields;
  size_t start = 0;
  for (size_t i = 0; i <= input.size(); ++i) {
    if (i == input.size() || input[i] == '\0') {
      fields.push_back(input.substr(start, i - start));
      start = i + 1;
    }
  }
  auto field = [&fields](size_t i) {
    return i < fields.size() ? std::string(fields[i]) : std::string();
  };

  http::Message request;
  request.method = field(0);
  request.target = field(1);
  for (size_t i = 2; i + 1 < fields.size(); i += 2) {
    request.headers.push_back({field(i), field(i + 1)});
  }
  request.body.content = fields.size() > 2 ? field(fields.size() - 1) : std::string();
  request.body.size = request.body.content.size();
  request.first = {1000, 1};
  request.last = {2000, 1};

  http::Message response;
  response.kind = http::Message::Kind::kResponse;
  response.status_code = 100 + (flags * 7) % 500;
  response.headers = request.headers;
  if (flags & 0x40) response.trailers = request.headers;
  response.body = request.body;
  response.body.truncated = (flags & 0x20) != 0;
  response.first = {3000, 2};
  response.last = {4000, 2};

  http::Exchange exchange;
  if (!(flags & 0x10)) exchange.request = request;
  if (!(flags & 0x08)) exchange.response = response;

  conn::ConnInfo conn;
  conn.key = {1, 2, 3};
  conn.family = (flags & 0x02) ? AF_INET6 : AF_INET;
  conn.role = (flags & 0x01) ? http::Role::kClient : http::Role::kServer;
  conn.comm = request.method;
  for (size_t i = 0; i < 16; ++i) conn.remote.addr[i] = static_cast<uint8_t>(size + i);

  record::RecordOptions options;
  options.capture_bodies = (flags & 0x04) == 0;
  options.host_name = request.target;
  options.redact_headers.push_back(field(2));
  const record::RecordBuilder builder(options);
  record::OutBuffer buffer;
  builder.Append(conn, exchange, record::ProcessDetails{request.target}, record::ClockOffset{5},
                 buffer);
  const std::string_view out = buffer.view();

  if (out.empty() || out.back() != '\n' || out.find('\n') != out.size() - 1) std::abort();
  if (!nlohmann::json::accept(out)) std::abort();

  // Through the per-connection cache: the same bytes when the slot is filled
  // and when it serves the record.
  record::RecordCache cache;
  for (int i = 0; i < 2; ++i) {
    record::OutBuffer cached;
    builder.Append(conn, exchange, record::ProcessDetails{request.target},
                   record::ClockOffset{5}, cached, &cache);
    if (cached.view() != out) std::abort();
  }
  if (cache.hits() != 1) std::abort();

  CheckStringsAgree(input);
  if ((flags & 0x80) && !input.empty() && input.size() < 4096) {
    std::string longer;
    while (longer.size() < 4096 + 64) longer.append(input);
    CheckStringsAgree(longer);
  }
  return 0;
}
