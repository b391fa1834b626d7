// RunConcurrently: calls that mostly wait, run side by side.
//
// Detaching a BPF program from a tracepoint or uprobe waits for the kernel's
// RCU grace periods: 90-200 ms per link on the CI machine, so the daemon took
// about 2 s to stop with its 22 links removed one after the other, during
// which nothing is traced (a restart's blind spot is its stop plus its start).
// Removed side by side, they overlap part of their waits: 1.3-1.4 s (the
// kernel serialises the rest; docs/performance.md, "Start-up and stop").
#ifndef HTTPTRACED_BPF_CONCURRENTLY_H_
#define HTTPTRACED_BPF_CONCURRENTLY_H_

#include <cstddef>
#include <functional>

namespace httptraced::bpf {

// Calls fn(0) ... fn(n - 1), each once, on up to max_threads threads (the
// caller's among them), and returns when all have returned. fn must be safe
// to call concurrently for different indexes. With max_threads <= 1, or a
// thread that cannot be started, the calls left run on the caller's thread.
void RunConcurrently(size_t n, size_t max_threads, const std::function<void(size_t)>& fn);

}  // namespace httptraced::bpf

#endif  // HTTPTRACED_BPF_CONCURRENTLY_H_
