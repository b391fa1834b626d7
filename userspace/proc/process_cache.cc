#include "proc/process_cache.h"

#include <unistd.h>

#include <climits>

#include "absl/strings/str_cat.h"

namespace httptraced::proc {

const std::string& ProcessCache::Executable(uint32_t tgid, uint64_t now_ns) {
  auto it = entries_.find(tgid);
  if (it != entries_.end() && now_ns - it->second.read_at_ns < ttl_ns_) return it->second.exe;
  if (it == entries_.end()) {
    if (entries_.size() >= max_entries_) entries_.clear();
    it = entries_.try_emplace(tgid).first;
  }
  char buf[PATH_MAX];
  const std::string link = absl::StrCat(proc_root_, "/", tgid, "/exe");
  ssize_t n = readlink(link.c_str(), buf, sizeof(buf));
  it->second.exe.assign(buf, n > 0 ? static_cast<size_t>(n) : 0);
  it->second.read_at_ns = now_ns;
  return it->second.exe;
}

}  // namespace httptraced::proc
