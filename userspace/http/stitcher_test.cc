#include "http/stitcher.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "http/test_util.h"

namespace httptraced::http {
namespace {

using testing::DumpAll;

Message Req(std::string_view method, std::string_view target, uint64_t ts) {
  Message m = testing::Request(method, target);
  m.first = {ts, 1};
  m.last = {ts, 1};
  return m;
}

Message Resp(int status, uint64_t ts) {
  Message m = testing::Response(status, "R");
  m.first = {ts, 1};
  m.last = {ts, 1};
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

TEST_CASE("pipelined requests pair with responses in order", "[stitcher]") {
  Stitcher s(256);
  std::vector<Exchange> out;
  s.AddRequest(Req("GET", "/1", 10), &out);
  s.AddRequest(Req("GET", "/2", 11), &out);
  s.AddRequest(Req("POST", "/3", 12), &out);
  CHECK(out.empty());
  CHECK(s.pending_requests() == 3);
  s.AddResponse(Resp(200, 20), &out);
  s.AddResponse(Resp(404, 21), &out);
  s.AddResponse(Resp(201, 22), &out);
  CHECK(DumpAll(out, true) == DumpAll({Ex(0, Req("GET", "/1", 10), Resp(200, 20)),
                                       Ex(1, Req("GET", "/2", 11), Resp(404, 21)),
                                       Ex(2, Req("POST", "/3", 12), Resp(201, 22))},
                                      true));
  CHECK(s.pending_requests() == 0);
}

TEST_CASE("interim responses are counted, 101 is final", "[stitcher]") {
  Stitcher s(256);
  std::vector<Exchange> out;
  s.AddRequest(Req("POST", "/p", 10), &out);
  s.AddResponse(Resp(100, 11), &out);
  s.AddResponse(Resp(103, 12), &out);
  CHECK(out.empty());
  s.AddResponse(Resp(200, 13), &out);
  s.AddRequest(Req("GET", "/ws", 20), &out);
  s.AddResponse(Resp(101, 21), &out);
  CHECK(DumpAll(out) == DumpAll({Ex(0, Req("POST", "/p", 10), Resp(200, 13), 2),
                                 Ex(1, Req("GET", "/ws", 20), Resp(101, 21))}));
}

TEST_CASE("100 Continue before the request body completed", "[stitcher]") {
  Stitcher s(256);
  std::vector<Exchange> out;
  s.AddResponse(Resp(100, 11), &out);          // the request is still receiving its body
  s.AddRequest(Req("PUT", "/big", 10), &out);  // complete now
  s.AddResponse(Resp(201, 13), &out);
  CHECK(DumpAll(out) == DumpAll({Ex(0, Req("PUT", "/big", 10), Resp(201, 13), 1)}));
}

TEST_CASE("an early response waits for the request in progress", "[stitcher]") {
  Stitcher s(256);
  std::vector<Exchange> out;
  s.AddResponse(Resp(100, 11), &out, 10);  // interim: counted, never held
  s.AddResponse(Resp(413, 12), &out, 10);  // the request begun at 10 is still arriving
  CHECK(out.empty());
  CHECK(s.holding_early_response());
  CHECK_FALSE(s.idle());
  s.AddRequest(Req("PUT", "/upload", 10), &out);  // complete (or cut short) now
  CHECK_FALSE(s.holding_early_response());
  CHECK(s.idle());
  // The next exchange pairs as usual.
  s.AddRequest(Req("GET", "/next", 20), &out);
  s.AddResponse(Resp(200, 21), &out, std::nullopt);
  CHECK(DumpAll(out) == DumpAll({Ex(0, Req("PUT", "/upload", 10), Resp(413, 12), 1),
                                 Ex(1, Req("GET", "/next", 20), Resp(200, 21))}));
}

TEST_CASE("an early response is held only when no waiting request takes it", "[stitcher]") {
  Stitcher s(256);
  std::vector<Exchange> out;
  // A waiting request answers it, whatever is in progress behind it.
  s.AddRequest(Req("GET", "/1", 10), &out);
  s.AddResponse(Resp(200, 12), &out, 11);
  CHECK_FALSE(s.holding_early_response());
  // A request in progress begun after the response cannot be answered by it.
  s.AddResponse(Resp(200, 13), &out, 14);
  CHECK_FALSE(s.holding_early_response());
  CHECK(DumpAll(out) == DumpAll({Ex(0, Req("GET", "/1", 10), Resp(200, 12)),
                                 Ex(1, std::nullopt, Resp(200, 13))}));
}

TEST_CASE("a held early response is released alone", "[stitcher]") {
  std::vector<Exchange> out;
  SECTION("by a request other than the one in progress") {
    Stitcher s(256);
    s.AddResponse(Resp(400, 12), &out, 10);
    s.AddRequest(Req("GET", "/other", 11), &out);
    CHECK(s.pending_requests() == 1);
    CHECK(DumpAll(out) == DumpAll({Ex(0, std::nullopt, Resp(400, 12))}));
  }
  SECTION("at the close") {
    Stitcher s(256);
    s.AddResponse(Resp(400, 12), &out, 10);
    s.Close(&out);
    CHECK(s.idle());
    CHECK(DumpAll(out) == DumpAll({Ex(0, std::nullopt, Resp(400, 12))}));
  }
  SECTION("when older than the deadline") {
    Stitcher s(256);
    s.AddResponse(Resp(400, 12), &out, 10);
    s.ExpireEarlyOlderThan(12, &out);
    CHECK(out.empty());
    s.ExpireEarlyOlderThan(13, &out);
    CHECK_FALSE(s.holding_early_response());
    CHECK(DumpAll(out) == DumpAll({Ex(0, std::nullopt, Resp(400, 12))}));
  }
  SECTION("a second early response") {
    Stitcher s(256);
    s.AddResponse(Resp(400, 12), &out, 10);
    s.AddResponse(Resp(408, 13), &out, 10);
    s.AddRequest(Req("POST", "/p", 10), &out);
    CHECK(DumpAll(out) == DumpAll({Ex(0, std::nullopt, Resp(408, 13)),
                                   Ex(1, Req("POST", "/p", 10), Resp(400, 12))}));
  }
}

TEST_CASE("the method a response answers, for HEAD and CONNECT rules", "[stitcher]") {
  Stitcher s(256);
  std::vector<Exchange> out;
  CHECK(s.PendingMethod(0, 100).empty());
  s.AddRequest(Req("HEAD", "/", 10), &out);
  s.AddRequest(Req("CONNECT", "h:443", 11), &out);
  CHECK(s.PendingMethod(0, 20) == "HEAD");
  CHECK(s.PendingMethod(1, 20) == "CONNECT");
  CHECK(s.PendingMethod(2, 20).empty());
  CHECK(s.PendingMethod(0, 5).empty());  // a response older than the request
}

TEST_CASE("a response with no request seen is reported alone", "[stitcher]") {
  Stitcher s(256);
  std::vector<Exchange> out;
  s.AddResponse(Resp(100, 5), &out);
  s.AddResponse(Resp(200, 6), &out);
  // A response that began before the only waiting request was sent cannot answer it.
  s.AddRequest(Req("GET", "/late", 30), &out);
  s.AddResponse(Resp(304, 20), &out);
  CHECK(s.pending_requests() == 1);
  s.AddResponse(Resp(200, 31), &out);
  CHECK(DumpAll(out) ==
        DumpAll({Ex(0, std::nullopt, Resp(200, 6), 1), Ex(1, std::nullopt, Resp(304, 20)),
                 Ex(2, Req("GET", "/late", 30), Resp(200, 31))}));
}

TEST_CASE("unknown (zero) timestamps do not prevent pairing", "[stitcher]") {
  Stitcher s(256);
  std::vector<Exchange> out;
  s.AddRequest(Req("GET", "/1", 50), &out);
  s.AddResponse(Resp(200, 0), &out);
  s.AddRequest(Req("GET", "/2", 0), &out);
  s.AddResponse(Resp(200, 10), &out);
  CHECK(DumpAll(out) == DumpAll({Ex(0, Req("GET", "/1", 50), Resp(200, 0)),
                                 Ex(1, Req("GET", "/2", 0), Resp(200, 10))}));
}

TEST_CASE("a full FIFO gives up on its oldest request", "[stitcher]") {
  Stitcher s(2);
  std::vector<Exchange> out;
  s.AddRequest(Req("GET", "/1", 1), &out);
  s.AddRequest(Req("GET", "/2", 2), &out);
  s.AddRequest(Req("GET", "/3", 3), &out);
  CHECK(s.requests_dropped() == 1);
  CHECK(s.pending_requests() == 2);
  // The first response answers /1 (given up on, reported alone): it must not
  // be paired with /2, nor shift every later pairing by one.
  s.AddResponse(Resp(200, 4), &out);
  s.AddResponse(Resp(201, 5), &out);
  s.AddResponse(Resp(202, 6), &out);
  CHECK(DumpAll(out) ==
        DumpAll({Ex(0, Req("GET", "/1", 1), std::nullopt, 0, true),
                 Ex(1, std::nullopt, Resp(200, 4)), Ex(2, Req("GET", "/2", 2), Resp(201, 5)),
                 Ex(3, Req("GET", "/3", 3), Resp(202, 6))}));
  CHECK(s.pending_requests() == 0);
}

TEST_CASE("a full FIFO counts the expired placeholders it drops", "[stitcher]") {
  Stitcher s(2);
  std::vector<Exchange> out;
  s.AddRequest(Req("HEAD", "/1", 1), &out);
  s.AddRequest(Req("GET", "/2", 2), &out);
  s.ExpireOlderThan(2, &out);               // /1 reported unanswered, placeholder kept
  s.AddRequest(Req("GET", "/3", 3), &out);  // full: the placeholder goes, counted
  CHECK(s.requests_dropped() == 0);
  CHECK(s.PendingMethod(0, 10).empty());  // /1's method is forgotten
  CHECK(s.PendingMethod(1, 10) == "GET");
  s.AddResponse(Resp(100, 9), &out);
  s.AddResponse(Resp(200, 10), &out);
  s.AddResponse(Resp(201, 11), &out);
  CHECK(DumpAll(out) == DumpAll({Ex(0, Req("HEAD", "/1", 1), std::nullopt, 0, true),
                                 Ex(1, std::nullopt, Resp(200, 10), 1),
                                 Ex(2, Req("GET", "/2", 2), Resp(201, 11))}));
}

TEST_CASE("losing response sync forgets the requests dropped from a full FIFO", "[stitcher]") {
  Stitcher s(1);
  std::vector<Exchange> out;
  s.AddRequest(Req("GET", "/1", 10), &out);
  s.AddRequest(Req("GET", "/2", 20), &out);  // /1 dropped, its response still due
  s.OnResponseSyncLost(30, &out);            // ... and it was in the lost bytes
  s.AddRequest(Req("GET", "/3", 40), &out);
  s.AddResponse(Resp(200, 50), &out);
  CHECK(DumpAll(out) == DumpAll({Ex(0, Req("GET", "/1", 10), std::nullopt, 0, true),
                                 Ex(1, Req("GET", "/2", 20), std::nullopt, 0, true),
                                 Ex(2, Req("GET", "/3", 40), Resp(200, 50))}));
}

TEST_CASE("close emits unanswered requests as incomplete", "[stitcher]") {
  Stitcher s(256);
  std::vector<Exchange> out;
  s.AddRequest(Req("GET", "/1", 1), &out);
  s.AddRequest(Req("POST", "/2", 2), &out);
  s.AddResponse(Resp(100, 3), &out);
  s.Close(&out);
  CHECK(DumpAll(out) == DumpAll({Ex(0, Req("GET", "/1", 1), std::nullopt, 1, true),
                                 Ex(1, Req("POST", "/2", 2), std::nullopt, 0, true)}));
  CHECK(s.pending_requests() == 0);
}

TEST_CASE("expired requests leave a placeholder for their late response", "[stitcher]") {
  Stitcher s(256);
  std::vector<Exchange> out;
  s.AddRequest(Req("GET", "/slow", 10), &out);
  s.AddRequest(Req("GET", "/next", 20), &out);
  s.ExpireOlderThan(15, &out);
  CHECK(s.pending_requests() == 1);
  s.ExpireOlderThan(15, &out);         // nothing more
  s.AddResponse(Resp(200, 30), &out);  // answers /slow, already reported
  s.AddResponse(Resp(200, 31), &out);
  CHECK(DumpAll(out) == DumpAll({Ex(0, Req("GET", "/slow", 10), std::nullopt, 0, true),
                                 Ex(1, std::nullopt, Resp(200, 30)),
                                 Ex(2, Req("GET", "/next", 20), Resp(200, 31))}));
}

TEST_CASE("response direction losing sync: requests sent before are left unanswered",
          "[stitcher]") {
  Stitcher s(256);
  std::vector<Exchange> out;
  s.AddRequest(Req("GET", "/1", 10), &out);
  s.AddRequest(Req("GET", "/2", 20), &out);
  s.AddRequest(Req("GET", "/3", 40), &out);
  s.OnResponseSyncLost(30, &out);
  s.AddResponse(Resp(200, 50), &out);
  CHECK(DumpAll(out) == DumpAll({Ex(0, Req("GET", "/1", 10), std::nullopt, 0, true),
                                 Ex(1, Req("GET", "/2", 20), std::nullopt, 0, true),
                                 Ex(2, Req("GET", "/3", 40), Resp(200, 50))}));
}

}  // namespace
}  // namespace httptraced::http
