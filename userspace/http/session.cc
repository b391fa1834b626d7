// HttpSession: two MessageParsers (one per direction) feeding one Stitcher.
//
// Roles. kServer parses requests on ingress and responses on egress, kClient the
// reverse. kUnknown (a connection found mid-stream) parses both directions in
// ParseMode::kBoth, joined mid-stream, until the first message decides: a request
// read or a response written means server; a request written or a response read
// means client. Messages of the wrong kind for their direction are then dropped
// (and counted as parse errors).
//
// Not HTTP. A connection is declared not HTTP when
//  - it was seen from its start (role kServer or kClient), no message was parsed
//    yet, and the first line of either direction, fed from its first byte
//    without a gap, is not an HTTP/1.x start line of the expected kind (TLS,
//    HTTP/2 prior knowledge, a server-first banner...). This is decided as soon
//    as one byte rules it out; or
//  - no message was ever parsed in either direction and more than
//    not_http_after_bytes bytes were skipped while looking for one.
// After that, and after a protocol switch, all bytes are ignored.
#include "http/session.h"

#include <array>
#include <optional>
#include <utility>

#include "http/parser.h"
#include "http/stitcher.h"

namespace httptraced::http {
namespace {

ParserOptions ToParserOptions(const SessionOptions& options) {
  ParserOptions p;
  p.max_body_bytes = options.max_body_bytes;
  p.max_header_bytes = options.max_header_bytes;
  p.recycler = options.recycler;
  return p;
}

size_t Index(Direction dir) { return static_cast<size_t>(dir); }
Direction Other(Direction dir) {
  return dir == Direction::kIngress ? Direction::kEgress : Direction::kIngress;
}

}  // namespace

struct HttpSession::Impl final : RequestLookup {
  // resumed: a hibernated session coming back between two exchanges (role
  // known, messages already seen, parsers at a message boundary).
  Impl(const SessionOptions& opts, Role r, bool resumed, uint64_t first_seq,
       const SessionStats& base)
      : options(opts),
        role(r),
        role_known_at_start(r != Role::kUnknown && !resumed),
        parsers{MessageParser(ParseMode::kBoth, ToParserOptions(opts), this),
                MessageParser(ParseMode::kBoth, ToParserOptions(opts), this)},
        stitcher(opts.max_pending_requests, first_seq),
        base_stats(base),
        stats(base),
        any_message(resumed) {
    if (role == Role::kUnknown) {
      for (MessageParser& p : parsers) p.StartMidStream();
    } else {
      ApplyRole();
    }
  }

  std::string_view RequestMethodFor(const Message& response, size_t skip) const override {
    return stitcher.PendingMethod(skip, response.first.ts_ns);
  }

  Direction RequestDirection() const {
    return role == Role::kServer ? Direction::kIngress : Direction::kEgress;
  }

  void ApplyRole() {
    const Direction req = RequestDirection();
    parsers[Index(req)].SetMode(ParseMode::kRequest);
    parsers[Index(Other(req))].SetMode(ParseMode::kResponse);
  }

  // The response direction lost sync where `loss` says: responses in the lost or
  // skipped bytes answered requests sent before then (see Stitcher).
  void OnSyncLoss(Direction dir, const SyncLoss& loss) {
    if (role != Role::kUnknown && dir != RequestDirection()) {
      stitcher.OnResponseSyncLost(loss.at.ts_ns, &ready);
    }
  }

  // When the request direction is in the middle of a request: its first
  // byte's time (a response may come before its request's last byte).
  std::optional<uint64_t> RequestInProgress() const {
    const Message* m = parsers[Index(RequestDirection())].in_progress();
    if (m == nullptr || m->kind != Message::Kind::kRequest) return std::nullopt;
    return m->first.ts_ns;
  }

  // Routes what a parser produced in its last call into the stitcher, with its
  // losses of sync in order.
  void Route(Direction dir) {
    const std::vector<SyncLoss>& losses = parsers[Index(dir)].sync_losses();
    size_t next_loss = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      while (next_loss < losses.size() && losses[next_loss].messages_before <= i) {
        OnSyncLoss(dir, losses[next_loss++]);
      }
      Message& msg = batch[i];
      const bool is_request = msg.kind == Message::Kind::kRequest;
      if (role == Role::kUnknown) {
        const bool server = is_request == (dir == Direction::kIngress);
        role = server ? Role::kServer : Role::kClient;
        ApplyRole();
      }
      if (is_request != (dir == RequestDirection())) {
        ++wrong_kind;
        continue;
      }
      any_message = true;
      if (is_request) {
        stitcher.AddRequest(std::move(msg), &ready);
      } else {
        stitcher.AddResponse(std::move(msg), &ready, RequestInProgress());
      }
    }
    while (next_loss < losses.size()) OnSyncLoss(dir, losses[next_loss++]);
    batch.clear();
  }

  void AfterInput(Direction dir) {
    Route(dir);
    MessageParser& parser = parsers[Index(dir)];
    if (parser.switched_protocols()) {
      switched = true;
      for (MessageParser& p : parsers) p.Stop();
    }
    if (role_known_at_start && !any_message && parser.rejected_stream_start()) {
      not_http = true;
    }
    if (!any_message &&
        parsers[0].garbage_bytes() + parsers[1].garbage_bytes() > options.not_http_after_bytes) {
      not_http = true;
    }
    UpdateStats();
  }

  void UpdateStats() {
    stats.parse_errors = base_stats.parse_errors + parsers[0].stats().parse_errors +
                         parsers[1].stats().parse_errors + wrong_kind;
    stats.requests_dropped = base_stats.requests_dropped + stitcher.requests_dropped();
  }

  bool Ignoring() const { return not_http || switched; }

  SessionOptions options;
  Role role;
  const bool role_known_at_start;
  std::array<MessageParser, 2> parsers;
  Stitcher stitcher;
  std::vector<Message> batch;
  std::vector<Exchange> ready;
  SessionStats base_stats;  // counted before a hibernation
  SessionStats stats;
  // When each direction last brought bytes (or a gap): a request is not
  // given up on while responses are still arriving.
  std::array<uint64_t, 2> last_input_ns{};
  uint64_t wrong_kind = 0;
  bool any_message;
  bool switched = false;
  bool not_http = false;
};

HttpSession::HttpSession(const SessionOptions& options, Role role)
    : options_(options),
      role_(role),
      impl_(std::make_unique<Impl>(options, role, /*resumed=*/false, 0, SessionStats{})) {}
HttpSession::~HttpSession() = default;
HttpSession::HttpSession(HttpSession&&) noexcept = default;
HttpSession& HttpSession::operator=(HttpSession&&) noexcept = default;

HttpSession::Impl& HttpSession::Live() {
  if (impl_ == nullptr) {
    impl_ = std::make_unique<Impl>(options_, role_, /*resumed=*/true, next_seq_, stats_);
  }
  return *impl_;
}

bool HttpSession::Hibernate() {
  if (impl_ == nullptr) return true;
  const Impl& s = *impl_;
  if (s.Ignoring() || !s.any_message || s.role == Role::kUnknown || !s.ready.empty() ||
      !s.stitcher.idle() || !s.parsers[0].idle() || !s.parsers[1].idle()) {
    return false;
  }
  role_ = s.role;
  next_seq_ = s.stitcher.next_seq();
  stats_ = s.stats;
  impl_.reset();
  return true;
}

void HttpSession::OnData(Direction dir, std::string_view bytes, const ChunkMeta& meta) {
  Impl& s = Live();
  if (s.Ignoring()) return;
  s.last_input_ns[Index(dir)] = meta.ts_ns;
  s.parsers[Index(dir)].Feed(bytes, meta, &s.batch);
  s.AfterInput(dir);
}

void HttpSession::OnGap(Direction dir, uint64_t len, const ChunkMeta& meta) {
  Impl& s = Live();
  if (s.Ignoring()) return;
  s.last_input_ns[Index(dir)] = meta.ts_ns;
  s.parsers[Index(dir)].FeedGap(len, meta, &s.batch);
  s.AfterInput(dir);
}

void HttpSession::OnClose(const ChunkMeta& meta) {
  (void)meta;  // messages end with their last byte, not with the close
  if (impl_ == nullptr) return;  // nothing in flight
  Impl& s = *impl_;
  if (!s.not_http) {
    // Requests first, so that a response completed by the close finds its request.
    const Direction first = s.role == Role::kUnknown ? Direction::kIngress : s.RequestDirection();
    for (Direction dir : {first, Other(first)}) {
      s.parsers[Index(dir)].Finish(&s.batch);
      s.Route(dir);
    }
  }
  s.stitcher.Close(&s.ready);
  s.UpdateStats();
}

void HttpSession::ExpireOlderThan(uint64_t deadline_ns) {
  if (impl_ == nullptr) return;
  Impl& s = *impl_;
  if (!s.Ignoring()) {
    // A chunked message held for its last chunk, quiet since the deadline,
    // is cut short now, so that it is paired before its request expires.
    const Direction first = s.role == Role::kUnknown ? Direction::kIngress : s.RequestDirection();
    for (Direction dir : {first, Other(first)}) {
      if (s.parsers[Index(dir)].GiveUpHeldOlderThan(deadline_ns, &s.batch)) {
        s.Route(dir);
        s.UpdateStats();
      }
    }
  }
  // Responses come in the order of their requests: while bytes of one came
  // since the deadline (a long download, an event stream), the server is
  // still answering, and the requests behind it wait their turn.
  const bool answering = s.role != Role::kUnknown &&
                         s.last_input_ns[Index(Other(s.RequestDirection()))] >= deadline_ns;
  if (!answering) s.stitcher.ExpireOlderThan(deadline_ns, &s.ready);
  // A response held for the request in progress waits while that request's
  // bytes still arrive (a long upload the server answered early).
  if (s.stitcher.holding_early_response() &&
      s.last_input_ns[Index(s.RequestDirection())] < deadline_ns) {
    s.stitcher.ExpireEarlyOlderThan(deadline_ns, &s.ready);
  }
}

std::vector<Exchange>& HttpSession::ready() { return impl_ ? impl_->ready : none_; }

Role HttpSession::role() const { return impl_ ? impl_->role : role_; }

bool HttpSession::switched_protocols() const { return impl_ && impl_->switched; }

bool HttpSession::not_http() const { return impl_ && impl_->not_http; }

bool HttpSession::busy() const {
  if (impl_ == nullptr) return false;
  const Impl& s = *impl_;
  if (s.Ignoring()) return false;
  return s.stitcher.pending_requests() > 0 || !s.parsers[0].idle() || !s.parsers[1].idle();
}

const SessionStats& HttpSession::stats() const { return impl_ ? impl_->stats : stats_; }

BodySkip HttpSession::UnkeptBodyAhead(Direction dir) const {
  if (impl_ == nullptr || impl_->Ignoring()) return {};
  return impl_->parsers[Index(dir)].UnkeptBodyAhead();
}

}  // namespace httptraced::http
