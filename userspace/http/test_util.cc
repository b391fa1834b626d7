#include "http/test_util.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>

namespace httptraced::http::testing {
namespace {

void AppendEscaped(std::string* out, std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '"') {
      out->append("\\\"");
    } else if (c == '\r') {
      out->append("\\r");
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '\t') {
      out->append("\\t");
    } else if (u < 0x20 || u >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", u);
      out->append(buf);
    } else {
      out->push_back(c);
    }
  }
}

std::string Quote(std::string_view s) {
  std::string out = "\"";
  AppendEscaped(&out, s);
  out.push_back('"');
  return out;
}

std::string MetaString(const ChunkMeta& m) {
  return std::to_string(m.ts_ns) + "/" + std::to_string(m.tid);
}

bool IsFinal(const Message& m) {
  return m.kind == Message::Kind::kResponse && (m.status_code >= 200 || m.status_code == 101);
}

class DriverLookup : public RequestLookup {
 public:
  explicit DriverLookup(std::vector<std::string> methods) : methods_(std::move(methods)) {}
  std::string_view RequestMethodFor(const Message& /*response*/, size_t skip) const override {
    const size_t i = consumed_ + skip;
    return i < methods_.size() ? std::string_view(methods_[i]) : std::string_view();
  }
  void Advance(const std::vector<Message>& all, size_t from) {
    for (size_t i = from; i < all.size(); ++i) {
      if (IsFinal(all[i])) ++consumed_;
    }
  }

 private:
  std::vector<std::string> methods_;
  size_t consumed_ = 0;
};

}  // namespace

std::string RequestBytes(std::string_view method, std::string_view target,
                         const HeaderList& headers, std::string_view body) {
  std::string out;
  out.append(method).append(" ").append(target).append(" HTTP/1.1\r\n");
  for (const auto& [name, value] : headers)
    out.append(name).append(": ").append(value).append("\r\n");
  out.append("\r\n").append(body);
  return out;
}

std::string ResponseBytes(int status, std::string_view reason, const HeaderList& headers,
                          std::string_view body) {
  std::string out = "HTTP/1.1 " + std::to_string(status);
  out.append(" ").append(reason).append("\r\n");
  for (const auto& [name, value] : headers)
    out.append(name).append(": ").append(value).append("\r\n");
  out.append("\r\n").append(body);
  return out;
}

std::string Chunked(const std::vector<std::string>& chunks) {
  std::string out;
  for (const std::string& c : chunks) {
    char size[32];
    std::snprintf(size, sizeof(size), "%zx\r\n", c.size());
    out.append(size).append(c).append("\r\n");
  }
  out.append("0\r\n\r\n");
  return out;
}

Message Request(std::string_view method, std::string_view target, const HeaderList& headers,
                std::string_view body) {
  Message m;
  m.kind = Message::Kind::kRequest;
  m.method = std::string(method);
  m.target = std::string(target);
  for (const auto& [name, value] : headers) m.headers.push_back(Header{name, value});
  m.body.content = std::string(body);
  m.body.size = body.size();
  return m;
}

Message Response(int status, std::string_view reason, const HeaderList& headers,
                 std::string_view body) {
  Message m;
  m.kind = Message::Kind::kResponse;
  m.status_code = status;
  m.reason = std::string(reason);
  for (const auto& [name, value] : headers) m.headers.push_back(Header{name, value});
  m.body.content = std::string(body);
  m.body.size = body.size();
  return m;
}

std::string Dump(const Message& m, bool with_meta) {
  std::string out;
  if (m.kind == Message::Kind::kRequest) {
    out += "request " + Quote(m.method) + " " + Quote(m.target);
  } else {
    out += "response " + std::to_string(m.status_code) + " " + Quote(m.reason);
  }
  out += " HTTP/1." + std::to_string(m.version_minor);
  out += " complete=" + std::to_string(m.complete);
  out += " gap_before=" + std::to_string(m.gap_before);
  out += " headers_truncated=" + std::to_string(m.headers_truncated);
  out += " chunked=" + std::to_string(m.chunked) + "\n";
  for (const Header& h : m.headers)
    out += "  header " + Quote(h.name) + ": " + Quote(h.value) + "\n";
  for (const Header& h : m.trailers)
    out += "  trailer " + Quote(h.name) + ": " + Quote(h.value) + "\n";
  out += "  body size=" + std::to_string(m.body.size) +
         " truncated=" + std::to_string(m.body.truncated) + " gap=" + std::to_string(m.body.gap) +
         " framing_lost=" + std::to_string(m.body.framing_lost) +
         " content=" + Quote(m.body.content) + "\n";
  if (with_meta) out += "  first=" + MetaString(m.first) + " last=" + MetaString(m.last) + "\n";
  return out;
}

std::string DumpAll(const std::vector<Message>& ms, bool with_meta) {
  std::string out = std::to_string(ms.size()) + " message(s)\n";
  for (const Message& m : ms) out += Dump(m, with_meta);
  return out;
}

std::string Dump(const Exchange& e, bool with_meta) {
  std::string out = "exchange seq=" + std::to_string(e.seq) +
                    " interim=" + std::to_string(e.interim_responses) +
                    " incomplete=" + std::to_string(e.incomplete) + "\n";
  out += e.request ? " " + Dump(*e.request, with_meta) : " no request\n";
  out += e.response ? " " + Dump(*e.response, with_meta) : " no response\n";
  return out;
}

std::string DumpAll(const std::vector<Exchange>& es, bool with_meta) {
  std::string out = std::to_string(es.size()) + " exchange(s)\n";
  for (const Exchange& e : es) out += Dump(e, with_meta);
  return out;
}

std::string Dump(const ParserStats& s) {
  return "messages=" + std::to_string(s.messages) +
         " parse_errors=" + std::to_string(s.parse_errors) +
         " bytes_skipped=" + std::to_string(s.bytes_skipped);
}

Step Bytes(std::string bytes, ChunkMeta meta) {
  Step s;
  s.bytes = std::move(bytes);
  s.meta = meta;
  return s;
}

Step Gap(uint64_t len, ChunkMeta meta) {
  Step s;
  s.gap = len;
  s.meta = meta;
  return s;
}

ParseResult ParseStepsSplit(const std::vector<Step>& steps, const ParseSetup& setup,
                            const std::vector<size_t>& cuts) {
  DriverLookup lookup(setup.request_methods);
  MessageParser parser(setup.mode, setup.options,
                       setup.request_methods.empty() ? nullptr : &lookup);
  if (setup.mid_stream) parser.StartMidStream();
  ParseResult result;
  size_t offset = 0;  // of the step's first byte in the concatenated bytes
  auto cut = cuts.begin();
  for (const Step& step : steps) {
    if (step.gap > 0) {
      const size_t before = result.messages.size();
      parser.FeedGap(step.gap, step.meta, &result.messages);
      lookup.Advance(result.messages, before);
      continue;
    }
    size_t from = 0;
    while (true) {
      while (cut != cuts.end() && *cut <= offset + from) ++cut;
      const size_t to = (cut != cuts.end() && *cut < offset + step.bytes.size())
                            ? *cut - offset
                            : step.bytes.size();
      const size_t before = result.messages.size();
      parser.Feed(std::string_view(step.bytes).substr(from, to - from), step.meta,
                  &result.messages);
      lookup.Advance(result.messages, before);
      from = to;
      if (from >= step.bytes.size()) break;
    }
    offset += step.bytes.size();
  }
  result.in_body_to_close = parser.UnkeptBodyAhead().len == MessageParser::kToTheClose;
  if (setup.finish) parser.Finish(&result.messages);
  result.stats = parser.stats();
  result.switched = parser.switched_protocols();
  return result;
}

ParseResult ParseSteps(const std::vector<Step>& steps, const ParseSetup& setup) {
  return ParseStepsSplit(steps, setup, {});
}

ParseResult ParseEverySplit(const std::vector<Step>& steps, const ParseSetup& setup) {
  const ParseResult want = ParseSteps(steps, setup);
  const std::string want_dump = DumpAll(want.messages, true) + Dump(want.stats) +
                                " switched=" + std::to_string(want.switched);
  size_t total = 0;
  for (const Step& s : steps) total += s.bytes.size();

  bool failed = false;
  auto check = [&](const std::vector<size_t>& cuts, const std::string& how) {
    if (failed) return;
    const ParseResult got = ParseStepsSplit(steps, setup, cuts);
    const std::string got_dump =
        DumpAll(got.messages, true) + Dump(got.stats) + " switched=" + std::to_string(got.switched);
    if (got_dump != want_dump) {
      failed = true;
      INFO("input split " << how);
      CHECK(got_dump == want_dump);
    }
  };
  for (size_t i = 1; i < total; ++i) check({i}, "at " + std::to_string(i));
  if (total <= 48) {
    for (size_t i = 1; i < total; ++i) {
      for (size_t j = i + 1; j < total; ++j) {
        check({i, j}, "at " + std::to_string(i) + " and " + std::to_string(j));
      }
    }
  }
  std::vector<size_t> every(total > 0 ? total - 1 : 0);
  for (size_t i = 0; i < every.size(); ++i) every[i] = i + 1;
  check(every, "byte by byte");
  return want;
}

ParseResult ParseEverySplit(std::string_view input, const ParseSetup& setup) {
  return ParseEverySplit(std::vector<Step>{Bytes(std::string(input))}, setup);
}

}  // namespace httptraced::http::testing
