#include "http/parser.h"

#include <algorithm>
#include <array>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace httptraced::http {
namespace {

constexpr size_t kNpos = std::string_view::npos;
// Chunk-start metas kept for the line being scanned (the first one always).
constexpr size_t kMaxLineMetas = 32;
// Smallest head cap honoured: a status-line prefix and a short request line must fit.
constexpr size_t kMinHeaderBytes = 64;

// RFC 9110 token characters.
constexpr std::array<bool, 256> MakeTcharTable() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr std::array<bool, 256> kTchar = MakeTcharTable();

bool IsTchar(char c) { return kTchar[static_cast<unsigned char>(c)]; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
// A byte of a request-target: visible ASCII or obs-text (tracers see UTF-8 URLs).
bool IsTargetByte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u != 0x7f;
}
bool IsOws(char c) { return c == ' ' || c == '\t'; }

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && IsOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsOws(s.back())) s.remove_suffix(1);
  return s;
}

std::string_view StripCr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// CR and NUL never belong inside a line. (Not find_first_of: with a set of two
// bytes it runs one memchr per byte of the line.)
bool HasCrOrNul(std::string_view s) {
  return std::memchr(s.data(), '\r', s.size()) != nullptr ||
         std::memchr(s.data(), '\0', s.size()) != nullptr;
}

// The first LF, CR or NUL in [p, end), or end: where a field line's value
// stops. Sixteen bytes per step with SSE2 (baseline on x86-64).
const char* FindLineStop(const char* p, const char* end) {
#if defined(__SSE2__)
  const __m128i lf = _mm_set1_epi8('\n');
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i zero = _mm_setzero_si128();
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, lf),
                                     _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, zero)));
    const int mask = _mm_movemask_epi8(hit);
    if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
    p += 16;
  }
#endif
  while (p < end && *p != '\n' && *p != '\r' && *p != '\0') ++p;
  return p;
}

char LowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTchar(c)) return false;
  }
  return true;
}

// Methods accepted when glued to preceding bytes (no line start before them).
constexpr std::string_view kKnownMethods[] = {
    "GET",     "HEAD",      "POST",        "PUT",        "DELETE",    "CONNECT",
    "OPTIONS", "TRACE",     "PATCH",       "PROPFIND",   "PROPPATCH", "MKCOL",
    "COPY",    "MOVE",      "LOCK",        "UNLOCK",     "SEARCH",    "REPORT",
    "PURGE",   "QUERY",     "MKCALENDAR",  "LINK",       "UNLINK",    "M-SEARCH",
    "NOTIFY",  "SUBSCRIBE", "UNSUBSCRIBE", "MKACTIVITY", "CHECKOUT",  "MERGE",
};

size_t LongestKnownMethodSuffix(std::string_view token) {
  size_t best = 0;
  for (std::string_view m : kKnownMethods) {
    if (m.size() > best && token.size() >= m.size() && token.substr(token.size() - m.size()) == m) {
      best = m.size();
    }
  }
  return best;
}

// The first bytes of a request line longer than the head cap: a method at the
// start (at most kMaxMethodLength), SP, then only target bytes.
bool IsLongRequestLineHead(std::string_view head, size_t max_method) {
  size_t i = 0;
  while (i < head.size() && IsTchar(head[i])) ++i;
  if (i == 0 || i > max_method || i >= head.size() || head[i] != ' ') return false;
  for (++i; i < head.size(); ++i) {
    if (!IsTargetByte(head[i])) return false;
  }
  return true;
}

// The last bytes of such a line: target bytes, SP, HTTP/1.D, maybe CR.
bool IsLongRequestLineTail(std::string_view tail) {
  tail = StripCr(tail);
  constexpr std::string_view kVersion = " HTTP/1.";
  if (tail.size() < kVersion.size() + 1 || !IsDigit(tail.back()) ||
      tail.substr(tail.size() - 1 - kVersion.size(), kVersion.size()) != kVersion) {
    return false;
  }
  for (char c : tail.substr(0, tail.size() - 1 - kVersion.size())) {
    if (!IsTargetByte(c)) return false;
  }
  return true;
}

// Where a request line starts inside `line` (one line without its LF, or only
// the last bytes of a longer line), or kNpos. `line_start` tells whether line[0]
// is a true line start (after LF, a gap or the end of a message).
size_t FindRequestStart(std::string_view line, bool line_start) {
  line = StripCr(line);
  constexpr std::string_view kVersion = " HTTP/1.";
  if (line.size() < kVersion.size() + 1 + 2 || !IsDigit(line.back()) ||
      line.substr(line.size() - 1 - kVersion.size(), kVersion.size()) != kVersion) {
    return kNpos;
  }
  const size_t target_end = line.size() - 1 - kVersion.size();
  size_t target_begin = target_end;
  while (target_begin > 0 && IsTargetByte(line[target_begin - 1])) --target_begin;
  if (target_begin == target_end || target_begin == 0 || line[target_begin - 1] != ' ') {
    return kNpos;
  }
  const size_t method_end = target_begin - 1;
  size_t method_begin = method_end;
  while (method_begin > 0 && IsTchar(line[method_begin - 1])) --method_begin;
  if (method_begin == method_end) return kNpos;
  const std::string_view token = line.substr(method_begin, method_end - method_begin);
  if (method_begin == 0 && line_start && token.size() <= MessageParser::kMaxMethodLength) {
    return 0;
  }
  const size_t known = LongestKnownMethodSuffix(token);
  return known == 0 ? kNpos : method_end - known;
}

// "HTTP/1.D SP DDD" followed by SP, CR or LF: returns whether byte `c` extends a
// match of `matched` bytes, and the new count (13 = full match).
uint8_t StatusMatchStep(uint8_t matched, char c) {
  constexpr std::string_view kPrefix = "HTTP/1.";
  if (matched < 7) {
    if (c == kPrefix[matched]) return matched + 1;
  } else if (matched == 7 || matched == 10 || matched == 11) {
    if (IsDigit(c)) return matched + 1;
  } else if (matched == 8) {
    if (c == ' ') return 9;
  } else if (matched == 9) {
    if (c >= '1' && c <= '9') return 10;
  } else if (matched == 12) {
    if (c == ' ' || c == '\r' || c == '\n') return 13;
  }
  return c == 'H' ? 1 : 0;
}

struct HeadInfo {
  bool has_content_length = false;
  bool content_length_valid = true;
  uint64_t content_length = 0;
  bool has_transfer_encoding = false;
  bool chunked = false;  // chunked is the final transfer coding
  bool fields_dropped = false;
};

bool ParseUint(std::string_view digits, uint64_t max, uint64_t* value) {
  if (digits.empty()) return false;
  uint64_t v = 0;
  for (char c : digits) {
    if (!IsDigit(c)) return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
    if (v > max) return false;
  }
  *value = v;
  return true;
}

// Content-Length: 1*DIGIT, or a list of identical values ("5, 5").
void NoteContentLength(std::string_view value, HeadInfo* info) {
  bool any = false;
  size_t pos = 0;
  while (pos <= value.size()) {
    size_t comma = value.find(',', pos);
    if (comma == kNpos) comma = value.size();
    const std::string_view item = TrimOws(value.substr(pos, comma - pos));
    pos = comma + 1;
    uint64_t v = 0;
    if (!ParseUint(item, MessageParser::kMaxBodyLength, &v)) {
      info->content_length_valid = false;
      continue;
    }
    if ((info->has_content_length || any) && v != info->content_length) {
      info->content_length_valid = false;
    }
    info->content_length = v;
    any = true;
  }
  if (!any) info->content_length_valid = false;
  info->has_content_length = true;
}

// Transfer-Encoding: a list of codings; only whether the last one is chunked matters.
void NoteTransferEncoding(std::string_view value, HeadInfo* info) {
  info->has_transfer_encoding = true;
  size_t pos = 0;
  while (pos <= value.size()) {
    size_t comma = value.find(',', pos);
    if (comma == kNpos) comma = value.size();
    std::string_view item = TrimOws(value.substr(pos, comma - pos));
    pos = comma + 1;
    if (item.empty()) continue;  // empty list elements are allowed and ignored
    const size_t semi = item.find(';');
    if (semi != kNpos) item = TrimOws(item.substr(0, semi));
    info->chunked = HeaderNameEquals(item, "chunked");
  }
}

// The fields of a section being parsed, appended to a vector that may hold
// stale fields from a reclaimed message (MessageRecycler::PrepareFields):
// those are overwritten in order, so their strings' buffers are reused, and
// the ones left over are cut off when the list goes out of scope.
class FieldList {
 public:
  // headers_of: the kind of message whose header section this is (its
  // vector may come from the recycler); null for trailers.
  FieldList(std::vector<Header>* fields, const ParserOptions& options,
            const Message::Kind* headers_of)
      : fields_(fields), used_(fields->size()) {
    if (used_ != 0) return;  // appending to fields parsed before
    const size_t want = std::min<size_t>(options.max_headers, 16);
    if (options.recycler != nullptr && headers_of != nullptr) {
      options.recycler->PrepareFields(fields, *headers_of, want);
    } else {
      fields->reserve(want);
    }
  }
  ~FieldList() {
    if (fields_->size() > used_) {
      fields_->erase(fields_->begin() + static_cast<std::ptrdiff_t>(used_), fields_->end());
    }
  }
  FieldList(const FieldList&) = delete;
  FieldList& operator=(const FieldList&) = delete;

  size_t size() const { return used_; }
  bool empty() const { return used_ == 0; }
  Header& back() { return (*fields_)[used_ - 1]; }
  void Add(std::string_view name, std::string_view value) {
    // Built in place: no temporary Header whose strings are moved again.
    Header& field = used_ < fields_->size() ? (*fields_)[used_] : fields_->emplace_back();
    field.name.assign(name);
    field.value.assign(value);
    ++used_;
  }

 private:
  std::vector<Header>* fields_;
  size_t used_;  // fields of this list; any after them are stale
};

// Parses header (or trailer) field lines up to the empty line that ends the
// section. A last line without LF (cut by the cap or by the end of data) is
// ignored. Returns false on a malformed line; fields before it are kept.
// headers_of: as for FieldList.
bool ParseFields(std::string_view section, const ParserOptions& options,
                 const Message::Kind* headers_of, std::vector<Header>* field_vector,
                 HeadInfo* info) {
  bool last_stored = false;
  bool last_framing = false;
  const size_t max_fields = options.max_headers;
  FieldList fields(field_vector, options, headers_of);

  while (!section.empty()) {
    // The common line, "token:value" with no CR or NUL before its line end:
    // one pass over the name, one over the value.
    const char* const begin = section.data();
    const char* const end = begin + section.size();
    const char* name_end = begin;
    while (name_end < end && IsTchar(*name_end)) ++name_end;
    if (name_end != begin && name_end < end && *name_end == ':') {
      const char* const stop = FindLineStop(name_end + 1, end);
      if (stop == end) return true;  // no LF yet: a partial last line is ignored
      const bool crlf = *stop == '\r' && stop + 1 < end && stop[1] == '\n';
      if (*stop != '\n' && !crlf) {
        // A CR or NUL inside the line: bad once the line is complete.
        return std::memchr(stop, '\n', static_cast<size_t>(end - stop)) == nullptr;
      }
      const std::string_view name(begin, static_cast<size_t>(name_end - begin));
      const std::string_view value =
          TrimOws(std::string_view(name_end + 1, static_cast<size_t>(stop - name_end - 1)));
      section.remove_prefix(static_cast<size_t>(stop - begin) + (crlf ? 2 : 1));
      last_framing = false;
      // The sizes first, inline: most names are neither.
      constexpr std::string_view kContentLength = "content-length";
      constexpr std::string_view kTransferEncoding = "transfer-encoding";
      if (name.size() == kContentLength.size() && HeaderNameEquals(name, kContentLength)) {
        NoteContentLength(value, info);
        last_framing = true;
      } else if (name.size() == kTransferEncoding.size() &&
                 HeaderNameEquals(name, kTransferEncoding)) {
        NoteTransferEncoding(value, info);
        last_framing = true;
      }
      if (fields.size() < max_fields) {
        fields.Add(name, value);
        last_stored = true;
      } else {
        info->fields_dropped = true;
        last_stored = false;
      }
      continue;
    }
    // Everything else: the blank line, obs-fold, malformed lines.
    const size_t lf = section.find('\n');
    if (lf == kNpos) return true;
    const std::string_view line = StripCr(section.substr(0, lf));
    section.remove_prefix(lf + 1);
    if (line.empty()) return true;
    if (HasCrOrNul(line)) return false;
    if (IsOws(line.front())) {
      // obs-fold (RFC 9112 5.2): continues the previous field value, joined by SP.
      if (fields.empty() && !info->fields_dropped) return false;
      if (last_framing) return false;
      const std::string_view more = TrimOws(line);
      if (last_stored && !more.empty()) {
        std::string& value = fields.back().value;
        if (!value.empty()) value.push_back(' ');
        value.append(more);
      }
      continue;
    }
    // Not a field line (the fast path takes every well-formed one).
    return false;
  }
  return true;
}

// "METHOD SP target SP HTTP/1.D".
bool ParseRequestLine(std::string_view line, Message* msg) {
  const size_t sp1 = line.find(' ');
  if (sp1 == kNpos) return false;
  const std::string_view method = line.substr(0, sp1);
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == kNpos) return false;
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!IsToken(method) || target.empty() || version.size() != 8 ||
      version.substr(0, 7) != "HTTP/1." || !IsDigit(version[7])) {
    return false;
  }
  for (char c : target) {
    if (!IsTargetByte(c)) return false;
  }
  msg->method.assign(method);
  msg->target.assign(target);
  msg->version_minor = version[7] - '0';
  return true;
}

// "HTTP/1.D SP DDD [SP reason]". The reason may be empty; it is kept as sent.
bool ParseStatusLine(std::string_view line, Message* msg) {
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || !IsDigit(line[7]) || line[8] != ' ' ||
      !IsDigit(line[9]) || line[9] == '0' || !IsDigit(line[10]) || !IsDigit(line[11])) {
    return false;
  }
  msg->version_minor = line[7] - '0';
  msg->status_code = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (line.size() == 12) return true;
  if (line[12] != ' ') return false;
  const std::string_view reason = line.substr(13);
  if (HasCrOrNul(reason)) return false;
  msg->reason.assign(reason);
  return true;
}

// Parses a message head (start line, fields, empty line). When `full` is false
// the head was cut (cap, gap, close): the start line may lack its LF and a last
// partial field line is ignored. Fields parsed before an error are kept.
bool ParseHead(std::string_view head, bool full, const ParserOptions& options, Message* msg,
               HeadInfo* info) {
  const size_t lf = head.find('\n');
  const std::string_view line = StripCr(head.substr(0, lf));
  const bool ok = msg->kind == Message::Kind::kRequest ? ParseRequestLine(line, msg)
                                                       : ParseStatusLine(line, msg);
  if (!ok) return false;
  if (lf == kNpos) return !full;
  return ParseFields(head.substr(lf + 1), options, &msg->kind, &msg->headers, info);
}

// "1*HEXDIG [BWS] [; extensions]": the size, or false.
bool ParseChunkSizeLine(std::string_view line, uint64_t* size) {
  line = StripCr(line);
  size_t i = 0;
  uint64_t v = 0;
  while (i < line.size()) {
    const char c = line[i];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      break;
    }
    v = v * 16 + static_cast<uint64_t>(d);
    if (v > MessageParser::kMaxBodyLength) return false;
    ++i;
  }
  if (i == 0) return false;
  while (i < line.size() && IsOws(line[i])) ++i;
  if (i < line.size() && line[i] != ';') return false;
  if (HasCrOrNul(line.substr(i))) return false;
  *size = v;
  return true;
}

bool IsFinalResponse(const Message& m) {
  return m.kind == Message::Kind::kResponse && (m.status_code >= 200 || m.status_code == 101);
}

}  // namespace

bool HeaderNameEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (LowerAscii(a[i]) != LowerAscii(b[i])) return false;
  }
  return true;
}

const std::string* FindHeader(const std::vector<Header>& headers, std::string_view name) {
  for (const Header& h : headers) {
    if (HeaderNameEquals(h.name, name)) return &h.value;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------
// StartLineCheck: request line and status line grammars, one byte at a time.

namespace {
enum ReqState : uint8_t {
  kReqDead,
  kReqMethod,
  kReqTarget,
  kReqVersion,
  kReqDigit,
  kReqEnd,
  kReqCr
};
enum RespState : uint8_t { kRespDead, kRespPrefix, kRespReason, kRespCr };
}  // namespace

void MessageParser::StartLineCheck::Reset(ParseMode mode) {
  req = mode == ParseMode::kResponse ? kReqDead : kReqMethod;
  resp = mode == ParseMode::kRequest ? kRespDead : kRespPrefix;
  req_count = 0;
  resp_count = 0;
  seen = 0;
  leading_cr = false;
}

// Fed the bytes of a line not yet ended (never its LF). Rejects as soon as no
// start line can begin with the bytes seen.
MessageParser::StartLineCheck::Verdict MessageParser::StartLineCheck::Step(char c) {
  if (leading_cr) return Verdict::kReject;  // "\r" not followed by LF
  if (seen++ == 0 && c == '\r') {
    leading_cr = true;  // a blank line, if LF follows
    return Verdict::kMore;
  }
  switch (req) {
    case kReqMethod:
      if (IsTchar(c) && req_count < kMaxMethodLength) {
        ++req_count;
      } else if (c == ' ' && req_count > 0) {
        req = kReqTarget;
        req_count = 0;
      } else {
        req = kReqDead;
      }
      break;
    case kReqTarget:
      if (IsTargetByte(c)) {
        ++req_count;
      } else if (c == ' ' && req_count > 0) {
        req = kReqVersion;
        req_count = 0;
      } else {
        req = kReqDead;
      }
      break;
    case kReqVersion:
      if (c == "HTTP/1."[req_count]) {
        if (++req_count == 7) req = kReqDigit;
      } else {
        req = kReqDead;
      }
      break;
    case kReqDigit:
      req = IsDigit(c) ? kReqEnd : kReqDead;
      break;
    case kReqEnd:  // only CR may precede the LF
      req = c == '\r' ? kReqCr : kReqDead;
      break;
    case kReqCr:
      req = kReqDead;
      break;
    default:
      break;
  }
  switch (resp) {
    case kRespPrefix: {
      const uint8_t m = StatusMatchStep(resp_count, c);
      if (m != resp_count + 1) {
        resp = kRespDead;
      } else if (m < 13) {
        resp_count = m;
      } else {
        resp = c == '\r' ? kRespCr : kRespReason;
      }
      break;
    }
    case kRespReason:
      if (c == '\r') resp = kRespCr;
      break;
    case kRespCr:
      resp = kRespDead;
      break;
    default:
      break;
  }
  return req == kReqDead && resp == kRespDead ? Verdict::kReject : Verdict::kMore;
}

// ---------------------------------------------------------------------------

MessageParser::MessageParser(ParseMode mode, const ParserOptions& options,
                             const RequestLookup* lookup)
    : mode_(mode), options_(options), lookup_(lookup) {
  options_.max_header_bytes = std::max(options_.max_header_bytes, kMinHeaderBytes);
  EnterSeekAt(0, 0, /*in_sync=*/true, /*at_line_start=*/true);
  at_stream_start_ = true;
}

void MessageParser::StartMidStream() {
  if (state_ != State::kSeek) return;
  in_sync_ = false;
  check_active_ = false;
  gap_before_ = true;
  error_counted_ = true;  // joining mid-stream is not a parse error
  at_stream_start_ = false;
}

void MessageParser::SetMode(ParseMode mode) {
  mode_ = mode;
  if (mode == ParseMode::kRequest) {
    check_.resp = kRespDead;
    resp_match_ = 0;
  } else if (mode == ParseMode::kResponse) {
    check_.req = kReqDead;
  }
  if (state_ == State::kSeek && check_active_ && check_.req == kReqDead &&
      check_.resp == kRespDead && line_len_ > 0) {
    SeekLoseSync();
  }
}

void MessageParser::Stop() {
  state_ = State::kStopped;
  msg_ = Message();
  lost_ = Message();
  lost_active_ = false;
  head_buf_.clear();
  head_buf_.shrink_to_fit();
  line_buf_.clear();
  line_buf_.shrink_to_fit();
  line_head_.clear();
  line_head_.shrink_to_fit();
  chunk_line_.clear();
  chunk_line_.shrink_to_fit();
}

bool MessageParser::idle() const {
  return state_ == State::kStopped ||
         (state_ == State::kSeek && line_len_ == 0 && !has_content_ && !lost_active_);
}

const Message* MessageParser::in_progress() const {
  switch (state_) {
    case State::kSeek:
    case State::kStopped:
      return nullptr;
    default:
      return &msg_;
  }
}

uint64_t MessageParser::garbage_bytes() const {
  uint64_t pending = 0;
  if (state_ == State::kSeek && has_content_ && stream_pos_ > content_abs_) {
    pending = stream_pos_ - content_abs_;
  }
  return stats_.bytes_skipped + pending;
}

void MessageParser::BeginCall() {
  final_in_call_ = 0;
  messages_at_call_ = stats_.messages;
  sync_losses_.clear();
}

void MessageParser::NoteSyncLoss(const ChunkMeta& at) {
  sync_losses_.push_back(SyncLoss{static_cast<size_t>(stats_.messages - messages_at_call_), at});
}

namespace {

// Heap bytes held by a message's strings and field vectors (capacity).
size_t HeapBytes(const Message& m) {
  size_t n = m.method.capacity() + m.target.capacity() + m.reason.capacity() +
             m.body.content.capacity();
  for (const std::vector<Header>* fields : {&m.headers, &m.trailers}) {
    n += fields->capacity() * sizeof(Header);
    for (const Header& h : *fields) n += h.name.capacity() + h.value.capacity();
  }
  return n;
}

}  // namespace

size_t MessageParser::buffered_bytes() const {
  return head_buf_.capacity() + line_buf_.capacity() + line_head_.capacity() +
         chunk_line_.capacity() + line_metas_.capacity() * sizeof(line_metas_[0]) +
         sync_losses_.capacity() * sizeof(SyncLoss) + HeapBytes(msg_) + HeapBytes(lost_);
}

void MessageParser::Feed(std::string_view data, const ChunkMeta& meta, std::vector<Message>* out) {
  BeginCall();
  meta_ = meta;
  chunk_abs_ = stream_pos_;
  if (state_ == State::kSeek) SeekChunkStart();
  size_t pos = 0;
  const size_t n = data.size();
  while (pos < n) {
    switch (state_) {
      case State::kSeek:
        pos = lost_active_ ? LostChunkedSeekStep(data, pos, out) : SeekStep(data, pos);
        break;
      case State::kHead:
        pos = HeadStep(data, pos, out);
        break;
      case State::kBodyLength:
        pos = BodyLengthStep(data, pos, out);
        break;
      case State::kChunkSize:
        pos = ChunkSizeStep(data, pos, out);
        break;
      case State::kChunkData:
        pos = ChunkDataStep(data, pos);
        break;
      case State::kChunkDataEnd:
        pos = ChunkDataEndStep(data, pos, out);
        break;
      case State::kTrailers:
        pos = TrailersStep(data, pos, out);
        break;
      case State::kBodyClose:
        pos = BodyCloseStep(data, pos);
        break;
      case State::kStopped:
        pos = n;
        break;
    }
  }
  if (state_ == State::kHead && head_in_place_) {
    // A head that began in this chunk and continues in the next.
    head_in_place_ = false;
    AppendCapped(&head_buf_, data.substr(head_start_));
  }
  stream_pos_ += n;
}

bool MessageParser::FeedGap(uint64_t len, const ChunkMeta& meta, std::vector<Message>* out) {
  BeginCall();
  if (len == 0) return true;
  meta_ = meta;
  chunk_abs_ = stream_pos_;
  const uint64_t gap_end = stream_pos_ + len;
  switch (state_) {
    case State::kStopped:
      stream_pos_ = gap_end;
      return true;
    case State::kBodyLength:
    case State::kChunkData:
      if (len <= remaining_) {
        // Inside a body of known length: skip the bytes, stay in sync.
        SkipBody(len);
        remaining_ -= len;
        msg_.last = meta;
        stream_pos_ = gap_end;
        if (remaining_ == 0) {
          if (state_ == State::kBodyLength) {
            EmitMessage(/*complete=*/true, out);
            EnterSeekAt(gap_end, 0, /*in_sync=*/true, /*at_line_start=*/true);
          } else {
            state_ = State::kChunkDataEnd;
            saw_cr_ = false;
          }
        }
        return true;
      }
      // The body ends inside the gap; whatever followed it is lost too. A
      // Content-Length message is whole (its last bytes unseen); a chunked one
      // lost its framing and waits for its last chunk.
      SkipBody(remaining_);
      msg_.last = meta;
      if (state_ == State::kChunkData) {
        HoldLostChunked(stream_pos_ + remaining_, meta);
        break;
      }
      EmitMessage(/*complete=*/true, out);
      ++stats_.parse_errors;
      break;
    case State::kSeek:
      if (lost_active_) {
        // More of the held chunked body is missing: keep looking for its end.
        lost_seen_ns_ = meta.ts_ns;
        break;
      }
      // Start-line candidates and garbage never join across a gap.
      if (has_content_ && stream_pos_ > content_abs_) {
        stats_.bytes_skipped += stream_pos_ - content_abs_;
      }
      if (!error_counted_) ++stats_.parse_errors;
      break;
    case State::kHead:
      EmitPartialHead(stream_pos_ - head_abs_, out);
      ++stats_.parse_errors;
      break;
    case State::kBodyClose:
      // The body runs to the close whatever is missing: the bytes are counted
      // (the kernel gives their number) and the message stays in sync.
      SkipBody(len);
      msg_.last = meta;
      stream_pos_ = gap_end;
      return true;
    case State::kChunkSize:
    case State::kChunkDataEnd:
      // Where the body's framing continues after the gap is unknown.
      SkipBody(0);
      HoldLostChunked(stream_pos_, meta);
      break;
    case State::kTrailers:
      SkipBody(0);
      EmitMessage(/*complete=*/false, out);
      ++stats_.parse_errors;
      break;
  }
  stream_pos_ = gap_end;
  at_stream_start_ = false;  // what follows is not the start of the stream
  // A held message's loss is counted only if its last chunk is not found.
  if (!lost_active_) NoteSyncLoss(meta);
  EnterSeekAt(gap_end, 0, /*in_sync=*/false, /*at_line_start=*/true);
  lost_match_ = 2;  // a gap ends a line: "0" CRLF CRLF may follow (when held)
  return false;
}

void MessageParser::Finish(std::vector<Message>* out) {
  BeginCall();
  switch (state_) {
    case State::kStopped:
      return;
    case State::kSeek:
      if (has_content_ && stream_pos_ > content_abs_) {
        stats_.bytes_skipped += stream_pos_ - content_abs_;
      }
      if (lost_active_) EmitLostChunked(/*complete=*/false, out);
      break;
    case State::kHead:
      EmitPartialHead(stream_pos_ - head_abs_, out);
      break;
    case State::kBodyClose:
      EmitMessage(/*complete=*/true, out);
      break;
    case State::kBodyLength:
    case State::kChunkSize:
    case State::kChunkData:
    case State::kChunkDataEnd:
    case State::kTrailers:
      EmitMessage(/*complete=*/false, out);
      break;
  }
  EnterSeekAt(stream_pos_, 0, /*in_sync=*/true, /*at_line_start=*/true);
  at_stream_start_ = true;
}

// ---------------------------------------------------------------------------
// kSeek: finding where the next message starts.

void MessageParser::EnterSeekAt(uint64_t abs, size_t chunk_pos, bool in_sync, bool at_line_start) {
  state_ = State::kSeek;
  in_sync_ = in_sync;
  check_active_ = in_sync;
  check_.Reset(mode_);
  gap_before_ = !in_sync;
  error_counted_ = !in_sync;  // the caller counted the error that got us here
  has_content_ = false;
  line_at_boundary_ = at_line_start;
  line_abs_ = abs;
  line_len_ = 0;
  line_first_ = 0;
  line_start_chunk_ = chunk_pos;
  line_buf_.clear();
  ResetLongLine();
  line_buf_abs_ = abs;
  line_metas_.clear();
  line_metas_.emplace_back(abs, meta_);
  resp_match_ = 0;
}

void MessageParser::SeekChunkStart() {
  line_start_chunk_ = 0;
  if (line_len_ == 0) {
    line_abs_ = chunk_abs_;
    line_buf_.clear();
    ResetLongLine();
    line_buf_abs_ = chunk_abs_;
    line_metas_.clear();
    line_metas_.emplace_back(chunk_abs_, meta_);
    return;
  }
  const ChunkMeta& last = line_metas_.back().second;
  if (last.ts_ns == meta_.ts_ns && last.tid == meta_.tid) return;
  if (line_metas_.size() >= kMaxLineMetas) line_metas_.erase(line_metas_.begin() + 1);
  line_metas_.emplace_back(chunk_abs_, meta_);
}

ChunkMeta MessageParser::MetaAt(uint64_t abs) const {
  for (auto it = line_metas_.rbegin(); it != line_metas_.rend(); ++it) {
    if (it->first <= abs) return it->second;
  }
  return line_metas_.empty() ? meta_ : line_metas_.front().second;
}

void MessageParser::AppendLine(uint64_t abs, std::string_view part) {
  if (line_buf_.empty()) line_buf_abs_ = abs;
  line_buf_.append(part);
  const size_t window = options_.max_header_bytes - 1;
  if (line_buf_.size() > 2 * window) {
    const size_t drop = line_buf_.size() - window;
    if (line_at_boundary_ && long_line_ok_) {
      // A line this long can still be a request line with a long target (see
      // TryLongRequestAt): keep its first bytes if they start like one, and
      // check the bytes dropped after them, as they go.
      if (line_head_.empty()) {
        const std::string_view head = std::string_view(line_buf_).substr(0, window);
        if (line_buf_abs_ == line_abs_ && IsLongRequestLineHead(head, kMaxMethodLength)) {
          line_head_.assign(head);
        } else {
          long_line_ok_ = false;
        }
      }
      const uint64_t head_end = line_abs_ + window;
      for (size_t i = 0; i < drop && long_line_ok_; ++i) {
        if (line_buf_abs_ + i >= head_end && !IsTargetByte(line_buf_[i])) long_line_ok_ = false;
      }
    }
    line_buf_.erase(0, drop);
    line_buf_abs_ += drop;
  }
}

void MessageParser::ResetLongLine() {
  line_head_.clear();
  long_line_ok_ = true;
}

bool MessageParser::TryLongRequestAt(std::string_view line) {
  // `line`: the buffered bytes of the current line up to its LF; the whole
  // line unless AppendLine has dropped its middle (then line_head_ holds its
  // first bytes). The verdict depends on the bytes only, not on how they were
  // chunked: every byte is checked once, by the head, middle or tail rule.
  const size_t window = options_.max_header_bytes - 1;
  if (!long_line_ok_ || line_len_ > kMaxHeadScanFactor * options_.max_header_bytes) return false;
  std::string_view head;
  if (line_head_.empty()) {
    if (line.size() != line_len_ || FindRequestStart(line, /*line_start=*/true) != 0) return false;
    head = line.substr(0, window);
  } else {
    head = line_head_;
    if (!IsLongRequestLineTail(line)) return false;
  }
  // A request whose head does not fit: keep the method, as much of the target
  // as fits in half the cap (the rest of the cap is for the fields), the
  // version. CompleteHead marks it headers_truncated (the head passed the cap).
  const size_t sp = head.find(' ');
  const std::string_view method = head.substr(0, sp);
  const std::string_view target = head.substr(sp + 1);
  const size_t room = window / 2 > method.size() + 10 ? window / 2 - method.size() - 10 : 1;
  const char digit = StripCr(line).back();
  BeginMessage(Message::Kind::kRequest, line_abs_);
  head_in_place_ = false;
  head_buf_.assign(method);
  head_buf_.push_back(' ');
  head_buf_.append(target.substr(0, std::min(room, target.size())));
  head_buf_.append(" HTTP/1.");
  head_buf_.push_back(digit);
  head_buf_.push_back('\n');
  section_line_len_ = 0;
  section_prev_ = '\n';
  line_buf_.clear();
  ResetLongLine();
  return true;
}

void MessageParser::SeekLoseSync() {
  if (!in_sync_) return;
  // In sync, the current line is the first non-blank one: where the garbage began.
  NoteSyncLoss(MetaAt(line_abs_));
  in_sync_ = false;
  check_active_ = false;
  gap_before_ = true;
  if (!error_counted_) {
    ++stats_.parse_errors;
    error_counted_ = true;
  }
  if (at_stream_start_) rejected_stream_start_ = true;
}

size_t MessageParser::SeekStep(std::string_view data, size_t pos) {
  const char* base = data.data();
  const size_t n = data.size();
  const bool want_requests = mode_ != ParseMode::kResponse;
  const bool want_responses = mode_ != ParseMode::kRequest;
  while (pos < n) {
    const auto* lfp = static_cast<const char*>(std::memchr(base + pos, '\n', n - pos));
    const size_t seg_end = lfp != nullptr ? static_cast<size_t>(lfp - base) : n;
    // [pos, seg_end) continues the current line.
    if (seg_end > pos) {
      if (line_len_ == 0) line_first_ = base[pos];
      const uint64_t new_len = line_len_ + (seg_end - pos);
      if (!has_content_ && !(new_len == 1 && line_first_ == '\r')) {
        has_content_ = true;
        content_abs_ = line_abs_;
      }
      // A status line may start anywhere: look for one first, so that the
      // expected-start check below only judges the bytes before it.
      size_t found = kNpos;  // index of the 13th byte of "HTTP/1.D SP DDD X"
      if (want_responses) {
        size_t i = pos;
        while (i < seg_end) {
          if (resp_match_ == 0) {
            const auto* h = static_cast<const char*>(std::memchr(base + i, 'H', seg_end - i));
            if (h == nullptr) break;
            i = static_cast<size_t>(h - base);
          }
          resp_match_ = StatusMatchStep(resp_match_, base[i]);
          if (resp_match_ == 13) {
            found = i;
            break;
          }
          ++i;
        }
      }
      // The expected-start check only matters for a line that is still open at
      // the end of the chunk (garbage noticed early); a whole line is judged at
      // its LF below, by the same grammar.
      if (check_active_ && lfp == nullptr) {
        const size_t check_end =
            found == kNpos ? seg_end : std::max(pos, found >= pos + 12 ? found - 12 : pos);
        for (size_t i = pos; i < check_end; ++i) {
          if (check_.Step(base[i]) == StartLineCheck::Verdict::kReject) {
            SeekLoseSync();
            break;
          }
        }
      }
      line_len_ = new_len;
      if (found != kNpos) {
        StartResponseAt(data, found);
        return found;
      }
    }
    if (lfp == nullptr) break;
    // The line ends at seg_end.
    if (want_responses && StatusMatchStep(resp_match_, '\n') == 13) {
      StartResponseAt(data, seg_end);
      return seg_end;
    }
    const bool blank = line_len_ == 0 || (line_len_ == 1 && line_first_ == '\r');
    if (!blank) {
      if (want_requests && TryRequestAt(data, seg_end)) return seg_end + 1;
      // A whole line that is not a start line where one was expected.
      SeekLoseSync();
    }
    // The next line starts after the LF.
    pos = seg_end + 1;
    line_at_boundary_ = true;
    line_abs_ = Abs(pos);
    line_len_ = 0;
    line_first_ = 0;
    line_start_chunk_ = pos;
    line_buf_.clear();
    ResetLongLine();
    line_buf_abs_ = line_abs_;
    line_metas_.clear();
    line_metas_.emplace_back(line_abs_, meta_);
    resp_match_ = 0;
    if (check_active_) check_.Reset(mode_);
  }
  if (n > line_start_chunk_) {
    AppendLine(Abs(line_start_chunk_), data.substr(line_start_chunk_));
  }
  return n;
}

bool MessageParser::TryRequestAt(std::string_view data, size_t lf) {
  std::string_view line;
  uint64_t line_abs;
  const std::string_view part = data.substr(line_start_chunk_, lf - line_start_chunk_);
  if (line_buf_.empty()) {
    line = part;
    line_abs = Abs(line_start_chunk_);
  } else {
    AppendLine(Abs(line_start_chunk_), part);
    line = line_buf_;
    line_abs = line_buf_abs_;
  }
  // The start line and its LF must fit in the head cap, unless it is a whole
  // request line with a long target.
  const size_t window = options_.max_header_bytes - 1;
  if (line_at_boundary_ && line_len_ > window && TryLongRequestAt(line)) return true;
  const bool whole = line_at_boundary_ && line_len_ <= window;
  if (line.size() > window) {
    line_abs += line.size() - window;
    line.remove_prefix(line.size() - window);
  }
  const size_t start = FindRequestStart(line, whole);
  if (start == kNpos) return false;
  const uint64_t start_abs = line_abs + start;
  BeginMessage(Message::Kind::kRequest, start_abs);
  if (start_abs >= chunk_abs_) {
    head_in_place_ = true;
    head_start_ = static_cast<size_t>(start_abs - chunk_abs_);
  } else {
    head_in_place_ = false;
    head_buf_.assign(line.substr(start));
    head_buf_.push_back('\n');
  }
  // The start line is done; the head continues with the next line.
  section_line_len_ = 0;
  section_prev_ = '\n';
  line_buf_.clear();
  ResetLongLine();
  return true;
}

void MessageParser::StartResponseAt(std::string_view data, size_t thirteenth) {
  // "HTTP/1.D SP DDD" ends just before `thirteenth`, wholly in this chunk or
  // starting in line_buf_ (the current line's bytes from earlier chunks).
  const uint64_t start_abs = Abs(thirteenth) - 12;
  BeginMessage(Message::Kind::kResponse, start_abs);
  if (start_abs >= chunk_abs_) {
    head_in_place_ = true;
    head_start_ = static_cast<size_t>(start_abs - chunk_abs_);
  } else {
    head_in_place_ = false;
    const auto from_buf = static_cast<size_t>(chunk_abs_ - start_abs);
    head_buf_.assign(std::string_view(line_buf_).substr(line_buf_.size() - from_buf));
    head_buf_.append(data.substr(0, thirteenth));
  }
  // The head scan resumes at the 13th byte, inside the status line.
  section_line_len_ = 12;
  section_prev_ = '0';
  line_buf_.clear();
  ResetLongLine();
}

void MessageParser::BeginMessage(Message::Kind kind, uint64_t start_abs) {
  // Whatever this episode scanned before the start was skipped.
  if (has_content_ && start_abs > content_abs_) {
    stats_.bytes_skipped += start_abs - content_abs_;
    SeekLoseSync();  // if a message was expected right there
    gap_before_ = true;
    if (!error_counted_) {
      ++stats_.parse_errors;
      error_counted_ = true;
    }
  }
  // msg_ is empty here: fresh, emitted or dropped.
  msg_.kind = kind;
  msg_.first = MetaAt(start_abs);
  msg_.last = meta_;
  msg_.gap_before = gap_before_;
  state_ = State::kHead;
  head_abs_ = start_abs;
  head_buf_.clear();
  line_len_ = 0;
  has_content_ = false;
  resp_match_ = 0;
}

// ---------------------------------------------------------------------------
// Heads and trailers: sections ended by an empty line.

size_t MessageParser::FindSectionEnd(std::string_view data, size_t pos) {
  const char* base = data.data();
  const size_t n = data.size();
  size_t i = pos;
  while (i < n) {
    const auto* lfp = static_cast<const char*>(std::memchr(base + i, '\n', n - i));
    if (lfp == nullptr) {
      section_line_len_ += n - i;
      section_prev_ = base[n - 1];
      return kNpos;
    }
    const auto lf = static_cast<size_t>(lfp - base);
    const uint64_t len = section_line_len_ + (lf - i);
    const char last = lf > i ? base[lf - 1] : section_prev_;
    section_line_len_ = 0;
    section_prev_ = '\n';
    if (len == 0 || (len == 1 && last == '\r')) return lf + 1;
    i = lf + 1;
  }
  return kNpos;
}

void MessageParser::AppendCapped(std::string* buf, std::string_view part) const {
  const size_t cap = options_.max_header_bytes;
  if (buf->size() < cap) buf->append(part.substr(0, cap - buf->size()));
}

size_t MessageParser::SectionScanEnd(std::string_view data) const {
  // A section (head or trailers) is given up on once it reaches this many bytes
  // without ending; the cut falls at the same stream offset however the bytes
  // are chunked.
  const uint64_t limit_abs = head_abs_ + kMaxHeadScanFactor * options_.max_header_bytes;
  return Abs(data.size()) > limit_abs ? static_cast<size_t>(limit_abs - chunk_abs_) : data.size();
}

size_t MessageParser::HeadStep(std::string_view data, size_t pos, std::vector<Message>* out) {
  msg_.last = meta_;
  const size_t scan_end = SectionScanEnd(data);
  const size_t end = FindSectionEnd(data.substr(0, scan_end), pos);
  if (end == kNpos) {
    if (head_in_place_) {
      head_in_place_ = false;
      AppendCapped(&head_buf_, data.substr(head_start_, scan_end - head_start_));
    } else {
      AppendCapped(&head_buf_, data.substr(pos, scan_end - pos));
    }
    const uint64_t total = Abs(scan_end) - head_abs_;
    if (total >= kMaxHeadScanFactor * options_.max_header_bytes) {
      // A head that never ends: give up on it (and on a false start, silently).
      ++stats_.parse_errors;
      if (msg_.gap_before) {
        stats_.bytes_skipped += total;
        DropMessage();
      } else {
        EmitPartialHead(total, out);
      }
      NoteSyncLoss(meta_);
      EnterSeekAt(Abs(scan_end), scan_end, /*in_sync=*/false, /*at_line_start=*/false);
    }
    return scan_end;
  }
  std::string_view head;
  if (head_in_place_) {
    head = data.substr(head_start_, end - head_start_);
  } else {
    AppendCapped(&head_buf_, data.substr(pos, end - pos));
    head = head_buf_;
  }
  CompleteHead(head, Abs(end) - head_abs_, end, out);
  return end;
}

void MessageParser::EmitPartialHead(uint64_t total, std::vector<Message>* out) {
  // Best effort: the start line and the complete field lines before any error.
  HeadInfo info;
  ParseHead(head_buf_, /*full=*/false, options_, &msg_, &info);
  msg_.headers_truncated = info.fields_dropped || total > options_.max_header_bytes;
  EmitMessage(/*complete=*/false, out);
}

void MessageParser::DropMessage() {
  msg_ = Message();
  head_buf_.clear();
}

void MessageParser::CompleteHead(std::string_view head, uint64_t total, size_t end,
                                 std::vector<Message>* out) {
  const size_t cap = options_.max_header_bytes;
  const bool truncated = total > cap;
  if (head.size() > cap) head = head.substr(0, cap);
  HeadInfo info;
  const bool ok = ParseHead(head, /*full=*/!truncated, options_, &msg_, &info);
  msg_.headers_truncated = truncated || info.fields_dropped;
  if (!ok) {
    // Malformed head. In sync the message surely began here: report it cut short.
    // Found by resynchronising, it was more likely a false start: drop it.
    AbandonMessage(end, /*emit=*/!msg_.gap_before, /*at_line_start=*/true, out);
    return;
  }

  enum class Body { kNone, kLength, kChunked, kClose, kInvalid };
  Body body = Body::kNone;
  bool switches = false;
  if (msg_.kind == Message::Kind::kRequest) {
    if (msg_.method == "CONNECT") {
      body = Body::kNone;  // RFC 9110 9.3.6: CONNECT has no content
    } else if (info.has_transfer_encoding) {
      // Without chunked last the length cannot be determined (RFC 9112 6.3).
      body = info.chunked ? Body::kChunked : Body::kInvalid;
    } else if (info.has_content_length) {
      body = info.content_length_valid ? Body::kLength : Body::kInvalid;
    }
  } else {
    std::string_view method;
    if (lookup_ != nullptr && IsFinalResponse(msg_)) {
      method = lookup_->RequestMethodFor(msg_, final_in_call_);
    }
    const int status = msg_.status_code;
    if (status == 101 || (method == "CONNECT" && status >= 200 && status < 300)) {
      switches = true;
    } else if (status < 200 || status == 204 || status == 304 || method == "HEAD") {
      body = Body::kNone;
    } else if (info.has_transfer_encoding) {
      body = info.chunked ? Body::kChunked : Body::kClose;
    } else if (info.has_content_length) {
      body = info.content_length_valid ? Body::kLength : Body::kInvalid;
    } else {
      body = Body::kClose;
    }
  }

  switch (body) {
    case Body::kNone:
      EmitMessage(/*complete=*/true, out);
      if (switches) {
        switched_ = true;
        Stop();
      } else {
        EnterSeekAt(Abs(end), end, /*in_sync=*/true, /*at_line_start=*/true);
      }
      return;
    case Body::kLength:
      if (info.content_length == 0) {
        EmitMessage(/*complete=*/true, out);
        EnterSeekAt(Abs(end), end, /*in_sync=*/true, /*at_line_start=*/true);
        return;
      }
      state_ = State::kBodyLength;
      remaining_ = info.content_length;
      return;
    case Body::kChunked:
      msg_.chunked = true;
      state_ = State::kChunkSize;
      chunk_line_.clear();
      chunk_line_long_ = false;
      chunk_line_bytes_ = 0;
      return;
    case Body::kClose:
      state_ = State::kBodyClose;
      return;
    case Body::kInvalid:
      AbandonMessage(end, /*emit=*/!msg_.gap_before, /*at_line_start=*/true, out);
      return;
  }
}

// ---------------------------------------------------------------------------
// Bodies.

void MessageParser::AppendBody(std::string_view bytes) {
  Body& body = msg_.body;
  body.size += bytes.size();
  const size_t cap = options_.max_body_bytes;
  // Content is the body's first bytes, contiguous: nothing after a gap is glued
  // to what came before it.
  if (!body.gap && body.content.size() < cap) {
    body.content.append(bytes.substr(0, cap - body.content.size()));
  }
}

void MessageParser::SkipBody(uint64_t len) {
  msg_.body.size += len;
  // Bytes past what the cap keeps are not a gap in the content: the record
  // would be the same had they been seen (the kernel's per-syscall cap, or
  // bytes it skipped because we asked, see UnkeptBodyAhead).
  if (msg_.body.content.size() < options_.max_body_bytes) msg_.body.gap = true;
}

BodySkip MessageParser::UnkeptBodyAhead() const {
  // In chunk data, up to the end of this chunk: its CRLF and the next size
  // line must be read.
  // Delimited by the close: everything past the cap, to the end of the stream.
  if (state_ != State::kBodyLength && state_ != State::kChunkData &&
      state_ != State::kBodyClose) {
    return {};
  }
  const Body& body = msg_.body;
  // Nothing is appended to the content after a gap (AppendBody).
  const uint64_t room = body.gap || body.content.size() >= options_.max_body_bytes
                            ? 0
                            : options_.max_body_bytes - body.content.size();
  if (state_ == State::kBodyClose) return {.keep = room, .len = kToTheClose};
  if (remaining_ <= room) return {};
  return {.keep = room, .len = remaining_ - room};
}

size_t MessageParser::BodyLengthStep(std::string_view data, size_t pos, std::vector<Message>* out) {
  const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, data.size() - pos));
  Body& body = msg_.body;
  if (body.content.empty() && !body.gap && take > 0) {
    // Room for all the content at the first body bytes, not at the head: a
    // body sent with sendfile() never comes (a gap instead) and needs none.
    const auto want =
        static_cast<size_t>(std::min<uint64_t>(remaining_, options_.max_body_bytes));
    if (options_.recycler != nullptr) {
      options_.recycler->PrepareBody(&body.content, want);
    } else {
      body.content.reserve(want);
    }
  }
  AppendBody(data.substr(pos, take));
  remaining_ -= take;
  msg_.last = meta_;
  pos += take;
  if (remaining_ == 0) {
    EmitMessage(/*complete=*/true, out);
    EnterSeekAt(Abs(pos), pos, /*in_sync=*/true, /*at_line_start=*/true);
  }
  return pos;
}

size_t MessageParser::ChunkSizeStep(std::string_view data, size_t pos, std::vector<Message>* out) {
  msg_.last = meta_;
  const size_t n = data.size();
  const auto* lfp = static_cast<const char*>(std::memchr(data.data() + pos, '\n', n - pos));
  const size_t lf = lfp != nullptr ? static_cast<size_t>(lfp - data.data()) : n;
  const std::string_view part = data.substr(pos, lf - pos);
  const bool in_place = chunk_line_.empty() && !chunk_line_long_ && lfp != nullptr;
  chunk_line_bytes_ += part.size();
  if (!in_place && !chunk_line_long_) {
    if (chunk_line_.size() + part.size() > kMaxChunkLineLength) {
      chunk_line_long_ = true;
      chunk_line_.clear();
    } else {
      chunk_line_.append(part);
    }
  }
  if (lfp == nullptr) return n;
  const std::string_view line = in_place ? part : std::string_view(chunk_line_);
  uint64_t size = 0;
  const bool ok =
      !chunk_line_long_ && line.size() <= kMaxChunkLineLength && ParseChunkSizeLine(line, &size);
  const uint64_t line_bytes = chunk_line_bytes_ + 1;
  chunk_line_.clear();
  chunk_line_long_ = false;
  chunk_line_bytes_ = 0;
  if (!ok) {
    // Resynchronise after the bad line, which counts as skipped.
    AbandonMessage(lf + 1, /*emit=*/true, /*at_line_start=*/true, out);
    stats_.bytes_skipped += line_bytes;
    return lf + 1;
  }
  if (size == 0) {
    state_ = State::kTrailers;
    head_buf_.clear();
    head_abs_ = Abs(lf + 1);
    section_line_len_ = 0;
    section_prev_ = '\n';
  } else {
    state_ = State::kChunkData;
    remaining_ = size;
  }
  return lf + 1;
}

size_t MessageParser::ChunkDataStep(std::string_view data, size_t pos) {
  const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, data.size() - pos));
  AppendBody(data.substr(pos, take));
  remaining_ -= take;
  msg_.last = meta_;
  if (remaining_ == 0) {
    state_ = State::kChunkDataEnd;
    saw_cr_ = false;
  }
  return pos + take;
}

size_t MessageParser::ChunkDataEndStep(std::string_view data, size_t pos,
                                       std::vector<Message>* out) {
  msg_.last = meta_;
  const char c = data[pos];
  if (c == '\r' && !saw_cr_) {
    saw_cr_ = true;
    return pos + 1;
  }
  if (c == '\n') {
    state_ = State::kChunkSize;
    chunk_line_.clear();
    chunk_line_long_ = false;
    chunk_line_bytes_ = 0;
    return pos + 1;
  }
  AbandonMessage(pos, /*emit=*/true, /*at_line_start=*/false, out);
  return pos;
}

size_t MessageParser::TrailersStep(std::string_view data, size_t pos, std::vector<Message>* out) {
  msg_.last = meta_;
  const size_t scan_end = SectionScanEnd(data);
  const size_t end = FindSectionEnd(data.substr(0, scan_end), pos);
  if (end == kNpos) {
    AppendCapped(&head_buf_, data.substr(pos, scan_end - pos));
    if (Abs(scan_end) - head_abs_ >= kMaxHeadScanFactor * options_.max_header_bytes) {
      AbandonMessage(scan_end, /*emit=*/true, /*at_line_start=*/false, out);
    }
    return scan_end;
  }
  AppendCapped(&head_buf_, data.substr(pos, end - pos));
  HeadInfo info;
  const bool ok = ParseFields(head_buf_, options_, /*headers_of=*/nullptr, &msg_.trailers, &info);
  if (Abs(end) - head_abs_ > options_.max_header_bytes || info.fields_dropped) {
    msg_.headers_truncated = true;
  }
  if (!ok) {
    AbandonMessage(end, /*emit=*/true, /*at_line_start=*/true, out);
    return end;
  }
  EmitMessage(/*complete=*/true, out);
  EnterSeekAt(Abs(end), end, /*in_sync=*/true, /*at_line_start=*/true);
  return end;
}

size_t MessageParser::BodyCloseStep(std::string_view data, size_t pos) {
  AppendBody(data.substr(pos));
  msg_.last = meta_;
  return data.size();
}

// ---------------------------------------------------------------------------
// A chunked message whose framing a gap took.

namespace {

// The last chunk and an empty trailer section, after the CRLF that ends the
// previous chunk's data.
constexpr std::string_view kLastChunk = "\r\n0\r\n\r\n";
// KMP failure function of kLastChunk: the longest proper prefix that is also
// a suffix of its first i + 1 bytes.
constexpr std::array<uint8_t, 7> kLastChunkFail = {0, 0, 0, 1, 2, 1, 2};
static_assert(kLastChunk.size() == kLastChunkFail.size());

}  // namespace

void MessageParser::HoldLostChunked(uint64_t counted_to, const ChunkMeta& gap) {
  lost_ = std::move(msg_);
  msg_ = Message();
  head_buf_.clear();
  lost_active_ = true;
  lost_from_ = counted_to;
  lost_at_ = gap;
  lost_seen_ns_ = gap.ts_ns;
}

size_t MessageParser::FindLastChunk(std::string_view data, size_t pos) {
  const char* base = data.data();
  const size_t n = data.size();
  uint8_t m = lost_match_;
  while (pos < n) {
    if (m == 0) {
      const auto* cr = static_cast<const char*>(std::memchr(base + pos, '\r', n - pos));
      if (cr == nullptr) {
        pos = n;
        break;
      }
      pos = static_cast<size_t>(cr - base);
    }
    const char c = base[pos++];
    while (m > 0 && kLastChunk[m] != c) m = kLastChunkFail[m - 1];
    if (kLastChunk[m] == c) ++m;
    if (m == kLastChunk.size()) {
      lost_match_ = 0;
      return pos;
    }
  }
  lost_match_ = m;
  return kNpos;
}

size_t MessageParser::LostChunkedSeekStep(std::string_view data, size_t pos,
                                          std::vector<Message>* out) {
  lost_seen_ns_ = meta_.ts_ns;
  const size_t end = FindLastChunk(data, pos);
  // The scan for a message start sees no byte past the last chunk: either
  // comes first.
  const size_t next = SeekStep(data.substr(0, end == kNpos ? data.size() : end), pos);
  if (state_ != State::kSeek) {
    // A message starts before any last chunk: the held one was cut short.
    EmitLostChunked(/*complete=*/false, out);
    return next;
  }
  if (end == kNpos) return next;
  const uint64_t last_chunk = Abs(end) - kLastChunk.size();
  lost_.body.size += last_chunk > lost_from_ ? last_chunk - lost_from_ : 0;
  lost_.body.framing_lost = true;
  lost_.last = meta_;
  EmitLostChunked(/*complete=*/true, out);
  EnterSeekAt(Abs(end), end, /*in_sync=*/true, /*at_line_start=*/true);
  return end;
}

bool MessageParser::GiveUpHeldOlderThan(uint64_t deadline_ns, std::vector<Message>* out) {
  BeginCall();
  if (!lost_active_ || lost_seen_ns_ >= deadline_ns) return false;
  EmitLostChunked(/*complete=*/false, out);
  return true;
}

void MessageParser::EmitLostChunked(bool complete, std::vector<Message>* out) {
  lost_active_ = false;
  lost_match_ = 0;
  Emit(&lost_, complete, out);
  if (!complete) {
    ++stats_.parse_errors;
    NoteSyncLoss(lost_at_);
  }
}

// ---------------------------------------------------------------------------

void MessageParser::Emit(Message* m, bool complete, std::vector<Message>* out) {
  m->complete = complete;
  m->body.truncated = m->body.content.size() < m->body.size || m->body.gap;
  if (IsFinalResponse(*m)) ++final_in_call_;
  out->push_back(std::move(*m));
  // Moved-from: make it a defined, empty message again, built afresh in place
  // (cheaper than assigning a temporary, which moves every member once more).
  std::destroy_at(m);
  std::construct_at(m);
  ++stats_.messages;
  at_stream_start_ = false;
}

void MessageParser::EmitMessage(bool complete, std::vector<Message>* out) {
  Emit(&msg_, complete, out);
  head_buf_.clear();
}

void MessageParser::AbandonMessage(size_t pos, bool emit, bool at_line_start,
                                   std::vector<Message>* out) {
  ++stats_.parse_errors;
  if (emit) {
    EmitMessage(/*complete=*/false, out);
  } else {
    stats_.bytes_skipped += Abs(pos) - head_abs_;
    DropMessage();
  }
  NoteSyncLoss(meta_);
  EnterSeekAt(Abs(pos), pos, /*in_sync=*/false, at_line_start);
}

}  // namespace httptraced::http
