// Executable paths of traced processes, read from /proc/<pid>/exe and cached
// briefly (pids are reused, so entries expire).
#ifndef HTTPTRACED_PROC_PROCESS_CACHE_H_
#define HTTPTRACED_PROC_PROCESS_CACHE_H_

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"

namespace httptraced::proc {

class ProcessCache {
 public:
  explicit ProcessCache(std::string proc_root = "/proc", uint64_t ttl_ns = 5'000'000'000,
                        size_t max_entries = 8192)
      : proc_root_(std::move(proc_root)), ttl_ns_(ttl_ns), max_entries_(max_entries) {}

  // The executable of `tgid`, or "" when the process is gone or unreadable.
  const std::string& Executable(uint32_t tgid, uint64_t now_ns);

 private:
  struct Entry {
    std::string exe;
    uint64_t read_at_ns = 0;
  };
  std::string proc_root_;
  uint64_t ttl_ns_;
  size_t max_entries_;
  absl::flat_hash_map<uint32_t, Entry> entries_;
};

}  // namespace httptraced::proc

#endif  // HTTPTRACED_PROC_PROCESS_CACHE_H_
