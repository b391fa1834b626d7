#include "http/parser.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "http/test_util.h"

namespace httptraced::http {
namespace {

using testing::Bytes;
using testing::Chunked;
using testing::Dump;
using testing::DumpAll;
using testing::Gap;
using testing::ParseEverySplit;
using testing::ParseResult;
using testing::ParseSetup;
using testing::Request;
using testing::RequestBytes;
using testing::Response;
using testing::ResponseBytes;

ParseSetup Requests() {
  ParseSetup s;
  s.mode = ParseMode::kRequest;
  return s;
}

ParseSetup Responses(std::vector<std::string> request_methods = {}) {
  ParseSetup s;
  s.mode = ParseMode::kResponse;
  s.request_methods = std::move(request_methods);
  return s;
}

// A chunked message whose body lost bytes: its first bytes kept, `size`
// counted, and how it ended.
enum class Ending { kWhole, kFramingLost, kCut };
Message GappyChunked(Message m, uint64_t size, Ending ending) {
  m.chunked = true;
  m.complete = ending != Ending::kCut;
  m.body.size = size;
  m.body.gap = true;
  m.body.truncated = true;
  m.body.framing_lost = ending == Ending::kFramingLost;
  return m;
}

ParserStats Stats(uint64_t messages, uint64_t parse_errors, uint64_t bytes_skipped) {
  ParserStats s;
  s.messages = messages;
  s.parse_errors = parse_errors;
  s.bytes_skipped = bytes_skipped;
  return s;
}

// --- Start lines and headers --------------------------------------------------

TEST_CASE("request line and headers: trimmed, ordered, repeated names kept", "[parser]") {
  const ParseResult r = ParseEverySplit(
      "GET /index.html?q=1 HTTP/1.1\r\n"
      "Host: example.com\r\n"
      "Accept: \t */* \t\r\n"
      "X-Dup: one\r\n"
      "x-dup: two\r\n"
      "Empty:\r\n"
      "\r\n",
      Requests());
  const Message want = Request("GET", "/index.html?q=1",
                               {{"Host", "example.com"},
                                {"Accept", "*/*"},
                                {"X-Dup", "one"},
                                {"x-dup", "two"},
                                {"Empty", ""}});
  CHECK(DumpAll(r.messages) == DumpAll({want}));
  CHECK(Dump(r.stats) == Dump(Stats(1, 0, 0)));
  REQUIRE(r.messages.size() == 1);
  const std::string* host = FindHeader(r.messages[0].headers, "HOST");
  REQUIRE(host != nullptr);
  CHECK(*host == "example.com");
  const std::string* dup = FindHeader(r.messages[0].headers, "X-DUP");
  REQUIRE(dup != nullptr);
  CHECK(*dup == "one");
  CHECK(FindHeader(r.messages[0].headers, "Missing") == nullptr);
}

TEST_CASE("HTTP/1.0 and HTTP/1.1 versions", "[parser]") {
  const ParseResult req = ParseEverySplit("GET / HTTP/1.0\r\n\r\n", Requests());
  Message want = Request("GET", "/");
  want.version_minor = 0;
  CHECK(DumpAll(req.messages) == DumpAll({want}));

  const ParseResult resp =
      ParseEverySplit("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", Responses());
  Message want_resp = Response(200, "OK", {{"Content-Length", "2"}}, "hi");
  want_resp.version_minor = 0;
  CHECK(DumpAll(resp.messages) == DumpAll({want_resp}));
}

TEST_CASE("status lines: reason as sent, possibly empty or missing", "[parser]") {
  const ParseResult r = ParseEverySplit(
      "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"
      "HTTP/1.1 204\r\n\r\n"
      "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
      "HTTP/1.1 200  OK \r\nContent-Length: 0\r\n\r\n"
      "HTTP/1.1 599 \xc3\x9cnusual\r\nContent-Length: 0\r\n\r\n",
      Responses());
  CHECK(DumpAll(r.messages) ==
        DumpAll({Response(200, "", {{"Content-Length", "0"}}), Response(204, ""),
                 Response(404, "Not Found", {{"Content-Length", "0"}}),
                 Response(200, " OK ", {{"Content-Length", "0"}}),
                 Response(599, "\xc3\x9cnusual", {{"Content-Length", "0"}})}));
  CHECK(Dump(r.stats) == Dump(Stats(5, 0, 0)));
}

TEST_CASE("custom methods, absolute and authority targets, UTF-8 targets", "[parser]") {
  const ParseResult r = ParseEverySplit(
      "PURGEALL /cache HTTP/1.1\r\n\r\n"
      "GET http://example.com:8080/a?b#c HTTP/1.1\r\n\r\n"
      "OPTIONS * HTTP/1.1\r\n\r\n"
      "GET /\xce\xb4\xc2\xb6 HTTP/1.1\r\n\r\n",
      Requests());
  CHECK(DumpAll(r.messages) ==
        DumpAll({Request("PURGEALL", "/cache"), Request("GET", "http://example.com:8080/a?b#c"),
                 Request("OPTIONS", "*"), Request("GET", "/\xce\xb4\xc2\xb6")}));
  CHECK(Dump(r.stats) == Dump(Stats(4, 0, 0)));
}

TEST_CASE("blank lines between messages are not errors, bare LF line ends accepted", "[parser]") {
  const ParseResult r = ParseEverySplit(
      "\r\n\r\nGET /a HTTP/1.1\r\n\r\n\r\n"
      "\nGET /lf HTTP/1.1\nHost: h\n\n"
      "POST /c HTTP/1.1\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n",
      Requests());
  Message chunked = Request("POST", "/c", {{"Transfer-Encoding", "chunked"}}, "abc");
  chunked.chunked = true;
  CHECK(DumpAll(r.messages) ==
        DumpAll({Request("GET", "/a"), Request("GET", "/lf", {{"Host", "h"}}), chunked}));
  CHECK(Dump(r.stats) == Dump(Stats(3, 0, 0)));
}

TEST_CASE("obs-fold continues the previous value, joined by one space", "[parser]") {
  const ParseResult r = ParseEverySplit(
      "GET / HTTP/1.1\r\nX-Long: first \r\n   second\r\n\tthird\r\nHost: h\r\n\r\n", Requests());
  CHECK(DumpAll(r.messages) ==
        DumpAll({Request("GET", "/", {{"X-Long", "first second third"}, {"Host", "h"}})}));
}

TEST_CASE("malformed heads: message reported cut short, parser resynchronises", "[parser]") {
  const std::string bad_line = GENERATE(as<std::string>{}, "no colon here", "Fo@: x", "Host : x",
                                        "A: b\rc", " folded first");
  INFO(bad_line);
  const std::string first = bad_line == " folded first" ? "" : "Host: x\r\n";
  const ParseResult r = ParseEverySplit(
      "GET /a HTTP/1.1\r\n" + first + bad_line + "\r\n\r\nGET /b HTTP/1.1\r\n\r\n", Requests());
  Message cut = Request("GET", "/a");
  if (!first.empty()) cut.headers.push_back(Header{"Host", "x"});
  cut.complete = false;
  Message next = Request("GET", "/b");
  next.gap_before = true;
  CHECK(DumpAll(r.messages) == DumpAll({cut, next}));
  CHECK(Dump(r.stats) == Dump(Stats(2, 1, 0)));
}

TEST_CASE("a CR or NUL is found at any position of a field value", "[parser]") {
  // Field values are scanned 16 bytes at a time for LF, CR and NUL, then byte
  // by byte: each value length up to two blocks and a tail, with the line end
  // (CRLF or bare LF) or a stray CR or NUL at each offset.
  for (size_t len = 0; len <= 40; ++len) {
    const std::string value(len, 'v');
    for (const std::string eol : {"\r\n", "\n"}) {
      CAPTURE(len, eol);
      const ParseResult ok = ParseSteps(
          {Bytes("GET /a HTTP/1.1" + eol + "X-V:" + value + " \t" + eol + "Host: h" + eol + eol)},
          Requests());
      CHECK(DumpAll(ok.messages) ==
            DumpAll({Request("GET", "/a", {{"X-V", value}, {"Host", "h"}})}));
    }
    for (size_t at = 0; at < len; ++at) {
      for (const char bad : {'\r', '\0'}) {
        std::string broken = value;
        broken[at] = bad;
        CAPTURE(len, at, static_cast<int>(bad));
        const ParseResult r = ParseSteps(
            {Bytes("GET /a HTTP/1.1\r\nHost: x\r\nX-V: " + broken + "\r\n\r\nGET /b HTTP/1.1\r\n\r\n")},
            Requests());
        Message cut = Request("GET", "/a", {{"Host", "x"}});
        cut.complete = false;
        Message next = Request("GET", "/b");
        next.gap_before = true;
        REQUIRE(DumpAll(r.messages) == DumpAll({cut, next}));
        REQUIRE(Dump(r.stats) == Dump(Stats(2, 1, 0)));
      }
    }
  }
}

TEST_CASE("a response is garbage to a request parser and the reverse", "[parser]") {
  const ParseResult r =
      ParseEverySplit("HTTP/1.1 200 OK\r\n\r\nGET / HTTP/1.1\r\n\r\n", Requests());
  Message want = Request("GET", "/");
  want.gap_before = true;
  CHECK(DumpAll(r.messages) == DumpAll({want}));
  CHECK(Dump(r.stats) == Dump(Stats(1, 1, 19)));

  const ParseResult r2 =
      ParseEverySplit("GET / HTTP/1.1\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", Responses());
  Message want2 = Response(200, "OK");
  want2.gap_before = true;
  want2.complete = true;  // body delimited by close, completed by Finish
  CHECK(DumpAll(r2.messages) == DumpAll({want2}));
  CHECK(Dump(r2.stats) == Dump(Stats(1, 1, 18)));
}

TEST_CASE("both mode takes the kind of each message from its start line", "[parser]") {
  ParseSetup setup;
  setup.mode = ParseMode::kBoth;
  const ParseResult r = ParseEverySplit(
      "GET / HTTP/1.1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxPUT /p HTTP/1.1\r\n\r\n",
      setup);
  CHECK(DumpAll(r.messages) ==
        DumpAll({Request("GET", "/"), Response(200, "OK", {{"Content-Length", "1"}}, "x"),
                 Request("PUT", "/p")}));
  CHECK(Dump(r.stats) == Dump(Stats(3, 0, 0)));
}

// --- Bodies -------------------------------------------------------------------

TEST_CASE("Content-Length bodies and pipelined requests", "[parser]") {
  const ParseResult r = ParseEverySplit(
      "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
      "GET /b HTTP/1.1\r\n\r\n"
      "PUT /c HTTP/1.1\r\nContent-Length: 003\r\n\r\nxyz"
      "PUT /d HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nab"
      "PUT /e HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nZ",
      Requests());
  CHECK(DumpAll(r.messages) ==
        DumpAll({Request("POST", "/a", {{"Content-Length", "5"}}, "hello"), Request("GET", "/b"),
                 Request("PUT", "/c", {{"Content-Length", "003"}}, "xyz"),
                 Request("PUT", "/d", {{"Content-Length", "2"}, {"content-length", "2"}}, "ab"),
                 Request("PUT", "/e", {{"Content-Length", "1, 1"}}, "Z")}));
  CHECK(Dump(r.stats) == Dump(Stats(5, 0, 0)));
}

TEST_CASE("invalid or conflicting Content-Length is a parse error, never trusted", "[parser]") {
  const std::string value = GENERATE(as<std::string>{}, "abc", "-1", "+5", "1 2", "", "0x10",
                                     "99999999999999999999999", "1099511627777", "5, 6");
  INFO("Content-Length: " << value);
  const ParseResult r = ParseEverySplit(
      "POST /x HTTP/1.1\r\nContent-Length: " + value + "\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
      Requests());
  Message cut = Request("POST", "/x", {{"Content-Length", value}});
  cut.complete = false;
  Message next = Request("GET", "/next");
  next.gap_before = true;
  CHECK(DumpAll(r.messages) == DumpAll({cut, next}));
  CHECK(Dump(r.stats) == Dump(Stats(2, 1, 0)));
}

TEST_CASE("two different Content-Length headers are a parse error", "[parser]") {
  const ParseResult r = ParseEverySplit(
      "POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nGET /n HTTP/1.1\r\n\r\n",
      Requests());
  Message cut = Request("POST", "/x", {{"Content-Length", "1"}, {"Content-Length", "2"}});
  cut.complete = false;
  Message next = Request("GET", "/n");
  next.gap_before = true;
  CHECK(DumpAll(r.messages) == DumpAll({cut, next}));
}

TEST_CASE("chunked request: extensions, trailers, de-chunked body", "[parser]") {
  const ParseResult r = ParseEverySplit(
      "POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;name=value;q=\"a;b\"\r\nhello\r\n6 \r\n world\r\n0\r\n"
      "X-Checksum: abc\r\nX-More:  1 \r\n\r\n"
      "GET /after HTTP/1.1\r\n\r\n",
      Requests());
  Message want = Request("POST", "/up", {{"Transfer-Encoding", "chunked"}}, "hello world");
  want.chunked = true;
  want.trailers = {Header{"X-Checksum", "abc"}, Header{"X-More", "1"}};
  CHECK(DumpAll(r.messages) == DumpAll({want, Request("GET", "/after")}));
  CHECK(Dump(r.stats) == Dump(Stats(2, 0, 0)));
}

TEST_CASE("chunked wins over Content-Length", "[parser]") {
  const ParseResult r = ParseEverySplit(
      "POST / HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n0\r\n\r\nGET /n HTTP/1.1\r\n\r\n",
      Requests());
  Message want =
      Request("POST", "/", {{"Content-Length", "100"}, {"Transfer-Encoding", "chunked"}}, "abc");
  want.chunked = true;
  CHECK(DumpAll(r.messages) == DumpAll({want, Request("GET", "/n")}));
}

TEST_CASE("chunked response: hex sizes, final coding chunked", "[parser]") {
  const ParseResult r = ParseEverySplit(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
      "A\r\n0123456789\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n000\r\n\r\n"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      Responses());
  Message first = Response(200, "OK", {{"Transfer-Encoding", "gzip, chunked"}},
                           "0123456789abcdefghijklmnopqrstuvwxyz");
  first.chunked = true;
  Message second =
      Response(200, "OK", {{"Transfer-Encoding", "gzip"}, {"Transfer-Encoding", "chunked"}});
  second.chunked = true;
  CHECK(DumpAll(r.messages) == DumpAll({first, second}));
  CHECK(Dump(r.stats) == Dump(Stats(2, 0, 0)));
}

TEST_CASE("Transfer-Encoding without chunked last", "[parser]") {
  // A response runs until close.
  const ParseResult resp = ParseEverySplit(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
      Responses());
  CHECK(DumpAll(resp.messages) ==
        DumpAll({Response(200, "OK", {{"Transfer-Encoding", "chunked, gzip"}},
                          "3\r\nabc\r\n0\r\n\r\n")}));
  // A request cannot be delimited (RFC 9112 6.3): parse error.
  const ParseResult req = ParseEverySplit(
      "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nGET /n HTTP/1.1\r\n\r\n", Requests());
  Message cut = Request("POST", "/", {{"Transfer-Encoding", "gzip"}});
  cut.complete = false;
  Message next = Request("GET", "/n");
  next.gap_before = true;
  CHECK(DumpAll(req.messages) == DumpAll({cut, next}));
  CHECK(Dump(req.stats) == Dump(Stats(2, 1, 0)));
}

TEST_CASE("bad chunk framing: message cut short, resync after the bad line", "[parser]") {
  const ParseResult r = ParseEverySplit(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n"
      "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
      Responses());
  Message cut = Response(200, "OK", {{"Transfer-Encoding", "chunked"}}, "abc");
  cut.chunked = true;
  cut.complete = false;
  Message next = Response(201, "Created", {{"Content-Length", "0"}});
  next.gap_before = true;
  CHECK(DumpAll(r.messages) == DumpAll({cut, next}));
  CHECK(Dump(r.stats) == Dump(Stats(2, 1, 4)));

  // Chunk data not followed by CRLF.
  const ParseResult r2 = ParseEverySplit(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n"
      "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
      Responses());
  CHECK(DumpAll(r2.messages) == DumpAll({cut, next}));
  CHECK(Dump(r2.stats) == Dump(Stats(2, 1, 3)));
}

TEST_CASE("body delimited by close completes only at Finish", "[parser]") {
  const std::string input =
      "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nall of this\r\nis body HTTP/1.1 200 OK\r\n";
  const ParseResult r = ParseEverySplit(input, Responses());
  Message want =
      Response(200, "OK", {{"Server", "x"}}, "all of this\r\nis body HTTP/1.1 200 OK\r\n");
  want.version_minor = 0;
  CHECK(DumpAll(r.messages) == DumpAll({want}));

  ParseSetup open = Responses();
  open.finish = false;
  CHECK(ParseEverySplit(input, open).messages.empty());
}

TEST_CASE("messages cut by the end of the stream are incomplete", "[parser]") {
  const ParseResult r =
      ParseEverySplit("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", Requests());
  Message cut = Request("POST", "/", {{"Content-Length", "10"}}, "abc");
  cut.complete = false;
  CHECK(DumpAll(r.messages) == DumpAll({cut}));

  const ParseResult head =
      ParseEverySplit("HTTP/1.1 302 Found\r\nLocation: /x\r\nSet-Co", Responses());
  Message cut_head = Response(302, "Found", {{"Location", "/x"}});
  cut_head.complete = false;
  CHECK(DumpAll(head.messages) == DumpAll({cut_head}));

  // An unfinished start line is not a message.
  CHECK(ParseEverySplit("GET / HTTP/1.1", Requests()).messages.empty());
}

TEST_CASE("no body for HEAD, 1xx, 204, 304, GET rules when the request is unknown", "[parser]") {
  const ParseResult r = ParseEverySplit(
      "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"         // HEAD
      "HTTP/1.1 100 Continue\r\n\r\n"                           // interim, for the next
      "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"    // GET
      "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"  // GET
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"   // HEAD
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",         // unknown
      Responses({"HEAD", "GET", "GET", "HEAD"}));
  CHECK(DumpAll(r.messages) ==
        DumpAll({Response(200, "OK", {{"Content-Length", "1000"}}), Response(100, "Continue"),
                 Response(204, "No Content", {{"Content-Length", "7"}}),
                 Response(304, "Not Modified", {{"Content-Length", "7"}}),
                 Response(200, "OK", {{"Transfer-Encoding", "chunked"}}),
                 Response(200, "OK", {{"Content-Length", "2"}}, "ok")}));
  CHECK(Dump(r.stats) == Dump(Stats(6, 0, 0)));
}

TEST_CASE("informational responses precede the final one", "[parser]") {
  const ParseResult r = ParseEverySplit(
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
      "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
      Responses({"POST"}));
  CHECK(DumpAll(r.messages) ==
        DumpAll({Response(100, "Continue"),
                 Response(103, "Early Hints", {{"Link", "</s.css>; rel=preload"}}),
                 Response(201, "Created", {{"Content-Length", "0"}})}));
}

TEST_CASE("CONNECT: request without body, 2xx switches protocols, refusal does not", "[parser]") {
  const ParseResult req = ParseEverySplit(
      "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nContent-Length: 5\r\n\r\n",
      Requests());
  CHECK(DumpAll(req.messages) ==
        DumpAll({Request("CONNECT", "example.com:443",
                         {{"Host", "example.com:443"}, {"Content-Length", "5"}})}));

  const ParseResult ok = ParseEverySplit(
      "HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01\x02\x00\x01HTTP/1.1 200 OK\r\n\r\n",
      Responses({"CONNECT"}));
  CHECK(DumpAll(ok.messages) == DumpAll({Response(200, "Connection Established")}));
  CHECK(ok.switched);
  CHECK(Dump(ok.stats) == Dump(Stats(1, 0, 0)));

  const ParseResult refused = ParseEverySplit(
      "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 4\r\n\r\ndeny"
      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
      Responses({"CONNECT", "GET"}));
  CHECK(DumpAll(refused.messages) ==
        DumpAll({Response(407, "Proxy Authentication Required", {{"Content-Length", "4"}}, "deny"),
                 Response(200, "OK", {{"Content-Length", "0"}})}));
  CHECK_FALSE(refused.switched);
}

TEST_CASE("101 Switching Protocols stops parsing", "[parser]") {
  const ParseResult r = ParseEverySplit(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
      "\x81\x05hello HTTP/1.1 200 OK\r\n\r\n",
      Responses({"GET"}));
  CHECK(DumpAll(r.messages) ==
        DumpAll({Response(101, "Switching Protocols",
                          {{"Upgrade", "websocket"}, {"Connection", "Upgrade"}})}));
  CHECK(r.switched);
  CHECK(Dump(r.stats) == Dump(Stats(1, 0, 0)));
}

TEST_CASE("body cap: content keeps the first bytes, size counts them all", "[parser]") {
  ParseSetup setup = Responses();
  setup.options.max_body_bytes = 4;
  const ParseResult r = ParseEverySplit(
      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
          Chunked({"abc", "defgh"}) + "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nwxyz",
      setup);
  Message plain = Response(200, "OK", {{"Content-Length", "10"}}, "0123");
  plain.body.size = 10;
  plain.body.truncated = true;
  Message chunked = Response(200, "OK", {{"Transfer-Encoding", "chunked"}}, "abcd");
  chunked.chunked = true;
  chunked.body.size = 8;
  chunked.body.truncated = true;
  CHECK(DumpAll(r.messages) ==
        DumpAll({plain, chunked, Response(200, "OK", {{"Content-Length", "4"}}, "wxyz")}));
}

// --- Gaps -------------------------------------------------------------------

TEST_CASE("gap inside a Content-Length body keeps sync (kernel capture cap)", "[parser][gap]") {
  constexpr uint64_t kBody = 1 << 20;
  constexpr size_t kSeen = 300;
  const ChunkMeta write1{1000, 7};
  const ChunkMeta write2{2000, 7};
  const ParseResult r = ParseEverySplit(
      {Bytes(ResponseBytes(200, "OK", {{"Content-Length", std::to_string(kBody)}}) +
                 std::string(kSeen, 'a'),
             write1),
       Gap(kBody - kSeen, write1),
       Bytes(ResponseBytes(404, "Not Found", {{"Content-Length", "2"}}, "no"), write2)},
      Responses());
  Message big =
      Response(200, "OK", {{"Content-Length", std::to_string(kBody)}}, std::string(kSeen, 'a'));
  big.body.size = kBody;
  big.body.truncated = true;
  big.body.gap = true;
  big.first = write1;
  big.last = write1;
  Message small = Response(404, "Not Found", {{"Content-Length", "2"}}, "no");
  small.first = write2;
  small.last = write2;
  CHECK(DumpAll(r.messages, true) == DumpAll({big, small}, true));
  CHECK(Dump(r.stats) == Dump(Stats(2, 0, 0)));
}

TEST_CASE("body content stops at a gap: nothing is glued across it", "[parser][gap]") {
  // "abc" [4 bytes lost] "ghi": the content is "abc", never "abcghi".
  const ParseResult r = ParseEverySplit({Bytes("PUT /f HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"),
                                         Gap(4), Bytes("ghi"), Bytes("GET /n HTTP/1.1\r\n\r\n")},
                                        Requests());
  Message put = Request("PUT", "/f", {{"Content-Length", "10"}}, "abc");
  put.body.size = 10;
  put.body.gap = true;
  put.body.truncated = true;
  CHECK(DumpAll(r.messages) == DumpAll({put, Request("GET", "/n")}));
  CHECK(Dump(r.stats) == Dump(Stats(2, 0, 0)));
  // The same in chunk data.
  const ParseResult c =
      ParseEverySplit({Bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n012"),
                       Gap(4), Bytes("789\r\n3\r\nxyz\r\n0\r\n\r\n")},
                      Responses());
  Message gappy = GappyChunked(Response(200, "OK", {{"Transfer-Encoding", "chunked"}}, "012"), 13,
                               Ending::kWhole);
  CHECK(DumpAll(c.messages) == DumpAll({gappy}));
}

TEST_CASE("gaps at and past the end of a body", "[parser][gap]") {
  const std::string head = "PUT /f HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc";
  Message put = Request("PUT", "/f", {{"Content-Length", "10"}}, "abc");
  put.body.size = 10;
  put.body.gap = true;
  put.body.truncated = true;

  // Ends exactly at the end of the body: still in sync.
  const ParseResult exact =
      ParseEverySplit({Bytes(head), Gap(7), Bytes("GET /n HTTP/1.1\r\n\r\n")}, Requests());
  CHECK(DumpAll(exact.messages) == DumpAll({put, Request("GET", "/n")}));
  CHECK(Dump(exact.stats) == Dump(Stats(2, 0, 0)));

  // Runs past it: what followed is lost, the parser resynchronises.
  const ParseResult past =
      ParseEverySplit({Bytes(head), Gap(20), Bytes("junk\r\nGET /n HTTP/1.1\r\n\r\n")}, Requests());
  Message next = Request("GET", "/n");
  next.gap_before = true;
  CHECK(DumpAll(past.messages) == DumpAll({put, next}));
  CHECK(Dump(past.stats) == Dump(Stats(2, 1, 6)));
}

TEST_CASE("gap inside chunk data keeps sync, across chunk framing it does not", "[parser][gap]") {
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  const ParseResult inside = ParseEverySplit(
      {Bytes(head + "a\r\n01234"), Gap(5), Bytes("\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")},
      Responses());
  Message gappy = GappyChunked(Response(200, "OK", {{"Transfer-Encoding", "chunked"}}, "01234"), 10,
                               Ending::kWhole);
  CHECK(DumpAll(inside.messages) == DumpAll({gappy, Response(204, "No Content")}));
  CHECK(Dump(inside.stats) == Dump(Stats(2, 0, 0)));

  const ParseResult across = ParseEverySplit(
      {Bytes(head + "5\r\nabc"), Gap(10), Bytes("more\r\nHTTP/1.1 204 No Content\r\n\r\n")},
      Responses());
  Message cut = GappyChunked(Response(200, "OK", {{"Transfer-Encoding", "chunked"}}, "abc"), 5,
                             Ending::kCut);
  Message next = Response(204, "No Content");
  next.gap_before = true;
  CHECK(DumpAll(across.messages) == DumpAll({cut, next}));
  CHECK(Dump(across.stats) == Dump(Stats(2, 1, 6)));
}

TEST_CASE("chunk framing lost in a gap is found again at the last chunk", "[parser][gap]") {
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  // A reader took "5\r\nabcde\r\n5\r\nfghij\r\n3\r\nxyz\r\n0\r\n\r\n" in one read
  // larger than the capture cap: its head and its tail were copied.
  const ParseResult found = ParseEverySplit(
      {Bytes(head + "5\r\nabcde\r\n5\r\nfg"), Gap(20),
       Bytes("hij\r\n3\r\nxyz\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")},
      Responses());
  // 7 bytes parsed, the 3 left in the chunk, then 17 + 11 bytes from there to
  // the last chunk, framing included.
  Message whole = GappyChunked(Response(200, "OK", {{"Transfer-Encoding", "chunked"}}, "abcdefg"),
                               7 + 3 + 17 + 11, Ending::kFramingLost);
  CHECK(DumpAll(found.messages) == DumpAll({whole, Response(204, "No Content")}));
  CHECK(Dump(found.stats) == Dump(Stats(2, 0, 0)));

  // The gap ends right before the last chunk's "0", and a second gap follows
  // the first inside the lost part.
  const ParseResult at_start = ParseEverySplit(
      {Bytes(head + "4\r\nabcd\r\n"), Gap(9), Bytes("zz\r\n"), Gap(4),
       Bytes("0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")},
      Responses());
  // To the CRLF that the gap took before the "0".
  Message ends = GappyChunked(Response(200, "OK", {{"Transfer-Encoding", "chunked"}}, "abcd"),
                              4 + 9 + 4 + 4 - 2, Ending::kFramingLost);
  CHECK(DumpAll(at_start.messages) == DumpAll({ends, Response(204, "No Content")}));
  CHECK(Dump(at_start.stats) == Dump(Stats(2, 0, 0)));
}

TEST_CASE("chunk framing lost: a request found first, or the close, cuts the message",
          "[parser][gap]") {
  const std::string head = "POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  // What was parsed and the rest of the chunk.
  Message cut = GappyChunked(Request("POST", "/up", {{"Transfer-Encoding", "chunked"}}, "ab"), 5,
                             Ending::kCut);

  const ParseResult next = ParseEverySplit(
      {Bytes(head + "5\r\nab"), Gap(30), Bytes("tail\r\nGET /b HTTP/1.1\r\n\r\n")}, Requests());
  Message b = Request("GET", "/b");
  b.gap_before = true;
  CHECK(DumpAll(next.messages) == DumpAll({cut, b}));
  CHECK(Dump(next.stats) == Dump(Stats(2, 1, 6)));

  const ParseResult closed =
      ParseEverySplit({Bytes(head + "5\r\nab"), Gap(30), Bytes("more body\r\n0\r\n")}, Requests());
  CHECK(DumpAll(closed.messages) == DumpAll({cut}));
  CHECK(Dump(closed.stats) == Dump(Stats(1, 1, 14)));
}

TEST_CASE("a message held for its last chunk is given up once quiet", "[parser][gap]") {
  MessageParser parser(ParseMode::kResponse, ParserOptions{});
  std::vector<Message> out;
  parser.Feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab", ChunkMeta{1, 7},
              &out);
  CHECK_FALSE(parser.FeedGap(50, ChunkMeta{2, 7}, &out));
  parser.Feed("xyz", ChunkMeta{4, 7}, &out);
  CHECK_FALSE(parser.GiveUpHeldOlderThan(4, &out));  // bytes came at 4
  CHECK(out.empty());
  CHECK_FALSE(parser.idle());
  CHECK(parser.GiveUpHeldOlderThan(5, &out));
  Message cut = GappyChunked(Response(200, "OK", {{"Transfer-Encoding", "chunked"}}, "ab"), 4,
                             Ending::kCut);
  cut.first = ChunkMeta{1, 7};
  cut.last = ChunkMeta{2, 7};
  CHECK(DumpAll(out, /*with_meta=*/true) == DumpAll({cut}, /*with_meta=*/true));
  CHECK(parser.sync_losses().size() == 1);
  CHECK(parser.sync_losses()[0].at.ts_ns == 2);
  CHECK_FALSE(parser.GiveUpHeldOlderThan(100, &out));
  // Its last chunk, arriving now, is garbage; the next response is found.
  parser.Feed("\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", ChunkMeta{9, 7}, &out);
  REQUIRE(out.size() == 2);
  CHECK(out[1].status_code == 204);
  CHECK(out[1].gap_before);
  CHECK(Dump(parser.stats()) == Dump(Stats(2, 1, 10)));  // "xyz" and the last chunk
}

TEST_CASE("gap in a head: the message is cut short, nothing glued across", "[parser][gap]") {
  const ParseResult req = ParseEverySplit({Bytes("GET /a HTTP/1.1\r\nHost: x\r\nAcc"), Gap(10),
                                           Bytes("ept: y\r\n\r\nGET /b HTTP/1.1\r\n\r\n")},
                                          Requests());
  Message cut = Request("GET", "/a", {{"Host", "x"}});
  cut.complete = false;
  Message next = Request("GET", "/b");
  next.gap_before = true;
  CHECK(DumpAll(req.messages) == DumpAll({cut, next}));
  CHECK(Dump(req.stats) == Dump(Stats(2, 1, 10)));

  // A start line cut by a gap is no message; its halves never join.
  const ParseResult line = ParseEverySplit(
      {Bytes("GET /a HT"), Gap(3), Bytes("TP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")}, Requests());
  CHECK(DumpAll(line.messages) == DumpAll({next}));
  CHECK(Dump(line.stats) == Dump(Stats(1, 1, 19)));

  const ParseResult status =
      ParseEverySplit({Bytes("HTTP/1.1 200 O"), Gap(5),
                       Bytes("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")},
                      Responses());
  Message cut_status = Response(200, "O");
  cut_status.complete = false;
  Message next_status = Response(404, "Not Found", {{"Content-Length", "0"}});
  next_status.gap_before = true;
  CHECK(DumpAll(status.messages) == DumpAll({cut_status, next_status}));
}

TEST_CASE("gap in a body delimited by close: counted, the body runs on to the close",
          "[parser][gap]") {
  const ParseResult r =
      ParseEverySplit({Bytes("HTTP/1.0 200 OK\r\n\r\nabc"), Gap(5), Bytes("def")}, Responses());
  Message whole = Response(200, "OK", {}, "abc");
  whole.version_minor = 0;
  whole.body.size = 11;
  whole.body.gap = true;
  whole.body.truncated = true;
  CHECK(DumpAll(r.messages) == DumpAll({whole}));
  CHECK(Dump(r.stats) == Dump(Stats(1, 0, 0)));
}

TEST_CASE("a gap past what the body cap keeps is no gap in the content", "[parser][gap]") {
  ParseSetup setup = Requests();
  setup.options.max_body_bytes = 4;
  // Content-Length: the cap is full ("abcd") before the gap.
  const ParseResult full = ParseEverySplit(
      {Bytes("PUT /f HTTP/1.1\r\nContent-Length: 10\r\n\r\nabcde"), Gap(3), Bytes("ij"),
       Bytes("GET /n HTTP/1.1\r\n\r\n")},
      setup);
  Message put = Request("PUT", "/f", {{"Content-Length", "10"}}, "abcd");
  put.body.size = 10;
  put.body.truncated = true;
  CHECK(DumpAll(full.messages) == DumpAll({put, Request("GET", "/n")}));
  CHECK(Dump(full.stats) == Dump(Stats(2, 0, 0)));
  // One byte short of the cap: the gap took a byte the content would hold.
  const ParseResult short_of_cap = ParseEverySplit(
      {Bytes("PUT /f HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"), Gap(5), Bytes("ij"),
       Bytes("GET /n HTTP/1.1\r\n\r\n")},
      setup);
  Message gappy = Request("PUT", "/f", {{"Content-Length", "10"}}, "abc");
  gappy.body.size = 10;
  gappy.body.truncated = true;
  gappy.body.gap = true;
  CHECK(DumpAll(short_of_cap.messages) == DumpAll({gappy, Request("GET", "/n")}));
}

namespace {
std::string DumpSkip(const BodySkip& s) {
  return "keep=" + std::to_string(s.keep) + " len=" + std::to_string(s.len);
}
std::string SkipAfter(ParseMode mode, size_t cap, std::initializer_list<std::string_view> chunks) {
  ParserOptions options;
  options.max_body_bytes = cap;
  MessageParser parser(mode, options);
  std::vector<Message> out;
  for (std::string_view c : chunks) parser.Feed(c, ChunkMeta{}, &out);
  return DumpSkip(parser.UnkeptBodyAhead());
}
}  // namespace

TEST_CASE("UnkeptBodyAhead: body bytes past the cap, by framing and state", "[parser][skip]") {
  const std::string put = "PUT /f HTTP/1.1\r\nContent-Length: 100\r\n\r\n";
  // Head parsed, no body yet: 10 to keep, then 90 only counted.
  CHECK(SkipAfter(ParseMode::kRequest, 10, {put}) == "keep=10 len=90");
  CHECK(SkipAfter(ParseMode::kRequest, 10, {put, "abcd"}) == "keep=6 len=90");
  CHECK(SkipAfter(ParseMode::kRequest, 10, {put, std::string(25, 'x')}) == "keep=0 len=75");
  // No body capture at all: the whole body.
  CHECK(SkipAfter(ParseMode::kRequest, 0, {put}) == "keep=0 len=100");
  // The cap holds the whole body, or the body is done: nothing to skip.
  CHECK(SkipAfter(ParseMode::kRequest, 100, {put}) == "keep=0 len=0");
  CHECK(SkipAfter(ParseMode::kRequest, 10, {put, std::string(100, 'x')}) == "keep=0 len=0");
  // Heads are always read.
  CHECK(SkipAfter(ParseMode::kRequest, 10, {"PUT /f HTTP/1.1\r\nContent-Len"}) ==
        "keep=0 len=0");
  // Chunked: to the end of the chunk's data, not into its framing.
  const std::string chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  CHECK(SkipAfter(ParseMode::kResponse, 0, {chunked + "1000\r\nab"}) == "keep=0 len=4094");
  CHECK(SkipAfter(ParseMode::kResponse, 10, {chunked + "8\r\nabcdefgh\r\n1000\r\n"}) ==
        "keep=2 len=4094");
  CHECK(SkipAfter(ParseMode::kResponse, 0, {chunked + "1000\r\n", std::string(4096, 'x')}) ==
        "keep=0 len=0");  // at the chunk's CRLF
  CHECK(SkipAfter(ParseMode::kResponse, 0, {chunked + "10"}) == "keep=0 len=0");  // size line
  // Delimited by the close: past the cap, everything to the end of the stream.
  const std::string to_close = " len=" + std::to_string(MessageParser::kToTheClose);
  CHECK(SkipAfter(ParseMode::kResponse, 10, {"HTTP/1.0 200 OK\r\n\r\nabc"}) ==
        "keep=7" + to_close);
  CHECK(SkipAfter(ParseMode::kResponse, 0, {"HTTP/1.0 200 OK\r\n\r\n"}) == "keep=0" + to_close);
  CHECK(SkipAfter(ParseMode::kResponse, 2, {"HTTP/1.0 200 OK\r\n\r\nabc"}) ==
        "keep=0" + to_close);
  // A 304 has no body, whatever its Content-Length says.
  CHECK(SkipAfter(ParseMode::kResponse, 0,
                  {"HTTP/1.1 304 Not Modified\r\nContent-Length: 500\r\n\r\n"}) ==
        "keep=0 len=0");
}

TEST_CASE("UnkeptBodyAhead after a gap in the content: nothing more is kept", "[parser][skip]") {
  ParserOptions options;
  options.max_body_bytes = 10;
  MessageParser parser(ParseMode::kRequest, options);
  std::vector<Message> out;
  parser.Feed("PUT /f HTTP/1.1\r\nContent-Length: 100\r\n\r\nab", ChunkMeta{}, &out);
  CHECK(parser.FeedGap(3, ChunkMeta{}, &out));
  CHECK(DumpSkip(parser.UnkeptBodyAhead()) == "keep=0 len=95");
  // Fed the announced bytes as a gap, the message is the same as when read.
  CHECK(parser.FeedGap(95, ChunkMeta{}, &out));
  REQUIRE(out.size() == 1);
  CHECK(out[0].body.content == "ab");
  CHECK(out[0].body.size == 100);
  CHECK(out[0].body.gap);
  CHECK(out[0].complete);
}

TEST_CASE("gap between messages", "[parser][gap]") {
  const ParseResult r = ParseEverySplit(
      {Bytes("GET /a HTTP/1.1\r\n\r\n"), Gap(100), Bytes("GET /b HTTP/1.1\r\n\r\n")}, Requests());
  Message next = Request("GET", "/b");
  next.gap_before = true;
  CHECK(DumpAll(r.messages) == DumpAll({Request("GET", "/a"), next}));
  CHECK(Dump(r.stats) == Dump(Stats(2, 1, 0)));
}

// --- Resynchronisation ----------------------------------------------------------

TEST_CASE("garbage where a message should start", "[parser][resync]") {
  const ParseResult r = ParseEverySplit("hello world\r\nGET / HTTP/1.1\r\n\r\n", Requests());
  Message want = Request("GET", "/");
  want.gap_before = true;
  CHECK(DumpAll(r.messages) == DumpAll({want}));
  CHECK(Dump(r.stats) == Dump(Stats(1, 1, 13)));
}

TEST_CASE("joining mid-stream: glued well-known methods and status lines are found",
          "[parser][resync]") {
  ParseSetup req = Requests();
  req.mid_stream = true;
  const ParseResult r = ParseEverySplit(
      "tail of a body}POST /api HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
      "data}FOO /x HTTP/1.1\r\n\r\n",  // not a known method: not glued
      req);
  Message post = Request("POST", "/api", {{"Content-Length", "2"}}, "{}");
  post.gap_before = true;
  CHECK(DumpAll(r.messages) == DumpAll({post}));
  // Mid-stream leading bytes are no parse error; the unknown glued method is.
  CHECK(Dump(r.stats) == Dump(Stats(1, 1, 15 + 24)));

  ParseSetup resp = Responses();
  resp.mid_stream = true;
  const ParseResult r2 = ParseEverySplit("\"}]}HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", resp);
  Message ok = Response(200, "OK", {{"Content-Length", "0"}});
  ok.gap_before = true;
  CHECK(DumpAll(r2.messages) == DumpAll({ok}));
  CHECK(Dump(r2.stats) == Dump(Stats(1, 0, 4)));
}

TEST_CASE("status line found after garbage on its own line", "[parser][resync]") {
  const ParseResult r =
      ParseEverySplit("xxHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Responses());
  Message ok = Response(200, "OK", {{"Content-Length", "0"}});
  ok.gap_before = true;
  CHECK(DumpAll(r.messages) == DumpAll({ok}));
  CHECK(Dump(r.stats) == Dump(Stats(1, 1, 2)));
}

TEST_CASE("a malformed head found by resynchronising is dropped as a false start",
          "[parser][resync]") {
  ParseSetup resp = Responses();
  resp.mid_stream = true;
  const ParseResult r = ParseEverySplit(
      "body text HTTP/1.1 200 x\r\nnot a header\r\n\r\n"
      "HTTP/1.1 204 No Content\r\n\r\n",
      resp);
  Message ok = Response(204, "No Content");
  ok.gap_before = true;
  CHECK(DumpAll(r.messages) == DumpAll({ok}));
  // Skipped: the 10 bytes before the false start and its 32 bytes of head.
  CHECK(Dump(r.stats) == Dump(Stats(1, 1, 10 + 32)));
}

// --- Limits -------------------------------------------------------------------

TEST_CASE("header cap: later headers dropped, framing still honoured", "[parser][limits]") {
  ParseSetup setup = Requests();
  setup.options.max_header_bytes = 64;
  const ParseResult r =
      ParseEverySplit("GET /x HTTP/1.1\r\nContent-Length: 3\r\nX-Fill: " + std::string(100, 'a') +
                          "\r\nX-After: 1\r\n\r\nabcGET /y HTTP/1.1\r\n\r\n",
                      setup);
  Message capped = Request("GET", "/x", {{"Content-Length", "3"}}, "abc");
  capped.headers_truncated = true;
  CHECK(DumpAll(r.messages) == DumpAll({capped, Request("GET", "/y")}));
  CHECK(Dump(r.stats) == Dump(Stats(2, 0, 0)));
}

TEST_CASE("a request line longer than the head cap still starts a request", "[parser][limits]") {
  ParseSetup setup = Requests();
  setup.options.max_header_bytes = 64;
  // 63-byte window: the target is cut to fit half of it with the method and
  // version (31 - 3 - 10 = 18 bytes), the fields keep the rest of the cap.
  const std::string target = "/" + std::string(150, 'L');
  const ParseResult r = ParseEverySplit(
      "GET " + target +
          " HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nokGET /next HTTP/1.1\r\n\r\n",
      setup);
  Message cut =
      Request("GET", target.substr(0, 18), {{"Host", "h"}, {"Content-Length", "2"}}, "ok");
  cut.headers_truncated = true;
  CHECK(DumpAll(r.messages) == DumpAll({cut, Request("GET", "/next")}));
  CHECK(Dump(r.stats) == Dump(Stats(2, 0, 0)));
}

TEST_CASE("a long line is a request line only if all of it is one", "[parser][limits]") {
  ParseSetup setup = Requests();
  setup.options.max_header_bytes = 64;
  // A space in the middle of the long target (dropped from the line buffer
  // before the line ends): not a request line, whatever the chunking.
  const std::string bad = "GET /" + std::string(100, 'a') + " " + std::string(100, 'b') +
                          " HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
  const ParseResult r = ParseEverySplit(bad, setup);
  Message next = Request("GET", "/next");
  next.gap_before = true;
  CHECK(DumpAll(r.messages) == DumpAll({next}));
  CHECK(r.stats.parse_errors == 1);
  // Longer than 8 times the cap: given up on, like a head that never ends.
  const std::string huge =
      "GET /" + std::string(8 * 64, 'a') + " HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
  CHECK(DumpAll(ParseEverySplit(huge, setup).messages) == DumpAll({next}));
}

TEST_CASE("header count cap", "[parser][limits]") {
  ParseSetup setup = Requests();
  setup.options.max_headers = 2;
  const ParseResult r =
      ParseEverySplit("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nContent-Length: 1\r\n\r\nz", setup);
  Message capped = Request("GET", "/", {{"A", "1"}, {"B", "2"}}, "z");
  capped.headers_truncated = true;
  CHECK(DumpAll(r.messages) == DumpAll({capped}));
}

TEST_CASE("a head that never ends is given up on at a fixed point", "[parser][limits]") {
  ParseSetup setup = Requests();
  setup.options.max_header_bytes = 64;
  std::string input = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 200; ++i) input += "X: y\r\n";
  const ParseResult r = ParseEverySplit(input, setup);
  // The first 64 bytes hold the start line and 8 fields; scanning stops after
  // 8 * 64 = 512 bytes, mid-way through a "X: y\r\n", and the rest is skipped.
  Message cut = Request("GET", "/");
  for (int i = 0; i < 8; ++i) cut.headers.push_back(Header{"X", "y"});
  cut.complete = false;
  cut.headers_truncated = true;
  CHECK(DumpAll(r.messages) == DumpAll({cut}));
  CHECK(Dump(r.stats) == Dump(Stats(1, 1, input.size() - 514)));
}

TEST_CASE("slowloris: byte-at-a-time input stays linear", "[parser][limits]") {
  MessageParser parser(ParseMode::kRequest, ParserOptions{});
  std::vector<Message> out;
  const ChunkMeta meta{1, 1};
  const auto start = std::chrono::steady_clock::now();
  // A huge head, one byte per chunk.
  const std::string head_start = "GET /slow HTTP/1.1\r\n";
  for (char c : head_start) parser.Feed(std::string_view(&c, 1), meta, &out);
  for (int i = 0; i < 30000; ++i) {
    for (char c : std::string_view("X-Slow: abcdefghijklmnop\r\n")) {
      parser.Feed(std::string_view(&c, 1), meta, &out);
    }
  }
  // Then one long line of garbage without LF, and a long token.
  for (int i = 0; i < (1 << 20); ++i) parser.Feed("A", meta, &out);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(std::chrono::duration_cast<std::chrono::seconds>(elapsed).count() < 20);
  REQUIRE(out.size() == 1);
  CHECK(out[0].target == "/slow");
  CHECK_FALSE(out[0].complete);
  CHECK(out[0].headers_truncated);
  CHECK(parser.stats().parse_errors == 1);
}

TEST_CASE("memory stays bounded whatever arrives", "[parser][limits]") {
  ParserOptions options;
  options.max_header_bytes = 4096;
  options.max_body_bytes = 1024;
  const size_t bound = 3 * options.max_header_bytes + options.max_body_bytes + 4096;
  std::vector<Message> out;
  const ChunkMeta meta{1, 1};
  auto feed_bytes = [&](MessageParser* p, std::string_view bytes, size_t chunk) {
    size_t peak = 0;
    for (size_t i = 0; i < bytes.size(); i += chunk) {
      p->Feed(bytes.substr(i, chunk), meta, &out);
      peak = std::max(peak, p->buffered_bytes());
    }
    return peak;
  };
  // Garbage with no line end, in both modes.
  const std::string garbage(1 << 22, 'A');
  for (ParseMode mode : {ParseMode::kRequest, ParseMode::kBoth}) {
    MessageParser p(mode, options);
    CHECK(feed_bytes(&p, garbage, 1000) <= bound);
  }
  // A head that never ends, a huge body, endless chunk extensions.
  {
    MessageParser p(ParseMode::kRequest, options);
    std::string head = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 100000; ++i) head += "X-Field: value\r\n";
    CHECK(feed_bytes(&p, head, 333) <= bound);
  }
  {
    MessageParser p(ParseMode::kResponse, options);
    CHECK(feed_bytes(&p, "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n" + garbage, 4096) <=
          bound);
  }
  {
    MessageParser p(ParseMode::kResponse, options);
    CHECK(feed_bytes(&p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;" + garbage,
                     777) <= bound);
  }
  // Byte-at-a-time garbage keeps its chunk metas bounded too.
  {
    MessageParser p(ParseMode::kRequest, options);
    size_t peak = 0;
    for (int i = 0; i < 100000; ++i) {
      const char c = static_cast<char>('a' + i % 26);
      p.Feed(std::string_view(&c, 1), ChunkMeta{static_cast<uint64_t>(i), 1}, &out);
      peak = std::max(peak, p.buffered_bytes());
    }
    CHECK(peak <= bound);
  }
}

// --- Timing and stream start ------------------------------------------------------

TEST_CASE("first and last name the chunks holding the first and last byte", "[parser]") {
  const ParseResult r = ParseEverySplit(
      {Bytes("\r\nGET /a HTTP/1.1\r\nHo", {1, 7}), Bytes("st: x\r\n\r\nGET /b", {2, 7}),
       Bytes(" HTTP/1.1\r\nContent-Length: 3\r\n\r\nab", {3, 8}), Bytes("c", {4, 8})},
      Requests());
  Message a = Request("GET", "/a", {{"Host", "x"}});
  a.first = {1, 7};
  a.last = {2, 7};
  Message b = Request("GET", "/b", {{"Content-Length", "3"}}, "abc");
  b.first = {2, 7};
  b.last = {4, 8};
  CHECK(DumpAll(r.messages, true) == DumpAll({a, b}, true));
}

TEST_CASE("a stream whose first line is not HTTP is rejected as soon as it shows", "[parser]") {
  std::vector<Message> out;
  {
    MessageParser tls(ParseMode::kRequest, ParserOptions{});
    tls.Feed("\x16", {}, &out);
    CHECK(tls.rejected_stream_start());
  }
  {
    MessageParser h2(ParseMode::kRequest, ParserOptions{});
    h2.Feed("PRI * HTTP/", {}, &out);
    CHECK_FALSE(h2.rejected_stream_start());
    h2.Feed("2.0\r\n\r\nSM\r\n\r\n", {}, &out);
    CHECK(h2.rejected_stream_start());
  }
  {
    MessageParser banner(ParseMode::kResponse, ParserOptions{});
    banner.Feed("220 smtp.example.com ESMTP\r\n", {}, &out);
    CHECK(banner.rejected_stream_start());
  }
  {
    MessageParser fine(ParseMode::kRequest, ParserOptions{});
    fine.Feed("\r\nGET / HTTP/1.1\r\n\r\nxx", {}, &out);
    CHECK_FALSE(fine.rejected_stream_start());  // garbage after a message is not the start
  }
  {
    MessageParser joined(ParseMode::kRequest, ParserOptions{});
    joined.StartMidStream();
    joined.Feed("\x16\x03\x01", {}, &out);
    CHECK_FALSE(joined.rejected_stream_start());
  }
  CHECK(out.size() == 1);
}

TEST_CASE("losses of sync are reported with their place in the output and their time", "[parser]") {
  std::vector<Message> out;
  MessageParser p(ParseMode::kResponse, ParserOptions{});
  p.Feed("HTTP/1.1 204 No Content\r\n\r\n", {1, 1}, &out);
  CHECK(p.sync_losses().empty());
  // Garbage where the next response should start, then a response, in one chunk.
  p.Feed("junk\r\nHTTP/1.1 204 No Content\r\n\r\n", {2, 1}, &out);
  REQUIRE(p.sync_losses().size() == 1);
  CHECK(p.sync_losses()[0].messages_before == 0);
  CHECK(p.sync_losses()[0].at.ts_ns == 2);
  // A gap cutting a head: the cut message first, then the loss.
  p.Feed("HTTP/1.1 200 OK\r\nContent-", {3, 1}, &out);
  p.FeedGap(10, {4, 1}, &out);
  REQUIRE(p.sync_losses().size() == 1);
  CHECK(p.sync_losses()[0].messages_before == 1);
  CHECK(p.sync_losses()[0].at.ts_ns == 4);
  // A gap inside a body of known length loses nothing.
  p.Feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", {5, 1}, &out);
  CHECK(p.FeedGap(8, {6, 1}, &out));
  CHECK(p.sync_losses().empty());
  CHECK(out.size() == 4);

  MessageParser joined(ParseMode::kResponse, ParserOptions{});
  joined.StartMidStream();
  joined.Feed("tail of a body\r\nHTTP/1.1 204 No Content\r\n\r\n", {1, 1}, &out);
  CHECK(joined.sync_losses().empty());
}

TEST_CASE("idle and garbage accounting", "[parser]") {
  MessageParser p(ParseMode::kRequest, ParserOptions{});
  std::vector<Message> out;
  CHECK(p.idle());
  p.Feed("GET / HTTP/1.1\r\n", {}, &out);
  CHECK_FALSE(p.idle());
  p.Feed("\r\n", {}, &out);
  CHECK(p.idle());
  p.Feed("garbage", {}, &out);
  CHECK_FALSE(p.idle());
  CHECK(p.garbage_bytes() == 7);
  p.Finish(&out);
  CHECK(p.stats().bytes_skipped == 7);
  CHECK(p.idle());
}

}  // namespace
}  // namespace httptraced::http
