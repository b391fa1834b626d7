#include "bpf/tls_libraries.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace httptraced::bpf {
namespace {

struct FileId {
  dev_t dev;
  ino_t ino;
  bool operator==(const FileId&) const = default;
};

// "libssl.so.3", "libssl.so.1.1": a versioned name, not the libssl.so
// development link (which points at one of them anyway).
bool IsVersionedLibssl(std::string_view name) {
  constexpr std::string_view kPrefix = "libssl.so.";
  if (name.size() <= kPrefix.size() || name.substr(0, kPrefix.size()) != kPrefix) return false;
  name.remove_prefix(kPrefix.size());
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '.'; });
}

// Adds path unless its file is already listed.
void AddUnique(const std::string& path, const struct stat& st, std::vector<FileId>& seen,
               std::vector<std::string>& out) {
  const FileId id{st.st_dev, st.st_ino};
  if (std::find(seen.begin(), seen.end(), id) != seen.end()) return;
  seen.push_back(id);
  out.push_back(path);
}

}  // namespace

std::vector<std::string> DefaultTlsLibraryDirs() {
  return {"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib/x86_64-linux-gnu",
          "/lib/aarch64-linux-gnu",    "/usr/lib64",                 "/usr/lib",
          "/lib64",                    "/lib"};
}

std::vector<std::string> FindTlsLibraries(const std::vector<std::string>& dirs) {
  std::vector<FileId> seen;
  std::vector<std::string> out;
  for (const std::string& dir : dirs) {
    std::unique_ptr<DIR, int (*)(DIR*)> d(opendir(dir.c_str()), closedir);
    if (d == nullptr) continue;
    std::vector<std::string> names;
    while (const dirent* e = readdir(d.get())) {
      if (IsVersionedLibssl(e->d_name)) names.emplace_back(e->d_name);
    }
    std::sort(names.begin(), names.end());  // readdir's order is the filesystem's
    for (const std::string& name : names) {
      const std::string path = absl::StrCat(dir, "/", name);
      struct stat st;
      if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      AddUnique(path, st, seen, out);
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> CheckTlsLibraries(const std::vector<std::string>& paths) {
  std::vector<FileId> seen;
  std::vector<std::string> out;
  for (const std::string& path : paths) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      return absl::NotFoundError(
          absl::StrCat("--tls_libraries: ", path, ": ", std::strerror(errno)));
    }
    if (!S_ISREG(st.st_mode) || access(path.c_str(), R_OK) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls_libraries: ", path, " is not a readable file"));
    }
    AddUnique(path, st, seen, out);
  }
  return out;
}

}  // namespace httptraced::bpf
