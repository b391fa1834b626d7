// Content-coding removal for recorded bodies (RFC 9110 section 8.4).
//
// Clients and servers compress bodies more often than not: Python requests and
// Go's net/http ask for gzip by default, nginx and Node.js's compression
// middleware answer with it. As sent, such a body is base64 of compressed
// bytes, which nobody can read in a log. BodyDecoder turns the captured
// content of a gzip-, deflate-, zstd- or br-coded body back into what the
// application sent, up to a cap on the decoded size (a small body can decode
// to a large one: the cap bounds memory and time, whatever the peer sends).
#ifndef HTTPTRACED_HTTP_BODY_DECODER_H_
#define HTTPTRACED_HTTP_BODY_DECODER_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.h"

namespace httptraced::http {

enum class ContentCoding {
  kIdentity,  // no Content-Encoding, or "identity"
  kGzip,      // "gzip" or "x-gzip"
  kDeflate,   // "deflate": the zlib format, or raw deflate as some servers send
  kZstd,      // "zstd" (RFC 8878)
  kBrotli,    // "br" (RFC 7932)
  kOther,     // a coding not decoded here, or more than one coding
};

// The coding of a message's body, from its Content-Encoding header fields
// (names and coding names matched without regard to case, as the RFC says).
ContentCoding BodyCoding(const std::vector<Header>& headers);

// The coding's name as records give it ("gzip", "deflate", "zstd", "br"); empty for
// kIdentity and kOther.
std::string_view CodingName(ContentCoding coding);

// Decodes bodies one after another, keeping its decompressors' state (and
// their allocations) from one body to the next. Not thread-safe.
class BodyDecoder {
 public:
  // `max_output`: at most this many decoded bytes are kept per body.
  explicit BodyDecoder(size_t max_output);
  ~BodyDecoder();
  BodyDecoder(const BodyDecoder&) = delete;
  BodyDecoder& operator=(const BodyDecoder&) = delete;

  // When m's body content is coded with gzip, deflate, zstd or br, replaces it with
  // its first max_output decoded bytes and sets body.decoded to the coding's
  // name and body.truncated to whether the content is less than the whole
  // decoded body (the coded content stopped early: the capture cap, a gap, a
  // message cut short; or max_output was reached). body.size stays the size
  // as sent. Returns true then.
  //
  // Returns false and leaves m as it is when there is no content, the coding
  // is identity or one not decoded here, or the content does not decode (it
  // is not what the header says, or is corrupt).
  bool Decode(Message& m);

 private:
  struct Zlib;
  struct Zstd;
  struct Libdeflate;

  // Decode `in` into out_ (out_size_ bytes); false on malformed input.
  // whole: `in` is the entire body (nothing cut off), which lets the
  // whole-buffer decoder try first.
  bool Inflate(std::string_view in, bool gzip, bool whole, bool* complete);
  // libdeflate's whole-buffer decoding (about twice as fast as zlib's
  // streaming): true when it decoded all of `in` into at most max_output_
  // bytes; false when it could not (more output than that, a cut or corrupt
  // stream, concatenated members), and zlib decides.
  bool InflateWhole(std::string_view in, bool gzip, bool zlib_format);
  bool Unzstd(std::string_view in, bool* complete);
  bool Unbrotli(std::string_view in, bool* complete);

  size_t max_output_;
  std::unique_ptr<Zlib> zlib_;  // created on first use
  std::unique_ptr<Libdeflate> libdeflate_;  // created on first use
  std::unique_ptr<Zstd> zstd_;  // created on first use
  // Decoded bytes, max_output_ of room allocated once and not initialised
  // (a std::string would zero all of it for every body), copied into the body.
  std::unique_ptr<char[]> out_;
  size_t out_size_ = 0;
};

}  // namespace httptraced::http

#endif  // HTTPTRACED_HTTP_BODY_DECODER_H_
