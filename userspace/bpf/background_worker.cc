#include "bpf/background_worker.h"

#include <utility>

namespace httptraced::bpf {

void BackgroundWorker::Post(std::function<void()> call) {
  if (stopped_) {
    call();
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    calls_.push_back(std::move(call));
  }
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
}

void BackgroundWorker::Stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void BackgroundWorker::Loop() {
  while (true) {
    std::function<void()> call;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](BackgroundWorker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
            return w->stopping_ || !w->calls_.empty();
          },
          this));
      if (calls_.empty()) return;  // stopping, and nothing left
      call = std::move(calls_.front());
      calls_.pop_front();
    }
    call();
  }
}

}  // namespace httptraced::bpf
