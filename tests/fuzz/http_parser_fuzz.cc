// libFuzzer target for the HTTP/1.x parser and HttpSession.
//
// Input: [flags][seed][payload...]
//   flags bits 0-1: parse mode (0 request, 1 response, 2-3 both)
//         bit 2:    join mid-stream
//         bit 3:    tiny limits (64-byte heads, 8-byte bodies, 4 fields)
//         bit 4:    insert gaps
//         bits 5-6: session role (0 unknown, 1 client, 2-3 server)
//   seed: drives the chunk sizes, gaps and directions (xorshift).
//
// Checks, beyond "no crash, no sanitizer report":
//  - without gaps, the payload parsed whole and parsed in random chunks gives the
//    same messages and stats (the parser is pure over bytes);
//  - without gaps, feeding as a gap every chunk that lies in the body bytes
//    UnkeptBodyAhead() announced (as the kernel does when the daemon asks it
//    to skip them) gives the same messages and stats as reading them;
//  - every message respects the limits (body cap, field count) and the body
//    flags agree with each other;
//  - a session's exchanges are numbered 0, 1, 2... and are well formed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.h"
#include "http/parser.h"
#include "http/recycler.h"
#include "http/session.h"

namespace httptraced::http {
namespace {

#define FUZZ_CHECK(cond)       \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (0)

struct Rng {
  uint32_t state;
  uint32_t Next() {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
  }
};

// A stand-in for the stitcher: answers methods from a fixed cycle.
class CycleLookup : public RequestLookup {
 public:
  std::string_view RequestMethodFor(const Message& /*response*/, size_t skip) const override {
    static constexpr std::string_view kMethods[] = {"GET", "HEAD", "CONNECT", "POST", "HEAD"};
    return kMethods[(consumed_ + skip) % 5];
  }
  void Advance(const std::vector<Message>& all, size_t from) {
    for (size_t i = from; i < all.size(); ++i) {
      const Message& m = all[i];
      if (m.kind == Message::Kind::kResponse && (m.status_code >= 200 || m.status_code == 101)) {
        ++consumed_;
      }
    }
  }

 private:
  size_t consumed_ = 0;
};

bool SameHeaders(const std::vector<Header>& a, const std::vector<Header>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].value != b[i].value) return false;
  }
  return true;
}

bool SameMessage(const Message& a, const Message& b) {
  return a.kind == b.kind && a.version_minor == b.version_minor && a.method == b.method &&
         a.target == b.target && a.status_code == b.status_code && a.reason == b.reason &&
         SameHeaders(a.headers, b.headers) && SameHeaders(a.trailers, b.trailers) &&
         a.body.content == b.body.content && a.body.size == b.body.size &&
         a.body.truncated == b.body.truncated && a.body.gap == b.body.gap &&
         a.chunked == b.chunked && a.complete == b.complete &&
         a.headers_truncated == b.headers_truncated && a.gap_before == b.gap_before &&
         a.first.ts_ns == b.first.ts_ns && a.last.ts_ns == b.last.ts_ns;
}

void CheckMessage(const Message& m, const ParserOptions& options) {
  FUZZ_CHECK(m.body.content.size() <= options.max_body_bytes);
  FUZZ_CHECK(m.body.content.size() <= m.body.size);
  FUZZ_CHECK(m.body.truncated == (m.body.content.size() < m.body.size || m.body.gap));
  FUZZ_CHECK(m.headers.size() <= options.max_headers);
  FUZZ_CHECK(m.trailers.size() <= options.max_headers);
  if (m.kind == Message::Kind::kRequest) {
    FUZZ_CHECK(!m.method.empty() && !m.target.empty() && m.status_code == 0);
  } else {
    FUZZ_CHECK(m.method.empty() && m.status_code >= 100 && m.status_code <= 999);
  }
  FUZZ_CHECK(m.version_minor >= 0 && m.version_minor <= 9);
}

struct Run {
  std::vector<Message> messages;
  ParserStats stats;
};

// Parses `payload` in chunks of the sizes `rng` draws (all of it when rng is null),
// with gaps when `gaps`. One meta for every chunk, so that chunking cannot show.
// `skip_unkept`: a chunk inside the range UnkeptBodyAhead() last announced is
// fed as a gap of its size instead.
// `recycler`: the parser builds in it, and every message is copied out and
// its storage reclaimed as soon as it is emitted (as the daemon does once
// its record is written).
Run Parse(std::string_view payload, ParseMode mode, bool mid_stream, ParserOptions options,
          Rng* rng, bool gaps, bool skip_unkept = false, MessageRecycler* recycler = nullptr) {
  CycleLookup lookup;
  options.recycler = recycler;
  MessageParser parser(mode, options, &lookup);
  if (mid_stream) parser.StartMidStream();
  Run run;
  std::vector<Message> emitted;
  std::vector<Message>* const out = recycler != nullptr ? &emitted : &run.messages;
  const auto take = [&] {
    for (Message& m : emitted) {
      run.messages.push_back(m);
      recycler->Reclaim(m);
    }
    emitted.clear();
  };
  const ChunkMeta meta{1, 1};
  size_t pos = 0;
  uint64_t skip_from = 0, skip_until = 0;
  while (pos < payload.size()) {
    size_t len = payload.size() - pos;
    if (rng != nullptr) {
      const uint32_t r = rng->Next();
      len = std::min<size_t>(len, 1 + (r % 8 == 0 ? r % 4096 : r % 16));
    }
    size_t before = run.messages.size();
    if (skip_unkept && pos >= skip_from && pos + len <= skip_until) {
      FUZZ_CHECK(parser.FeedGap(len, meta, out));  // in a body: stays in sync
    } else {
      parser.Feed(payload.substr(pos, len), meta, out);
    }
    take();
    lookup.Advance(run.messages, before);
    pos += len;
    if (skip_unkept) {
      const BodySkip s = parser.UnkeptBodyAhead();
      if (s.len > 0) {
        skip_from = pos + s.keep;
        skip_until = s.len > ~skip_from ? ~uint64_t{0} : skip_from + s.len;  // to the close
      }
    }
    if (gaps && rng != nullptr && rng->Next() % 7 == 0) {
      const uint32_t r = rng->Next();
      before = run.messages.size();
      parser.FeedGap(r % 3 == 0 ? (uint64_t{1} << 20) + r % 1000 : r % 300, meta, out);
      take();
      lookup.Advance(run.messages, before);
    }
  }
  const size_t before = run.messages.size();
  parser.Finish(out);
  take();
  lookup.Advance(run.messages, before);
  run.stats = parser.stats();
  for (const Message& m : run.messages) CheckMessage(m, options);
  FUZZ_CHECK(run.stats.messages == run.messages.size());
  return run;
}

void FuzzSession(std::string_view payload, Role role, const ParserOptions& options, Rng* rng,
                 bool gaps) {
  SessionOptions so;
  so.max_body_bytes = options.max_body_bytes;
  so.max_header_bytes = options.max_header_bytes;
  so.max_pending_requests = 4;
  so.not_http_after_bytes = 4096;
  // The session's parsers build in reclaimed storage, as in the daemon.
  MessageRecycler recycler;
  so.recycler = &recycler;
  HttpSession session(so, role);
  ParserOptions limits;  // what the session's parsers enforce
  limits.max_body_bytes = so.max_body_bytes;
  limits.max_header_bytes = so.max_header_bytes;
  std::vector<Exchange> all;
  uint64_t ts = 1;
  size_t pos = 0;
  while (pos < payload.size()) {
    const uint32_t r = rng->Next();
    const size_t len = std::min<size_t>(payload.size() - pos, 1 + r % 200);
    const Direction dir = (r >> 8) % 2 == 0 ? Direction::kIngress : Direction::kEgress;
    session.OnData(dir, payload.substr(pos, len), ChunkMeta{ts++, 1});
    pos += len;
    if (gaps && (r >> 12) % 9 == 0) session.OnGap(dir, (r >> 16) % 500, ChunkMeta{ts++, 1});
    if ((r >> 20) % 13 == 0) session.ExpireOlderThan(ts - (r >> 24) % 4);
    for (Exchange& e : session.ready()) {
      all.push_back(e);
      recycler.Reclaim(e);
    }
    session.ready().clear();
    (void)session.busy();
  }
  session.OnClose(ChunkMeta{ts, 1});
  for (Exchange& e : session.ready()) all.push_back(std::move(e));
  for (size_t i = 0; i < all.size(); ++i) {
    const Exchange& e = all[i];
    FUZZ_CHECK(e.seq == i);
    FUZZ_CHECK(e.request.has_value() || e.response.has_value());
    FUZZ_CHECK(!(e.incomplete && e.response.has_value()));
    if (e.request) {
      FUZZ_CHECK(e.request->kind == Message::Kind::kRequest);
      CheckMessage(*e.request, limits);
    }
    if (e.response) {
      FUZZ_CHECK(e.response->kind == Message::Kind::kResponse);
      CheckMessage(*e.response, limits);
    }
  }
}

}  // namespace
}  // namespace httptraced::http

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace httptraced::http;
  if (size < 2) return 0;
  const uint8_t flags = data[0];
  const std::string_view payload(reinterpret_cast<const char*>(data) + 2, size - 2);
  const ParseMode mode = (flags & 3) == 0   ? ParseMode::kRequest
                         : (flags & 3) == 1 ? ParseMode::kResponse
                                            : ParseMode::kBoth;
  const bool mid_stream = (flags & 4) != 0;
  ParserOptions options;
  if ((flags & 8) != 0) {
    options.max_header_bytes = 64;
    options.max_body_bytes = 8;
    options.max_headers = 4;
  }
  const bool gaps = (flags & 16) != 0;
  const int role_bits = (flags >> 5) & 3;
  const Role role = role_bits == 0   ? Role::kUnknown
                    : role_bits == 1 ? Role::kClient
                                     : Role::kServer;

  Rng rng{0x9E3779B9u ^ (uint32_t{data[1]} * 0x01000193u)};
  Rng skip_rng = rng;
  Rng recycle_rng = rng;
  const Run whole = Parse(payload, mode, mid_stream, options, nullptr, false);
  const Run split = Parse(payload, mode, mid_stream, options, &rng, gaps);
  // The same chunks and gaps, each message built in the storage of earlier
  // ones: the same messages.
  MessageRecycler recycler;
  const Run recycled =
      Parse(payload, mode, mid_stream, options, &recycle_rng, gaps, false, &recycler);
  FUZZ_CHECK(recycled.messages.size() == split.messages.size());
  for (size_t i = 0; i < split.messages.size(); ++i) {
    FUZZ_CHECK(SameMessage(split.messages[i], recycled.messages[i]));
  }
  FUZZ_CHECK(recycled.stats.parse_errors == split.stats.parse_errors);
  FUZZ_CHECK(recycled.stats.bytes_skipped == split.stats.bytes_skipped);
  if (!gaps) {
    FUZZ_CHECK(whole.messages.size() == split.messages.size());
    for (size_t i = 0; i < whole.messages.size(); ++i) {
      FUZZ_CHECK(SameMessage(whole.messages[i], split.messages[i]));
    }
    FUZZ_CHECK(whole.stats.parse_errors == split.stats.parse_errors);
    FUZZ_CHECK(whole.stats.bytes_skipped == split.stats.bytes_skipped);
    const Run skipped = Parse(payload, mode, mid_stream, options, &skip_rng, false, true);
    FUZZ_CHECK(whole.messages.size() == skipped.messages.size());
    for (size_t i = 0; i < whole.messages.size(); ++i) {
      FUZZ_CHECK(SameMessage(whole.messages[i], skipped.messages[i]));
    }
    FUZZ_CHECK(whole.stats.parse_errors == skipped.stats.parse_errors);
    FUZZ_CHECK(whole.stats.bytes_skipped == skipped.stats.bytes_skipped);
  }
  FuzzSession(payload, role, options, &rng, gaps);
  return 0;
}
