#include "bpf/background_worker.h"

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

namespace httptraced::bpf {
namespace {

TEST_CASE("BackgroundWorker runs posted calls in order and on its own thread") {
  std::mutex mu;
  std::vector<int> order;
  std::vector<std::thread::id> threads;
  {
    BackgroundWorker worker;
    for (int i = 0; i < 50; ++i) {
      worker.Post([&, i] {
        std::lock_guard<std::mutex> lock(mu);
        order.push_back(i);
        threads.push_back(std::this_thread::get_id());
      });
    }
  }  // the destructor finishes every posted call
  REQUIRE(order.size() == 50);
  for (int i = 0; i < 50; ++i) CHECK(order[i] == i);
  for (const std::thread::id& id : threads) {
    CHECK(id == threads[0]);
    CHECK(id != std::this_thread::get_id());
  }
}

TEST_CASE("BackgroundWorker Post does not wait for the call") {
  std::atomic<bool> release{false};
  std::atomic<bool> ran{false};
  BackgroundWorker worker;
  worker.Post([&] {
    while (!release.load()) std::this_thread::yield();
    ran = true;
  });
  // Were Post to run the call, this line would never be reached.
  CHECK_FALSE(ran.load());
  release = true;
  worker.Stop();
  CHECK(ran.load());
}

TEST_CASE("BackgroundWorker runs calls posted after Stop at once and here") {
  BackgroundWorker idle;
  idle.Stop();  // never started a thread
  idle.Stop();
  bool ran = false;
  std::thread::id where;
  idle.Post([&] {
    ran = true;
    where = std::this_thread::get_id();
  });
  CHECK(ran);
  CHECK(where == std::this_thread::get_id());
}

}  // namespace
}  // namespace httptraced::bpf
