#include "proc/process_cache.h"

#include <unistd.h>

#include <climits>

#include "absl/strings/str_cat.h"

namespace httptraced::proc {

const std::string& ProcessCache::Executable(const ProcessImage& image, uint64_t now_ns) {
  auto it = entries_.find(image.tgid);
  if (it != entries_.end() && it->second.start == image.start &&
      it->second.exec_id == image.exec_id && now_ns - it->second.read_at_ns < ttl_ns_) {
    return it->second.exe;
  }
  if (it == entries_.end()) {
    if (entries_.size() >= max_entries_) entries_.clear();
    it = entries_.try_emplace(image.tgid).first;
  }
  char buf[PATH_MAX];
  const std::string link = absl::StrCat(proc_root_, "/", image.tgid, "/exe");
  ssize_t n = readlink(link.c_str(), buf, sizeof(buf));
  Entry& e = it->second;
  e.exe.assign(buf, n > 0 ? static_cast<size_t>(n) : 0);
  e.read_at_ns = now_ns;
  e.start = image.start;
  e.exec_id = image.exec_id;
  return e.exe;
}

}  // namespace httptraced::proc
