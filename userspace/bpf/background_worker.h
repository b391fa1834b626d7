// BackgroundWorker: runs slow calls off the event loop, one after the other,
// on a thread of its own.
//
// Removing a uprobe takes the kernel an RCU grace period: closing each of a
// file's 14 links took 100-115 ms here, so detaching the probes of a Node.js
// binary whose last process exited stopped the event loop for 1.6 s (events
// wait in the ring buffer, records are late, a busy host may drop). Such calls
// are posted here instead. The destructor (or Stop) finishes every posted
// call before it returns, so nothing outlives its owner.
#ifndef HTTPTRACED_BPF_BACKGROUND_WORKER_H_
#define HTTPTRACED_BPF_BACKGROUND_WORKER_H_

#include <deque>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace httptraced::bpf {

class BackgroundWorker {
 public:
  BackgroundWorker() = default;
  BackgroundWorker(const BackgroundWorker&) = delete;
  BackgroundWorker& operator=(const BackgroundWorker&) = delete;
  ~BackgroundWorker() { Stop(); }

  // Runs `call` on the worker thread after the calls posted before it (the
  // thread starts with the first call). After Stop, runs it at once, here.
  void Post(std::function<void()> call);
  // Runs every posted call, then ends the thread. Idempotent.
  void Stop();

 private:
  void Loop();

  absl::Mutex mu_;
  std::deque<std::function<void()>> calls_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ = false;  // the owner's thread only
  std::thread thread_;    // the owner's thread only
};

}  // namespace httptraced::bpf

#endif  // HTTPTRACED_BPF_BACKGROUND_WORKER_H_
