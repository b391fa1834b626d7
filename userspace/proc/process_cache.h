// Executable paths of traced processes, read from /proc/<pid>/exe and cached
// per process image: an entry serves only the same pid, start time and exec
// count (the kernel reports all three with each connection), and expires
// after a while in any case.
#ifndef HTTPTRACED_PROC_PROCESS_CACHE_H_
#define HTTPTRACED_PROC_PROCESS_CACHE_H_

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"

namespace httptraced::proc {

// A process image: the pid alone is reused, and execve() keeps the pid and
// the start time but changes the executable.
struct ProcessImage {
  uint32_t tgid = 0;
  uint64_t start = 0;    // the group leader's start time (kernel ns)
  uint32_t exec_id = 0;  // execve() calls so far
};

class ProcessCache {
 public:
  explicit ProcessCache(std::string proc_root = "/proc", uint64_t ttl_ns = 5'000'000'000,
                        size_t max_entries = 8192)
      : proc_root_(std::move(proc_root)), ttl_ns_(ttl_ns), max_entries_(max_entries) {}

  // The executable of `image`, or "" when the process is gone or unreadable.
  const std::string& Executable(const ProcessImage& image, uint64_t now_ns);

 private:
  struct Entry {
    std::string exe;
    uint64_t read_at_ns = 0;
    uint64_t start = 0;
    uint32_t exec_id = 0;
  };
  std::string proc_root_;
  uint64_t ttl_ns_;
  size_t max_entries_;
  absl::flat_hash_map<uint32_t, Entry> entries_;
};

}  // namespace httptraced::proc

#endif  // HTTPTRACED_PROC_PROCESS_CACHE_H_
