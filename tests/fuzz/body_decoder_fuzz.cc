// libFuzzer target for http::BodyDecoder: bodies arrive from the network, and
// a Content-Encoding header says nothing about what the bytes really are.
//
// Two ways in, chosen by the first byte:
//   - raw: the rest of the input is a body's content, labelled gzip, deflate,
//     zstd, br or something else: any bytes, corrupt streams, bombs.
//   - round trip: the rest is plain text that is compressed here (gzip,
//     deflate, zstd or br), then cut (as the capture cap or a gap cuts a
//     body) and decoded.
// Invariants: Decode never writes more than the cap; when it declines, the
// message is untouched; when it decodes, the coding is named and truncated
// says whether anything is missing; a round trip gives back a prefix of the
// text, all of it (and not truncated) when the stream was whole and fits.
// One decoder serves every input of a run, as in the daemon.
#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_input.h"
#include "http/body_decoder.h"

namespace {

using httptraced::http::BodyDecoder;
using httptraced::http::Message;

// Caps around the edges of buffers and blocks, and --max_body_bytes's default.
constexpr size_t kCaps[] = {0, 1, 2, 3, 7, 16, 100, 255, 256, 1000, 1024, 4096, 4097, 16384};

// The first four are decoded (and made by Compress for round trips).
constexpr const char* kCodings[] = {"gzip", "deflate", "zstd", "br", "gzip, deflate", "x-gzip",
                                    "compress"};

std::string Compress(std::string_view coding, std::string_view text, int level) {
  if (coding == "br") {
    std::string out(BrotliEncoderMaxCompressedSize(text.size()) + 16, '\0');
    size_t n = out.size();
    FUZZ_CHECK(BrotliEncoderCompress(level, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC,
                                     text.size(), reinterpret_cast<const uint8_t*>(text.data()),
                                     &n, reinterpret_cast<uint8_t*>(out.data())) == BROTLI_TRUE);
    out.resize(n);
    return out;
  }
  if (coding == "zstd") {
    std::string out(ZSTD_compressBound(text.size()), '\0');
    const size_t n = ZSTD_compress(out.data(), out.size(), text.data(), text.size(), level % 5);
    FUZZ_CHECK(!ZSTD_isError(n));
    out.resize(n);
    return out;
  }
  // gzip, or deflate as the zlib format (level odd) or raw (level even).
  const int window_bits = coding == "gzip" ? 15 + 16 : (level % 2 == 1 ? 15 : -15);
  z_stream s{};
  FUZZ_CHECK(deflateInit2(&s, level % 10, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&s, static_cast<uLong>(text.size())), '\0');
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  s.avail_in = static_cast<uInt>(text.size());
  s.next_out = reinterpret_cast<Bytef*>(out.data());
  s.avail_out = static_cast<uInt>(out.size());
  FUZZ_CHECK(deflate(&s, Z_FINISH) == Z_STREAM_END);
  out.resize(s.total_out);
  deflateEnd(&s);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  httptraced::fuzz::Input in(data, size);
  const uint8_t mode = in.U8();
  const size_t pick = in.Below(std::size(kCaps));
  const size_t cap = kCaps[pick];
  // One decoder per cap, kept across inputs (reachable: not a leak).
  static BodyDecoder* decoders[std::size(kCaps)] = {};
  if (decoders[pick] == nullptr) decoders[pick] = new BodyDecoder(cap);
  BodyDecoder& decoder = *decoders[pick];

  Message m;
  m.kind = Message::Kind::kResponse;
  if ((mode & 1) == 0) {
    const char* coding = kCodings[in.Below(std::size(kCodings))];
    m.headers.push_back({"Content-Encoding", coding});
    m.body.content = std::string(in.Rest());
    m.body.size = m.body.content.size();
    const std::string before = m.body.content;
    if (decoder.Decode(m)) {
      FUZZ_CHECK(m.body.content.size() <= cap);
      FUZZ_CHECK(!m.body.decoded.empty());
    } else {
      FUZZ_CHECK(m.body.content == before);
      FUZZ_CHECK(m.body.decoded.empty());
    }
    return 0;
  }

  const char* coding = kCodings[in.Below(4)];
  const int level = static_cast<int>(in.Below(10));
  const std::string_view text = in.Rest();
  const std::string coded = Compress(coding, text, level);
  const size_t keep = coded.empty() ? 0 : static_cast<size_t>(mode >> 1) * coded.size() / 127;
  m.headers.push_back({"content-encoding", coding});
  m.body.content = coded.substr(0, keep);
  m.body.size = coded.size();
  const bool whole = keep == coded.size();
  if (!decoder.Decode(m)) {
    // A stream made here is declined only when there is no room at all, or
    // too little of it to tell the format (deflate's zlib header is 2 bytes).
    FUZZ_CHECK(keep < 2 || cap == 0);
    return 0;
  }
  FUZZ_CHECK(m.body.decoded == coding);
  FUZZ_CHECK(m.body.content.size() <= cap);
  FUZZ_CHECK(text.substr(0, m.body.content.size()) == m.body.content);
  if (whole && text.size() <= cap) {
    FUZZ_CHECK(m.body.content.size() == text.size());
    FUZZ_CHECK(!m.body.truncated);
  } else if (m.body.content.size() < text.size()) {
    FUZZ_CHECK(m.body.truncated);
  }
  return 0;
}
