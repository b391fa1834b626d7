#include "http/session.h"

#include <catch2/catch.hpp>
#include <string>
#include <utility>
#include <vector>

#include "http/test_util.h"

namespace httptraced::http {
namespace {

using testing::DumpAll;
using testing::RequestBytes;
using testing::ResponseBytes;

constexpr Direction kIn = Direction::kIngress;
constexpr Direction kOut = Direction::kEgress;

ChunkMeta At(uint64_t ts) { return ChunkMeta{ts, 42}; }

Message Req(std::string_view method, std::string_view target, testing::HeaderList headers,
            std::string_view body, uint64_t first, uint64_t last) {
  Message m = testing::Request(method, target, headers, body);
  m.first = At(first);
  m.last = At(last);
  return m;
}

Message Resp(int status, std::string_view reason, testing::HeaderList headers,
             std::string_view body, uint64_t first, uint64_t last) {
  Message m = testing::Response(status, reason, headers, body);
  m.first = At(first);
  m.last = At(last);
  return m;
}

Exchange Ex(uint64_t seq, std::optional<Message> request, std::optional<Message> response,
            uint32_t interim = 0, bool incomplete = false) {
  Exchange e;
  e.seq = seq;
  e.request = std::move(request);
  e.response = std::move(response);
  e.interim_responses = interim;
  e.incomplete = incomplete;
  return e;
}

std::vector<Exchange> Take(HttpSession* s) {
  std::vector<Exchange> out = std::move(s->ready());
  s->ready().clear();
  return out;
}

TEST_CASE("server: requests read, responses written", "[session]") {
  HttpSession s(SessionOptions{}, Role::kServer);
  CHECK_FALSE(s.busy());
  s.OnData(kIn, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n", At(1));
  CHECK(s.busy());
  CHECK(s.ready().empty());
  s.OnData(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", At(2));
  CHECK(s.busy());  // response body still to come
  s.OnData(kOut, "ok", At(3));
  CHECK_FALSE(s.busy());
  CHECK(DumpAll(Take(&s), true) ==
        DumpAll({Ex(0, Req("GET", "/a", {{"Host", "h"}}, "", 1, 1),
                    Resp(200, "OK", {{"Content-Length", "2"}}, "ok", 2, 3))},
                true));
  CHECK(s.role() == Role::kServer);
  CHECK(s.stats().parse_errors == 0);
}

TEST_CASE("client: requests written, responses read", "[session]") {
  HttpSession s(SessionOptions{}, Role::kClient);
  s.OnData(kOut, RequestBytes("DELETE", "/x"), At(1));
  s.OnData(kIn, ResponseBytes(204, "No Content"), At(2));
  CHECK(DumpAll(Take(&s)) ==
        DumpAll({Ex(0, Req("DELETE", "/x", {}, "", 1, 1), Resp(204, "No Content", {}, "", 2, 2))}));
}

TEST_CASE("pipelined HEAD and GET answered in one write", "[session]") {
  HttpSession s(SessionOptions{}, Role::kServer);
  s.OnData(kIn, "HEAD /h HTTP/1.1\r\n\r\nGET /g HTTP/1.1\r\n\r\n", At(1));
  s.OnData(kOut,
           "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
           "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
           At(2));
  CHECK(DumpAll(Take(&s)) ==
        DumpAll({Ex(0, Req("HEAD", "/h", {}, "", 1, 1),
                    Resp(200, "OK", {{"Content-Length", "5"}}, "", 2, 2)),
                 Ex(1, Req("GET", "/g", {}, "", 1, 1),
                    Resp(200, "OK", {{"Content-Length", "5"}}, "hello", 2, 2))}));
}

TEST_CASE("Expect: 100-continue", "[session]") {
  HttpSession s(SessionOptions{}, Role::kServer);
  s.OnData(kIn, "POST /p HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", At(1));
  s.OnData(kOut, "HTTP/1.1 100 Continue\r\n\r\n", At(2));
  s.OnData(kIn, "abc", At(3));
  s.OnData(kOut, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", At(4));
  CHECK(DumpAll(Take(&s), true) ==
        DumpAll({Ex(0,
                    Req("POST", "/p", {{"Expect", "100-continue"}, {"Content-Length", "3"}}, "abc",
                        1, 3),
                    Resp(201, "Created", {{"Content-Length", "0"}}, "", 4, 4), 1)},
                true));
}

TEST_CASE("upgrade to websocket stops parsing both directions", "[session]") {
  HttpSession s(SessionOptions{}, Role::kServer);
  s.OnData(kIn, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", At(1));
  s.OnData(kOut, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
           At(2));
  CHECK(s.switched_protocols());
  s.OnData(kIn, "\x81\x85\x01\x02\x03\x04GET / HTTP/1.1\r\n\r\n", At(3));
  s.OnData(kOut, "HTTP/1.1 200 OK\r\n\r\n", At(4));
  CHECK(DumpAll(Take(&s)) ==
        DumpAll({Ex(
            0, Req("GET", "/ws", {{"Upgrade", "websocket"}, {"Connection", "Upgrade"}}, "", 1, 1),
            Resp(101, "Switching Protocols", {{"Upgrade", "websocket"}}, "", 2, 2))}));
  CHECK_FALSE(s.busy());
  CHECK(s.stats().parse_errors == 0);
}

TEST_CASE("CONNECT tunnel established by a 2xx", "[session]") {
  HttpSession s(SessionOptions{}, Role::kClient);
  s.OnData(kOut, "CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n", At(1));
  s.OnData(kIn, "HTTP/1.1 200 Connection established\r\n\r\n", At(2));
  CHECK(s.switched_protocols());
  s.OnData(kOut, "\x16\x03\x01\x02\x00", At(3));
  CHECK(DumpAll(Take(&s)) ==
        DumpAll({Ex(0, Req("CONNECT", "db.internal:5432", {{"Host", "db.internal:5432"}}, "", 1, 1),
                    Resp(200, "Connection established", {}, "", 2, 2))}));
  CHECK_FALSE(s.not_http());
}

TEST_CASE("truncated capture of a large body, then small exchanges parse exactly",
          "[session][gap]") {
  HttpSession s(SessionOptions{}, Role::kServer);
  constexpr uint64_t kBody = 1 << 20;
  const std::string seen(4096, 'u');
  s.OnData(kIn, "POST /upload HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n" + seen, At(1));
  s.OnGap(kIn, kBody - seen.size(), At(1));
  s.OnData(kOut, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", At(2));
  s.OnData(kIn, "GET /small HTTP/1.1\r\n\r\n", At(3));
  // sendfile(): the head is written, the payload never seen.
  s.OnData(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", At(4));
  s.OnGap(kOut, 1000000, At(5));
  s.OnData(kIn, "GET /tiny HTTP/1.1\r\n\r\n", At(6));
  s.OnData(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", At(7));

  Message upload = Req("POST", "/upload", {{"Content-Length", "1048576"}}, seen, 1, 1);
  upload.body.size = kBody;
  upload.body.truncated = true;
  upload.body.gap = true;
  Message file = Resp(200, "OK", {{"Content-Length", "1000000"}}, "", 4, 5);
  file.body.size = 1000000;
  file.body.truncated = true;
  file.body.gap = true;
  CHECK(DumpAll(Take(&s), true) ==
        DumpAll({Ex(0, upload, Resp(201, "Created", {{"Content-Length", "0"}}, "", 2, 2)),
                 Ex(1, Req("GET", "/small", {}, "", 3, 3), file),
                 Ex(2, Req("GET", "/tiny", {}, "", 6, 6),
                    Resp(200, "OK", {{"Content-Length", "2"}}, "ok", 7, 7))},
                true));
  CHECK(s.stats().parse_errors == 0);
}

TEST_CASE("unkept body bytes ahead, per direction, and none once ignoring", "[session][skip]") {
  SessionOptions options;
  options.max_body_bytes = 100;
  HttpSession s(options, Role::kServer);
  auto skip = [&s](Direction d) {
    const BodySkip b = s.UnkeptBodyAhead(d);
    return std::to_string(b.keep) + "+" + std::to_string(b.len);
  };
  CHECK(skip(kIn) == "0+0");  // nothing parsed yet
  s.OnData(kIn, "POST /up HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + std::string(40, 'u'),
           At(1));
  CHECK(skip(kIn) == "60+900");
  CHECK(skip(kOut) == "0+0");
  // The announced bytes fed as a gap: the same exchange as if they were read.
  s.OnData(kIn, std::string(60, 'u'), At(2));
  s.OnGap(kIn, 900, At(3));
  CHECK(skip(kIn) == "0+0");
  s.OnData(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", At(4));
  CHECK(skip(kOut) == "100+4900");
  s.OnData(kOut, std::string(5000, 'd'), At(5));
  Message up = Req("POST", "/up", {{"Content-Length", "1000"}}, std::string(100, 'u'), 1, 3);
  up.body.size = 1000;
  up.body.truncated = true;
  Message down = Resp(200, "OK", {{"Content-Length", "5000"}}, std::string(100, 'd'), 4, 5);
  down.body.size = 5000;
  down.body.truncated = true;
  CHECK(DumpAll(Take(&s), true) == DumpAll({Ex(0, up, down)}, true));

  // Hibernating: nothing in flight, nothing to skip.
  REQUIRE(s.Hibernate());
  CHECK(skip(kIn) == "0+0");
  // After a protocol switch nothing is parsed, so nothing is announced.
  s.OnData(kIn, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", At(6));
  s.OnData(kOut, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", At(7));
  REQUIRE(s.switched_protocols());
  CHECK(skip(kIn) == "0+0");
  CHECK(skip(kOut) == "0+0");
}

TEST_CASE("a response lost in a gap leaves its request unanswered, not mispaired",
          "[session][gap]") {
  HttpSession s(SessionOptions{}, Role::kServer);
  s.OnData(kIn, "GET /1 HTTP/1.1\r\n\r\n", At(10));
  s.OnGap(kOut, 500, At(20));  // the whole response to /1
  s.OnData(kIn, "GET /2 HTTP/1.1\r\n\r\n", At(30));
  s.OnData(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2", At(40));
  Message two = Resp(200, "OK", {{"Content-Length", "1"}}, "2", 40, 40);
  two.gap_before = true;
  CHECK(DumpAll(Take(&s)) ==
        DumpAll({Ex(0, Req("GET", "/1", {}, "", 10, 10), std::nullopt, 0, true),
                 Ex(1, Req("GET", "/2", {}, "", 30, 30), two)}));
  CHECK(s.stats().parse_errors == 1);
}

TEST_CASE("a response garbled from its first byte leaves its request unanswered", "[session]") {
  HttpSession s(SessionOptions{}, Role::kServer);
  s.OnData(kIn, "GET /1 HTTP/1.1\r\n\r\n", At(10));
  s.OnData(kOut, "HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", At(20));
  s.OnData(kIn, "GET /2 HTTP/1.1\r\n\r\n", At(30));
  s.OnData(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2", At(40));
  Message two = Resp(200, "OK", {{"Content-Length", "1"}}, "2", 40, 40);
  two.gap_before = true;
  CHECK(DumpAll(Take(&s)) ==
        DumpAll({Ex(0, Req("GET", "/1", {}, "", 10, 10), std::nullopt, 0, true),
                 Ex(1, Req("GET", "/2", {}, "", 30, 30), two)}));
  CHECK(s.stats().parse_errors == 1);
  CHECK_FALSE(s.not_http());  // the request already showed it is HTTP
}

TEST_CASE("junk after a response loses no request", "[session]") {
  HttpSession s(SessionOptions{}, Role::kServer);
  s.OnData(kIn, "GET /1 HTTP/1.1\r\n\r\n", At(10));
  s.OnData(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1trailing junk\r\n", At(20));
  s.OnData(kIn, "GET /2 HTTP/1.1\r\n\r\n", At(30));
  s.OnData(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2", At(40));
  Message two = Resp(200, "OK", {{"Content-Length", "1"}}, "2", 40, 40);
  two.gap_before = true;
  CHECK(DumpAll(Take(&s)) == DumpAll({Ex(0, Req("GET", "/1", {}, "", 10, 10),
                                         Resp(200, "OK", {{"Content-Length", "1"}}, "1", 20, 20)),
                                      Ex(1, Req("GET", "/2", {}, "", 30, 30), two)}));
}

TEST_CASE("a response to a request lost in a gap is reported alone", "[session][gap]") {
  HttpSession s(SessionOptions{}, Role::kServer);
  s.OnGap(kIn, 80, At(1));  // GET /1 lost
  // The tracker feeds each direction in order; here /3 is fed before the
  // response to /1, which was written before /3 was read.
  s.OnData(kIn, "GET /3 HTTP/1.1\r\n\r\n", At(5));
  s.OnData(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1", At(3));
  s.OnData(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n3", At(6));
  Message three = Req("GET", "/3", {}, "", 5, 5);
  three.gap_before = true;
  CHECK(DumpAll(Take(&s)) ==
        DumpAll({Ex(0, std::nullopt, Resp(200, "OK", {{"Content-Length", "1"}}, "1", 3, 3)),
                 Ex(1, three, Resp(200, "OK", {{"Content-Length", "1"}}, "3", 6, 6))}));
}

TEST_CASE("connection found mid-stream: role from the first message", "[session]") {
  HttpSession s(SessionOptions{}, Role::kUnknown);
  CHECK(s.role() == Role::kUnknown);
  // The end of a response body we joined in the middle of, then of a request body.
  s.OnData(kOut, "ld\"}", At(1));
  s.OnData(kIn, "t\"}GET /next HTTP/1.1\r\nHost: h\r\n\r\n", At(2));
  CHECK(s.role() == Role::kServer);
  s.OnData(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", At(3));
  Message req = Req("GET", "/next", {{"Host", "h"}}, "", 2, 2);
  req.gap_before = true;
  Message resp = Resp(200, "OK", {{"Content-Length", "2"}}, "ok", 3, 3);
  resp.gap_before = true;
  CHECK(DumpAll(Take(&s)) == DumpAll({Ex(0, req, resp)}));
  CHECK(s.stats().parse_errors == 0);
  CHECK_FALSE(s.not_http());
}

TEST_CASE("connection found mid-stream inside a request body", "[session]") {
  HttpSession s(SessionOptions{}, Role::kUnknown);
  // A client: we joined while it was sending a body; its next request follows.
  s.OnData(kOut, std::string(3000, 'x') + "\r\n", At(1));
  s.OnData(kIn, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", At(2));
  CHECK(s.role() == Role::kClient);
  s.OnData(kOut, "GET /again HTTP/1.1\r\n\r\n", At(3));
  s.OnData(kIn, "HTTP/1.1 304 Not Modified\r\n\r\n", At(4));
  Message orphan = Resp(200, "OK", {{"Content-Length", "0"}}, "", 2, 2);
  orphan.gap_before = true;
  Message again = Req("GET", "/again", {}, "", 3, 3);
  again.gap_before = true;
  CHECK(DumpAll(Take(&s)) == DumpAll({Ex(0, std::nullopt, orphan),
                                      Ex(1, again, Resp(304, "Not Modified", {}, "", 4, 4))}));
}

TEST_CASE("not HTTP: a fresh stream that starts with something else", "[session]") {
  HttpSession tls(SessionOptions{}, Role::kServer);
  tls.OnData(kIn, "\x16\x03\x01\x00\xa5\x01\x00", At(1));
  CHECK(tls.not_http());
  tls.OnData(kIn, "GET / HTTP/1.1\r\n\r\n", At(2));
  CHECK(tls.ready().empty());
  CHECK_FALSE(tls.busy());

  HttpSession banner(SessionOptions{}, Role::kClient);
  banner.OnData(kIn, "220 mail.example.com ESMTP\r\n", At(1));
  CHECK(banner.not_http());
}

TEST_CASE("not HTTP: too much garbage and never a message", "[session]") {
  SessionOptions options;
  options.not_http_after_bytes = 100;
  HttpSession s(options, Role::kUnknown);
  s.OnData(kIn, std::string(60, '\x01'), At(1));
  s.OnData(kOut, std::string(40, '\x02'), At(2));
  CHECK_FALSE(s.not_http());
  s.OnData(kOut, "\x03", At(3));
  CHECK(s.not_http());

  // Once a message was parsed, garbage no longer makes it not HTTP.
  HttpSession ok(options, Role::kUnknown);
  ok.OnData(kIn, "GET / HTTP/1.1\r\n\r\n", At(1));
  ok.OnData(kIn, std::string(500, '\x01'), At(2));
  CHECK_FALSE(ok.not_http());
  CHECK(ok.stats().parse_errors == 1);
}

TEST_CASE("a response written before the request body was read pairs with it",
          "[session][early]") {
  SECTION("server: 413, then close") {
    HttpSession s(SessionOptions{}, Role::kServer);
    s.OnData(kIn, "POST /up HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc", At(1));
    s.OnData(kOut, "HTTP/1.1 413 Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
              At(2));
    CHECK(s.ready().empty());
    CHECK(s.busy());
    s.OnClose(At(3));
    Message up = Req("POST", "/up", {{"Content-Length", "100"}}, "abc", 1, 1);
    up.complete = false;
    CHECK(DumpAll(Take(&s), true) ==
          DumpAll({Ex(0, up,
                      Resp(413, "Too Large", {{"Connection", "close"}, {"Content-Length", "0"}},
                           "", 2, 2))},
                  true));
  }
  SECTION("client: 401, the body sent on, then the next exchange") {
    HttpSession s(SessionOptions{}, Role::kClient);
    s.OnData(kOut, "PUT /f HTTP/1.1\r\nContent-Length: 6\r\n\r\nabc", At(1));
    s.OnData(kIn, "HTTP/1.1 401 No\r\nContent-Length: 0\r\n\r\n", At(2));
    s.OnData(kOut, "def", At(3));
    s.OnData(kOut, RequestBytes("GET", "/g"), At(4));
    s.OnData(kIn, "HTTP/1.1 204 None\r\n\r\n", At(5));
    CHECK_FALSE(s.busy());
    CHECK(DumpAll(Take(&s), true) ==
          DumpAll({Ex(0, Req("PUT", "/f", {{"Content-Length", "6"}}, "abcdef", 1, 3),
                      Resp(401, "No", {{"Content-Length", "0"}}, "", 2, 2)),
                   Ex(1, Req("GET", "/g", {}, "", 4, 4), Resp(204, "None", {}, "", 5, 5))},
                  true));
  }
  SECTION("held while the request's bytes still arrive, then given up alone") {
    HttpSession s(SessionOptions{}, Role::kServer);
    s.OnData(kIn, "POST /slow HTTP/1.1\r\nContent-Length: 100\r\n\r\nab", At(1));
    s.OnData(kOut, "HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n", At(2));
    s.OnData(kIn, "cd", At(10));
    s.ExpireOlderThan(5);  // the upload goes on: the response waits
    CHECK(s.ready().empty());
    s.ExpireOlderThan(11);
    CHECK(DumpAll(Take(&s), true) ==
          DumpAll({Ex(0, std::nullopt, Resp(400, "Bad", {{"Content-Length", "0"}}, "", 2, 2))},
                  true));
  }
}

TEST_CASE("close completes a body delimited by close, unanswered become incomplete", "[session]") {
  HttpSession s(SessionOptions{}, Role::kServer);
  s.OnData(kIn, "GET /old HTTP/1.0\r\n\r\n", At(1));
  s.OnData(kOut, "HTTP/1.0 200 OK\r\n\r\nuntil close", At(2));
  s.OnClose(At(3));
  Message req = Req("GET", "/old", {}, "", 1, 1);
  req.version_minor = 0;
  Message resp = Resp(200, "OK", {}, "until close", 2, 2);
  resp.version_minor = 0;
  CHECK(DumpAll(Take(&s)) == DumpAll({Ex(0, req, resp)}));

  HttpSession t(SessionOptions{}, Role::kServer);
  t.OnData(kIn, "GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc", At(1));
  t.OnClose(At(2));
  Message post = Req("POST", "/2", {{"Content-Length", "9"}}, "abc", 1, 1);
  post.complete = false;
  CHECK(DumpAll(Take(&t)) == DumpAll({Ex(0, Req("GET", "/1", {}, "", 1, 1), std::nullopt, 0, true),
                                      Ex(1, post, std::nullopt, 0, true)}));
}

TEST_CASE("expiry and FIFO bound", "[session]") {
  SessionOptions options;
  options.max_pending_requests = 2;
  HttpSession s(options, Role::kServer);
  s.OnData(kIn, "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", At(1));
  s.OnData(kIn, "GET /3 HTTP/1.1\r\n\r\n", At(5));
  CHECK(s.stats().requests_dropped == 1);
  s.ExpireOlderThan(3);
  CHECK(s.busy());  // /3 still waits
  s.ExpireOlderThan(6);
  CHECK_FALSE(s.busy());
  CHECK(DumpAll(Take(&s)) ==
        DumpAll({Ex(0, Req("GET", "/1", {}, "", 1, 1), std::nullopt, 0, true),
                 Ex(1, Req("GET", "/2", {}, "", 1, 1), std::nullopt, 0, true),
                 Ex(2, Req("GET", "/3", {}, "", 5, 5), std::nullopt, 0, true)}));
}

TEST_CASE("requests wait while a response is still arriving", "[session]") {
  HttpSession s(SessionOptions{}, Role::kServer);
  s.OnData(kIn, "GET /events HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n", At(1));
  s.OnData(kOut, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n", At(2));
  s.OnData(kOut, "3\r\nb", At(50));
  s.ExpireOlderThan(40);  // both requests are older, but a response byte came at 50
  s.OnGap(kOut, 1, At(60));
  s.ExpireOlderThan(55);  // a gap is input too
  CHECK(s.ready().empty());
  s.OnData(kOut, "c\r\n0\r\n\r\n", At(90));
  Message events = Resp(200, "OK", {{"Transfer-Encoding", "chunked"}}, "ab", 2, 90);
  events.chunked = true;
  events.body.size = 4;
  events.body.gap = true;
  events.body.truncated = true;
  CHECK(DumpAll(Take(&s)) == DumpAll({Ex(0, Req("GET", "/events", {}, "", 1, 1), events)}));
  // /next waited its turn behind /events: it expires only once no response
  // byte came since the deadline.
  s.ExpireOlderThan(80);
  CHECK(s.ready().empty());
  s.ExpireOlderThan(91);
  CHECK(DumpAll(Take(&s)) ==
        DumpAll({Ex(1, Req("GET", "/next", {}, "", 1, 1), std::nullopt, 0, true)}));
}

TEST_CASE("a request expires when its response started but stopped", "[session]") {
  HttpSession s(SessionOptions{}, Role::kClient);
  s.OnData(kOut, "GET /stuck HTTP/1.1\r\n\r\n", At(1));
  s.OnData(kIn, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", At(2));
  s.OnData(kOut, "GET /more HTTP/1.1\r\n\r\n", At(30));  // request bytes do not count
  s.ExpireOlderThan(3);
  CHECK(DumpAll(Take(&s)) ==
        DumpAll({Ex(0, Req("GET", "/stuck", {}, "", 1, 1), std::nullopt, 0, true)}));
  CHECK(s.busy());  // /more is newer than the deadline, and the response is still open
}

TEST_CASE("a chunked response held for its last chunk is cut short when quiet", "[session]") {
  HttpSession s(SessionOptions{}, Role::kServer);
  s.OnData(kIn, "GET /stream HTTP/1.1\r\n\r\n", At(1));
  s.OnData(kOut, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", At(2));
  s.OnGap(kOut, 100, At(3));  // took the framing
  s.OnData(kOut, "more", At(4));
  s.ExpireOlderThan(5);
  Message cut = Resp(200, "OK", {{"Transfer-Encoding", "chunked"}}, "ab", 2, 3);
  cut.chunked = true;
  cut.complete = false;
  cut.body.size = 5;
  cut.body.gap = true;
  cut.body.truncated = true;
  // Paired with its request, not written apart from it.
  CHECK(DumpAll(Take(&s)) == DumpAll({Ex(0, Req("GET", "/stream", {}, "", 1, 1), cut)}));
  CHECK(s.stats().parse_errors == 1);
}

TEST_CASE("a session can be moved while in use", "[session]") {
  HttpSession a(SessionOptions{}, Role::kServer);
  a.OnData(kIn, "GET /m HTTP/1.1\r\n\r\n", At(1));
  HttpSession b(std::move(a));
  b.OnData(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", At(2));
  HttpSession c(SessionOptions{}, Role::kClient);
  c = std::move(b);
  CHECK(DumpAll(Take(&c)) == DumpAll({Ex(0, Req("GET", "/m", {}, "", 1, 1),
                                         Resp(200, "OK", {{"Content-Length", "0"}}, "", 2, 2))}));
}

}  // namespace
}  // namespace httptraced::http

namespace httptraced::http {
namespace {

TEST_CASE("HttpSession hibernates between exchanges and resumes with its seq and role") {
  HttpSession s(SessionOptions{}, Role::kUnknown);
  const ChunkMeta meta{.ts_ns = 1, .tid = 2};
  CHECK_FALSE(s.Hibernate());  // nothing parsed yet: the role is not known
  s.OnData(Direction::kIngress, "GET /a HTTP/1.1\r\n\r\n", meta);
  CHECK_FALSE(s.Hibernate());  // a request waits for its response
  s.OnData(Direction::kEgress, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", meta);
  CHECK_FALSE(s.Hibernate());  // its exchange has not been taken yet
  REQUIRE(s.ready().size() == 1);
  CHECK(s.ready()[0].seq == 0);
  s.ready().clear();
  CHECK(s.Hibernate());
  CHECK(s.hibernating());
  CHECK(s.role() == Role::kServer);
  CHECK_FALSE(s.busy());
  CHECK(s.ready().empty());
  s.OnData(Direction::kIngress, "GET /b HTTP/1.1\r\n\r\n", meta);
  CHECK_FALSE(s.hibernating());
  s.OnData(Direction::kEgress, "HTTP/1.1 204 No Content\r\n\r\n", meta);
  REQUIRE(s.ready().size() == 1);
  CHECK(s.ready()[0].seq == 1);
  CHECK(s.ready()[0].request->target == "/b");
  CHECK(s.ready()[0].response->status_code == 204);
}

TEST_CASE("HttpSession keeps its parse error count across a hibernation") {
  HttpSession s(SessionOptions{}, Role::kServer);
  const ChunkMeta meta{.ts_ns = 1, .tid = 2};
  s.OnData(Direction::kIngress, "GET /a HTTP/1.1\r\n\r\n", meta);
  s.OnData(Direction::kEgress, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", meta);
  s.ready().clear();
  s.OnData(Direction::kIngress, "\x01\x02 junk\r\n\r\nGET /b HTTP/1.1\r\n\r\n", meta);
  s.OnData(Direction::kEgress, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", meta);
  s.ready().clear();
  const uint64_t errors = s.stats().parse_errors;
  CHECK(errors == 1);
  REQUIRE(s.Hibernate());
  CHECK(s.stats().parse_errors == errors);
  s.OnData(Direction::kIngress, "GET /c HTTP/1.1\r\n\r\n", meta);
  CHECK(s.stats().parse_errors == errors);
}

}  // namespace
}  // namespace httptraced::http
