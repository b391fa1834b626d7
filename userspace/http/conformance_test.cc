// Conformance against llhttp's own request/response test vectors
// (tests/conformance/llhttp-vectors.json; the README beside it gives the format).
//
// For every vector, parsed by a parser of the vector's type (request/response):
//  - every message llhttp completes, we complete too, in the same order, with the
//    same method, URL, version, status, reason, header fields and de-chunked body
//    (header names compare case-insensitively; our trailers are appended to our
//    headers, as llhttp reports trailers as headers);
//  - on a vector without error we complete nothing else before the end of the
//    stream, and at the end of the stream every message llhttp saw started is
//    there (open ones completed by close or cut short) with its start line;
//  - on an error vector we may be more lenient after the error, but the parser
//    stays healthy: after a gap, a well-formed message still parses exactly;
//  - the results are identical however the input is split into chunks.
//
// One normalisation: llhttp keeps trailing whitespace in header values; RFC 9110
// 5.5 excludes it from the field value and Header::value is defined trimmed, so
// expected values are trimmed of SP/HTAB before comparing.
//
// The vector file has converter defects (reported to its owner). They are
// repaired here where the repair is mechanical, and the repaired vector is then
// held to the same exact comparison; see RestoreLostCrlf and kDataDefects.
// Vectors where our parser deliberately differs from llhttp are listed, with the
// reason, in kDeliberateDifferences; the test fails if one of them stops differing.
#include <absl/strings/escaping.h>
#include <absl/strings/match.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "http/parser.h"
#include "http/test_util.h"

namespace httptraced::http {
namespace {

using testing::Bytes;
using testing::Gap;
using testing::ParseSetup;

// --- Known differences ----------------------------------------------------------

// Vectors where llhttp and this parser disagree on purpose.
const std::map<std::string_view, std::string_view> kDeliberateDifferences = {
    {"request/method.md: SOURCE request with ICE",
     "ICE/1.0 is Icecast, not HTTP: llhttp parses it for Node; a HTTP/1.x tracer must not "
     "report it as HTTP (Message has no protocol field to tell them apart)"},
    {"request/method.md: OPTIONS request with RTSP", "RTSP/1.0 is not HTTP (same reason as ICE)"},
    {"request/method.md: ANNOUNCE request with RTSP", "RTSP/1.0 is not HTTP (same reason as ICE)"},
    {"response/sample.md: RTSP response", "RTSP/1.1 is not HTTP (same reason as ICE)"},
    {"response/sample.md: ICE response", "ICE/1.1 is not HTTP (same reason as ICE)"},
    {"response/sample.md: HTTP version 0.9",
     "only HTTP/1.x is parsed: HTTP/0.9 responses have no status line, so `HTTP/0.9 200 OK` "
     "is no message of any HTTP version"},
    {"request/sample.md: No HTTP version",
     "HTTP/0.9 simple request (`GET /` without version): extinct, has no headers or status, "
     "Message cannot represent version 0.9, and accepting version-less lines as requests "
     "would make resynchronisation after lost bytes far more prone to false starts"},
};

// Defects of the vector file itself (its converter), not of llhttp or of us.
enum class DefectKind {
  // The raw bytes run into the following markdown sections (the converter lost
  // track of a ``` fence after a "_Note the trailing CRLF above_" remark) and the
  // messages belong to another vector: nothing to compare.
  kSpliced,
  // Expected strings were decoded twice: the raw byte 0xFC appears as "Ã¼" (the
  // UTF-8 of U+00C3 U+00BC). Repaired by undoing one UTF-8 round.
  kDoubleEncoded,
  // The expected URL lost the backslashes that are in the raw bytes (llhttp's
  // log gives span[url] len=33 = `/with_"lovely"_quotes?foo=\"bar\"`).
  kUrlUnescaped,
};

struct Defect {
  DefectKind kind;
  std::string_view fixed_url;  // kUrlUnescaped
};

const std::map<std::string_view, Defect> kDataDefects = {
    {"request/connection.md: CRLF between requests, implicit `keep-alive`",
     {DefectKind::kSpliced, ""}},
    {"request/connection.md: CRLF between requests, explicit `close`", {DefectKind::kSpliced, ""}},
    {"response/sample.md: Google 301", {DefectKind::kSpliced, ""}},
    {"request/sample.md: Extended Characters", {DefectKind::kDoubleEncoded, ""}},
    {"request/sample.md: 255 ASCII in header value", {DefectKind::kDoubleEncoded, ""}},
    {"response/sample.md: Non ASCII in status line", {DefectKind::kDoubleEncoded, ""}},
    {"request/uri.md: Quotes in URI",
     {DefectKind::kUrlUnescaped, R"(/with_"lovely"_quotes?foo=\"bar\")"}},
};

// The converter dropped the last CRLF of every input whose markdown block ends
// with blank lines: llhttp's md-test removes one "\n" from a block value that
// still has its final newline, the converter removed one from a value without it.
// E.g. "Setting flag": llhttp logs `off=45 headers complete`, but the raw bytes
// are 43 long. An input ending in exactly one CRLF therefore lost another one.
// (Inert on a corrected file, whose such inputs end in CRLF CRLF.)
std::string RestoreLostCrlf(std::string raw) {
  if (absl::EndsWith(raw, "\r\n") && !absl::EndsWith(raw, "\r\n\r\n")) raw += "\r\n";
  return raw;
}

// --- Loading --------------------------------------------------------------------

struct Expected {
  std::string method;
  std::string url;
  std::string version;
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool complete = false;
};

struct Vector {
  std::string name;
  bool request = true;
  std::string raw;
  bool error = false;
  std::vector<Expected> messages;
};

std::string Unbase64(const std::string& b64) {
  std::string out;
  REQUIRE(absl::Base64Unescape(b64, &out));
  return out;
}

std::vector<Vector> LoadVectors() {
  std::ifstream in(HTTPTRACED_SOURCE_DIR "/tests/conformance/llhttp-vectors.json",
                   std::ios::binary);
  REQUIRE(in.good());
  const nlohmann::json doc = nlohmann::json::parse(in);
  std::vector<Vector> vectors;
  for (const auto& v : doc.at("vectors")) {
    Vector vec;
    vec.name = v.at("name").get<std::string>();
    vec.request = v.at("type").get<std::string>() == "request";
    vec.raw = Unbase64(v.at("raw").get<std::string>());
    vec.error = v.at("error").get<bool>();
    for (const auto& m : v.at("messages")) {
      Expected e;
      e.method = m.at("method").get<std::string>();
      e.url = m.at("url").get<std::string>();
      e.version = m.at("version").get<std::string>();
      if (!m.at("status").is_null()) e.status = m.at("status").get<int>();
      e.reason = m.at("reason").get<std::string>();
      for (const auto& h : m.at("headers")) {
        e.headers.emplace_back(h.at(0).get<std::string>(), h.at(1).get<std::string>());
      }
      e.body = Unbase64(m.at("body").get<std::string>());
      e.complete = m.at("complete").get<bool>();
      vec.messages.push_back(std::move(e));
    }
    vectors.push_back(std::move(vec));
  }
  return vectors;
}

// UTF-8 to the bytes of its code points, if all are below 256.
std::optional<std::string> Utf8ToLatin1(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size()) {
      const unsigned cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
      if (cp > 0xFF) return std::nullopt;
      out.push_back(static_cast<char>(cp));
      i += 2;
    } else {
      return std::nullopt;
    }
  }
  return out;
}

std::string UndoDoubleEncoding(const std::string& s) {
  const std::optional<std::string> once = Utf8ToLatin1(s);
  if (!once) return s;
  const std::optional<std::string> twice = Utf8ToLatin1(*once);
  return twice ? *twice : s;
}

void Repair(const Defect& defect, Vector* v) {
  for (Expected& e : v->messages) {
    if (defect.kind == DefectKind::kDoubleEncoded) {
      e.reason = UndoDoubleEncoding(e.reason);
      for (auto& h : e.headers) h.second = UndoDoubleEncoding(h.second);
    } else if (defect.kind == DefectKind::kUrlUnescaped) {
      e.url = std::string(defect.fixed_url);
    }
  }
}

// --- Comparing ------------------------------------------------------------------

std::string TrimOws(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.erase(0, 1);
  return s;
}

std::string Lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return s;
}

std::string StartLine(const Expected& e, bool request) {
  std::ostringstream out;
  if (request) {
    out << "request " << absl::CEscape(e.method) << " " << absl::CEscape(e.url);
  } else {
    out << "response " << e.status << " \"" << absl::CEscape(e.reason) << "\"";
  }
  return out.str();
}

// Every compared field in one canonical text, so that a mismatch shows them all.
std::string Canonical(const Expected& e, bool request) {
  std::ostringstream out;
  out << StartLine(e, request) << " HTTP/" << e.version << "\n";
  for (const auto& [name, value] : e.headers) {
    out << "  " << Lower(name) << ": \"" << absl::CEscape(TrimOws(value)) << "\"\n";
  }
  out << "  body \"" << absl::CEscape(e.body) << "\"\n";
  return out.str();
}

Expected FromMessage(const Message& m) {
  Expected e;
  e.method = m.method;
  e.url = m.target;
  e.version = "1." + std::to_string(m.version_minor);
  e.status = m.status_code;
  e.reason = m.reason;
  for (const Header& h : m.headers) e.headers.emplace_back(h.name, h.value);
  for (const Header& h : m.trailers) e.headers.emplace_back(h.name, h.value);
  e.body = m.body.content;
  e.complete = m.complete;
  return e;
}

std::string Canonical(const Message& m) {
  std::string out = Canonical(FromMessage(m), m.kind == Message::Kind::kRequest);
  if (!m.complete) out += "  (cut short)\n";
  if (m.body.truncated) out += "  (body truncated)\n";
  return out;
}

ParseSetup SetupFor(const Vector& v, bool finish) {
  ParseSetup setup;
  setup.mode = v.request ? ParseMode::kRequest : ParseMode::kResponse;
  setup.finish = finish;
  setup.options.max_body_bytes = 1 << 20;  // compare whole bodies
  return setup;
}

// Whether our messages (before the end of the stream) match what llhttp completed.
bool MatchesLlhttp(const Vector& v, std::string* detail) {
  const testing::ParseResult got = testing::ParseEverySplit(v.raw, SetupFor(v, false));
  std::vector<const Expected*> want;
  for (const Expected& e : v.messages) {
    if (e.complete) want.push_back(&e);
  }
  bool match =
      got.messages.size() >= want.size() && (v.error || got.messages.size() == want.size());
  std::ostringstream out;
  out << "llhttp completed " << want.size() << " message(s), we emitted " << got.messages.size()
      << "\n";
  for (size_t i = 0; i < std::max(want.size(), got.messages.size()); ++i) {
    const std::string w = i < want.size() ? Canonical(*want[i], v.request) : "(none)\n";
    const std::string g = i < got.messages.size() ? Canonical(got.messages[i]) : "(none)\n";
    if (i < want.size() && w != g) match = false;
    out << "#" << i << " llhttp: " << w << "#" << i << " ours:   " << g;
  }
  *detail = out.str();
  return match;
}

// What llhttp reported of a message it had not completed: the start-line
// fields it got to (a status of null means it never reported one).
std::string PartialStartLine(const Expected& e, bool request) {
  std::ostringstream out;
  if (request) {
    out << "request " << absl::CEscape(e.method) << " " << absl::CEscape(e.url);
  } else if (e.status != 0) {
    out << "response " << e.status << " \"" << absl::CEscape(e.reason) << "\"";
  } else {
    out << "response";
  }
  return out.str();
}

// At the end of the stream (vectors without error): one message for each
// message llhttp started, the open ones with the start line llhttp reported.
bool MatchesAtClose(const Vector& v, std::string* detail) {
  const testing::ParseResult got = testing::ParseSteps({Bytes(v.raw)}, SetupFor(v, true));
  std::ostringstream out;
  out << "at close: llhttp started " << v.messages.size() << " message(s), we have "
      << got.messages.size() << "\n";
  bool match = got.messages.size() == v.messages.size();
  for (size_t i = 0; match && i < v.messages.size(); ++i) {
    const Expected& want = v.messages[i];
    if (want.complete) continue;  // compared in full before the close
    Expected ours = FromMessage(got.messages[i]);
    if (want.status == 0) ours.status = 0;  // not reported by llhttp
    const std::string w = PartialStartLine(want, v.request);
    const std::string g = PartialStartLine(ours, v.request);
    out << "#" << i << " llhttp: " << w << "\n#" << i << " ours:   " << g << "\n";
    match = w == g;
  }
  *detail += out.str();
  return match;
}

// After whatever the vector left behind and a gap, a message parses exactly;
// except inside a body delimited by the close, which takes every byte up to
// the close: there the gap and the probe are counted in that body.
void CheckStaysHealthy(const Vector& v) {
  const std::string probe =
      v.request ? testing::RequestBytes("GET", "/probe", {{"Host", "p"}})
                : testing::ResponseBytes(200, "OK", {{"Content-Length", "5"}}, "probe");
  Message want = v.request ? testing::Request("GET", "/probe", {{"Host", "p"}})
                           : testing::Response(200, "OK", {{"Content-Length", "5"}}, "probe");
  want.gap_before = true;
  const testing::ParseResult got =
      testing::ParseEverySplit({Bytes(v.raw), Gap(1 << 20), Bytes(probe)}, SetupFor(v, false));
  if (got.switched) return;  // after 101 / CONNECT nothing is HTTP any more
  const testing::ParseResult alone = testing::ParseSteps({Bytes(v.raw)}, SetupFor(v, true));
  if (alone.in_body_to_close) {
    REQUIRE(got.in_body_to_close);
    const testing::ParseResult closed =
        testing::ParseSteps({Bytes(v.raw), Gap(1 << 20), Bytes(probe)}, SetupFor(v, true));
    REQUIRE(closed.messages.size() == alone.messages.size());
    REQUIRE_FALSE(closed.messages.empty());
    CHECK(closed.messages.back().body.size ==
          alone.messages.back().body.size + (1 << 20) + probe.size());
    CHECK(closed.messages.back().complete);
    return;
  }
  REQUIRE_FALSE(got.messages.empty());
  CHECK(testing::Dump(got.messages.back()) == testing::Dump(want));
}

TEST_CASE("llhttp conformance vectors", "[conformance]") {
  std::vector<Vector> vectors = LoadVectors();
  REQUIRE(vectors.size() == 180);
  size_t passed = 0;
  size_t messages = 0;
  size_t crlf_restored = 0;
  size_t repaired = 0;
  size_t spliced = 0;
  size_t deliberate = 0;
  for (Vector& v : vectors) {
    INFO("vector: " << v.name << (v.error ? " [error]" : ""));
    const std::string restored = RestoreLostCrlf(v.raw);
    if (restored != v.raw) ++crlf_restored;
    v.raw = restored;
    if (const auto defect = kDataDefects.find(v.name); defect != kDataDefects.end()) {
      if (defect->second.kind == DefectKind::kSpliced) {
        CHECK(absl::StrContains(v.raw, "```"));  // the evidence that it is spliced
        ++spliced;
        continue;
      }
      Repair(defect->second, &v);
      ++repaired;
    }
    std::string detail;
    bool match = MatchesLlhttp(v, &detail);
    if (match && !v.error) match = MatchesAtClose(v, &detail);
    INFO("raw: " << absl::CEscape(v.raw) << "\n" << detail);
    if (kDeliberateDifferences.count(v.name) != 0) {
      CHECK_FALSE(match);  // else the entry is stale: remove it
      ++deliberate;
      continue;
    }
    CHECK(match);
    if (!match) continue;
    ++passed;
    for (const Expected& e : v.messages) messages += e.complete ? 1 : 0;
    CheckStaysHealthy(v);
  }
  CHECK(spliced + deliberate + passed == vectors.size());
  WARN(passed << "/" << vectors.size() << " vectors and " << messages
              << " llhttp-completed messages match exactly; " << crlf_restored
              << " inputs had their lost final CRLF restored, " << repaired
              << " vectors had expected strings repaired, " << spliced
              << " spliced vectors skipped, " << deliberate << " deliberate differences");
}

}  // namespace
}  // namespace httptraced::http
