#include "daemon/thread_clock.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <thread>

namespace httptraced::daemon {
namespace {

TEST_CASE("schedstat's run and wait times are parsed", "[thread_clock]") {
  std::optional<ThreadTimes> t = ParseSchedstat("866136400 755565405 258\n");
  REQUIRE(t.has_value());
  CHECK(t->cpu_ns == 866136400);
  CHECK(t->runnable_ns == 755565405);
  t = ParseSchedstat("0 0 1\n");
  REQUIRE(t.has_value());
  CHECK(t->cpu_ns == 0);
  CHECK(t->runnable_ns == 0);
}

TEST_CASE("Anything else in schedstat is refused", "[thread_clock]") {
  CHECK_FALSE(ParseSchedstat("").has_value());
  CHECK_FALSE(ParseSchedstat("\n").has_value());
  CHECK_FALSE(ParseSchedstat("866136400 755565405\n").has_value());
  CHECK_FALSE(ParseSchedstat("866136400 755565405 258").has_value());  // cut short
  CHECK_FALSE(ParseSchedstat("866136400 755565405 258\n1").has_value());
  CHECK_FALSE(ParseSchedstat("-1 0 1\n").has_value());
  CHECK_FALSE(ParseSchedstat("1 x 1\n").has_value());
  CHECK_FALSE(ParseSchedstat("99999999999999999999 0 1\n").has_value());  // over 64 bits
}

uint64_t ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

TEST_CASE("The running total grows with the thread's CPU time", "[thread_clock]") {
  ThreadClock clock;
  const ThreadTimes before = clock.Read();
  const uint64_t start = ThreadCpuNs();
  while (ThreadCpuNs() - start < 50'000'000) {
  }
  const ThreadTimes after = clock.Read();
  CHECK(after.cpu_ns - before.cpu_ns >= 50'000'000);
  CHECK(after.runnable_ns >= before.runnable_ns);
}

bool PinToCpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

TEST_CASE("A thread that shares its CPU is seen waiting for it", "[thread_clock]") {
  cpu_set_t saved;
  REQUIRE(pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved) == 0);
  const int cpu = sched_getcpu();
  REQUIRE(cpu >= 0);
  REQUIRE(PinToCpu(cpu));
  std::atomic<bool> stop{false};
  std::thread rival([&] {
    PinToCpu(cpu);
    while (!stop.load(std::memory_order_relaxed)) {
    }
  });
  ThreadClock clock;
  const ThreadTimes before = clock.Read();
  const uint64_t start = ThreadCpuNs();
  while (ThreadCpuNs() - start < 100'000'000) {
  }
  const ThreadTimes after = clock.Read();
  stop = true;
  rival.join();
  pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
  // Two threads always runnable on one CPU: each waits about as long as it
  // runs. A fifth of that is left for the scheduler's slices and this VM.
  CHECK(after.runnable_ns - before.runnable_ns >= 20'000'000);
}

}  // namespace
}  // namespace httptraced::daemon
