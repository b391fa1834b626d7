#include "output/rotating_log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>  // EXT4_SUPER_MAGIC
#include <stdio.h>  // renameat2, RENAME_NOREPLACE
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "output/lines.h"
#include "output/log_dir.h"

namespace httptraced::output {
namespace {

constexpr int kMaxNameAttempts = 1000;

// The longest prefix of `lines` made of whole lines and at most `room` bytes.
size_t WholeLinesPrefix(std::string_view lines, uint64_t room) {
  if (lines.size() <= room) return lines.size();
  if (room == 0) return 0;
  const size_t last_newline = lines.rfind('\n', static_cast<size_t>(room - 1));
  return last_newline == std::string_view::npos ? 0 : last_newline + 1;
}

bool SameFile(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

absl::Time BirthTime(int fd, absl::Time fallback) {
  struct statx stx;
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_BTIME, &stx) != 0 ||
      (stx.stx_mask & STATX_BTIME) == 0) {
    return fallback;
  }
  return absl::FromUnixSeconds(stx.stx_btime.tv_sec) +
         absl::Nanoseconds(stx.stx_btime.tv_nsec);
}

// Where reserving ahead was measured to pay (ext2 and ext3 share the magic
// and refuse fallocate, which turns the reserve off).
bool OnExt4(int fd) {
  struct statfs fs;
  return ::fstatfs(fd, &fs) == 0 && fs.f_type == EXT4_SUPER_MAGIC;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RotatingLog>> RotatingLog::Open(Options options,
                                                               Clock clock) {
  if (!IsValidBaseName(options.base_name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("log file base name \"", options.base_name,
                     "\" must be non-empty, [A-Za-z0-9_.-] only, and not "
                     "start with '.'"));
  }
  if (options.max_size_bytes == 0) {
    return absl::InvalidArgumentError("log max_size_bytes must be positive");
  }
  if (options.max_age < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("log max_age must not be negative");
  }
  while (options.dir.size() > 1 && options.dir.back() == '/') {
    options.dir.pop_back();
  }
  if (!clock) clock = absl::Now;

  absl::StatusOr<LogDir> dir = OpenLogDir(options.dir);
  if (!dir.ok()) return dir.status();
  std::unique_ptr<RotatingLog> log(
      new RotatingLog(std::move(options), std::move(clock)));
  log->dir_ = std::make_shared<const UniqueFd>(std::move(dir->fd));
  absl::StatusOr<ActiveFile> active = log->OpenActiveAt(log->dir_->get());
  if (!active.ok()) return active.status();
  log->Adopt(*std::move(active));

  absl::StatusOr<std::vector<BackupName>> backups =
      ListBackups(log->dir_->get(), log->options_.base_name);
  if (!backups.ok()) {
    return absl::Status(
        backups.status().code(),
        absl::StrCat(log->options_.dir, ": ", backups.status().message()));
  }
  if (!backups->empty()) log->last_backup_ = backups->back();
  log->worker_->Schedule(log->dir_);
  return log;
}

RotatingLog::RotatingLog(Options options, Clock clock)
    : options_(std::move(options)),
      clock_(std::move(clock)),
      active_name_(ActiveFileName(options_.base_name)),
      outage_(clock_),
      worker_(std::make_unique<BackupWorker>(
          MaintenancePolicy{.base = options_.base_name,
                            .dir_path = options_.dir,
                            .max_files = options_.max_files,
                            .compress = options_.compress})) {}

std::string RotatingLog::active_path() const {
  return options_.dir == "/" ? absl::StrCat("/", active_name_)
                             : absl::StrCat(options_.dir, "/", active_name_);
}

absl::StatusOr<RotatingLog::ActiveFile> RotatingLog::OpenActiveAt(
    int dir_fd) const {
  const std::string path = active_path();
  // O_NOFOLLOW: never write through a symlink. O_NONBLOCK: fail (ENXIO)
  // instead of hanging if someone put a FIFO there; no effect on a regular
  // file.
  ActiveFile file;
  file.fd.reset(::openat(
      dir_fd, active_name_.c_str(),
      O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
      kLogFileMode));
  if (!file.fd) {
    const int err = errno;
    if (err == ELOOP) {
      return absl::FailedPreconditionError(absl::StrCat(
          "active log file ", path,
          " is a symlink; refusing to follow it (it could point anywhere). "
          "Remove it: rm ",
          path));
    }
    if (err == ENXIO) {
      return absl::FailedPreconditionError(absl::StrCat(
          "active log file ", path, " is not a regular file; remove it"));
    }
    return ErrnoError(err, absl::StrCat("open ", path));
  }
  struct stat st;
  if (::fstat(file.fd.get(), &st) != 0) {
    return ErrnoError(errno, absl::StrCat("stat ", path));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "active log file ", path, " is not a regular file; remove it"));
  }
  // The umask may have taken bits away, or an old file may have other bits.
  if ((st.st_mode & 07777) != kLogFileMode &&
      ::fchmod(file.fd.get(), kLogFileMode) != 0) {
    return ErrnoError(errno, absl::StrCat("chmod ", path));
  }
  file.size = static_cast<uint64_t>(st.st_size);
  if (file.size > 0) {
    const absl::Time now = clock_();
    file.first_record = std::min(now, BirthTime(file.fd.get(), now));
    // Does it end in a partial line (crash mid-write in an earlier run)?
    UniqueFd reader(::openat(dir_fd, active_name_.c_str(),
                             O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    struct stat rst;
    char last = '\n';
    if (reader && ::fstat(reader.get(), &rst) == 0 && SameFile(st, rst) &&
        ::pread(reader.get(), &last, 1, st.st_size - 1) == 1) {
      file.tail_incomplete = last != '\n';
    }
  }
  return file;
}

void RotatingLog::Adopt(ActiveFile file) {
  file_ = std::move(file.fd);
  size_ = file.size;
  tail_incomplete_ = file.tail_incomplete;
  first_record_ = file.first_record;
  reserve_ok_ = options_.reserve_ahead_bytes > 0 && OnExt4(file_.get());
  reserved_end_ = size_;
}

void RotatingLog::ReserveAhead(uint64_t incoming) {
  const uint64_t needed = size_ + incoming;
  if (!reserve_ok_ || needed <= reserved_end_) return;
  struct statvfs vfs;
  if (::fstatvfs(file_.get(), &vfs) != 0 ||
      static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize <
          options_.reserve_min_free_bytes) {
    return;  // asked again at the next write past the reserve
  }
  const uint64_t start = std::max(reserved_end_, size_);
  const uint64_t end =
      std::max(needed, std::min(needed + options_.reserve_ahead_bytes,
                                options_.max_size_bytes));
  const off_t offset = static_cast<off_t>(start);
  const off_t len = static_cast<off_t>(end - start);
  const int rc =
      options_.fallocate_fn
          ? options_.fallocate_fn(file_.get(), FALLOC_FL_KEEP_SIZE, offset, len)
          : ::fallocate(file_.get(), FALLOC_FL_KEEP_SIZE, offset, len);
  if (rc != 0) {
    // ENOSPC may have left part of it allocated; EOPNOTSUPP, nothing.
    reserve_ok_ = false;
    ReleaseReserve();
    return;
  }
  reserved_end_ = end;
}

void RotatingLog::ReleaseReserve() {
  struct stat st;
  if (!file_ || ::fstat(file_.get(), &st) != 0) return;
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const uint64_t allocated = static_cast<uint64_t>(st.st_blocks) * 512;
  if (allocated > (size + 4095) / 4096 * 4096) {
    // Truncating to its own size frees the blocks past the end and nothing
    // else; a failure only leaves them allocated until the file is deleted.
    (void)::ftruncate(file_.get(), st.st_size);
  }
  reserved_end_ = size_;
}

absl::Status RotatingLog::ReopenFromPath() {
  absl::StatusOr<LogDir> dir = OpenLogDir(options_.dir);
  if (!dir.ok()) return dir.status();
  absl::StatusOr<ActiveFile> file = OpenActiveAt(dir->fd.get());
  if (!file.ok()) return file.status();
  dir_ = std::make_shared<const UniqueFd>(std::move(dir->fd));
  Adopt(*std::move(file));
  if (dir->created) {
    Emit({.kind = SinkEvent::Kind::kWarning,
          .status = absl::NotFoundError(absl::StrCat(
              "log directory ", options_.dir,
              " was missing (removed while running?); created it"))});
  } else if (file_deleted_) {
    Emit({.kind = SinkEvent::Kind::kWarning,
          .status = absl::NotFoundError(absl::StrCat(
              active_path(), " was deleted while open; created a new one"))});
  }
  file_deleted_ = false;
  return absl::OkStatus();
}

absl::Status RotatingLog::EnsureWritable() {
  if (file_) {
    struct stat st;
    if (::fstat(file_.get(), &st) == 0 && st.st_nlink == 0) {
      // Deleted (perhaps with its directory): writing on would lose records
      // silently.
      file_deleted_ = true;
      file_.reset();
    }
  }
  if (!file_) {
    if (absl::Status s = ReopenFromPath(); !s.ok()) return s;
  }
  if (tail_incomplete_) return Rotate();
  return absl::OkStatus();
}

absl::Status RotatingLog::Rotate() {
  const std::string path = active_path();
  struct stat ours;
  struct stat there;
  if (::fstat(file_.get(), &ours) != 0) {
    return ErrnoError(errno, absl::StrCat("rotate: stat ", path));
  }
  if (::fstatat(dir_->get(), active_name_.c_str(), &there,
                AT_SYMLINK_NOFOLLOW) != 0 ||
      !SameFile(ours, there)) {
    // Renamed away (an external logrotate that has not sent SIGUSR1 yet):
    // whatever is at the path now is not ours to rename; switch to it.
    return ReopenFromPath();
  }

  BackupName name;
  name.stamp = FormatBackupStamp(clock_());
  if (last_backup_ && name.stamp <= last_backup_->stamp) {
    // Same millisecond as the last rotation, or the clock went back: keep
    // names unique and in order.
    name.stamp = last_backup_->stamp;
    name.counter = last_backup_->counter + 1;
  }
  std::string target;
  for (int attempt = 0;; ++attempt, ++name.counter) {
    struct stat unused;
    bool taken = false;
    for (Compression c : {Compression::kZstd, Compression::kGzip}) {
      BackupName packed = name;
      packed.compression = c;
      taken = taken ||
              ::fstatat(dir_->get(), BackupFileName(options_.base_name, packed).c_str(),
                        &unused, AT_SYMLINK_NOFOLLOW) == 0;
    }
    if (taken) continue;  // taken by a compressed backup
    target = BackupFileName(options_.base_name, name);
    int rc = ::renameat2(dir_->get(), active_name_.c_str(), dir_->get(),
                         target.c_str(), RENAME_NOREPLACE);
    if (rc != 0 && errno == EINVAL) {
      // Filesystem without RENAME_NOREPLACE; we are the only writer here.
      if (::fstatat(dir_->get(), target.c_str(), &unused,
                    AT_SYMLINK_NOFOLLOW) == 0) {
        errno = EEXIST;
      } else {
        rc = ::renameat(dir_->get(), active_name_.c_str(), dir_->get(),
                        target.c_str());
      }
    }
    if (rc == 0) break;
    if (errno != EEXIST || attempt >= kMaxNameAttempts) {
      return ErrnoError(errno,
                        absl::StrCat("rotate: rename ", path, " to ", target));
    }
  }
  last_backup_ = name;
  ++stats_.rotations;
  // The file is a backup now: a reserve past its end (ours, or left by an
  // earlier run) would stay allocated as long as the backup is kept.
  ReleaseReserve();
  file_.reset();
  size_ = 0;
  first_record_.reset();
  tail_incomplete_ = false;
  worker_->Schedule(dir_);

  absl::StatusOr<ActiveFile> file = OpenActiveAt(dir_->get());
  if (!file.ok()) return file.status();
  Adopt(*std::move(file));
  rotate_warnings_.Clear();
  return absl::OkStatus();
}

absl::Status RotatingLog::WriteChunk(std::string_view chunk) {
  ReserveAhead(chunk.size());
  const uint64_t before = size_;
  size_t done = 0;
  while (done < chunk.size()) {
    const ssize_t n =
        options_.write_fn
            ? options_.write_fn(file_.get(), chunk.data() + done,
                                chunk.size() - done)
            : ::write(file_.get(), chunk.data() + done, chunk.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    const int err = n < 0 ? errno : EIO;
    const std::string what = absl::StrCat("write ", active_path());
    if (done > 0 && ::ftruncate(file_.get(), static_cast<off_t>(before)) != 0) {
      // The fragment stays; EnsureWritable() rotates it away before the next
      // write so no record is ever appended to it.
      const int truncate_err = errno;
      size_ = before + done;
      tail_incomplete_ = true;
      return ErrnoError(err, absl::StrCat(what,
                                          " (truncating the partial line "
                                          "away failed too: ",
                                          strerror(truncate_err), ")"));
    }
    return ErrnoError(err, what);
  }
  size_ += done;
  return absl::OkStatus();
}

absl::Status RotatingLog::Write(std::string_view lines) {
  ReportBackgroundErrors();
  if (lines.empty()) return absl::OkStatus();
  if (lines.back() != '\n') {
    const uint64_t records = CountLines(lines) + 1;
    stats_.records_lost += records;
    ++stats_.write_errors;
    return absl::InvalidArgumentError(
        absl::StrCat("RotatingLog::Write: batch does not end in a newline; ",
                     records, " records dropped"));
  }
  if (absl::Status s = EnsureWritable(); !s.ok()) {
    return Fail(s, CountLines(lines), /*write_attempt=*/true);
  }

  std::string_view rest = lines;
  bool can_rotate = true;
  while (!rest.empty()) {
    size_t take = rest.size();
    if (can_rotate) {
      const uint64_t room =
          size_ < options_.max_size_bytes ? options_.max_size_bytes - size_ : 0;
      take = WholeLinesPrefix(rest, room);
      if (take == 0 && size_ == 0) {
        take = rest.find('\n') + 1;  // an oversize line, alone in a new file
      } else if (take == 0) {
        if (absl::Status s = Rotate(); !s.ok()) {
          if (!file_) return Fail(s, CountLines(rest), /*write_attempt=*/true);
          // Rename failed: keep appending (over max_size) rather than lose
          // records; retried on the next rotation.
          Warn(ConditionKey("rotate", s), s);
          can_rotate = false;
        }
        continue;
      }
    }
    const std::string_view chunk = rest.substr(0, take);
    if (absl::Status s = WriteChunk(chunk); !s.ok()) {
      return Fail(s, CountLines(rest), /*write_attempt=*/true);
    }
    stats_.records_written += CountLines(chunk);
    stats_.bytes_written += chunk.size();
    if (!first_record_) first_record_ = clock_();
    rest.remove_prefix(take);
  }
  Succeeded();
  return absl::OkStatus();
}

absl::Status RotatingLog::Reopen() {
  ReportBackgroundErrors();
  absl::Status s = ReopenFromPath();
  if (s.ok()) return s;
  // Returned to the caller now; when there is no file to fall back on, also
  // mark the condition reported so the next Write() does not repeat it.
  if (!file_) Fail(s, 0, /*write_attempt=*/false).IgnoreError();
  return s;
}

void RotatingLog::Tick() {
  ReportBackgroundErrors();
  absl::Status s = EnsureWritable();
  if (s.ok() && options_.max_age > absl::ZeroDuration() && size_ > 0 &&
      first_record_ && clock_() - *first_record_ >= options_.max_age) {
    s = Rotate();
    if (!s.ok() && file_) {
      Warn(ConditionKey("rotate", s), s);
      return;
    }
  }
  if (s.ok()) return;
  absl::Status report = Fail(s, 0, /*write_attempt=*/false);
  if (!report.ok()) {
    Emit({.kind = SinkEvent::Kind::kFailing, .status = std::move(report)});
  }
}

absl::Status RotatingLog::Fail(const absl::Status& cause, uint64_t records,
                               bool write_attempt) {
  stats_.records_lost += records;
  if (write_attempt) ++stats_.write_errors;
  return outage_.Failed(cause, records, write_attempt);
}

void RotatingLog::Succeeded() {
  if (std::optional<SinkEvent> event = outage_.Succeeded()) {
    Emit(*std::move(event));
  }
}

void RotatingLog::Warn(absl::string_view key, absl::Status status) {
  if (rotate_warnings_.ShouldReport(key)) {
    Emit({.kind = SinkEvent::Kind::kWarning, .status = std::move(status)});
  }
}

void RotatingLog::Emit(SinkEvent event) {
  if (options_.on_event) options_.on_event(event);
}

void RotatingLog::ReportBackgroundErrors() {
  for (MaintenanceError& error : worker_->TakeErrors()) {
    if (background_warnings_.ShouldReport(error.key)) {
      Emit({.kind = SinkEvent::Kind::kWarning,
            .status = std::move(error.status)});
    }
  }
}

}  // namespace httptraced::output
