// libFuzzer target for request/response pairing: HttpSession (parsers plus
// Stitcher) driven the way a real connection drives it.
//
// The input scripts a conversation between a client and a server that answers
// requests in order: requests of several shapes (GET, HEAD, POST with a
// Content-Length or chunked body, Expect: 100-continue, Upgrade), each carrying
// its number in an X-Id header; responses (100 Continue, 200 with a body, 204,
// chunked, 101) carrying the number of the request they answer (X-Id) and their
// own serial (X-Seq); responses to nothing; responses sent while a request's
// body is half sent (early answers); pipelining; messages split into
// pieces at any byte; pieces lost (gaps), junk between messages, standalone gaps,
// request timeouts; the session's role known (server, client) or not.
//
// Checked, beyond "no crash, no sanitizer report":
//  - exchanges come out numbered 0, 1, 2, ... (seq), in order;
//  - no request and no response comes out twice, and requests (and responses)
//    come out in the order they were sent;
//  - a response is never paired with a request sent after it began;
//  - when nothing was lost and no junk was sent, pairing is exact, even past
//    max_pending_requests (unless a HEAD request overflowed that queue: the
//    queue forgets the methods of what it drops, see Stitcher, and a HEAD
//    response read as if it had a body desynchronises what follows like lost
//    bytes do); and unless requests overflowed it at all, every request
//    and response comes out exactly once, each response with the request it
//    answers (or alone if it answers nothing, or its request was already
//    reported unanswered: timed out, or dropped from a full queue), and only
//    requests without a response are incomplete.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_input.h"
#include "http/message.h"
#include "http/parser.h"
#include "http/session.h"

namespace httptraced::http {
namespace {

using fuzz::Input;

constexpr uint64_t kOrphanBase = 1'000'000;  // X-Id of responses that answer nothing

// The number in header `name`, or -1.
int64_t IdOf(const Message& m, std::string_view name) {
  const std::string* v = FindHeader(m.headers, name);
  if (v == nullptr || v->empty() || v->size() > 12) return -1;
  int64_t n = 0;
  for (char c : *v) {
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  return n;
}

struct SentRequest {
  uint64_t id = 0;
  bool head = false;
  bool upgrade = false;
};

class Conversation {
 public:
  Conversation(const uint8_t* data, size_t size)
      : in_(data, size), trace_(std::getenv("HT_FUZZ_TRACE") != nullptr) {}

  void Run() {
    const uint8_t setup = in_.U8();
    const int role_bits = setup & 3;
    role_ = role_bits == 0 ? Role::kServer : role_bits == 1 ? Role::kClient : Role::kUnknown;
    // With an unknown role the conversation still has a layout: who sent what.
    server_layout_ = role_bits != 1 && role_bits != 3;
    SessionOptions options;
    options.max_body_bytes = 16;
    options.max_header_bytes = 512;
    options.max_pending_requests = 1 + ((setup >> 2) & 7);
    options.not_http_after_bytes = 2048;
    max_pending_ = options.max_pending_requests;
    HttpSession session(options, role_);
    session_ = &session;

    size_t ops = 0;
    while (!in_.empty() && ops++ < 512) {
      switch (in_.U8() % 8) {
        case 0:
        case 1:
          SendRequest();
          break;
        case 2:
        case 3:
          SendResponse();
          break;
        case 4:
          SendInterim();
          break;
        case 5:
          Junk();
          break;
        case 6:
          Gap();
          break;
        case 7:
          Trace(RequestDir(), "expire");
          session.ExpireOlderThan(clock_ + 1 - std::min<uint64_t>(clock_, in_.U8()));
          break;
      }
      Collect();
    }
    session.OnClose(ChunkMeta{++clock_, 1});
    Collect();
    CheckAll();
  }

 private:
  Direction RequestDir() const { return server_layout_ ? Direction::kIngress : Direction::kEgress; }
  Direction ResponseDir() const {
    return server_layout_ ? Direction::kEgress : Direction::kIngress;
  }

  // Feeds a message in pieces; some pieces may be lost (gaps) when the input says.
  void Feed(Direction dir, const std::string& bytes) {
    const uint8_t how = in_.U8();
    Trace(dir, bytes);
    size_t pos = 0;
    while (pos < bytes.size()) {
      size_t len = bytes.size() - pos;
      if ((how & 3) != 0) len = std::min<size_t>(len, 1 + in_.Below(how & 2 ? 8 : 64));
      const bool lose = (how & 0xe0) == 0xe0 && in_.U8() % 4 == 0;
      if (lose) {
        disturbed_ = true;
        session_->OnGap(dir, len, ChunkMeta{++clock_, 1});
      } else {
        session_->OnData(dir, std::string_view(bytes).substr(pos, len), ChunkMeta{++clock_, 1});
      }
      pos += len;
    }
  }

  void SendRequest() {
    const uint8_t kind = in_.U8() % 6;
    SentRequest r;
    r.id = next_request_++;
    const std::string id = std::to_string(r.id);
    std::string msg;
    size_t early_at = 0;  // when not 0: a response goes out after msg[0, early_at)
    switch (kind) {
      case 0:
        msg = "GET /r" + id + " HTTP/1.1\r\nHost: h\r\nX-Id: " + id + "\r\n\r\n";
        break;
      case 1:
        msg = "HEAD /r" + id + " HTTP/1.1\r\nX-Id: " + id + "\r\n\r\n";
        r.head = true;
        break;
      case 2: {
        const std::string body = "body-of-" + id;
        msg = "POST /r" + id + " HTTP/1.1\r\nX-Id: " + id +
              "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
        // Sometimes a response is sent while this body is half sent: the
        // oldest outstanding request's, or (nothing else outstanding) this
        // one's, an early answer before its body was read.
        early_at = in_.U8() % 2 == 0 ? msg.size() - body.size() / 2 : 0;
        break;
      }
      case 3:
        msg = "POST /r" + id + " HTTP/1.1\r\nX-Id: " + id +
              "\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n" + "0\r\n\r\n";
        break;
      case 4:
        msg = "PUT /r" + id + " HTTP/1.0\r\nX-Id: " + id +
              "\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nxyz";
        break;
      case 5:
        msg = "GET /ws" + id + " HTTP/1.1\r\nX-Id: " + id +
              "\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n";
        r.upgrade = true;
        break;
    }
    sent_requests_.push_back(r.id);
    outstanding_.push_back(r);
    if (outstanding_.size() > max_pending_) {
      overflowed_ = true;
      for (const SentRequest& o : outstanding_) {
        if (o.head) head_forgotten_ = true;
      }
    }
    if (early_at == 0) {
      Feed(RequestDir(), msg);
      return;
    }
    Feed(RequestDir(), msg.substr(0, early_at));
    SendResponse();
    Feed(RequestDir(), msg.substr(early_at));
  }

  void SendResponse() {
    const uint64_t seq = next_response_++;
    SentRequest answers;
    bool orphan = outstanding_.empty();
    if (orphan) {
      answers.id = kOrphanBase + seq;
    } else {
      answers = outstanding_.front();
      outstanding_.pop_front();
    }
    const std::string id = std::to_string(answers.id);
    const std::string head_fields = "X-Id: " + id + "\r\nX-Seq: " + std::to_string(seq) + "\r\n";
    std::string msg;
    const uint8_t kind = in_.U8() % 4;
    if (answers.upgrade && kind == 0) {
      msg = "HTTP/1.1 101 Switching Protocols\r\n" + head_fields + "Upgrade: x\r\n\r\n";
      switched_ = true;
    } else if (answers.head || kind == 1) {
      msg = "HTTP/1.1 " + std::string(answers.head ? "200 OK" : "204 No Content") + "\r\n" +
            head_fields + (answers.head ? "Content-Length: 40\r\n" : "") + "\r\n";
    } else if (kind == 2) {
      msg = "HTTP/1.1 200 OK\r\n" + head_fields +
            "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
    } else {
      const std::string body = "answer-to-" + id;
      msg = "HTTP/1.1 200 OK\r\n" + head_fields + "Content-Length: " + std::to_string(body.size()) +
            "\r\n\r\n" + body;
    }
    sent_responses_.push_back(seq);
    response_answers_[seq] = orphan ? -1 : static_cast<int64_t>(answers.id);
    Feed(ResponseDir(), msg);
  }

  void SendInterim() {
    if (outstanding_.empty()) return;  // a 100 answers a request in progress
    Feed(ResponseDir(), "HTTP/1.1 100 Continue\r\n\r\n");
  }

  // Bytes that are not HTTP: no letters, so they cannot form a start line.
  void Junk() {
    std::string junk(in_.Bytes(40));
    for (char& c : junk) {
      if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) c = '#';
    }
    if (junk.empty()) return;
    disturbed_ = true;
    Trace(RequestDir(), "junk");
    session_->OnData(in_.U8() % 2 == 0 ? RequestDir() : ResponseDir(), junk,
                     ChunkMeta{++clock_, 1});
  }

  void Gap() {
    disturbed_ = true;
    Trace(RequestDir(), "gap");
    const uint64_t len = in_.U8() % 4 == 0 ? in_.U32() : 1 + in_.U8();
    session_->OnGap(in_.U8() % 2 == 0 ? RequestDir() : ResponseDir(), len, ChunkMeta{++clock_, 1});
  }

  // HT_FUZZ_TRACE=1 prints the conversation, for triage.
  void Trace(Direction dir, std::string_view what) const {
    if (!trace_) return;
    std::fprintf(stderr, "%s %s\n", dir == RequestDir() ? "req " : "resp",
                 std::string(what.substr(0, what.find('\n'))).c_str());
  }

  void Collect() {
    for (Exchange& e : session_->ready()) {
      if (trace_) {
        std::fprintf(stderr, "  -> exchange %llu: request %lld response %lld incomplete %d\n",
                     static_cast<unsigned long long>(e.seq),
                     static_cast<long long>(e.request ? IdOf(*e.request, "x-id") : -2),
                     static_cast<long long>(e.response ? IdOf(*e.response, "x-seq") : -2),
                     e.incomplete);
      }
      FUZZ_CHECK(e.seq == exchanges_.size());
      exchanges_.push_back(std::move(e));
    }
    session_->ready().clear();
  }

  void CheckAll() const {
    std::map<int64_t, int> requests_seen;
    std::map<int64_t, int> responses_seen;
    std::set<int64_t> given_up;  // requests reported without a response so far
    int64_t last_request = -1;
    int64_t last_response = -1;
    for (const Exchange& e : exchanges_) {
      FUZZ_CHECK(e.request.has_value() || e.response.has_value());
      FUZZ_CHECK(!(e.incomplete && e.response.has_value()));
      int64_t req = -1;
      int64_t resp = -1;
      if (e.request) {
        FUZZ_CHECK(e.request->kind == Message::Kind::kRequest);
        req = IdOf(*e.request, "x-id");
        if (req >= 0) {
          FUZZ_CHECK(++requests_seen[req] == 1);  // at most once
          FUZZ_CHECK(req > last_request);         // in the order sent
          last_request = req;
        }
      }
      if (e.response) {
        FUZZ_CHECK(e.response->kind == Message::Kind::kResponse);
        FUZZ_CHECK(e.response->status_code >= 200 || e.response->status_code == 101);
        resp = IdOf(*e.response, "x-seq");
        if (resp >= 0) {
          FUZZ_CHECK(++responses_seen[resp] == 1);
          FUZZ_CHECK(resp > last_response);
          last_response = resp;
        }
      }
      if (e.request && e.response) {
        // Never paired with a request sent after the response began.
        FUZZ_CHECK(e.request->first.ts_ns <= e.response->first.ts_ns);
        if (!disturbed_ && !head_forgotten_) {
          FUZZ_CHECK(req >= 0 && resp >= 0);
          FUZZ_CHECK(response_answers_.at(static_cast<uint64_t>(resp)) == req);
        }
      }
      if (!disturbed_ && !head_forgotten_) {
        FUZZ_CHECK(e.request.has_value() == (req >= 0));
        FUZZ_CHECK(e.response.has_value() == (resp >= 0));
        // (A session joined mid-stream marks its first messages gap_before.)
        const bool fresh = role_ != Role::kUnknown;
        if (e.request) FUZZ_CHECK(e.request->complete && !(fresh && e.request->gap_before));
        if (e.response && !overflowed_) {
          FUZZ_CHECK(e.response->complete && !(fresh && e.response->gap_before));
        }
        if (e.request && !e.response) FUZZ_CHECK(e.incomplete);
        // A response alone answers nothing, or a request already given up on
        // (timed out, or dropped from a full queue) and reported unanswered.
        if (e.response && !e.request) {
          const int64_t answers = response_answers_.at(static_cast<uint64_t>(resp));
          FUZZ_CHECK(answers < 0 || given_up.count(answers) == 1);
        }
        if (e.request && !e.response) given_up.insert(req);
      }
    }
    if (!disturbed_ && !switched_ && !overflowed_) {
      // Nothing lost: everything sent came out, exactly once.
      FUZZ_CHECK(requests_seen.size() == sent_requests_.size());
      FUZZ_CHECK(responses_seen.size() == sent_responses_.size());
    }
  }

  Input in_;
  Role role_ = Role::kUnknown;
  bool server_layout_ = true;
  HttpSession* session_ = nullptr;
  uint64_t clock_ = 0;
  uint64_t next_request_ = 0;
  uint64_t next_response_ = 0;
  std::deque<SentRequest> outstanding_;
  std::vector<uint64_t> sent_requests_;
  std::vector<uint64_t> sent_responses_;
  std::map<uint64_t, int64_t> response_answers_;
  std::vector<Exchange> exchanges_;
  bool disturbed_ = false;  // bytes lost or junk sent
  bool switched_ = false;   // a 101 was sent: the rest is ignored
  bool trace_ = false;
  size_t max_pending_ = 1;
  // More requests were waiting than max_pending_requests: the oldest were
  // dropped from the queue (counted, their methods forgotten), so a response
  // to a HEAD among them is framed by GET rules and may be cut short.
  bool overflowed_ = false;
  // ... and a HEAD may be among them: its response is then read as if it had
  // a body, which desynchronises the responses like lost bytes would.
  bool head_forgotten_ = false;
};

}  // namespace
}  // namespace httptraced::http

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  httptraced::http::Conversation(data, size).Run();
  return 0;
}
