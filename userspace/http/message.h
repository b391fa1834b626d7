// HTTP/1.x messages and exchanges: what the parser produces and the stitcher pairs.
#ifndef HTTPTRACED_HTTP_MESSAGE_H_
#define HTTPTRACED_HTTP_MESSAGE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace httptraced::http {

// Where a chunk of bytes came from: the syscall that carried it.
struct ChunkMeta {
  uint64_t ts_ns = 0;  // CLOCK_MONOTONIC at syscall exit
  uint32_t tid = 0;    // thread that made the syscall
};

struct Header {
  std::string name;   // as sent (original case)
  std::string value;  // leading/trailing whitespace removed
};

struct Body {
  std::string content;    // the first bytes of the (de-chunked) body, at most max_body_bytes
  uint64_t size = 0;      // the body's true size in bytes (de-chunked), captured or not
  bool truncated = false;  // content holds fewer bytes than size (cap or missing bytes)
  // Some of the bytes that content would hold were never seen (drops,
  // sendfile, the kernel's per-syscall cap): content stops at the gap. Bytes
  // past max_body_bytes that were not seen are no gap (they are only counted).
  bool gap = false;
  // Chunked framing was lost in a gap (a read larger than the capture cap,
  // a drop) and found again at the last chunk: size also counts the chunk
  // size lines and CRLFs between the gap and the end, so it is a little more
  // than the de-chunked size.
  bool framing_lost = false;
  // The content-coding (Content-Encoding) that was removed from content, as
  // its name ("gzip", "deflate", "zstd", "br"; static storage), by BodyDecoder:
  // content is then decoded bytes while size still counts the coded ones.
  // Empty: content is as sent.
  std::string_view decoded;
};

// Body bytes ahead of the parser that it will count but not keep (see
// MessageParser::UnkeptBodyAhead): after the next `keep` bytes of the stream,
// `len` bytes only add to the body's size. len == 0: nothing to skip.
struct BodySkip {
  uint64_t keep = 0;
  uint64_t len = 0;
};

struct Message {
  enum class Kind { kRequest, kResponse };
  Kind kind = Kind::kRequest;
  int version_minor = 1;  // HTTP/1.<minor>
  // Request line.
  std::string method;
  std::string target;  // request-target as sent
  // Status line.
  int status_code = 0;
  std::string reason;
  std::vector<Header> headers;   // in order, repeated names kept
  std::vector<Header> trailers;  // chunked trailers
  Body body;
  bool chunked = false;
  // Timing: the syscalls that carried the first and the last byte of the message.
  ChunkMeta first;
  ChunkMeta last;
  // False when the message was cut short (gap, close, shutdown) before it ended.
  bool complete = true;
  // The head (start line + headers) exceeded max_header_bytes: later headers dropped.
  bool headers_truncated = false;
  // Bytes were lost or skipped (resync) right before this message began.
  bool gap_before = false;
};

// One request and the response that answered it.
struct Exchange {
  std::optional<Message> request;   // absent: a response with no request seen
  std::optional<Message> response;  // final response; absent: none seen (incomplete)
  uint64_t seq = 0;                 // 0-based index of the exchange on its connection
  uint32_t interim_responses = 0;   // 1xx responses seen before the final one
  bool incomplete = false;  // written at close/idle/shutdown without a final response
};

}  // namespace httptraced::http

#endif  // HTTPTRACED_HTTP_MESSAGE_H_
