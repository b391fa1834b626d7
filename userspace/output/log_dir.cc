#include "output/log_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "output/sink_event.h"

namespace httptraced::output {
namespace {

absl::Status SymlinkError(const std::string& path) {
  return absl::FailedPreconditionError(absl::StrCat(
      "log directory ", path,
      " is a symlink; refusing to use it (whoever controls the link can "
      "redirect the log). Configure the real directory instead, or replace "
      "the link: rm ",
      path, " && mkdir -m 0750 ", path));
}

absl::Status NotDirectoryError(const std::string& path) {
  return absl::FailedPreconditionError(
      absl::StrCat("log directory ", path,
                   " exists but is not a directory; remove it or configure "
                   "another directory"));
}

// mkdir -p for every proper prefix of `path`.
absl::Status MakeParents(const std::string& path) {
  for (size_t pos = path.find('/', 1); pos != std::string::npos;
       pos = path.find('/', pos + 1)) {
    const std::string parent = path.substr(0, pos);
    if (::mkdir(parent.c_str(), kParentDirMode) != 0 && errno != EEXIST) {
      return ErrnoError(errno, absl::StrCat("create parent directory ", parent,
                                            " of log directory ", path));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LogDir> OpenLogDir(const std::string& raw_path) {
  std::string path = raw_path;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (path.empty()) {
    return absl::InvalidArgumentError("log directory path is empty");
  }

  LogDir dir;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      return ErrnoError(errno, absl::StrCat("stat log directory ", path));
    }
    if (absl::Status s = MakeParents(path); !s.ok()) return s;
    if (::mkdir(path.c_str(), kLogDirMode) == 0) {
      dir.created = true;
    } else if (errno != EEXIST) {
      return ErrnoError(errno, absl::StrCat("create log directory ", path));
    }
  } else if (S_ISLNK(st.st_mode)) {
    return SymlinkError(path);
  } else if (!S_ISDIR(st.st_mode)) {
    return NotDirectoryError(path);
  }

  dir.fd.reset(
      ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir.fd) {
    const int err = errno;
    // O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR or ELOOP; say
    // which it was (it may have been swapped since the lstat above).
    if ((err == ENOTDIR || err == ELOOP) && ::lstat(path.c_str(), &st) == 0) {
      if (S_ISLNK(st.st_mode)) return SymlinkError(path);
      if (!S_ISDIR(st.st_mode)) return NotDirectoryError(path);
    }
    return ErrnoError(err, absl::StrCat("open log directory ", path));
  }
  if (dir.created && ::fchmod(dir.fd.get(), kLogDirMode) != 0) {
    return ErrnoError(errno, absl::StrCat("chmod log directory ", path));
  }
  if (::fstat(dir.fd.get(), &st) != 0) {
    return ErrnoError(errno, absl::StrCat("stat log directory ", path));
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "log directory %s is writable by group or others (mode %04o); "
        "refusing to use it (whoever can write there can replace the log "
        "files). Fix: chmod go-w %s",
        path, st.st_mode & 07777, path));
  }
  return dir;
}

bool DirectoryRemoved(int dir_fd) {
  struct stat st;
  if (::fstat(dir_fd, &st) != 0) return true;
  return st.st_nlink == 0;
}

}  // namespace httptraced::output
