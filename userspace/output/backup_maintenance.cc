#include "output/backup_maintenance.h"

#include <pthread.h>
#include <sched.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "output/sink_event.h"

namespace httptraced::output {
namespace {

constexpr size_t kChunk = 64 * 1024;

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};

// Removes a file on destruction unless disarmed.
class UnlinkGuard {
 public:
  UnlinkGuard(int dir_fd, std::string name)
      : dir_fd_(dir_fd), name_(std::move(name)) {}
  ~UnlinkGuard() {
    if (armed_) ::unlinkat(dir_fd_, name_.c_str(), 0);
  }
  UnlinkGuard(const UnlinkGuard&) = delete;
  UnlinkGuard& operator=(const UnlinkGuard&) = delete;
  void Disarm() { armed_ = false; }

 private:
  int dir_fd_;
  std::string name_;
  bool armed_ = true;
};

class Deflater {
 public:
  Deflater() = default;
  ~Deflater() {
    if (initialized_) deflateEnd(&z_);
  }
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;

  bool Init() {
    // windowBits 15 + 16: gzip wrapper.
    // Level 1: a third faster than the default for a somewhat larger file;
    // compressing is by far the daemon's biggest cost per record otherwise.
    initialized_ = deflateInit2(&z_, Z_BEST_SPEED, Z_DEFLATED, 15 + 16,
                                8, Z_DEFAULT_STRATEGY) == Z_OK;
    return initialized_;
  }
  z_stream* get() { return &z_; }

 private:
  z_stream z_{};
  bool initialized_ = false;
};

absl::Status WriteAll(int fd, const unsigned char* data, size_t size,
                      const std::string& what) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError(n < 0 ? errno : EIO, what);
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListNames(int dir_fd) {
  int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open log directory for listing");
  std::unique_ptr<DIR, DirCloser> dir(::fdopendir(fd));
  if (!dir) {
    const int err = errno;
    ::close(fd);
    return ErrnoError(err, "list log directory");
  }
  std::vector<std::string> names;
  while (true) {
    errno = 0;
    struct dirent* entry = ::readdir(dir.get());
    if (entry == nullptr) break;
    names.emplace_back(entry->d_name);
  }
  if (errno != 0) return ErrnoError(errno, "list log directory");
  return names;
}

}  // namespace

absl::StatusOr<std::vector<BackupName>> ListBackups(int dir_fd,
                                                    absl::string_view base) {
  absl::StatusOr<std::vector<std::string>> names = ListNames(dir_fd);
  if (!names.ok()) return names.status();
  std::vector<BackupName> out;
  for (const std::string& file_name : *names) {
    if (std::optional<BackupName> name = ParseBackupFileName(base, file_name)) {
      out.push_back(*std::move(name));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const BackupName& a, const BackupName& b) {
              if (!a.SameBackup(b)) return a.OlderThan(b);
              return !a.compressed && b.compressed;
            });
  return out;
}

absl::Status GzipFileAt(int dir_fd, const std::string& src,
                        const std::string& tmp, const std::string& dst,
                        const std::atomic<bool>& stop) {
  UniqueFd in(::openat(dir_fd, src.c_str(),
                       O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!in) return ErrnoError(errno, absl::StrCat("gzip: open ", src));
  struct stat st;
  if (::fstat(in.get(), &st) != 0) {
    return ErrnoError(errno, absl::StrCat("gzip: stat ", src));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("gzip: ", src, " is not a regular file; left alone"));
  }

  // A leftover temp file can only be from an interrupted earlier pass.
  ::unlinkat(dir_fd, tmp.c_str(), 0);
  UniqueFd out(::openat(dir_fd, tmp.c_str(),
                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        kLogFileMode));
  if (!out) return ErrnoError(errno, absl::StrCat("gzip: create ", tmp));
  UnlinkGuard remove_tmp(dir_fd, tmp);
  if (::fchmod(out.get(), kLogFileMode) != 0) {
    return ErrnoError(errno, absl::StrCat("gzip: chmod ", tmp));
  }

  Deflater deflater;
  if (!deflater.Init()) {
    return absl::ResourceExhaustedError("gzip: deflateInit2 failed");
  }
  z_stream* z = deflater.get();
  std::vector<unsigned char> in_buf(kChunk);
  std::vector<unsigned char> out_buf(kChunk);
  const std::string write_what = absl::StrCat("gzip: write ", tmp);
  int flush = Z_NO_FLUSH;
  while (flush != Z_FINISH) {
    if (stop.load(std::memory_order_relaxed)) {
      return absl::CancelledError(absl::StrCat("gzip ", src, ": interrupted"));
    }
    ssize_t n = ::read(in.get(), in_buf.data(), in_buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("gzip: read ", src));
    }
    if (n == 0) flush = Z_FINISH;
    z->next_in = in_buf.data();
    z->avail_in = static_cast<uInt>(n);
    do {
      z->next_out = out_buf.data();
      z->avail_out = static_cast<uInt>(out_buf.size());
      int rc = deflate(z, flush);
      if (rc == Z_STREAM_ERROR) {
        return absl::InternalError(absl::StrCat("gzip ", src, ": deflate"));
      }
      size_t have = out_buf.size() - z->avail_out;
      if (absl::Status s =
              WriteAll(out.get(), out_buf.data(), have, write_what);
          !s.ok()) {
        return s;
      }
    } while (z->avail_out == 0);
  }

  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  ::futimens(out.get(), times);  // cosmetic; failure is harmless
  if (::close(out.release()) != 0) {
    return ErrnoError(errno, absl::StrCat("gzip: close ", tmp));
  }
  if (::renameat(dir_fd, tmp.c_str(), dir_fd, dst.c_str()) != 0) {
    return ErrnoError(errno, absl::StrCat("gzip: rename ", tmp, " to ", dst));
  }
  remove_tmp.Disarm();
  if (::unlinkat(dir_fd, src.c_str(), 0) != 0 && errno != ENOENT) {
    return ErrnoError(errno, absl::StrCat("gzip: remove ", src));
  }
  return absl::OkStatus();
}

std::vector<MaintenanceError> MaintainBackups(int dir_fd,
                                              const MaintenancePolicy& policy,
                                              const std::atomic<bool>& stop) {
  std::vector<MaintenanceError> errors;
  auto fail = [&](absl::string_view op, absl::Status status) {
    status = absl::Status(status.code(),
                          absl::StrCat("log directory ", policy.dir_path, ": ",
                                       status.message()));
    errors.push_back({ConditionKey(op, status), std::move(status)});
  };

  absl::StatusOr<std::vector<std::string>> names = ListNames(dir_fd);
  if (!names.ok()) {
    fail("list", names.status());
    return errors;
  }
  // Stale temp files from an interrupted pass (only passes create them, one
  // at a time).
  for (const std::string& name : *names) {
    if (ParseTempGzipFileName(policy.base, name) &&
        ::unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) {
      fail("remove temp", ErrnoError(errno, absl::StrCat("remove ", name)));
    }
  }

  absl::StatusOr<std::vector<BackupName>> files =
      ListBackups(dir_fd, policy.base);
  if (!files.ok()) {
    fail("list", files.status());
    return errors;
  }
  // Group the files of one backup (X.json and X.json.gz after a crash).
  std::vector<std::vector<BackupName>> backups;
  for (BackupName& file : *files) {
    if (backups.empty() || !backups.back().front().SameBackup(file)) {
      backups.emplace_back();
    }
    backups.back().push_back(std::move(file));
  }

  // Prune, oldest first.
  size_t first_kept = 0;
  if (backups.size() > policy.max_files) {
    first_kept = backups.size() - policy.max_files;
  }
  for (size_t i = 0; i < first_kept; ++i) {
    for (const BackupName& file : backups[i]) {
      const std::string name = BackupFileName(policy.base, file);
      if (::unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) {
        fail("prune", ErrnoError(errno, absl::StrCat("remove ", name)));
      }
    }
  }
  if (!policy.compress || first_kept >= backups.size()) return errors;

  // Compress all but the newest.
  for (size_t i = first_kept; i + 1 < backups.size(); ++i) {
    if (stop.load(std::memory_order_relaxed)) break;
    const std::vector<BackupName>& files_of_backup = backups[i];
    if (files_of_backup.front().compressed) continue;  // only X.json.gz
    BackupName plain = files_of_backup.front();
    BackupName gz = plain;
    gz.compressed = true;
    const std::string src = BackupFileName(policy.base, plain);
    const std::string dst = BackupFileName(policy.base, gz);
    if (files_of_backup.size() > 1) {
      // X.json.gz was renamed into place complete; the crash came before X.json
      // was removed.
      if (::unlinkat(dir_fd, src.c_str(), 0) != 0 && errno != ENOENT) {
        fail("gzip", ErrnoError(errno, absl::StrCat("remove ", src)));
      }
      continue;
    }
    absl::Status s =
        GzipFileAt(dir_fd, src, TempGzipFileName(policy.base, gz), dst, stop);
    if (!s.ok() && !absl::IsCancelled(s)) fail("gzip", s);
  }
  return errors;
}

BackupWorker::BackupWorker(MaintenancePolicy policy)
    : policy_(std::move(policy)), thread_([this] { Run(); }) {}

BackupWorker::~BackupWorker() {
  stop_.store(true, std::memory_order_relaxed);
  {
    absl::MutexLock lock(&mu_);
    shutdown_ = true;
  }
  thread_.join();
}

void BackupWorker::Schedule(std::shared_ptr<const UniqueFd> dir) {
  absl::MutexLock lock(&mu_);
  pending_ = std::move(dir);
}

void BackupWorker::WaitIdle() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(this, &BackupWorker::IdleLocked));
}

std::vector<MaintenanceError> BackupWorker::TakeErrors() {
  absl::MutexLock lock(&mu_);
  return std::exchange(errors_, {});
}

bool BackupWorker::IdleLocked() const { return pending_ == nullptr && !busy_; }

bool BackupWorker::HasWorkLocked() const {
  return shutdown_ || pending_ != nullptr;
}

void BackupWorker::Run() {
  // Compression only uses CPU nobody else wants: under load the traced
  // services and the event loop come first, and backups wait (uncompressed).
  sched_param param{};
  pthread_setschedparam(pthread_self(), SCHED_IDLE, &param);
  while (true) {
    std::shared_ptr<const UniqueFd> dir;
    {
      absl::MutexLock lock(&mu_);
      busy_ = false;
      mu_.Await(absl::Condition(this, &BackupWorker::HasWorkLocked));
      if (shutdown_) return;
      dir = std::exchange(pending_, nullptr);
      busy_ = true;
    }
    std::vector<MaintenanceError> errors =
        MaintainBackups(dir->get(), policy_, stop_);
    absl::MutexLock lock(&mu_);
    for (MaintenanceError& e : errors) errors_.push_back(std::move(e));
  }
}

}  // namespace httptraced::output
