#include "bpf/tls_scanner.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace httptraced::bpf {
namespace {

// The next space-separated field of a maps line; empty when there is none.
std::string_view NextField(std::string_view& line) {
  const size_t end = line.find(' ');
  std::string_view field = line.substr(0, end);
  line.remove_prefix(end == std::string_view::npos ? line.size() : end + 1);
  return field;
}

bool ConsumePrefix(std::string_view& s, std::string_view prefix) {
  if (!s.starts_with(prefix)) return false;
  s.remove_prefix(prefix.size());
  return true;
}

bool IsHexRange(std::string_view range) {
  const size_t dash = range.find('-');
  if (dash == 0 || dash == std::string_view::npos || dash + 1 == range.size()) return false;
  return std::all_of(range.begin(), range.end(), [](char c) {
    return c == '-' || absl::ascii_isxdigit(static_cast<unsigned char>(c));
  }) && range.find('-', dash + 1) == std::string_view::npos;
}

// Reads a whole /proc file (its size is not known ahead) into out.
bool ReadAll(const std::string& path, std::string& out) {
  out.clear();
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  size_t used = 0;
  ssize_t n;
  do {
    if (out.size() - used < 4096) out.resize(std::max<size_t>(out.size() * 2, 16384));
    n = read(fd, out.data() + used, out.size() - used);
    if (n > 0) used += static_cast<size_t>(n);
  } while (n > 0 || (n < 0 && errno == EINTR));
  close(fd);
  out.resize(used);
  return n == 0;  // maps may also be refused at read time
}

}  // namespace

bool IsLibsslName(std::string_view name) {
  if (!ConsumePrefix(name, "libssl")) return false;
  if (name.starts_with("-")) {
    // A renamed copy: libssl-<hash>.so...
    const size_t so = name.find(".so");
    if (so == std::string_view::npos || so == 1) return false;
    name.remove_prefix(so);
  }
  if (!ConsumePrefix(name, ".so")) return false;
  if (name.empty()) return true;
  if (!ConsumePrefix(name, ".") || name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '.';
  });
}

bool IsGnutlsName(std::string_view name) {
  if (!ConsumePrefix(name, "libgnutls.so")) return false;
  if (name.empty()) return true;
  if (!ConsumePrefix(name, ".") || name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '.';
  });
}

std::vector<MappedLibrary> ParseMappedTlsLibraries(std::string_view maps) {
  std::vector<MappedLibrary> out;
  std::vector<std::pair<std::string_view, std::string_view>> seen;  // (dev, inode)
  while (!maps.empty()) {
    const size_t nl = maps.find('\n');
    std::string_view line = maps.substr(0, nl);
    maps.remove_prefix(nl == std::string_view::npos ? maps.size() : nl + 1);

    const std::string_view range = NextField(line);
    NextField(line);  // perms
    NextField(line);  // offset
    const std::string_view dev = NextField(line);
    const std::string_view inode = NextField(line);
    std::string_view path = line.substr(std::min(line.size(), line.find_first_not_of(' ')));
    if (!IsHexRange(range) || dev.empty() || inode.empty() || inode == "0" ||
        !path.starts_with("/")) {
      continue;
    }
    const bool deleted = path.ends_with(" (deleted)");
    if (deleted) path.remove_suffix(std::string_view(" (deleted)").size());
    const size_t slash = path.rfind('/');
    const std::string_view name = path.substr(slash + 1);
    if (!IsLibsslName(name) && !IsGnutlsName(name)) continue;
    if (std::find(seen.begin(), seen.end(), std::make_pair(dev, inode)) != seen.end()) continue;
    seen.emplace_back(dev, inode);
    out.push_back(MappedLibrary{std::string(range), std::string(path), deleted});
  }
  return out;
}

TlsScanner::TlsScanner(std::string proc_root, std::vector<uint32_t> pids, Probe probe,
                       Release release)
    : proc_root_(std::move(proc_root)),
      pids_(std::move(pids)),
      probe_(std::move(probe)),
      release_(std::move(release)) {}

void TlsScanner::Forget(uint32_t pid) {
  auto files = files_of_.find(pid);
  if (files == files_of_.end()) return;
  for (const FileKey& key : files->second) {
    auto users = users_.find(key);
    if (users == users_.end()) continue;
    users->second.pids.erase(pid);
    if (!users->second.pids.empty()) continue;
    release_(users->second.id);
    users_.erase(users);
    known_.erase(key);
  }
  files_of_.erase(files);
}

void TlsScanner::ProcessExited(uint32_t pid) {
  Forget(pid);
  due_.erase(pid);
}

void TlsScanner::AlreadyProbed(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return;
  if (pids_.empty()) {
    known_.insert(FileKey{st.st_dev, st.st_ino, -1});
  } else {
    for (uint32_t pid : pids_) {
      known_.insert(FileKey{st.st_dev, st.st_ino, static_cast<pid_t>(pid)});
    }
  }
}

std::vector<TlsScanner::Found> TlsScanner::Scan(uint64_t now_ns) {
  std::vector<Found> found;
  std::vector<uint32_t> present;
  if (pids_.empty()) {
    std::unique_ptr<DIR, int (*)(DIR*)> d(opendir(proc_root_.c_str()), closedir);
    if (d == nullptr) return found;
    while (const dirent* e = readdir(d.get())) {
      uint32_t pid;
      if (absl::ascii_isdigit(static_cast<unsigned char>(e->d_name[0])) &&
          absl::SimpleAtoi(e->d_name, &pid)) {
        present.push_back(pid);
      }
    }
  } else {
    // The listed processes still there: one that exited loses its files
    // (its exit event may have been lost); were its pid used again, the new
    // process would be scanned when seen.
    struct stat st;
    for (uint32_t pid : pids_) {
      if (stat(absl::StrCat(proc_root_, "/", pid).c_str(), &st) == 0) present.push_back(pid);
    }
  }
  // Processes gone since the last scan are forgotten (a pid used again is a
  // new process, scanned when seen).
  std::sort(present.begin(), present.end());
  for (auto it = due_.begin(); it != due_.end();) {
    auto next = std::next(it);
    if (!std::binary_search(present.begin(), present.end(), it->first)) {
      Forget(it->first);
      due_.erase(it);
    }
    it = next;
  }
  for (uint32_t pid : present) {
    auto [it, fresh] = due_.try_emplace(pid, Due{now_ns, 0, 0});
    if (!fresh && now_ns < it->second.at_ns) continue;
    it->second.interval_ns = it->second.interval_ns == 0
                                 ? kFirstRescanNs
                                 : std::min(it->second.interval_ns * 2, kMaxRescanNs);
    it->second.at_ns = now_ns + it->second.interval_ns;
    ScanProcess(pid, it->second, found);
  }
  return found;
}

void TlsScanner::ScanProcess(uint32_t pid, Due& due, std::vector<Found>& found) {
  const std::string dir = absl::StrCat(proc_root_, "/", pid);
  // statm: "size resident shared text lib data dt", in pages. Unreadable:
  // the maps are read (and again at every look).
  // 0: no address space (a kernel thread, a zombie), nothing mapped.
  uint64_t pages = 0;
  const bool sized =
      ReadAll(dir + "/statm", maps_) &&
      absl::SimpleAtoi(absl::string_view(maps_.data(), std::min(maps_.find(' '), maps_.size())),
                       &pages);
  if (sized && (pages == 0 || pages == due.vm_pages)) return;
  due.vm_pages = sized ? pages : 0;
  // Gone, a kernel thread's empty maps, or refused: another user's process
  // without CAP_SYS_PTRACE (which the daemon says once, at start).
  if (!ReadAll(dir + "/maps", maps_)) return;
  ++maps_read_;
  for (MappedLibrary& lib : ParseMappedTlsLibraries(maps_)) {
    const std::string file = absl::StrCat(dir, "/map_files/", lib.range);
    struct stat st;
    if (stat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;  // unmapped since
    ProbeFile(pid, file, st, std::move(lib.path), lib.deleted, /*executable=*/false, found);
  }
  if (exports_tls_) {
    const std::string exe = dir + "/exe";
    struct stat st;
    if (stat(exe.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;  // a kernel thread, gone
    char buf[4096];
    const ssize_t n = readlink(exe.c_str(), buf, sizeof(buf));
    std::string shown(buf, n > 0 ? static_cast<size_t>(n) : 0);
    constexpr std::string_view kDeleted = " (deleted)";
    const bool deleted = shown.size() >= kDeleted.size() &&
                         std::string_view(shown).substr(shown.size() - kDeleted.size()) == kDeleted;
    if (deleted) shown.resize(shown.size() - kDeleted.size());
    ProbeFile(pid, exe, st, std::move(shown), deleted, /*executable=*/true, found);
  }
}

void TlsScanner::ProbeFile(uint32_t pid, const std::string& file, const struct stat& st,
                           std::string shown, bool deleted, bool executable,
                           std::vector<Found>& found) {
  const pid_t target = pids_.empty() ? -1 : static_cast<pid_t>(pid);
  const FileKey key{st.st_dev, st.st_ino, target};
  if (!known_.insert(key).second) {
    // Probed already (or failed, or an executable without libssl's
    // functions): one more process that maps it.
    auto users = users_.find(key);
    if (users != users_.end() && users->second.pids.insert(pid).second) {
      files_of_[pid].push_back(key);
    }
    return;
  }
  // Most executables have no TLS of their own: passed over quietly (and
  // stay known, so they are read once).
  if (executable && !exports_tls_(file)) return;
  const uint64_t id = next_id_++;
  absl::StatusOr<int> probes = probe_(id, file, target);
  if (probes.ok()) {
    users_.emplace(key, Users{id, {pid}});
    files_of_[pid].push_back(key);
  }
  found.push_back(Found{pid, id, std::move(shown), deleted, std::move(probes)});
}

}  // namespace httptraced::bpf
