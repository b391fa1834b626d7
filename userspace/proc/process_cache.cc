#include "proc/process_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <climits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace httptraced::proc {
namespace {

constexpr size_t kIdLength = 64;

// The first run of exactly 64 hex digits in a cgroup path component.
std::string_view IdIn(std::string_view component) {
  size_t run = 0;
  for (size_t i = 0; i <= component.size(); ++i) {
    if (i < component.size() && absl::ascii_isxdigit(static_cast<unsigned char>(component[i]))) {
      ++run;
      continue;
    }
    if (run == kIdLength) return component.substr(i - run, run);
    run = 0;
  }
  return {};
}

}  // namespace

std::string_view ContainerIdFromCgroup(std::string_view cgroup) {
  while (!cgroup.empty()) {
    const size_t eol = cgroup.find('\n');
    std::string_view line = cgroup.substr(0, eol);
    cgroup.remove_prefix(eol == std::string_view::npos ? cgroup.size() : eol + 1);
    // "<hierarchy>:<controllers>:<path>"
    const size_t colon = line.find(':');
    const size_t path_at = colon == std::string_view::npos ? colon : line.find(':', colon + 1);
    if (path_at == std::string_view::npos) continue;
    std::string_view path = line.substr(path_at + 1);
    while (!path.empty()) {
      const size_t slash = path.rfind('/');
      const std::string_view id =
          IdIn(path.substr(slash == std::string_view::npos ? 0 : slash + 1));
      if (!id.empty()) return id;
      path = path.substr(0, slash == std::string_view::npos ? 0 : slash);
    }
  }
  return {};
}

void ProcessCache::Forget(uint32_t tgid, uint64_t start) {
  const auto it = entries_.find(tgid);
  if (it != entries_.end() && it->second.start == start) entries_.erase(it);
}

const ProcessInfo& ProcessCache::Lookup(const ProcessImage& image, uint64_t now_ns) {
  auto it = entries_.find(image.tgid);
  if (it != entries_.end() && it->second.start == image.start &&
      it->second.exec_id == image.exec_id && now_ns - it->second.read_at_ns < ttl_ns_) {
    return it->second.info;
  }
  if (it == entries_.end()) {
    if (entries_.size() >= max_entries_) entries_.clear();
    it = entries_.try_emplace(image.tgid).first;
  }
  Entry& e = it->second;
  char buf[PATH_MAX];
  const std::string dir = absl::StrCat(proc_root_, "/", image.tgid, "/");
  const ssize_t n = readlink((dir + "exe").c_str(), buf, sizeof(buf));
  e.info.executable.assign(buf, n > 0 ? static_cast<size_t>(n) : 0);
  e.info.container_id.clear();
  // A process's cgroup file is a few hundred bytes (one line per hierarchy).
  const int fd = open((dir + "cgroup").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    const ssize_t got = read(fd, buf, sizeof(buf));
    close(fd);
    if (got > 0) e.info.container_id = ContainerIdFromCgroup({buf, static_cast<size_t>(got)});
  }
  e.read_at_ns = now_ns;
  e.start = image.start;
  e.exec_id = image.exec_id;
  return e.info;
}

}  // namespace httptraced::proc
