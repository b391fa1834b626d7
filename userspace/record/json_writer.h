// A streaming JSON writer for the record hot path: appends straight to a
// caller-owned (and reused) std::string. No DOM, no allocation per field.
//
// Every string goes out escaped ('"', '\\', control characters) and as valid
// UTF-8: ill-formed sequences become U+FFFD, so the output is valid JSON
// whatever bytes come in. Bodies use StringIfValidUtf8 and fall back to base64.
#ifndef HTTPTRACED_RECORD_JSON_WRITER_H_
#define HTTPTRACED_RECORD_JSON_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace httptraced::record {

// True when `bytes` is well-formed UTF-8 (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF).
bool IsValidUtf8(std::string_view bytes);

// Appends `bytes` with each maximal ill-formed subsequence replaced by one
// U+FFFD (the Unicode "best practice" also used by the WHATWG decoder).
void AppendSanitizedUtf8(std::string_view bytes, std::string& out);

// Length of the padded base64 encoding of `n` bytes.
constexpr size_t Base64Size(size_t n) { return (n + 2) / 3 * 4; }

// Appends the standard, padded base64 encoding (RFC 4648 section 4) of `bytes`.
void AppendBase64(std::string_view bytes, std::string& out);

// Appends `s` as a quoted JSON string: escaped, ill-formed UTF-8 replaced.
// Escapes: \" \\ \b \f \n \r \t, other control characters as \u00XX.
void AppendJsonString(std::string_view s, std::string& out);

// Writes JSON to the end of a string. The caller keeps the nesting well
// formed (every Begin has its End, a Key before each value in an object);
// commas are placed automatically. Values written after a Key belong to it.
class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(&out) {}
  JsonWriter(const JsonWriter&) = delete;
  JsonWriter& operator=(const JsonWriter&) = delete;

  void BeginObject() {
    Separate();
    out_->push_back('{');
    need_comma_ = false;
  }
  void EndObject() {
    out_->push_back('}');
    need_comma_ = true;
  }
  void BeginArray() {
    Separate();
    out_->push_back('[');
    need_comma_ = false;
  }
  void EndArray() {
    out_->push_back(']');
    need_comma_ = true;
  }

  // Appends `members`: one or more complete `"key":value` members of the
  // current object, as literal JSON (the builder's constant parts), with the
  // separating comma when needed.
  void RawMembers(std::string_view members) {
    Separate();
    out_->append(members.data(), members.size());
    need_comma_ = true;
  }
  // Appends `"key":{` (or `"key":[`) given as literal JSON: the start of a
  // nested object or array.
  void RawOpen(std::string_view key_and_brace) {
    Separate();
    out_->append(key_and_brace.data(), key_and_brace.size());
    need_comma_ = false;
  }
  // A value already formatted as a JSON string body (no escaping needed),
  // e.g. a timestamp formatted once and written three times.
  void RawStringField(std::string_view key, std::string_view plain) {
    Key(key);
    out_->push_back('"');
    out_->append(plain.data(), plain.size());
    out_->push_back('"');
    need_comma_ = true;
  }

  // An object key that is a literal of plain ASCII (no '"', '\\', control or
  // non-ASCII bytes): written as is. Keys from data go through KeyLowerAscii.
  void Key(std::string_view key);
  // An object key with ASCII letters lowercased (header names).
  void KeyLowerAscii(std::string_view key);

  void String(std::string_view s);
  // Writes `s` as a string and returns true when it is valid UTF-8; otherwise
  // writes nothing and returns false (the caller picks another encoding).
  bool StringIfValidUtf8(std::string_view s);
  // `bytes` base64-encoded, as a string.
  void StringBase64(std::string_view bytes);
  // A wall-clock time (ns since the Unix epoch) as an RFC 3339 UTC string with
  // nine fractional digits.
  void Timestamp(int64_t wall_ns);
  void Int(int64_t v);
  void Uint(uint64_t v);
  void Bool(bool v);

  // Key + value in one call. Distinct names on purpose: an overload set would
  // send a string literal to the bool overload.
  void StringField(std::string_view key, std::string_view value) {
    Key(key);
    String(value);
  }
  void IntField(std::string_view key, int64_t value) {
    Key(key);
    Int(value);
  }
  void UintField(std::string_view key, uint64_t value) {
    Key(key);
    Uint(value);
  }
  void BoolField(std::string_view key, bool value) {
    Key(key);
    Bool(value);
  }
  void TimestampField(std::string_view key, int64_t wall_ns) {
    Key(key);
    Timestamp(wall_ns);
  }

 private:
  void Separate() {
    if (need_comma_) out_->push_back(',');
  }

  std::string* out_;
  // True when the next key or array element needs a ',' before it. One flag
  // is enough: after a Begin nothing precedes, after any value (including a
  // closed container) a ',' does, and after a Key the value takes none.
  bool need_comma_ = false;
};

}  // namespace httptraced::record

#endif  // HTTPTRACED_RECORD_JSON_WRITER_H_
