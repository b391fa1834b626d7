// Opening (and creating) the log directory safely.
#ifndef HTTPTRACED_OUTPUT_LOG_DIR_H_
#define HTTPTRACED_OUTPUT_LOG_DIR_H_

#include <string>

#include "absl/status/statusor.h"
#include "output/unique_fd.h"

namespace httptraced::output {

inline constexpr mode_t kLogDirMode = 0750;
inline constexpr mode_t kParentDirMode = 0755;

struct LogDir {
  UniqueFd fd;           // O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC
  bool created = false;  // this call created the directory itself
};

// Opens `path` as the log directory. Creates it with mode 0750 (exactly,
// whatever the umask) if missing, and missing parents with 0755 (minus the
// umask, like mkdir -p). Refuses, with an error that names the path and the
// fix, a directory that is a symlink, is not a directory, or is writable by
// group or others (whoever can write there can replace our files).
absl::StatusOr<LogDir> OpenLogDir(const std::string& path);

// True if the directory open at `dir_fd` has been removed (rmdir).
bool DirectoryRemoved(int dir_fd);

}  // namespace httptraced::output

#endif  // HTTPTRACED_OUTPUT_LOG_DIR_H_
