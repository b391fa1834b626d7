// A streaming JSON writer for the record hot path: appends straight to a
// caller-owned (and reused) OutBuffer. No DOM, no allocation per field.
//
// Every string goes out escaped ('"', '\\', control characters) and as valid
// UTF-8: ill-formed sequences become U+FFFD, so the output is valid JSON
// whatever bytes come in. Bodies use StringIfValidUtf8 and fall back to base64.
#ifndef HTTPTRACED_RECORD_JSON_WRITER_H_
#define HTTPTRACED_RECORD_JSON_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "record/out_buffer.h"

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
// Writes the encoding to d (Base64Size(bytes.size()) bytes).
void EncodeBase64(std::string_view bytes, char* d);

// Appends `s` as a quoted JSON string: escaped, ill-formed UTF-8 replaced.
// Escapes: \" \\ \b \f \n \r \t, other control characters as \u00XX.
void AppendJsonString(std::string_view s, std::string& out);

// Writes JSON to the end of a buffer. The caller keeps the nesting well
// formed (every Begin has its End, a Key before each value in an object);
// commas are placed automatically. Values written after a Key belong to it.
//
// For speed the writer owns the end of the buffer while it lives: it reserves
// room ahead of itself (uninitialised: OutBuffer does not zero it, as
// std::string::resize would) and writes through a raw cursor (one bounds check
// and a fixed-size memcpy per piece), then sets the buffer's size to what was
// written when it is destroyed or Finish()ed. Nothing else may touch the
// buffer meanwhile.
class JsonWriter {
 public:
  // `size_hint`: bytes this writer will probably add (growth beyond is fine).
  explicit JsonWriter(OutBuffer& out, size_t size_hint = 1024);
  ~JsonWriter() { Finish(); }
  JsonWriter(const JsonWriter&) = delete;
  JsonWriter& operator=(const JsonWriter&) = delete;

  // Sets the buffer's size to what was written; the writer is unusable afterwards.
  void Finish();

  void BeginObject() {
    Separate();
    Put('{');
    need_comma_ = false;
  }
  void EndObject() {
    Put('}');
    need_comma_ = true;
  }
  void BeginArray() {
    Separate();
    Put('[');
    need_comma_ = false;
  }
  void EndArray() {
    Put(']');
    need_comma_ = true;
  }
  // A raw byte outside any JSON value (the record's final '\n').
  void RawByte(char c) { Put(c); }

  // Appends `members`: one or more complete `"key":value` members of the
  // current object, as literal JSON (the builder's constant parts), with the
  // separating comma when needed.
  void RawMembers(std::string_view members) {
    Separate();
    Put(members.data(), members.size());
    need_comma_ = true;
  }
  // Appends `"key":{` (or `"key":[`) given as literal JSON: the start of a
  // nested object or array.
  void RawOpen(std::string_view key_and_brace) {
    Separate();
    Put(key_and_brace.data(), key_and_brace.size());
    need_comma_ = false;
  }
  // A value already formatted as a JSON string body (no escaping needed),
  // e.g. a timestamp formatted once and written three times.
  void RawStringField(std::string_view key, std::string_view plain) {
    Key(key);
    char* p = Room(plain.size() + 2);
    *p++ = '"';
    std::memcpy(p, plain.data(), plain.size());
    p += plain.size();
    *p++ = '"';
    cur_ = p;
    need_comma_ = true;
  }

  // An object key that is a literal of plain ASCII (no '"', '\\', control or
  // non-ASCII bytes): written as is. Keys from data go through KeyLowerAscii.
  void Key(std::string_view key) {
    char* p = Room(key.size() + 4);
    if (need_comma_) *p++ = ',';
    *p++ = '"';
    std::memcpy(p, key.data(), key.size());
    p += key.size();
    *p++ = '"';
    *p++ = ':';
    cur_ = p;
    need_comma_ = false;
  }
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

  // Raw access for the escaping routines: room for n more bytes at the
  // cursor (valid until the next call), then Advance past what was written.
  char* Room(size_t n) {
    if (static_cast<size_t>(end_ - cur_) < n) Grow(n);
    return cur_;
  }
  void Advance(char* new_cursor) { cur_ = new_cursor; }
  void Put(char c) {
    *Room(1) = c;
    ++cur_;
  }
  void Put(const char* s, size_t n) {
    std::memcpy(Room(n), s, n);
    cur_ += n;
  }
  // The whole buffer up to the cursor (what it will hold after Finish()).
  std::string_view Written() const {
    return std::string_view(out_->data(), static_cast<size_t>(cur_ - out_->data()));
  }
  // Where the cursor is, to go back there (StringIfValidUtf8's rollback).
  size_t Mark() const { return static_cast<size_t>(cur_ - out_->data()); }
  void Rewind(size_t mark) { cur_ = out_->data() + mark; }

 private:
  void Separate() {
    if (need_comma_) Put(',');
  }
  void Grow(size_t n);

  OutBuffer* out_;
  char* cur_ = nullptr;  // next byte to write, inside out_'s buffer
  char* end_ = nullptr;  // end of the room grown so far
  // True when the next key or array element needs a ',' before it. One flag
  // is enough: after a Begin nothing precedes, after any value (including a
  // closed container) a ',' does, and after a Key the value takes none.
  bool need_comma_ = false;
};

}  // namespace httptraced::record

#endif  // HTTPTRACED_RECORD_JSON_WRITER_H_
