// What the records say about a traced process beyond its pid and name, read
// from /proc/<pid>/exe and /proc/<pid>/cgroup and cached per process image:
// an entry serves only the same pid, start time and exec count (the kernel
// reports all three with each connection), and expires after a while in any
// case.
#ifndef HTTPTRACED_PROC_PROCESS_CACHE_H_
#define HTTPTRACED_PROC_PROCESS_CACHE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"

namespace httptraced::proc {

// A process image: the pid alone is reused, and execve() keeps the pid and
// the start time but changes the executable.
struct ProcessImage {
  uint32_t tgid = 0;
  uint64_t start = 0;    // the group leader's start time (kernel ns)
  uint32_t exec_id = 0;  // execve() calls so far
};

struct ProcessInfo {
  std::string executable;    // /proc/<pid>/exe's target; "" when gone or unreadable
  std::string container_id;  // see ContainerIdFromCgroup; "" when none
};

// The id of the container a process runs in, from its /proc/<pid>/cgroup:
// the 64 hex digits that Docker, containerd (Kubernetes), CRI-O and Podman
// put in the name of the container's cgroup ("/docker/<id>",
// "docker-<id>.scope", "cri-containerd-<id>.scope", "crio-<id>.scope",
// "libpod-<id>.scope"). The deepest such name on the first line that has one;
// "" when there is none (a process on the host, or other ids: systemd's and
// Kubernetes pods' are shorter).
std::string_view ContainerIdFromCgroup(std::string_view cgroup);

class ProcessCache {
 public:
  explicit ProcessCache(std::string proc_root = "/proc", uint64_t ttl_ns = 5'000'000'000,
                        size_t max_entries = 8192)
      : proc_root_(std::move(proc_root)), ttl_ns_(ttl_ns), max_entries_(max_entries) {}

  const ProcessInfo& Lookup(const ProcessImage& image, uint64_t now_ns);
  // The process `tgid` that started at `start` exited: its entry goes (a
  // host that starts and ends processes all day keeps only the live ones').
  void Forget(uint32_t tgid, uint64_t start);
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    ProcessInfo info;
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
