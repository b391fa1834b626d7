// HttpSession: both directions of one TCP connection, from the traced process's
// point of view, turned into request/response exchanges.
//
// The caller (conn tracker) feeds each direction's byte stream in order, with
// explicit gaps where bytes were not captured. HttpSession owns one parser per
// direction and the stitcher that pairs requests with responses FIFO, so
// pipelined requests pair with the right responses.
#ifndef HTTPTRACED_HTTP_SESSION_H_
#define HTTPTRACED_HTTP_SESSION_H_

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "http/message.h"
#include "http/recycler.h"

namespace httptraced::http {

enum class Direction { kIngress = 0, kEgress = 1 };  // received / sent by the process
enum class Role { kUnknown = 0, kClient = 1, kServer = 2 };

struct SessionOptions {
  size_t max_body_bytes = 16384;     // body bytes kept per message
  size_t max_header_bytes = 65536;   // start line + headers buffered per message
  size_t max_pending_requests = 256;  // unanswered requests kept per connection
  // Bytes of unparseable data (with no message ever parsed) after which the
  // connection is declared not HTTP.
  size_t not_http_after_bytes = 65536;
  // Storage of written messages for the parsers to reuse (not owned; outlives
  // the session). Null: every message allocates afresh.
  MessageRecycler* recycler = nullptr;
};

struct SessionStats {
  uint64_t parse_errors = 0;        // times a parser lost sync and had to resynchronise
  uint64_t requests_dropped = 0;    // evicted from a full pending FIFO
};

class HttpSession {
 public:
  // role: kServer for accepted sockets (requests arrive on ingress), kClient for
  // connected ones (requests leave on egress), kUnknown for connections found
  // mid-stream: the first message seen decides.
  HttpSession(const SessionOptions& options, Role role);
  ~HttpSession();
  HttpSession(const HttpSession&) = delete;
  HttpSession& operator=(const HttpSession&) = delete;
  HttpSession(HttpSession&&) noexcept;
  HttpSession& operator=(HttpSession&&) noexcept;

  void OnData(Direction dir, std::string_view bytes, const ChunkMeta& meta);
  // `len` stream bytes in `dir` were not captured.
  void OnGap(Direction dir, uint64_t len, const ChunkMeta& meta);
  // The connection closed (or tracing stops): messages delimited by close are
  // completed, unanswered requests become incomplete exchanges.
  void OnClose(const ChunkMeta& meta);
  // Requests older than `deadline_ns` (first byte, monotonic) that are still
  // unanswered are emitted as incomplete exchanges, unless a byte of a
  // response came since the deadline: the server is still answering (a long
  // download, an event stream), and responses come in order.
  void ExpireOlderThan(uint64_t deadline_ns);

  // Exchanges completed so far, in order; the caller takes them (moves out and clears).
  std::vector<Exchange>& ready();

  Role role() const;
  // After a 101 Switching Protocols or a successful CONNECT: the rest is not HTTP.
  bool switched_protocols() const;
  // The bytes are clearly not HTTP/1.x: stop tracking the connection.
  bool not_http() const;
  // True while a request is waiting for its response or a message is half parsed.
  bool busy() const;
  const SessionStats& stats() const;
  // Body bytes ahead in `dir` that the session would only count, past what
  // max_body_bytes keeps (MessageParser::UnkeptBodyAhead): they may be
  // announced as a gap instead (OnGap) for the same exchanges. {} while
  // hibernating, after a protocol switch, or once the stream is not HTTP.
  BodySkip UnkeptBodyAhead(Direction dir) const;

  // Frees the parsing state of a session with nothing in flight (between
  // exchanges, role known, all exchanges taken), keeping only what continues
  // across exchanges (role, next seq, counters); the next bytes bring it
  // back. An idle keep-alive connection then costs a few dozen bytes here
  // instead of both parsers' and the stitcher's buffers. Returns whether it
  // hibernated.
  bool Hibernate();
  bool hibernating() const { return impl_ == nullptr; }

 private:
  struct Impl;
  Impl& Live();

  SessionOptions options_;
  Role role_;
  // Kept while hibernating.
  uint64_t next_seq_ = 0;
  SessionStats stats_;
  std::vector<Exchange> none_;  // ready() while hibernating: always empty
  std::unique_ptr<Impl> impl_;
};

}  // namespace httptraced::http

#endif  // HTTPTRACED_HTTP_SESSION_H_
