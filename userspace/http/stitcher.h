// Stitcher: pairs the requests and responses of one connection into exchanges.
//
// HTTP/1.x answers requests in order, so requests wait in a FIFO and each final
// response answers the oldest unanswered one (pipelined requests 1, 2, 3 pair
// with responses 1, 2, 3). Interim 1xx responses (not 101) are counted on the
// exchange of the next final response and do not consume a request; a 1xx may
// arrive before its request is complete (Expect: 100-continue: the request
// reaches the stitcher only with its body, after the 100).
//
// Early responses. A server may answer before it has read the whole request
// (413 or 401 to an upload, 501 to an unknown method, then close), so a final
// response can be complete while its request is still being parsed. When no
// waiting request can take it and the request direction is in the middle of
// a request begun no later than the response, the response is held for that
// request: the request pairs with it as soon as the parser emits it (complete,
// or cut short at the close). A request that is not the one in progress (its
// first byte differs) releases the held response alone. Held responses are
// given up (emitted alone) by ExpireEarlyOlderThan and Close.
//
// Lost bytes make the order ambiguous; the stitcher prefers leaving a request or
// a response unpaired to pairing it with the wrong partner:
//  - A response never answers a request whose first byte came after the
//    response's first byte (timestamps of the syscalls that carried them; a
//    zero timestamp counts as unknown and rules nothing out). A
//    response to a request that was never seen (lost in a gap, or sent before
//    tracing began) therefore does not steal the next request: it becomes an
//    exchange with only a response.
//  - When the response direction loses sync at time T (a gap not absorbed by a
//    body of known length, or garbage where a response should have started: a
//    response mangled from its first byte is as lost as one in a gap), any
//    response in the lost bytes answered a request sent before T. How many were lost is unknown, so
//    every request sent before T and still waiting is emitted unanswered (incomplete), and later
//    responses pair with requests sent after T. Only a client that pipelined yet
//    another request between T and the next response can still be mispaired.
//  - Requests given up on by ExpireOlderThan stay in the FIFO as placeholders so
//    that a late response consumes the placeholder (and is reported without its
//    request) instead of the next request's slot.
//  - A full FIFO (a peer pipelining more than max_pending_requests requests
//    ahead of the answers) gives up on its oldest entry, but still counts it:
//    the next final response answers that request, not the next one, and is
//    reported alone. The count costs no memory per request; what is forgotten
//    is the method: such responses are framed by GET rules, so one answering a
//    forgotten HEAD is read as having a body, which loses the response
//    direction's sync (the rule above then applies).
#ifndef HTTPTRACED_HTTP_STITCHER_H_
#define HTTPTRACED_HTTP_STITCHER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.h"
#include "http/reusing_queue.h"

namespace httptraced::http {

class Stitcher {
 public:
  // first_seq: the seq of the next exchange (a session resumed after Hibernate).
  explicit Stitcher(size_t max_pending_requests, uint64_t first_seq = 0);

  void AddRequest(Message&& request, std::vector<Exchange>* out);
  // Final responses are paired (or emitted alone); 1xx other than 101 are counted.
  // request_in_progress: the first byte's time of the request the request
  // direction is in the middle of, if it is (see "Early responses").
  void AddResponse(Message&& response, std::vector<Exchange>* out,
                   std::optional<uint64_t> request_in_progress = std::nullopt);
  // The response direction lost sync at `ts_ns`: requests sent before then and
  // still unanswered are emitted as incomplete exchanges.
  void OnResponseSyncLost(uint64_t ts_ns, std::vector<Exchange>* out);
  // Unanswered requests whose first byte is older than `deadline_ns` are emitted
  // as incomplete exchanges.
  void ExpireOlderThan(uint64_t deadline_ns, std::vector<Exchange>* out);
  // A held early response whose first byte is older than `deadline_ns` is
  // emitted alone.
  void ExpireEarlyOlderThan(uint64_t deadline_ns, std::vector<Exchange>* out);
  // End of connection: every unanswered request is emitted as incomplete.
  void Close(std::vector<Exchange>* out);

  // Method of the request a final response starting at `response_ts_ns` would
  // answer, `skip` places down the FIFO; "" when none or unknown.
  std::string_view PendingMethod(size_t skip, uint64_t response_ts_ns) const;
  // Requests waiting for a response (placeholders of expired ones excluded).
  size_t pending_requests() const { return waiting_; }
  uint64_t requests_dropped() const { return requests_dropped_; }
  // The seq the next exchange will get.
  uint64_t next_seq() const { return next_seq_; }
  // Nothing held: no request waiting (or expired placeholder), none forgotten,
  // no 1xx waiting for its final response, no early response.
  bool idle() const {
    return fifo_.empty() && forgotten_ == 0 && orphan_interim_ == 0 && early_ == nullptr;
  }
  // A final response is held for the request in progress.
  bool holding_early_response() const { return early_ != nullptr; }

 private:
  struct Pending {
    Message request;  // moved out (and `expired` set) once emitted by expiry
    std::string method;
    uint64_t first_ts_ns = 0;
    uint32_t interim = 0;
    bool expired = false;
  };

  // Whether the oldest entry may be answered by a response that began at `ts_ns`.
  bool FrontAnswers(uint64_t response_ts_ns) const;
  // A new exchange at the end of *out, with the next seq: filled in place, so
  // that its messages are moved once, not again into the vector.
  Exchange& Emit(std::vector<Exchange>* out);
  void EmitUnanswered(Pending* pending, std::vector<Exchange>* out);
  // The held early response, alone or answering `request`.
  void EmitEarly(Message* request, std::vector<Exchange>* out);

  size_t max_pending_;
  // Unanswered requests older than every entry of fifo_, dropped from it when
  // it was full: the next `forgotten_` final responses answer them.
  uint64_t forgotten_ = 0;
  uint64_t forgotten_oldest_ts_ = 0;  // first byte of the oldest of them
  uint64_t forgotten_newest_ts_ = 0;  // and of the newest
  ReusingQueue<Pending> fifo_;
  size_t waiting_ = 0;           // entries of fifo_ not expired
  uint32_t orphan_interim_ = 0;  // 1xx seen with no request to attach them to
  // A final response held for the request in progress (see "Early responses"):
  // that request's first byte, and the 1xx that came before the response.
  // Rare: kept out of line, so that every live session does not carry room
  // for a message (10k connections).
  std::unique_ptr<Message> early_;
  uint64_t early_request_ts_ = 0;
  uint32_t early_interim_ = 0;
  uint64_t next_seq_ = 0;
  uint64_t requests_dropped_ = 0;
};

}  // namespace httptraced::http

#endif  // HTTPTRACED_HTTP_STITCHER_H_
