#include "record/json_writer.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "record/timestamp.h"

namespace httptraced::record {
namespace {

// What a byte needs inside a JSON string.
enum ByteClass : uint8_t {
  kPlain = 0,     // ASCII copied as is
  kEscape = 1,    // '"', '\\' or a control character
  kNonAscii = 2,  // starts (or breaks) a multi-byte UTF-8 sequence
};

constexpr std::array<uint8_t, 256> MakeByteClasses() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    if (c < 0x20 || c == '"' || c == '\\') {
      t[c] = kEscape;
    } else if (c >= 0x80) {
      t[c] = kNonAscii;
    } else {
      t[c] = kPlain;
    }
  }
  return t;
}
constexpr std::array<uint8_t, 256> kByteClass = MakeByteClasses();

// The escape for each kEscape byte: a two-character form where JSON has one,
// otherwise empty (written as \u00XX).
constexpr std::array<char, 256> MakeShortEscapes() {
  std::array<char, 256> t{};
  t['"'] = '"';
  t['\\'] = '\\';
  t['\b'] = 'b';
  t['\f'] = 'f';
  t['\n'] = 'n';
  t['\r'] = 'r';
  t['\t'] = 't';
  return t;
}
constexpr std::array<char, 256> kShortEscape = MakeShortEscapes();

constexpr char kHexDigits[] = "0123456789abcdef";

// For each lead byte: how many continuation bytes follow, and the range the
// first of them must fall in (RFC 3629 section 4; the narrowed ranges exclude
// overlong forms, surrogates and code points above U+10FFFF). need == 0: the
// byte can never start a sequence.
struct Utf8Lead {
  uint8_t need;
  uint8_t lo;
  uint8_t hi;
};

constexpr std::array<Utf8Lead, 256> MakeUtf8Leads() {
  std::array<Utf8Lead, 256> t{};
  for (int c = 0xC2; c <= 0xDF; ++c) t[c] = {1, 0x80, 0xBF};
  t[0xE0] = {2, 0xA0, 0xBF};
  for (int c = 0xE1; c <= 0xEC; ++c) t[c] = {2, 0x80, 0xBF};
  t[0xED] = {2, 0x80, 0x9F};
  t[0xEE] = {2, 0x80, 0xBF};
  t[0xEF] = {2, 0x80, 0xBF};
  t[0xF0] = {3, 0x90, 0xBF};
  for (int c = 0xF1; c <= 0xF3; ++c) t[c] = {3, 0x80, 0xBF};
  t[0xF4] = {3, 0x80, 0x8F};
  return t;
}
constexpr std::array<Utf8Lead, 256> kUtf8Lead = MakeUtf8Leads();

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Looks at the non-ASCII sequence starting at `p` (p < end, *p >= 0x80).
// Returns its length when well formed (2..4). Otherwise returns minus the
// length of its maximal ill-formed subpart (1..3): the bytes one U+FFFD replaces.
inline int Utf8Sequence(const unsigned char* p, const unsigned char* end) {
  const Utf8Lead lead = kUtf8Lead[*p];
  if (lead.need == 0) return -1;
  const unsigned char* q = p + 1;
  if (q == end || *q < lead.lo || *q > lead.hi) return -1;
  ++q;
  for (int i = 1; i < lead.need; ++i, ++q) {
    if (q == end || *q < 0x80 || *q > 0xBF) return -static_cast<int>(q - p);
  }
  return static_cast<int>(q - p);
}

constexpr std::array<char, 256> MakeLowerAscii() {
  std::array<char, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[c] = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  return t;
}
constexpr std::array<char, 256> kLowerAscii = MakeLowerAscii();

// Output adapters for the escaping routines: a plain std::string, or a
// JsonWriter's cursor (WriterOut, below).
struct StringOut {
  std::string& s;
  void Put(const char* p, size_t n) { s.append(p, n); }
};

template <typename Out>
void AppendEscape(unsigned char c, Out& out) {
  const char short_form = kShortEscape[c];
  if (short_form != 0) {
    const char esc[2] = {'\\', short_form};
    out.Put(esc, 2);
  } else {
    const char esc[6] = {'\\', 'u', '0', '0', kHexDigits[c >> 4], kHexDigits[c & 0xF]};
    out.Put(esc, 6);
  }
}

// True when one of the eight bytes in `w` needs attention inside a JSON string:
// a control character, '"', '\\' or a byte >= 0x80 (SWAR: no per-byte branch).
inline bool WordNeedsWork(uint64_t w) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHighs = 0x8080808080808080ULL;
  const auto has_zero = [](uint64_t v) { return (v - kOnes) & ~v & kHighs; };
  const uint64_t below_space = (w - kOnes * 0x20) & ~w & kHighs;
  return ((w & kHighs) | below_space | has_zero(w ^ (kOnes * '"')) |
          has_zero(w ^ (kOnes * '\\'))) != 0;
}

// Eight ASCII bytes (each < 0x80) with 'A'..'Z' lowercased, without a branch
// per byte: adding 0x3F sets a byte's high bit when it is >= 'A', adding 0x25
// when it is > 'Z'; no byte carries into the next, since none exceeds 0x7F.
inline uint64_t LowerAsciiWord(uint64_t w) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHighs = 0x8080808080808080ULL;
  const uint64_t upper = (w + kOnes * (0x80 - 'A')) & ~(w + kOnes * (0x80 - 'Z' - 1)) & kHighs;
  return w | (upper >> 2);  // 0x80 >> 2 == 0x20, the case bit
}

// Copies p[0..n) to d with 'A'..'Z' lowercased, eight bytes at a time. With
// kCheck, stops and returns false at the first byte that is not plain (see
// kByteClass; d then holds a part); without, p[0..n) must be plain.
template <bool kCheck>
inline bool LowerPlainInto(const unsigned char* p, size_t n, char* d) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t word;
    std::memcpy(&word, p + i, sizeof(word));
    if (kCheck && WordNeedsWork(word)) return false;
    word = LowerAsciiWord(word);
    std::memcpy(d + i, &word, sizeof(word));
  }
  if (i < n && n >= 8) {
    // The last word again, overlapping: its first bytes are checked and
    // rewritten once more.
    uint64_t word;
    std::memcpy(&word, p + n - 8, sizeof(word));
    if (kCheck && WordNeedsWork(word)) return false;
    word = LowerAsciiWord(word);
    std::memcpy(d + n - 8, &word, sizeof(word));
    return true;
  }
  for (; i < n; ++i) {
    if (kCheck && kByteClass[p[i]] != kPlain) return false;
    d[i] = kLowerAscii[p[i]];
  }
  return true;
}

struct WriterOut {
  JsonWriter& w;
  void Put(const char* p, size_t n) { w.Put(p, n); }
  // p[0..n) is plain ASCII (PlainRunEnd).
  void PutLower(const unsigned char* p, size_t n) {
    char* d = w.Room(n);
    LowerPlainInto</*kCheck=*/false>(p, n, d);
    w.Advance(d + n);
  }
};

// The end of the run of plain bytes starting at p. Sixteen bytes at a time
// with SSE2 (every x86-64 has it): one signed compare against 0x20 finds
// control characters and bytes >= 0x80 alike, two more find '"' and '\\', and
// the first flagged byte is found from the mask without a byte loop. Then
// eight bytes at a time (SWAR), then single bytes. (Checking the tail as one
// word overlapping the previous one measured 1% more instructions for the
// record path: most strings there are short, and it is one more test.)
inline const unsigned char* PlainRunEnd(const unsigned char* p, const unsigned char* end) {
#if defined(__SSE2__)
  if (end - p >= 16) {
    const __m128i space = _mm_set1_epi8(0x20);
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i backslash = _mm_set1_epi8('\\');
    do {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      const __m128i special =
          _mm_or_si128(_mm_cmplt_epi8(v, space),
                       _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)));
      const int mask = _mm_movemask_epi8(special);
      if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
      p += 16;
    } while (end - p >= 16);
  }
#endif
  while (end - p >= 8) {
    uint64_t w;
    std::memcpy(&w, p, sizeof(w));
    if (WordNeedsWork(w)) break;
    p += 8;
  }
  while (p < end && kByteClass[*p] == kPlain) ++p;
  return p;
}

// One step of the escapers below for the byte at p (p < end), which is not
// plain: a control character, '"' or '\\' escaped, a UTF-8 sequence checked
// and copied, or an ill-formed one replaced. False: kStrict and ill-formed.
template <bool kStrict>
inline bool EscapeSpecial(const unsigned char*& p, const unsigned char* end, char*& d) {
  const unsigned char c = *p;
  if (kByteClass[c] == kEscape) {
    const char short_form = kShortEscape[c];
    d[0] = '\\';
    if (short_form != 0) {
      d[1] = short_form;
      d += 2;
    } else {
      d[1] = 'u';
      d[2] = '0';
      d[3] = '0';
      d[4] = kHexDigits[c >> 4];
      d[5] = kHexDigits[c & 0xF];
      d += 6;
    }
    ++p;
    return true;
  }
  const int n = Utf8Sequence(p, end);
  if (n > 0) {
    for (int i = 0; i < n; ++i) d[i] = static_cast<char>(p[i]);
    d += n;
    p += n;
    return true;
  }
  if constexpr (kStrict) return false;
  std::memcpy(d, kReplacement.data(), kReplacement.size());
  d += kReplacement.size();
  p += -n;
  return true;
}

// The JsonWriter's path for string values: escapes [p, limit) straight into
// the writer's room at d, without a bounds check or a memcpy call per piece.
// Each step stores sixteen input bytes as they are and finds their special
// bytes (control characters, '"', '\\', bytes >= 0x80) as one mask. The
// special bytes are then taken one after the other from that mask: each is
// escaped (or its UTF-8 sequence checked and copied), and the plain bytes up
// to the next one are stored again, sixteen at once, behind the escape.
// JSON is quote-dense ("key":"value" every few bytes), so this is the common
// case, not a slow path: the mask is computed once per sixteen bytes, not once
// per quote.
// A step may read past limit (up to `end`, never beyond) and copy plain bytes
// past it; special bytes at or past limit are left for the next call. The
// caller gives room for 6 * (limit - p + 16) bytes, the most that can be
// written. Returns the new end of the output, or nullptr when kStrict and the
// bytes are not well-formed UTF-8 (output then partial; the caller rolls back).
template <bool kStrict>
[[gnu::always_inline]] inline char* EscapeInto(const unsigned char*& p,
                                               const unsigned char* limit,
                                               const unsigned char* end, char* d) {
#if defined(__SSE2__)
  const __m128i space = _mm_set1_epi8(0x20);
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  while (end - p >= 16 && p < limit) {
    const unsigned char* const block = p;
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d), v);
    const __m128i special =
        _mm_or_si128(_mm_cmplt_epi8(v, space),
                     _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)));
    const auto bits = static_cast<unsigned>(_mm_movemask_epi8(special));
    if (bits == 0) {
      p += 16;
      d += 16;
      continue;
    }
    if (end - block < 32) {
      // The stores behind each escape below read up to 16 bytes past the
      // block: near the end, escape the first special byte and step again
      // from the byte after it.
      const auto i = static_cast<unsigned>(__builtin_ctz(bits));
      d += i;
      p = block + i;
      if (p >= limit) return d;
      if (!EscapeSpecial<kStrict>(p, end, d)) return nullptr;
      continue;
    }
    // Special bytes at or past limit are left to the next call.
    const ptrdiff_t before_limit = limit - block;
    const unsigned mine = before_limit >= 16 ? 0xFFFFu : (1u << before_limit) - 1;
    unsigned todo = bits & mine;
    unsigned done = 0;  // block[0, done) is written, up to d
    while (todo != 0) {
      const unsigned i = static_cast<unsigned>(__builtin_ctz(todo));
      d += i - done;  // the plain bytes before it are in place
      const unsigned char c = block[i];
      if (c == '"' || c == '\\') {
        d[0] = '\\';
        d[1] = static_cast<char>(c);
        d += 2;
        done = i + 1;
        todo &= todo - 1;
      } else {
        const unsigned char* q = block + i;
        if (!EscapeSpecial<kStrict>(q, end, d)) {
          p = q;
          return nullptr;
        }
        done = static_cast<unsigned>(q - block);
        if (done >= 16) break;  // a UTF-8 sequence may end past the block
        todo &= ~0u << done;
      }
      // The plain bytes up to the next special one, sixteen at once.
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d),
                       _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + done)));
    }
    if (done >= 16) {
      p = block + done;
      continue;
    }
    const unsigned left = bits & ~mine & (~0u << done);  // special bytes past limit
    if (left != 0) {
      const unsigned i = static_cast<unsigned>(__builtin_ctz(left));
      d += i - done;
      p = block + i;
      return d;
    }
    d += 16 - done;
    p = block + 16;
  }
#endif
  // Fewer than sixteen bytes left (or no SSE2): eight plain ones at once, then
  // single plain bytes in a tight loop.
  while (p < limit) {
    if (end - p >= 8) {
      uint64_t w;
      std::memcpy(&w, p, sizeof(w));
      if (!WordNeedsWork(w)) {
        std::memcpy(d, &w, sizeof(w));
        p += 8;
        d += 8;
        continue;
      }
    }
    while (p < limit && kByteClass[*p] == kPlain) *d++ = static_cast<char>(*p++);
    if (p >= limit) break;
    if (!EscapeSpecial<kStrict>(p, end, d)) return nullptr;
  }
  return d;
}

// Input bytes escaped per room check: the room asked for (six output bytes
// per input byte at most) stays bounded whatever the string's size.
constexpr size_t kSlice = 4096;

// Escapes s into w's room, kSlice bytes of input at a time. False: kStrict
// and ill-formed.
template <bool kStrict>
bool WriteEscaped(std::string_view s, JsonWriter& w) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* const end = p + s.size();
  while (p < end) {
    const size_t n = std::min<size_t>(kSlice, static_cast<size_t>(end - p));
    char* d = w.Room(6 * (n + 16));
    d = EscapeInto<kStrict>(p, p + n, end, d);
    if (d == nullptr) return false;
    w.Advance(d);
  }
  return true;
}

// Appends the escaped contents of a JSON string (no quotes). kStrict: stop and
// return false at the first ill-formed UTF-8 (output then partial; the caller
// rolls back). Otherwise replace ill-formed subparts with U+FFFD. kLower:
// lowercase ASCII letters.
template <bool kStrict, bool kLower, typename Out>
bool AppendEscaped(std::string_view s, Out& out) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* const end = p + s.size();
  while (p < end) {
    const auto* run = p;
    p = PlainRunEnd(p, end);
    if (p != run) {
      if constexpr (kLower) {
        out.PutLower(run, static_cast<size_t>(p - run));
      } else {
        out.Put(reinterpret_cast<const char*>(run), static_cast<size_t>(p - run));
      }
    }
    if (p == end) break;
    if (kByteClass[*p] == kEscape) {
      AppendEscape(*p, out);
      ++p;
      continue;
    }
    const int n = Utf8Sequence(p, end);
    if (n > 0) {
      out.Put(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
      p += n;
    } else {
      if constexpr (kStrict) return false;
      out.Put(kReplacement.data(), kReplacement.size());
      p += -n;
    }
  }
  return true;
}

template <typename T>
void AppendInteger(T v, std::string& out) {
  char buf[24];
  const auto result = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, static_cast<size_t>(result.ptr - buf));
}

constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

bool IsValidUtf8(std::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const auto* const end = p + bytes.size();
  while (p < end) {
    // ASCII fast path, eight bytes at a time.
    while (end - p >= 8) {
      uint64_t word;
      std::memcpy(&word, p, sizeof(word));
      if ((word & 0x8080808080808080ULL) != 0) break;
      p += 8;
    }
    if (p == end) break;
    if (*p < 0x80) {
      ++p;
      continue;
    }
    const int n = Utf8Sequence(p, end);
    if (n < 0) return false;
    p += n;
  }
  return true;
}

void AppendSanitizedUtf8(std::string_view bytes, std::string& out) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const auto* const end = p + bytes.size();
  while (p < end) {
    const auto* run = p;
    while (p < end && *p < 0x80) ++p;
    out.append(reinterpret_cast<const char*>(run), static_cast<size_t>(p - run));
    if (p == end) break;
    const int n = Utf8Sequence(p, end);
    if (n > 0) {
      out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
      p += n;
    } else {
      out.append(kReplacement);
      p += -n;
    }
  }
}

void AppendBase64(std::string_view bytes, std::string& out) {
  const size_t at = out.size();
  out.resize(at + Base64Size(bytes.size()));
  EncodeBase64(bytes, out.data() + at);
}

void EncodeBase64(std::string_view bytes, char* d) {
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size();
  for (; n >= 3; n -= 3, s += 3, d += 4) {
    const uint32_t v = (uint32_t{s[0]} << 16) | (uint32_t{s[1]} << 8) | s[2];
    d[0] = kBase64Alphabet[v >> 18];
    d[1] = kBase64Alphabet[(v >> 12) & 0x3F];
    d[2] = kBase64Alphabet[(v >> 6) & 0x3F];
    d[3] = kBase64Alphabet[v & 0x3F];
  }
  if (n == 1) {
    const uint32_t v = uint32_t{s[0]} << 16;
    d[0] = kBase64Alphabet[v >> 18];
    d[1] = kBase64Alphabet[(v >> 12) & 0x3F];
    d[2] = '=';
    d[3] = '=';
  } else if (n == 2) {
    const uint32_t v = (uint32_t{s[0]} << 16) | (uint32_t{s[1]} << 8);
    d[0] = kBase64Alphabet[v >> 18];
    d[1] = kBase64Alphabet[(v >> 12) & 0x3F];
    d[2] = kBase64Alphabet[(v >> 6) & 0x3F];
    d[3] = '=';
  }
}

void AppendJsonString(std::string_view s, std::string& out) {
  out.push_back('"');
  StringOut o{out};
  AppendEscaped</*kStrict=*/false, /*kLower=*/false>(s, o);
  out.push_back('"');
}

JsonWriter::JsonWriter(OutBuffer& out, size_t size_hint) : out_(&out) {
  out.Reserve(out.size() + size_hint);
  cur_ = out.data() + out.size();
  end_ = out.data() + out.capacity();
}

void JsonWriter::Grow(size_t n) {
  const size_t used = static_cast<size_t>(cur_ - out_->data());
  // Reserve keeps the buffer's contents: make them everything written so far.
  out_->SetSize(used);
  out_->Reserve(used + n + 256);
  cur_ = out_->data() + used;
  end_ = out_->data() + out_->capacity();
}

void JsonWriter::Finish() {
  if (out_ == nullptr) return;
  out_->SetSize(static_cast<size_t>(cur_ - out_->data()));
  out_ = nullptr;
}

void JsonWriter::KeyLowerAscii(std::string_view key) {
  // The common case, a header name of plain ASCII (the parser takes tokens):
  // one room check, eight bytes checked and lowercased at a time, the key's
  // punctuation written around it. Anything else goes the escaping way.
  const auto* const p = reinterpret_cast<const unsigned char*>(key.data());
  const size_t n = key.size();
  char* d = Room(n + 4);
  if (need_comma_) *d++ = ',';
  *d++ = '"';
  const bool plain = LowerPlainInto</*kCheck=*/true>(p, n, d);
  if (plain) {
    d += n;
    *d++ = '"';
    *d++ = ':';
    Advance(d);
    need_comma_ = false;
    return;
  }
  // Nothing was advanced over: the escaping path writes from the separator on.
  Separate();
  Put('"');
  WriterOut o{*this};
  AppendEscaped</*kStrict=*/false, /*kLower=*/true>(key, o);
  Put("\":", 2);
  need_comma_ = false;
}

void JsonWriter::String(std::string_view s) {
  if (s.size() <= kSlice) {
    // One room check for the separator, the quotes and the most the escaped
    // string can take (header values, URL parts, most bodies).
    char* d = Room(6 * (s.size() + 16) + 3);
    if (need_comma_) *d++ = ',';
    *d++ = '"';
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const auto* const end = p + s.size();
    d = EscapeInto</*kStrict=*/false>(p, end, end, d);
    *d++ = '"';
    Advance(d);
    need_comma_ = true;
    return;
  }
  Separate();
  Put('"');
  WriteEscaped</*kStrict=*/false>(s, *this);
  Put('"');
  need_comma_ = true;
}

bool JsonWriter::StringIfValidUtf8(std::string_view s) {
  const size_t rollback = Mark();
  Separate();
  Put('"');
  if (!WriteEscaped</*kStrict=*/true>(s, *this)) {
    Rewind(rollback);
    return false;
  }
  Put('"');
  need_comma_ = true;
  return true;
}

void JsonWriter::StringBase64(std::string_view bytes) {
  Separate();
  Put('"');
  const size_t n = Base64Size(bytes.size());
  char* d = Room(n);
  EncodeBase64(bytes, d);
  Advance(d + n);
  Put('"');
  need_comma_ = true;
}

void JsonWriter::Timestamp(int64_t wall_ns) {
  Separate();
  char buf[kRfc3339NanosSize];
  FormatRfc3339Nanos(wall_ns, buf);
  char* p = Room(sizeof(buf) + 2);
  *p++ = '"';
  std::memcpy(p, buf, sizeof(buf));
  p += sizeof(buf);
  *p++ = '"';
  Advance(p);
  need_comma_ = true;
}

void JsonWriter::Int(int64_t v) {
  Separate();
  char* p = Room(24);
  Advance(std::to_chars(p, p + 24, v).ptr);
  need_comma_ = true;
}

void JsonWriter::Uint(uint64_t v) {
  Separate();
  char* p = Room(24);
  Advance(std::to_chars(p, p + 24, v).ptr);
  need_comma_ = true;
}

void JsonWriter::Bool(bool v) {
  Separate();
  if (v) {
    Put("true", 4);
  } else {
    Put("false", 5);
  }
  need_comma_ = true;
}

}  // namespace httptraced::record
