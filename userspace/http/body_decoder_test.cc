#include "http/body_decoder.h"

#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include <catch2/catch.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace httptraced::http {
namespace {

// Compresses with zlib: window_bits 15 + 16 gzip, 15 zlib, -15 raw deflate.
std::string Deflate(std::string_view in, int window_bits) {
  z_stream s{};
  REQUIRE(deflateInit2(&s, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&s, static_cast<uLong>(in.size())), '\0');
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  s.avail_in = static_cast<uInt>(in.size());
  s.next_out = reinterpret_cast<Bytef*>(out.data());
  s.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&s, Z_FINISH) == Z_STREAM_END);
  out.resize(s.total_out);
  deflateEnd(&s);
  return out;
}
std::string Gzip(std::string_view in) { return Deflate(in, 15 + 16); }

std::string Zstd(std::string_view in) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  const size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3);
  REQUIRE_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::string Brotli(std::string_view in) {
  std::string out(BrotliEncoderMaxCompressedSize(in.size()) + 16, '\0');
  size_t n = out.size();
  REQUIRE(BrotliEncoderCompress(5, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_TEXT, in.size(),
                                reinterpret_cast<const uint8_t*>(in.data()), &n,
                                reinterpret_cast<uint8_t*>(out.data())) == BROTLI_TRUE);
  out.resize(n);
  return out;
}

// Text long enough to compress well, with every line distinct.
std::string Text(size_t lines) {
  std::string s;
  for (size_t i = 0; i < lines; ++i) s += "line " + std::to_string(i) + " of the body\n";
  return s;
}

Message WithBody(std::string content, std::vector<Header> headers) {
  Message m;
  m.kind = Message::Kind::kResponse;
  m.status_code = 200;
  m.headers = std::move(headers);
  m.body.size = content.size();
  m.body.content = std::move(content);
  return m;
}

TEST_CASE("BodyCoding reads Content-Encoding without regard to case") {
  CHECK(BodyCoding({}) == ContentCoding::kIdentity);
  CHECK(BodyCoding({{"Content-Type", "text/plain"}}) == ContentCoding::kIdentity);
  CHECK(BodyCoding({{"Content-Encoding", "gzip"}}) == ContentCoding::kGzip);
  CHECK(BodyCoding({{"content-encoding", " GZip "}}) == ContentCoding::kGzip);
  CHECK(BodyCoding({{"CONTENT-ENCODING", "x-gzip"}}) == ContentCoding::kGzip);
  CHECK(BodyCoding({{"Content-Encoding", "deflate"}}) == ContentCoding::kDeflate);
  CHECK(BodyCoding({{"Content-Encoding", "zstd"}}) == ContentCoding::kZstd);
  CHECK(BodyCoding({{"Content-Encoding", "identity"}}) == ContentCoding::kIdentity);
  CHECK(BodyCoding({{"Content-Encoding", ""}}) == ContentCoding::kIdentity);
  // identity around one coding is still that coding.
  CHECK(BodyCoding({{"Content-Encoding", "identity, gzip"}}) == ContentCoding::kGzip);
  // Codings not decoded here, and stacked codings (in one field or two).
  CHECK(BodyCoding({{"Content-Encoding", "br"}}) == ContentCoding::kBrotli);
  CHECK(BodyCoding({{"Content-Encoding", "BR"}}) == ContentCoding::kBrotli);
  CHECK(BodyCoding({{"Content-Encoding", "compress"}}) == ContentCoding::kOther);
  CHECK(BodyCoding({{"Content-Encoding", "gzip, gzip"}}) == ContentCoding::kOther);
  CHECK(BodyCoding({{"Content-Encoding", "deflate"}, {"Content-Encoding", "gzip"}}) ==
        ContentCoding::kOther);
  CHECK(BodyCoding({{"Content-Encoding", "gzipx"}}) == ContentCoding::kOther);
  CHECK(CodingName(ContentCoding::kGzip) == "gzip");
  CHECK(CodingName(ContentCoding::kDeflate) == "deflate");
  CHECK(CodingName(ContentCoding::kZstd) == "zstd");
  CHECK(CodingName(ContentCoding::kBrotli) == "br");
  CHECK(CodingName(ContentCoding::kIdentity).empty());
  CHECK(CodingName(ContentCoding::kOther).empty());
}

TEST_CASE("Whole gzip, zlib, raw deflate, zstd and brotli bodies decode exactly") {
  const std::string text = Text(200);
  struct Case {
    const char* coding;
    std::string coded;
  };
  const Case cases[] = {
      {"gzip", Gzip(text)},
      {"deflate", Deflate(text, 15)},   // the zlib format, as the RFC says
      {"deflate", Deflate(text, -15)},  // raw, as some servers send it
      {"zstd", Zstd(text)},
      {"br", Brotli(text)},
  };
  BodyDecoder decoder(1 << 20);
  // Twice over: the decoder's state is reused from one body to the next.
  for (int round = 0; round < 2; ++round) {
    for (const Case& c : cases) {
      CAPTURE(c.coding, round);
      Message m = WithBody(c.coded, {{"Content-Encoding", c.coding}});
      REQUIRE(decoder.Decode(m));
      CHECK(m.body.content == text);
      CHECK(m.body.decoded == c.coding);
      CHECK(m.body.size == c.coded.size());  // the size as sent stays
      CHECK_FALSE(m.body.truncated);
    }
  }
}

TEST_CASE("The decoded content stops at the cap, and is whole when it fits exactly") {
  const std::string text = Text(500);
  for (const std::string coding : {"gzip", "zstd", "br"}) {
    CAPTURE(coding);
    const std::string coded =
        coding == "gzip" ? Gzip(text) : coding == "zstd" ? Zstd(text) : Brotli(text);
    {
      BodyDecoder decoder(1000);
      Message m = WithBody(coded, {{"Content-Encoding", coding}});
      REQUIRE(decoder.Decode(m));
      CHECK(m.body.content == text.substr(0, 1000));
      CHECK(m.body.truncated);
    }
    {
      BodyDecoder decoder(text.size());
      Message m = WithBody(coded, {{"Content-Encoding", coding}});
      REQUIRE(decoder.Decode(m));
      CHECK(m.body.content == text);
      CHECK_FALSE(m.body.truncated);
    }
    {
      BodyDecoder decoder(text.size() - 1);
      Message m = WithBody(coded, {{"Content-Encoding", coding}});
      REQUIRE(decoder.Decode(m));
      CHECK(m.body.content == text.substr(0, text.size() - 1));
      CHECK(m.body.truncated);
    }
  }
}

TEST_CASE("A body captured in part decodes as far as it goes") {
  // Past zstd's 128 KiB blocks: it decodes whole blocks only.
  const std::string text = Text(20000);
  for (const std::string coding : {"gzip", "deflate", "zstd", "br"}) {
    CAPTURE(coding);
    const std::string coded = coding == "gzip"      ? Gzip(text)
                              : coding == "deflate" ? Deflate(text, 15)
                              : coding == "zstd"    ? Zstd(text)
                                                    : Brotli(text);
    BodyDecoder decoder(1 << 20);
    Message m = WithBody(coded.substr(0, coded.size() / 2), {{"Content-Encoding", coding}});
    m.body.size = coded.size();
    m.body.truncated = true;  // as the parser marks a body cut at the cap
    REQUIRE(decoder.Decode(m));
    CHECK(m.body.truncated);
    REQUIRE(m.body.content.size() > 0);
    REQUIRE(m.body.content.size() < text.size());
    CHECK(m.body.content == text.substr(0, m.body.content.size()));
  }
  // Less than zstd's first block: nothing to show, and it says so.
  const std::string coded = Zstd(Text(100));
  BodyDecoder decoder(1 << 20);
  Message m = WithBody(coded.substr(0, coded.size() - 10), {{"Content-Encoding", "zstd"}});
  REQUIRE(decoder.Decode(m));
  CHECK(m.body.content.empty());
  CHECK(m.body.decoded == "zstd");
  CHECK(m.body.truncated);
}

TEST_CASE("Concatenated gzip members are one body, and bytes after the last are ignored") {
  BodyDecoder decoder(1 << 20);
  Message m = WithBody(Gzip("first, ") + Gzip("second"), {{"Content-Encoding", "gzip"}});
  REQUIRE(decoder.Decode(m));
  CHECK(m.body.content == "first, second");
  CHECK_FALSE(m.body.truncated);

  Message trailing = WithBody(Gzip("whole") + "\r\n", {{"Content-Encoding", "gzip"}});
  REQUIRE(decoder.Decode(trailing));
  CHECK(trailing.body.content == "whole");
  CHECK_FALSE(trailing.body.truncated);
}

TEST_CASE("Bodies that do not decode are left as sent") {
  BodyDecoder decoder(1 << 20);
  // Not what the header says: plain text, another format, corrupted bytes.
  const std::string gzip = Gzip(Text(50));
  std::string corrupt = gzip;
  corrupt[corrupt.size() / 2] = static_cast<char>(corrupt[corrupt.size() / 2] ^ 0x55);
  std::string bad_crc = gzip;
  bad_crc[bad_crc.size() - 6] = static_cast<char>(bad_crc[bad_crc.size() - 6] ^ 1);
  const struct {
    const char* coding;
    std::string content;
  } cases[] = {
      {"gzip", "plain text, not gzip"},
      {"gzip", Zstd("zstd, not gzip")},
      {"gzip", corrupt},
      {"gzip", bad_crc},
      {"deflate", "\xff\xff\xff\xff not deflate"},
      {"zstd", gzip},
      {"zstd", "plain text, not zstd"},
      {"br", Brotli("whole") + "trailing bytes"},
      {"br", "\xff\xff\xff\xff\xff\xff\xff\xff not brotli"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.coding, c.content.size());
    Message m = WithBody(c.content, {{"Content-Encoding", c.coding}});
    const Message before = m;
    CHECK_FALSE(decoder.Decode(m));
    CHECK(m.body.content == before.body.content);
    CHECK(m.body.decoded.empty());
    CHECK(m.body.truncated == before.body.truncated);
  }
  // And a good body right after them decodes: no state is left over.
  Message good = WithBody(gzip, {{"Content-Encoding", "gzip"}});
  REQUIRE(decoder.Decode(good));
  CHECK(good.body.content == Text(50));
}

TEST_CASE("Identity, unknown codings, empty bodies and a zero cap decode nothing") {
  BodyDecoder decoder(1 << 20);
  Message plain = WithBody("text", {});
  CHECK_FALSE(decoder.Decode(plain));
  CHECK(plain.body.content == "text");
  Message compress = WithBody("\x1f\x9d", {{"Content-Encoding", "compress"}});
  CHECK_FALSE(decoder.Decode(compress));
  CHECK(compress.body.content == "\x1f\x9d");
  Message empty = WithBody("", {{"Content-Encoding", "gzip"}});
  CHECK_FALSE(decoder.Decode(empty));
  CHECK(empty.body.decoded.empty());

  BodyDecoder none(0);
  Message m = WithBody(Gzip("x"), {{"Content-Encoding", "gzip"}});
  const std::string coded = m.body.content;
  CHECK_FALSE(none.Decode(m));
  CHECK(m.body.content == coded);
}

TEST_CASE("A small body that decodes to a large one costs no more than the cap") {
  // 8 MiB of zeros: about 8 KiB of gzip, 300 bytes of zstd.
  const std::string zeros(8 << 20, '\0');
  for (const std::string coding : {"gzip", "zstd", "br"}) {
    CAPTURE(coding);
    BodyDecoder decoder(4096);
    Message m = WithBody(coding == "gzip" ? Gzip(zeros) : coding == "zstd" ? Zstd(zeros) : Brotli(zeros),
                         {{"Content-Encoding", coding}});
    REQUIRE(decoder.Decode(m));
    CHECK(m.body.content == std::string(4096, '\0'));
    CHECK(m.body.truncated);
  }
}

}  // namespace
}  // namespace httptraced::http
