// What the pipeline benchmarks measure with: the calling thread's CPU time,
// and the median of repeated rounds.
#ifndef HTTPTRACED_BENCH_PIPELINE_THREAD_CPU_H_
#define HTTPTRACED_BENCH_PIPELINE_THREAD_CPU_H_

#include <time.h>

#include <algorithm>
#include <vector>

namespace httptraced::bench {

// CPU seconds this thread has used (other threads, such as the log's
// background worker, are not counted).
inline double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// The median of a non-empty set of rounds (the upper one of an even count).
inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace httptraced::bench

#endif  // HTTPTRACED_BENCH_PIPELINE_THREAD_CPU_H_
