#include "record/json_writer.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "record/out_buffer.h"

namespace httptraced::record {
namespace {

using std::string_literals::operator""s;

std::string Quoted(std::string_view s) {
  std::string out;
  AppendJsonString(s, out);
  return out;
}

std::string Sanitized(std::string_view s) {
  std::string out;
  AppendSanitizedUtf8(s, out);
  return out;
}

std::string Base64(std::string_view s) {
  std::string out;
  AppendBase64(s, out);
  return out;
}

// A plain base64 decoder, to check round trips.
std::string DecodeBase64(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (const char c : in) {
    if (c == '=') break;
    acc = (acc << 6) | static_cast<uint32_t>(value(c));
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

// The writer's String and StringIfValidUtf8 (from a small size hint, so the
// buffer grows on the way) against AppendJsonString and IsValidUtf8.
void CheckWriterStrings(const std::string& raw) {
  const std::string expected = Quoted(raw);
  OutBuffer out;
  {
    JsonWriter w(out, /*size_hint=*/8);
    w.String(raw);
  }
  REQUIRE(out.view() == expected);
  OutBuffer strict;
  bool valid = false;
  {
    JsonWriter w(strict, /*size_hint=*/8);
    valid = w.StringIfValidUtf8(raw);
  }
  REQUIRE(valid == IsValidUtf8(raw));
  REQUIRE(strict.view() == (valid ? expected : ""));
}

// Oracle: nlohmann's parser accepts a JSON string holding raw bytes exactly
// when they are well-formed UTF-8 (it checks the RFC 3629 ranges).
bool NlohmannAcceptsUtf8(const std::string& bytes) {
  return nlohmann::json::accept("\"" + bytes + "\"");
}

TEST_CASE("JsonWriter places commas in nested objects and arrays") {
  OutBuffer out;
  JsonWriter w(out);
  w.BeginObject();
  w.IntField("a", 1);
  w.Key("b");
  w.BeginArray();
  w.Bool(true);
  w.Bool(false);
  w.String("x");
  w.BeginObject();
  w.EndObject();
  w.BeginArray();
  w.EndArray();
  w.Int(-2);
  w.EndArray();
  w.Key("c");
  w.BeginObject();
  w.BoolField("d", false);
  w.Key("e");
  w.BeginObject();
  w.EndObject();
  w.EndObject();
  w.Key("f");
  w.BeginArray();
  w.EndArray();
  w.StringField("g", "h");
  w.EndObject();
  CHECK(w.Written() == R"({"a":1,"b":[true,false,"x",{},[],-2],"c":{"d":false,"e":{}},"f":[],"g":"h"})");
}

TEST_CASE("JsonWriter appends to what the buffer already holds") {
  OutBuffer out;
  out.Append("previous line\n");
  JsonWriter w(out);
  w.BeginObject();
  w.StringField("k", "v");
  w.EndObject();
  CHECK(w.Written() == "previous line\n{\"k\":\"v\"}");
}

TEST_CASE("JsonWriter writes integer extremes exactly") {
  OutBuffer out;
  JsonWriter w(out);
  w.BeginArray();
  w.Int(std::numeric_limits<int64_t>::min());
  w.Int(std::numeric_limits<int64_t>::max());
  w.Int(0);
  w.Uint(std::numeric_limits<uint64_t>::max());
  w.Uint(0);
  w.EndArray();
  CHECK(w.Written() == "[-9223372036854775808,9223372036854775807,0,18446744073709551615,0]");
}

TEST_CASE("JsonWriter writes RFC 3339 timestamps with nanoseconds") {
  OutBuffer out;
  JsonWriter w(out);
  w.BeginObject();
  w.TimestampField("t", 1'795'293'959'123'456'789);
  w.EndObject();
  CHECK(w.Written() == R"({"t":"2026-11-21T20:45:59.123456789Z"})");
}

TEST_CASE("Strings escape quotes, backslashes and control characters") {
  CHECK(Quoted("") == R"("")");
  CHECK(Quoted("plain / text ~") == R"("plain / text ~")");
  CHECK(Quoted("say \"hi\"") == R"("say \"hi\"")");
  CHECK(Quoted("C:\\dir\\") == R"("C:\\dir\\")");
  CHECK(Quoted("\b\f\n\r\t") == R"("\b\f\n\r\t")");
  CHECK(Quoted("\x00\x01\x1f"s) == R"("\u0000\u0001\u001f")");
  CHECK(Quoted("a\x0b"
               "b\x1b[0m") == R"("a\u000bb\u001b[0m")");
  CHECK(Quoted("\x7f") == "\"\x7f\"");  // DEL needs no escape in JSON
}

TEST_CASE("Every control character escapes to JSON that parses back to it") {
  const char* const expected[32] = {
      R"(\u0000)", R"(\u0001)", R"(\u0002)", R"(\u0003)", R"(\u0004)", R"(\u0005)", R"(\u0006)",
      R"(\u0007)", R"(\b)",     R"(\t)",     R"(\n)",     R"(\u000b)", R"(\f)",     R"(\r)",
      R"(\u000e)", R"(\u000f)", R"(\u0010)", R"(\u0011)", R"(\u0012)", R"(\u0013)", R"(\u0014)",
      R"(\u0015)", R"(\u0016)", R"(\u0017)", R"(\u0018)", R"(\u0019)", R"(\u001a)", R"(\u001b)",
      R"(\u001c)", R"(\u001d)", R"(\u001e)", R"(\u001f)"};
  for (int c = 0; c < 32; ++c) {
    const std::string raw(1, static_cast<char>(c));
    CAPTURE(c);
    CHECK(Quoted(raw) == "\"" + std::string(expected[c]) + "\"");
    CHECK(nlohmann::json::parse(Quoted(raw)).get<std::string>() == raw);
  }
}

TEST_CASE("A byte that needs escaping is found at any position of a string") {
  // The plain-run scan reads sixteen bytes at a time (SSE2), then eight, then
  // single bytes: a special byte (and the plain bytes at the edges of the
  // classes: 0x20, 0x7e, 0x7f) at each offset of strings of every length up
  // to two blocks and a word must be escaped (or kept, for valid UTF-8)
  // exactly once, by String and by StringIfValidUtf8 alike.
  const std::vector<std::string> specials = {
      "\"", "\\", "\n", std::string(1, '\0'), "\x1f", " ", "\x7e", "\x7f", "\xc3\xa9",
      "\xe2\x82\xac", "\x80", "\xff"};
  for (const std::string& special : specials) {
    const bool ill_formed = special == "\x80" || special == "\xff";
    for (size_t len = 1; len <= 72; ++len) {
      for (size_t at = 0; at < len; ++at) {
        std::string raw(len, 'a');
        raw.replace(at, 1, special);
        CAPTURE(special, len, at);
        const std::string quoted = Quoted(raw);
        const std::string back = nlohmann::json::parse(quoted).get<std::string>();
        std::string expected = raw;
        if (ill_formed) expected.replace(at, 1, "\xef\xbf\xbd");
        REQUIRE(back == expected);
        OutBuffer strict;
        bool valid = false;
        {
          JsonWriter w(strict);
          valid = w.StringIfValidUtf8(raw);
        }
        REQUIRE(valid == !ill_formed);
        REQUIRE(strict.view() == (ill_formed ? "" : quoted));
      }
    }
  }
}

TEST_CASE("Valid UTF-8 passes through unchanged") {
  const std::string text =
      "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xee\x80\x80";
  CHECK(IsValidUtf8(text));
  CHECK(Quoted(text) == "\"" + text + "\"");
  CHECK(Sanitized(text) == text);
  CHECK(nlohmann::json::parse(Quoted(text)).get<std::string>() == text);
}

TEST_CASE("Ill-formed UTF-8 becomes one U+FFFD per maximal subpart") {
  const std::string r = "\xef\xbf\xbd";  // U+FFFD
  // The example of Unicode 15, section 3.9, table 3-8.
  CHECK(Sanitized("\x61\xf1\x80\x80\xe1\x80\xc2\x62\x80\x63\x80\xbf\x64") ==
        "a" + r + r + r + "b" + r + "c" + r + r + "d");
  CHECK(Sanitized("\xc0\xaf") == r + r);                  // overlong '/'
  CHECK(Sanitized("\xe0\x80\xaf") == r + r + r);          // overlong, 3 bytes
  CHECK(Sanitized("\xed\xa0\x80") == r + r + r);          // surrogate U+D800
  CHECK(Sanitized("\xf4\x90\x80\x80") == r + r + r + r);  // above U+10FFFF
  CHECK(Sanitized("\xf5\xff\xfe") == r + r + r);          // never-valid bytes
  CHECK(Sanitized("x\xe2\x82") == "x" + r);               // cut at the end
  CHECK(Sanitized("\xf0\x9f\x98") == r);                  // cut 4-byte sequence
  CHECK(Sanitized("\xe2\x82(") == r + "(");               // cut by ASCII
  CHECK(Sanitized("\xc3\xa9\xa9") == "\xc3\xa9" + r);     // stray continuation
  CHECK(Quoted("a\xff\"") == "\"a" + r + "\\\"\"");
}

TEST_CASE("IsValidUtf8 agrees with nlohmann on every 1- and 2-byte string") {
  for (int a = 0x20; a < 256; ++a) {
    if (a == '"' || a == '\\') continue;
    const std::string one(1, static_cast<char>(a));
    CAPTURE(a);
    REQUIRE(IsValidUtf8(one) == NlohmannAcceptsUtf8(one));
    for (int b = 0x20; b < 256; ++b) {
      if (b == '"' || b == '\\') continue;
      const std::string two = one + static_cast<char>(b);
      CAPTURE(b);
      REQUIRE(IsValidUtf8(two) == NlohmannAcceptsUtf8(two));
      // Whatever the bytes, the written string parses, and keeps valid input.
      const nlohmann::json parsed = nlohmann::json::parse(Quoted(two));
      if (IsValidUtf8(two)) REQUIRE(parsed.get<std::string>() == two);
    }
  }
}

TEST_CASE("IsValidUtf8 agrees with nlohmann on 3- and 4-byte sequences") {
  // Every lead byte from 0xC0, every continuation byte and a few others in
  // second place, boundary values after that.
  std::vector<int> seconds = {0x20, 0x41, 0x7f};
  for (int b = 0x80; b < 256; ++b) seconds.push_back(b);
  const int tails[] = {0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff};
  for (int lead = 0xc0; lead < 256; ++lead) {
    for (const int second : seconds) {
      for (const int third : tails) {
        std::string s = {static_cast<char>(lead), static_cast<char>(second),
                         static_cast<char>(third)};
        CAPTURE(lead, second, third);
        REQUIRE(IsValidUtf8(s) == NlohmannAcceptsUtf8(s));
        REQUIRE(nlohmann::json::accept(Quoted(s)));
        if (lead < 0xf0) continue;
        for (const int fourth : tails) {
          s.resize(3);
          s.push_back(static_cast<char>(fourth));
          CAPTURE(fourth);
          REQUIRE(IsValidUtf8(s) == NlohmannAcceptsUtf8(s));
          REQUIRE(nlohmann::json::accept(Quoted(s)));
        }
      }
    }
  }
}

TEST_CASE("IsValidUtf8 finds a bad byte at any position of a long ASCII run") {
  const std::string ascii(40, 'a');
  CHECK(IsValidUtf8(ascii));
  CHECK(IsValidUtf8(""));
  for (size_t i = 0; i < ascii.size(); ++i) {
    std::string s = ascii;
    s[i] = '\xff';
    CAPTURE(i);
    CHECK_FALSE(IsValidUtf8(s));
    s.replace(i, 1, "\xe2\x82\xac");
    CHECK(IsValidUtf8(s));
  }
}

TEST_CASE("The writer's strings match AppendJsonString's on mixed, long input") {
  // JsonWriter escapes straight into its room, in slices of 4 KiB of input;
  // AppendJsonString takes the plain-run path. The same bytes must come out,
  // whatever mix of plain, quotes, controls, valid and broken UTF-8 falls on
  // block and slice edges. A fixed xorshift keeps the inputs the same.
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  const std::vector<std::string> pieces = {
      "a", "plain text ", "\"", "\\", "\n", std::string(1, '\0'), "\x1f", "\x7f",
      "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\x80", "\xff", "\xe2\x82",
      "{\"key\":\"value\"},", std::string(40, 'p')};
  for (int round = 0; round < 300; ++round) {
    std::string raw;
    const size_t target = round < 200 ? next() % 300 : 4000 + next() % 9000;
    while (raw.size() < target) raw += pieces[next() % pieces.size()];
    CAPTURE(round, raw.size());
    CheckWriterStrings(raw);
  }
}

TEST_CASE("Strings around the 4 KiB slice escape alike, a UTF-8 sequence across its edge too") {
  // Up to 4 KiB a string is escaped into one room; longer ones a slice at a
  // time, where a sequence may start before the slice's end and finish after.
  for (size_t len = 4090; len <= 4102; ++len) {
    for (const std::string& special : {"\""s, "\n"s, "\xe2\x82\xac"s, "\xff"s}) {
      for (const size_t at : {size_t{0}, len - 4, len - 3, len - 2, size_t{4094}, size_t{4095}}) {
        if (at + special.size() > len) continue;
        std::string raw(len, 'a');
        raw.replace(at, special.size(), special);
        CAPTURE(len, special, at);
        CheckWriterStrings(raw);
      }
    }
  }
}

TEST_CASE("Several special bytes in one block escape alike, at the slice edge too") {
  // Within sixteen bytes the special ones are taken one after the other from
  // one mask, and the plain bytes between them stored behind each escape; the
  // special bytes of a block at or past the 4 KiB slice edge are left to the
  // next slice, also the continuation bytes of a UTF-8 sequence begun before
  // it. Quote-dense text and sequences across the edge, at every offset, far
  // enough from the end of the string that the block path takes them. Blocks
  // start every sixteen bytes until a UTF-8 sequence ends past one: `shift`
  // two-byte sequences, each across a block's end, move every later block by
  // one byte, so that the slice edge falls at each place inside a block.
  const std::vector<std::string> pieces = {
      "\"k\":\"v\",", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\"\\\"", "\n\"", "\xc3\xa9\"",
      "\xff\"", "\x01\x02\"", "\xe2\x82"};
  for (size_t shift = 0; shift < 16; ++shift) {
    for (const std::string& piece : pieces) {
      for (size_t at = 4084; at <= 4098; ++at) {
        std::string raw(4200, 'a');
        for (size_t k = 0; k < shift; ++k) raw.replace(17 * k + 15, 2, "\xc3\xa9");
        for (size_t i = at; i + piece.size() <= at + 20; i += piece.size()) {
          raw.replace(i, piece.size(), piece);
        }
        CAPTURE(shift, piece, at);
        CheckWriterStrings(raw);
      }
    }
  }
  // The same bytes in one room (no slice edge), at each block offset.
  std::string dense(200, 'a');
  for (size_t i = 40; i + 8 <= 120; i += 8) dense.replace(i, 8, "\"k\":\"\xc3\xa9\",");
  for (size_t from = 0; from < 16; ++from) CheckWriterStrings(dense.substr(from));
}

TEST_CASE("KeyLowerAscii lowercases ASCII letters only") {
  OutBuffer out;
  JsonWriter w(out);
  w.BeginObject();
  w.KeyLowerAscii("Content-TYPE");
  w.Int(1);
  w.KeyLowerAscii("X-\xc3\x84\xff\"Q\n");  // "Ä" stays, bad byte replaced
  w.Int(2);
  w.EndObject();
  CHECK(w.Written() == "{\"content-type\":1,\"x-\xc3\x84\xef\xbf\xbd\\\"q\\n\":2}");
}

TEST_CASE("KeyLowerAscii lowercases every printable ASCII byte at every position") {
  // Sixteen, then eight bytes at a time on the fast path: each byte value, at
  // each offset of keys long enough to cover two blocks, a word and a tail,
  // against a byte-wise reference.
  for (size_t len = 1; len <= 40; ++len) {
    for (size_t at = 0; at < len; ++at) {
      for (int c = 0x20; c < 0x7f; ++c) {
        if (c == '"' || c == '\\') continue;  // escaped: covered above
        std::string key(len, 'Q');
        key[at] = static_cast<char>(c);
        std::string expected = "\"";
        for (char k : key) {
          expected += (k >= 'A' && k <= 'Z') ? static_cast<char>(k - 'A' + 'a') : k;
        }
        expected += "\":";
        OutBuffer out;
        {
          JsonWriter w(out);
          w.KeyLowerAscii(key);
        }
        REQUIRE(out.view() == expected);
      }
    }
  }
}

TEST_CASE("KeyLowerAscii escapes a special byte at every position, after a comma") {
  // A key that is not plain ASCII leaves the eight-bytes-at-a-time path for
  // the escaping one, which starts over from the separator: each special byte
  // at each offset, as an object's second key, against lowercasing then
  // AppendJsonString.
  const std::vector<std::string> specials = {"\"", "\\", "\n", std::string(1, '\x01'),
                                             "\x7f", "\xc3\x89", "\xff"};
  for (const std::string& special : specials) {
    for (size_t len = 1; len <= 40; ++len) {
      for (size_t at = 0; at < len; ++at) {
        std::string key(len, 'Q');
        key.replace(at, 1, special);
        std::string lower;
        for (char k : key) {
          lower += (k >= 'A' && k <= 'Z') ? static_cast<char>(k - 'A' + 'a') : k;
        }
        CAPTURE(special, len, at);
        OutBuffer out;
        {
          JsonWriter w(out, /*size_hint=*/4);
          w.BeginObject();
          w.KeyLowerAscii("A");
          w.Int(1);
          w.KeyLowerAscii(key);
          w.Int(2);
          w.EndObject();
        }
        REQUIRE(out.view() == "{\"a\":1," + Quoted(lower) + ":2}");
      }
    }
  }
}

TEST_CASE("Base64 matches the RFC 4648 test vectors") {
  CHECK(Base64("") == "");
  CHECK(Base64("f") == "Zg==");
  CHECK(Base64("fo") == "Zm8=");
  CHECK(Base64("foo") == "Zm9v");
  CHECK(Base64("foob") == "Zm9vYg==");
  CHECK(Base64("fooba") == "Zm9vYmE=");
  CHECK(Base64("foobar") == "Zm9vYmFy");
  CHECK(Base64("\xff\xfe\x00"s) == "//4A");
  CHECK(Base64("\xfb\xff") == "+/8=");
  CHECK(Base64Size(0) == 0);
  CHECK(Base64Size(1) == 4);
  CHECK(Base64Size(3) == 4);
  CHECK(Base64Size(4) == 8);
}

TEST_CASE("Base64 round-trips every byte value at every length mod 3") {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  for (size_t len : {all.size(), all.size() - 1, all.size() - 2}) {
    const std::string bytes = all.substr(0, len);
    const std::string encoded = Base64(bytes);
    CHECK(encoded.size() == Base64Size(len));
    CHECK(DecodeBase64(encoded) == bytes);
  }
}

TEST_CASE("StringIfValidUtf8 writes valid text and leaves no trace otherwise") {
  OutBuffer out;
  JsonWriter w(out);
  w.BeginArray();
  CHECK(w.StringIfValidUtf8("caf\xc3\xa9\n"));
  CHECK(w.Written() == "[\"caf\xc3\xa9\\n\"");
  CHECK_FALSE(w.StringIfValidUtf8("ok so far \"\x01 then \xff"));
  CHECK(w.Written() == "[\"caf\xc3\xa9\\n\"");
  w.StringBase64("\xff");
  w.EndArray();
  CHECK(w.Written() == "[\"caf\xc3\xa9\\n\",\"/w==\"]");

  OutBuffer first;
  JsonWriter w2(first);
  w2.BeginObject();
  w2.Key("b");
  CHECK_FALSE(w2.StringIfValidUtf8("\x80"));
  w2.StringBase64("\x80");
  w2.EndObject();
  CHECK(w2.Written() == R"({"b":"gA=="})");
}

}  // namespace
}  // namespace httptraced::record

namespace httptraced::record {
namespace {

TEST_CASE("JsonWriter grows past its size hint and sets the size when done") {
  OutBuffer out;
  out.Append("x");
  {
    JsonWriter w(out, /*size_hint=*/4);
    w.BeginArray();
    for (int i = 0; i < 100; ++i) w.String("0123456789");
    w.EndArray();
    CHECK(w.Written().size() == 1 + 2 + 100 * 12 + 99);
  }  // the destructor sets the size
  CHECK(out.size() == 1 + 2 + 100 * 12 + 99);
  CHECK(out.view().substr(0, 16) == "x[\"0123456789\",\"");
  CHECK(out.view().back() == ']');

  OutBuffer again;
  JsonWriter w(again, 1024);
  w.BeginObject();
  w.EndObject();
  w.Finish();
  CHECK(again.view() == "{}");
  CHECK(again.capacity() >= 1024);
}

TEST_CASE("A writer after a rewind leaves the buffer at what it kept") {
  // The room a writer reserves is not initialised: what it wrote and then
  // rewound over must not show, nor what an earlier, longer record left.
  OutBuffer out;
  {
    JsonWriter w(out);
    w.BeginArray();
    w.String("a long first record that fills the room");
    w.EndArray();
  }
  out.clear();
  {
    JsonWriter w(out);
    w.BeginArray();
    CHECK_FALSE(w.StringIfValidUtf8("ok then \xff"));
    w.EndArray();
  }
  CHECK(out.view() == "[]");
}

TEST_CASE("OutBuffer keeps its contents as it grows, and a moved-from one is empty") {
  OutBuffer b;
  CHECK(b.empty());
  CHECK(b.capacity() == 0);
  std::string expected;
  for (int i = 0; i < 1000; ++i) {
    const std::string piece = std::to_string(i) + ",";
    b.Append(piece);
    expected += piece;
  }
  CHECK(b.view() == expected);
  CHECK(b.capacity() >= b.size());
  b.Append("");
  CHECK(b.view() == expected);

  const size_t capacity = b.capacity();
  b.Reserve(capacity + 1);
  CHECK(b.capacity() >= 2 * capacity);  // at least twofold
  CHECK(b.view() == expected);
  b.SetSize(3);
  CHECK(b.view() == "0,1");

  OutBuffer moved(std::move(b));
  CHECK(moved.view() == "0,1");
  CHECK(b.empty());           // NOLINT(bugprone-use-after-move): defined state
  CHECK(b.capacity() == 0);   // NOLINT(bugprone-use-after-move)
  b.Append("again");          // NOLINT(bugprone-use-after-move)
  CHECK(b.view() == "again");
  moved = std::move(b);
  CHECK(moved.view() == "again");
  moved.clear();
  CHECK(moved.empty());
  CHECK(moved.capacity() >= 5);
}

}  // namespace
}  // namespace httptraced::record
