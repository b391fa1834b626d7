// Pruning and compressing (zstd or gzip) rotated backups, on a background thread.
#ifndef HTTPTRACED_OUTPUT_BACKUP_MAINTENANCE_H_
#define HTTPTRACED_OUTPUT_BACKUP_MAINTENANCE_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "output/backup_name.h"
#include "output/unique_fd.h"

namespace httptraced::output {

inline constexpr mode_t kLogFileMode = 0640;

// The backups (files matching ParseBackupFileName) in the directory, oldest
// first; for the same backup the uncompressed file comes first.
absl::StatusOr<std::vector<BackupName>> ListBackups(int dir_fd,
                                                    absl::string_view base);

// "gzip", "zstd" or "none": also the prefix of CompressFileAt's messages.
absl::string_view CodecName(Compression codec);

// Compresses `src` (relative to dir_fd) to `dst` with `codec` (not kNone),
// writing `tmp` first and renaming it, then removes `src`. gzip writes one
// member per 512 KiB of input, zstd one frame per MiB, each with a content
// checksum; gzip(1) and zstd(1) read them as one stream. The result has mode 0640 and the source's timestamps.
// Returns kCancelled, leaving `src` alone and no `tmp`, as soon as `stop`
// becomes true.
absl::Status CompressFileAt(int dir_fd, Compression codec, const std::string& src,
                            const std::string& tmp, const std::string& dst,
                            const std::atomic<bool>& stop);

struct MaintenancePolicy {
  std::string base = {};      // file names as in backup_name.h
  std::string dir_path = {};  // for messages only
  size_t max_files = 10;
  Compression compress = Compression::kZstd;  // kNone: backups stay plain
};

// A problem found by a maintenance run; `key` identifies the condition without
// file names (e.g. "zstd: No space left on device") for de-duplication.
struct MaintenanceError {
  std::string key;
  absl::Status status;
};

// One maintenance pass: removes stale compression temp files, deletes the
// oldest backups (.json, .json.zst and .json.gz alike) beyond policy.max_files,
// then, unless policy.compress is kNone, compresses every uncompressed backup
// except the newest (which a shipper may still be reading after the rename).
// Keeps going after an error and returns all of them. Stops early when `stop` becomes true.
std::vector<MaintenanceError> MaintainBackups(int dir_fd,
                                              const MaintenancePolicy& policy,
                                              const std::atomic<bool>& stop);

// Runs MaintainBackups on its own thread whenever asked. Requests made while a
// pass runs are coalesced into one more pass. The destructor interrupts a
// running compression (its temp file is removed; the next pass redoes it) and
// joins the thread.
class BackupWorker {
 public:
  explicit BackupWorker(MaintenancePolicy policy);
  ~BackupWorker();
  BackupWorker(const BackupWorker&) = delete;
  BackupWorker& operator=(const BackupWorker&) = delete;

  // Schedules a pass over `dir` (kept open until the pass ends).
  void Schedule(std::shared_ptr<const UniqueFd> dir);
  // Blocks until no pass is running or scheduled.
  void WaitIdle();
  // Errors found by passes since the last call.
  std::vector<MaintenanceError> TakeErrors();

 private:
  void Run();
  bool IdleLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const MaintenancePolicy policy_;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  std::shared_ptr<const UniqueFd> pending_ ABSL_GUARDED_BY(mu_);
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<MaintenanceError> errors_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // last: starts after everything above is initialized
};

}  // namespace httptraced::output

#endif  // HTTPTRACED_OUTPUT_BACKUP_MAINTENANCE_H_
