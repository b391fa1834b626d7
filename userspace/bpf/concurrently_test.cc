#include "bpf/concurrently.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <cstddef>
#include <set>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace httptraced::bpf {
namespace {

TEST_CASE("RunConcurrently calls each index once", "[concurrently]") {
  for (size_t n : {0, 1, 2, 7, 22, 100}) {
    for (size_t threads : {0, 1, 4, 32}) {
      std::vector<std::atomic<int>> calls(n);
      RunConcurrently(n, threads, [&](size_t i) { calls[i].fetch_add(1); });
      for (size_t i = 0; i < n; ++i) {
        INFO("n=" << n << " threads=" << threads << " i=" << i);
        CHECK(calls[i].load() == 1);
      }
    }
  }
}

// The calls wait side by side: each of the first `threads` calls waits until
// all of them have begun, which only concurrent calls can do. (A run one
// after the other would stop at the first call; the wait's deadline turns
// that into a failure rather than a hang.)
TEST_CASE("RunConcurrently runs up to max_threads calls at once", "[concurrently]") {
  constexpr size_t kThreads = 8;
  absl::Mutex mu;
  size_t begun = 0;
  size_t met = 0;
  std::set<std::thread::id> ids;
  RunConcurrently(kThreads * 3, kThreads, [&](size_t) {
    absl::MutexLock lock(&mu);
    ids.insert(std::this_thread::get_id());
    if (++begun > kThreads) return;  // the first kThreads meet; the rest just run
    auto all_begun = [&] { return begun >= kThreads; };
    if (mu.AwaitWithTimeout(absl::Condition(&all_begun), absl::Seconds(30))) ++met;
  });
  CHECK(begun == kThreads * 3);
  CHECK(met == kThreads);
  CHECK(ids.size() == kThreads);
  CHECK(ids.count(std::this_thread::get_id()) == 1);  // the caller is one of them
}

TEST_CASE("RunConcurrently with one thread runs on the caller's", "[concurrently]") {
  std::set<std::thread::id> ids;
  RunConcurrently(5, 1, [&](size_t) { ids.insert(std::this_thread::get_id()); });
  CHECK(ids == std::set<std::thread::id>{std::this_thread::get_id()});
}

}  // namespace
}  // namespace httptraced::bpf
