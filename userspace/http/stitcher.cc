#include "http/stitcher.h"

#include <algorithm>
#include <utility>

namespace httptraced::http {
namespace {

bool IsInterim(const Message& response) {
  return response.status_code >= 100 && response.status_code < 200 && response.status_code != 101;
}

}  // namespace

Stitcher::Stitcher(size_t max_pending_requests, uint64_t first_seq)
    : max_pending_(std::max<size_t>(max_pending_requests, 1)), next_seq_(first_seq) {}

void Stitcher::AddRequest(Message&& request, std::vector<Exchange>* out) {
  if (early_) {
    if (request.first.ts_ns == early_request_ts_) {
      EmitEarly(&request, out);
      return;
    }
    EmitEarly(nullptr, out);  // the request it was held for never came out
  }
  if (fifo_.size() >= max_pending_) {
    // Its response has not come yet: keep count of it, so that the response
    // is not taken for the next request's.
    Pending& oldest = fifo_.front();
    if (!oldest.expired) {
      ++requests_dropped_;
      EmitUnanswered(&oldest, out);
    }
    if (forgotten_++ == 0) forgotten_oldest_ts_ = oldest.first_ts_ns;
    forgotten_newest_ts_ = oldest.first_ts_ns;
    fifo_.pop_front();
  }
  Pending& pending = fifo_.emplace_back();
  pending.method = request.method;
  pending.first_ts_ns = request.first.ts_ns;
  pending.request = std::move(request);
  ++waiting_;
}

namespace {
// A request sent at `request_ts` can be answered by a response begun at
// `response_ts`. A zero timestamp is unknown and rules nothing out.
bool CanAnswer(uint64_t request_ts, uint64_t response_ts) {
  return request_ts == 0 || response_ts == 0 || request_ts <= response_ts;
}
}  // namespace

bool Stitcher::FrontAnswers(uint64_t response_ts_ns) const {
  return !fifo_.empty() && CanAnswer(fifo_.front().first_ts_ns, response_ts_ns);
}

void Stitcher::AddResponse(Message&& response, std::vector<Exchange>* out,
                           std::optional<uint64_t> request_in_progress) {
  if (forgotten_ > 0) {
    // The oldest unanswered request was dropped from the full FIFO: a
    // response that may answer it does, and is reported alone.
    if (IsInterim(response)) {
      ++orphan_interim_;
      return;
    }
    if (CanAnswer(forgotten_oldest_ts_, response.first.ts_ns)) --forgotten_;
    Exchange& exchange = Emit(out);
    exchange.interim_responses = std::exchange(orphan_interim_, 0);
    exchange.response = std::move(response);
    return;
  }
  const bool answers = FrontAnswers(response.first.ts_ns);
  if (IsInterim(response)) {
    if (answers) {
      ++fifo_.front().interim;
    } else {
      ++orphan_interim_;
    }
    return;
  }
  if (!answers && fifo_.empty() && request_in_progress && !early_ &&
      CanAnswer(*request_in_progress, response.first.ts_ns)) {
    early_ = std::make_unique<Message>(std::move(response));
    early_request_ts_ = *request_in_progress;
    early_interim_ = std::exchange(orphan_interim_, 0);
    return;
  }
  Exchange& exchange = Emit(out);
  if (answers) {
    Pending& front = fifo_.front();
    if (!front.expired) {
      exchange.request = std::move(front.request);
      --waiting_;
    }
    exchange.interim_responses = front.interim;
    fifo_.pop_front();
  }
  // 1xx that found no request belong to this final response: typically a
  // "100 Continue" sent while the request body was still arriving, before the
  // request (complete only with its body) reached the FIFO.
  exchange.interim_responses += orphan_interim_;
  orphan_interim_ = 0;
  exchange.response = std::move(response);
}

void Stitcher::OnResponseSyncLost(uint64_t ts_ns, std::vector<Exchange>* out) {
  // Forgotten requests all came before the FIFO's: if the newest was sent
  // before the loss, their responses were in the lost bytes too.
  if (forgotten_ > 0 && forgotten_newest_ts_ < ts_ns) forgotten_ = 0;
  while (!fifo_.empty() && fifo_.front().first_ts_ns < ts_ns) {
    Pending& front = fifo_.front();
    if (!front.expired) EmitUnanswered(&front, out);
    fifo_.pop_front();
  }
}

void Stitcher::ExpireOlderThan(uint64_t deadline_ns, std::vector<Exchange>* out) {
  for (Pending& pending : fifo_) {
    if (!pending.expired && pending.first_ts_ns < deadline_ns) EmitUnanswered(&pending, out);
  }
}

void Stitcher::ExpireEarlyOlderThan(uint64_t deadline_ns, std::vector<Exchange>* out) {
  if (early_ && early_->first.ts_ns < deadline_ns) EmitEarly(nullptr, out);
}

void Stitcher::Close(std::vector<Exchange>* out) {
  if (early_) EmitEarly(nullptr, out);
  for (Pending& pending : fifo_) {
    if (!pending.expired) EmitUnanswered(&pending, out);
  }
  fifo_.clear();
  forgotten_ = 0;
  orphan_interim_ = 0;
}

std::string_view Stitcher::PendingMethod(size_t skip, uint64_t response_ts_ns) const {
  if (skip < forgotten_) return {};  // a forgotten request: method unknown
  skip -= static_cast<size_t>(forgotten_);
  if (skip >= fifo_.size()) return {};
  const Pending& pending = fifo_[skip];
  if (!CanAnswer(pending.first_ts_ns, response_ts_ns)) return {};
  return pending.method;
}

Exchange& Stitcher::Emit(std::vector<Exchange>* out) {
  Exchange& exchange = out->emplace_back();
  exchange.seq = next_seq_++;
  return exchange;
}

void Stitcher::EmitUnanswered(Pending* pending, std::vector<Exchange>* out) {
  Exchange& exchange = Emit(out);
  exchange.request = std::move(pending->request);
  exchange.interim_responses = pending->interim;
  exchange.incomplete = true;
  pending->expired = true;
  --waiting_;
}

void Stitcher::EmitEarly(Message* request, std::vector<Exchange>* out) {
  Exchange& exchange = Emit(out);
  if (request != nullptr) exchange.request = std::move(*request);
  exchange.interim_responses = early_interim_;
  exchange.response = std::move(*early_);
  early_.reset();
}

}  // namespace httptraced::http
