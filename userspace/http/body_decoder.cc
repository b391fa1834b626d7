#include "http/body_decoder.h"

#include <brotli/decode.h>
#include <libdeflate.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdint>
#include <limits>
#include <utility>

#include "http/parser.h"

namespace httptraced::http {
namespace {

// Header and coding names compare without regard to ASCII case.
bool EqualsIgnoreCase(std::string_view a, std::string_view b) { return HeaderNameEquals(a, b); }

// Optional whitespace around a list element (RFC 9110 section 5.6.1).
std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 1950: CM = 8 (deflate), a window of at most 32 KiB, and the check bits.
bool LooksLikeZlib(std::string_view in) {
  if (in.size() < 2) return false;
  const auto cmf = static_cast<unsigned char>(in[0]);
  const auto flg = static_cast<unsigned char>(in[1]);
  return (cmf & 0x0f) == 8 && (cmf >> 4) <= 7 && ((cmf << 8) | flg) % 31 == 0;
}

// zlib counts sizes in uInt; content is at most --max_body_bytes (1 MiB), so
// this never clamps, but the cast is checked rather than assumed.
uInt ClampToUInt(size_t n) {
  return n > std::numeric_limits<uInt>::max() ? std::numeric_limits<uInt>::max()
                                              : static_cast<uInt>(n);
}

// Decoders keep at most 8 MiB of window, as RFC 9659 asks of HTTP's zstd
// (a frame that wants more is refused and its content left as sent).
constexpr int kZstdWindowLogMax = 23;

}  // namespace

ContentCoding BodyCoding(const std::vector<Header>& headers) {
  ContentCoding found = ContentCoding::kIdentity;
  for (const Header& h : headers) {
    if (!EqualsIgnoreCase(h.name, "content-encoding")) continue;
    std::string_view rest = h.value;
    while (true) {
      const size_t comma = rest.find(',');
      const std::string_view name = TrimOws(rest.substr(0, comma));
      ContentCoding coding = ContentCoding::kOther;
      if (name.empty() || EqualsIgnoreCase(name, "identity")) {
        coding = ContentCoding::kIdentity;
      } else if (EqualsIgnoreCase(name, "gzip") || EqualsIgnoreCase(name, "x-gzip")) {
        coding = ContentCoding::kGzip;
      } else if (EqualsIgnoreCase(name, "deflate")) {
        coding = ContentCoding::kDeflate;
      } else if (EqualsIgnoreCase(name, "zstd")) {
        coding = ContentCoding::kZstd;
      } else if (EqualsIgnoreCase(name, "br")) {
        coding = ContentCoding::kBrotli;
      }
      if (coding != ContentCoding::kIdentity) {
        // A second coding: applied one over the other, not decoded here.
        if (found != ContentCoding::kIdentity) return ContentCoding::kOther;
        found = coding;
      }
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return found;
}

std::string_view CodingName(ContentCoding coding) {
  switch (coding) {
    case ContentCoding::kGzip:
      return "gzip";
    case ContentCoding::kDeflate:
      return "deflate";
    case ContentCoding::kZstd:
      return "zstd";
    case ContentCoding::kBrotli:
      return "br";
    case ContentCoding::kIdentity:
    case ContentCoding::kOther:
      break;
  }
  return {};
}

struct BodyDecoder::Zlib {
  z_stream stream{};
  bool ready = false;
  ~Zlib() {
    if (ready) inflateEnd(&stream);
  }
};

struct BodyDecoder::Libdeflate {
  libdeflate_decompressor* d = nullptr;
  ~Libdeflate() { libdeflate_free_decompressor(d); }
};

struct BodyDecoder::Zstd {
  ZSTD_DCtx* dctx = nullptr;
  ~Zstd() { ZSTD_freeDCtx(dctx); }
};

BodyDecoder::BodyDecoder(size_t max_output) : max_output_(max_output) {}

BodyDecoder::~BodyDecoder() = default;

bool BodyDecoder::Decode(Message& m) {
  if (m.body.content.empty() || max_output_ == 0) return false;
  const ContentCoding coding = BodyCoding(m.headers);
  if (coding == ContentCoding::kIdentity || coding == ContentCoding::kOther) return false;
  if (!out_) out_ = std::make_unique_for_overwrite<char[]>(max_output_);
  out_size_ = 0;
  bool complete = false;
  const bool whole = !m.body.truncated && !m.body.gap;
  switch (coding) {
    case ContentCoding::kGzip:
      if (!Inflate(m.body.content, /*gzip=*/true, whole, &complete)) return false;
      break;
    case ContentCoding::kDeflate:
      if (!Inflate(m.body.content, /*gzip=*/false, whole, &complete)) return false;
      break;
    case ContentCoding::kZstd:
      if (!Unzstd(m.body.content, &complete)) return false;
      break;
    case ContentCoding::kBrotli:
      if (!Unbrotli(m.body.content, &complete)) return false;
      break;
    case ContentCoding::kIdentity:
    case ContentCoding::kOther:
      return false;
  }
  m.body.content.assign(out_.get(), out_size_);
  m.body.decoded = CodingName(coding);
  m.body.truncated = !complete;
  return true;
}

bool BodyDecoder::InflateWhole(std::string_view in, bool gzip, bool zlib_format) {
  if (!libdeflate_) {
    libdeflate_ = std::make_unique<Libdeflate>();
    libdeflate_->d = libdeflate_alloc_decompressor();
  }
  if (libdeflate_->d == nullptr) return false;
  size_t in_used = 0;
  size_t out_used = 0;
  libdeflate_result rc;
  if (gzip) {
    rc = libdeflate_gzip_decompress_ex(libdeflate_->d, in.data(), in.size(), out_.get(),
                                       max_output_, &in_used, &out_used);
  } else if (zlib_format) {
    rc = libdeflate_zlib_decompress_ex(libdeflate_->d, in.data(), in.size(), out_.get(),
                                       max_output_, &in_used, &out_used);
  } else {
    rc = libdeflate_deflate_decompress_ex(libdeflate_->d, in.data(), in.size(), out_.get(),
                                          max_output_, &in_used, &out_used);
  }
  // Bytes after a gzip member: another member, or garbage; zlib tells which.
  if (rc != LIBDEFLATE_SUCCESS || (gzip && in_used != in.size())) return false;
  out_size_ = out_used;
  return true;
}

bool BodyDecoder::Inflate(std::string_view in, bool gzip, bool whole, bool* complete) {
  // gzip: its own header; deflate: the zlib format, or raw deflate without
  // one (sent by servers that read the RFC's "deflate" as the raw format).
  // Encoders' output cannot be mistaken: a raw stream starts with a block
  // header, whose low nibble is 8 (as a zlib header's is) only for a
  // non-final stored block with a padding bit set, which encoders leave 0.
  const bool zlib_format = !gzip && LooksLikeZlib(in);
  if (whole && InflateWhole(in, gzip, zlib_format)) {
    *complete = true;
    return true;
  }
  const int window_bits = gzip ? 15 + 16 : (zlib_format ? 15 : -15);
  if (!zlib_) zlib_ = std::make_unique<Zlib>();
  z_stream& s = zlib_->stream;
  if (!zlib_->ready) {
    if (inflateInit2(&s, window_bits) != Z_OK) return false;
    zlib_->ready = true;
  } else if (inflateReset2(&s, window_bits) != Z_OK) {
    return false;
  }
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  s.avail_in = ClampToUInt(in.size());
  s.next_out = reinterpret_cast<Bytef*>(out_.get());
  s.avail_out = ClampToUInt(max_output_);
  bool ended_one = false;  // a gzip member (or the zlib stream) ended
  *complete = false;
  while (true) {
    const int rc = inflate(&s, Z_NO_FLUSH);
    if (rc == Z_STREAM_END) {
      ended_one = true;
      // Concatenated gzip members are one body (RFC 1952 section 2.2).
      if (gzip && s.avail_in > 0 && s.avail_out > 0) {
        if (inflateReset(&s) != Z_OK) return false;
        continue;
      }
      *complete = s.avail_in == 0 || !gzip;
      break;
    }
    if (rc == Z_OK && s.avail_out > 0 && s.avail_in > 0) continue;
    if (rc == Z_OK || rc == Z_BUF_ERROR) break;  // output full, or input ran out
    // Malformed: refuse the whole body, unless it was bytes after a complete
    // gzip member (trailing garbage, which gzip(1) ignores too).
    if (!ended_one) return false;
    *complete = true;
    break;
  }
  const size_t produced = max_output_ - s.avail_out;
  if (!*complete && s.avail_out == 0) {
    // The output is full: the body is whole if nothing but its end is left.
    unsigned char probe = 0;
    s.next_out = &probe;
    s.avail_out = 1;
    *complete = inflate(&s, Z_NO_FLUSH) == Z_STREAM_END && s.avail_out == 1 &&
                (s.avail_in == 0 || !gzip);
  }
  out_size_ = produced;
  return true;
}

bool BodyDecoder::Unzstd(std::string_view in, bool* complete) {
  if (!zstd_) {
    zstd_ = std::make_unique<Zstd>();
    zstd_->dctx = ZSTD_createDCtx();
    if (zstd_->dctx == nullptr) {
      zstd_.reset();
      return false;
    }
    ZSTD_DCtx_setParameter(zstd_->dctx, ZSTD_d_windowLogMax, kZstdWindowLogMax);
  } else {
    ZSTD_DCtx_reset(zstd_->dctx, ZSTD_reset_session_only);
  }
  ZSTD_inBuffer src{in.data(), in.size(), 0};
  ZSTD_outBuffer dst{out_.get(), max_output_, 0};
  *complete = false;
  while (true) {
    const size_t rc = ZSTD_decompressStream(zstd_->dctx, &dst, &src);
    if (ZSTD_isError(rc)) return false;
    if (rc == 0 && src.pos == src.size) {  // the last frame ended with the input
      *complete = true;
      break;
    }
    if (dst.pos == dst.size) {
      // The output is full: the body is whole if nothing but its end is left.
      unsigned char probe = 0;
      ZSTD_outBuffer one{&probe, 1, 0};
      const size_t end = ZSTD_decompressStream(zstd_->dctx, &one, &src);
      *complete = !ZSTD_isError(end) && end == 0 && one.pos == 0 && src.pos == src.size;
      break;
    }
    // Input used up mid-frame: the rest was not captured. (rc == 0 with input
    // left means another frame follows, which the next call starts.)
    if (src.pos == src.size) break;
  }
  out_size_ = dst.pos;
  return true;
}

bool BodyDecoder::Unbrotli(std::string_view in, bool* complete) {
  // A decoder per body: brotli 1.0 has no reset. Its window is at most
  // 16 MiB (large windows are not asked for), allocated as the stream needs
  // it and touched only as far as it decodes, which the cap bounds.
  std::unique_ptr<BrotliDecoderState, void (*)(BrotliDecoderState*)> state(
      BrotliDecoderCreateInstance(nullptr, nullptr, nullptr), BrotliDecoderDestroyInstance);
  if (!state) return false;
  size_t avail_in = in.size();
  const auto* next_in = reinterpret_cast<const uint8_t*>(in.data());
  size_t avail_out = max_output_;
  auto* next_out = reinterpret_cast<uint8_t*>(out_.get());
  const BrotliDecoderResult rc = BrotliDecoderDecompressStream(
      state.get(), &avail_in, &next_in, &avail_out, &next_out, nullptr);
  // NEEDS_MORE_INPUT: the rest was not captured. NEEDS_MORE_OUTPUT: the cap.
  if (rc == BROTLI_DECODER_RESULT_ERROR) return false;
  // Bytes after the stream's end are not brotli: the label was wrong.
  if (rc == BROTLI_DECODER_RESULT_SUCCESS && avail_in > 0) return false;
  *complete = rc == BROTLI_DECODER_RESULT_SUCCESS;
  if (rc == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT && avail_out == 0) {
    // The output is full: the body is whole if nothing but its end is left.
    uint8_t probe = 0;
    size_t one = 1;
    uint8_t* p = &probe;
    *complete = BrotliDecoderDecompressStream(state.get(), &avail_in, &next_in, &one, &p,
                                              nullptr) == BROTLI_DECODER_RESULT_SUCCESS &&
                one == 1 && avail_in == 0;
  }
  out_size_ = max_output_ - avail_out;
  return true;
}

}  // namespace httptraced::http
