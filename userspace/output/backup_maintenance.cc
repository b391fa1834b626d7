#include "output/backup_maintenance.h"

#include <pthread.h>
#include <sched.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include <libdeflate.h>
#include <zstd.h>

#include "absl/strings/str_cat.h"
#include "output/sink_event.h"

namespace httptraced::output {
namespace {

// Input bytes per gzip member. A .gz file may hold several members one after
// the other (RFC 1952 2.2); gzip, zcat, zlib's gzread and Python's gzip read
// them as one stream. Blocks bound the buffers; deflate's 32 KiB window makes
// the ratio cost of a new member every 512 KiB negligible.
constexpr size_t kBlock = 512 * 1024;

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

struct CompressorFree {
  void operator()(libdeflate_compressor* c) const { libdeflate_free_compressor(c); }
};

// Reads until buf is full or the file ends; the byte count, or an errno.
ssize_t ReadBlock(int fd, unsigned char* buf, size_t size) {
  size_t have = 0;
  while (have < size) {
    const ssize_t n = ::read(fd, buf + have, size - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(have);
}

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
              return a.compression < b.compression;  // plain first
            });
  return out;
}

namespace {

// Streams `in` to `out` as gzip: one member per kBlock of input.
absl::Status WriteGzip(int in, int out, const std::string& src,
                       const std::string& tmp, const std::atomic<bool>& stop) {
  // libdeflate rather than zlib: at level 1 it is 1.4-1.8x faster on this
  // log's JSON, with a smaller output.
  std::unique_ptr<libdeflate_compressor, CompressorFree> compressor(
      libdeflate_alloc_compressor(1));
  if (!compressor) return absl::ResourceExhaustedError("gzip: out of memory");
  std::vector<unsigned char> in_buf(kBlock);
  std::vector<unsigned char> out_buf(
      libdeflate_gzip_compress_bound(compressor.get(), kBlock));
  const std::string write_what = absl::StrCat("gzip: write ", tmp);
  bool wrote_member = false;
  while (true) {
    if (stop.load(std::memory_order_relaxed)) {
      return absl::CancelledError(absl::StrCat("gzip ", src, ": interrupted"));
    }
    const ssize_t n = ReadBlock(in, in_buf.data(), in_buf.size());
    if (n < 0) return ErrnoError(errno, absl::StrCat("gzip: read ", src));
    if (n == 0 && wrote_member) break;
    // An empty source still gets one (empty) member: a valid .gz file.
    const size_t out_n =
        libdeflate_gzip_compress(compressor.get(), in_buf.data(), static_cast<size_t>(n),
                                 out_buf.data(), out_buf.size());
    if (out_n == 0) {
      return absl::InternalError(absl::StrCat("gzip ", src, ": compression failed"));
    }
    if (absl::Status s = WriteAll(out, out_buf.data(), out_n, write_what); !s.ok()) {
      return s;
    }
    wrote_member = true;
    if (static_cast<size_t>(n) < kBlock) break;  // the end of the file
  }
  return absl::OkStatus();
}

struct ZstdFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

// Input bytes per zstd frame. Like gzip members, zstd frames may follow one
// another in a file (RFC 8878 3.1); zstd(1) reads them as one stream. One
// ZSTD_compress2 per frame compresses straight from the input buffer, which
// the streaming API would copy into its window first: on this log's JSON that
// costs about 20% more CPU. Frames of 1 MiB make the output about 5% larger
// than one frame for the whole file.
constexpr size_t kZstdFrame = 1024 * 1024;

// Streams `in` to `out` as zstd frames, each with a content checksum.
absl::Status WriteZstd(int in, int out, const std::string& src,
                       const std::string& tmp, const std::atomic<bool>& stop) {
  // Level 1: on this log's JSON it takes about a third of the CPU time of
  // libdeflate's level 1 (reading the file included), for half the output
  // (bench/README.md, "Log compression"; bench/pipeline/compress_bench).
  std::unique_ptr<ZSTD_CCtx, ZstdFree> cctx(ZSTD_createCCtx());
  if (!cctx) return absl::ResourceExhaustedError("zstd: out of memory");
  for (auto [param, value] : {std::pair{ZSTD_c_compressionLevel, 1},
                              std::pair{ZSTD_c_checksumFlag, 1}}) {
    if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx.get(), param, value))) {
      return absl::InternalError("zstd: cannot set up the compressor");
    }
  }
  // Not value-initialized: only the pages a frame's output reaches get touched.
  const size_t out_size = ZSTD_compressBound(kZstdFrame);
  std::unique_ptr<unsigned char[]> in_buf(new unsigned char[kZstdFrame]);
  std::unique_ptr<unsigned char[]> out_buf(new unsigned char[out_size]);
  const std::string write_what = absl::StrCat("zstd: write ", tmp);
  bool wrote_frame = false;
  while (true) {
    if (stop.load(std::memory_order_relaxed)) {
      return absl::CancelledError(absl::StrCat("zstd ", src, ": interrupted"));
    }
    const ssize_t n = ReadBlock(in, in_buf.get(), kZstdFrame);
    if (n < 0) return ErrnoError(errno, absl::StrCat("zstd: read ", src));
    if (n == 0 && wrote_frame) break;
    // An empty source still gets one (empty) frame: a valid .zst file.
    const size_t out_n = ZSTD_compress2(cctx.get(), out_buf.get(), out_size, in_buf.get(),
                                        static_cast<size_t>(n));
    if (ZSTD_isError(out_n)) {
      return absl::InternalError(absl::StrCat("zstd ", src, ": compression failed: ",
                                              ZSTD_getErrorName(out_n)));
    }
    if (absl::Status s = WriteAll(out, out_buf.get(), out_n, write_what); !s.ok()) {
      return s;
    }
    wrote_frame = true;
    if (static_cast<size_t>(n) < kZstdFrame) break;  // the end of the file
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view CodecName(Compression codec) {
  switch (codec) {
    case Compression::kNone:
      return "none";
    case Compression::kGzip:
      return "gzip";
    case Compression::kZstd:
      return "zstd";
  }
  return "none";
}

absl::Status CompressFileAt(int dir_fd, Compression codec, const std::string& src,
                            const std::string& tmp, const std::string& dst,
                            const std::atomic<bool>& stop) {
  if (codec == Compression::kNone) {
    return absl::InvalidArgumentError("CompressFileAt: no codec");
  }
  const absl::string_view name = CodecName(codec);
  UniqueFd in(::openat(dir_fd, src.c_str(),
                       O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!in) return ErrnoError(errno, absl::StrCat(name, ": open ", src));
  struct stat st;
  if (::fstat(in.get(), &st) != 0) {
    return ErrnoError(errno, absl::StrCat(name, ": stat ", src));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(name, ": ", src, " is not a regular file; left alone"));
  }

  // A leftover temp file can only be from an interrupted earlier pass.
  ::unlinkat(dir_fd, tmp.c_str(), 0);
  UniqueFd out(::openat(dir_fd, tmp.c_str(),
                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        kLogFileMode));
  if (!out) return ErrnoError(errno, absl::StrCat(name, ": create ", tmp));
  UnlinkGuard remove_tmp(dir_fd, tmp);
  if (::fchmod(out.get(), kLogFileMode) != 0) {
    return ErrnoError(errno, absl::StrCat(name, ": chmod ", tmp));
  }

  absl::Status written = codec == Compression::kGzip
                             ? WriteGzip(in.get(), out.get(), src, tmp, stop)
                             : WriteZstd(in.get(), out.get(), src, tmp, stop);
  if (!written.ok()) return written;

  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  ::futimens(out.get(), times);  // cosmetic; failure is harmless
  if (::close(out.release()) != 0) {
    return ErrnoError(errno, absl::StrCat(name, ": close ", tmp));
  }
  if (::renameat(dir_fd, tmp.c_str(), dir_fd, dst.c_str()) != 0) {
    return ErrnoError(errno, absl::StrCat(name, ": rename ", tmp, " to ", dst));
  }
  remove_tmp.Disarm();
  if (::unlinkat(dir_fd, src.c_str(), 0) != 0 && errno != ENOENT) {
    return ErrnoError(errno, absl::StrCat(name, ": remove ", src));
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
    if (ParseTempFileName(policy.base, name) &&
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
  // Group the files of one backup (X.json and X.json.zst after a crash).
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
  if (policy.compress == Compression::kNone || first_kept >= backups.size()) {
    return errors;
  }

  // Compress all but the newest.
  for (size_t i = first_kept; i + 1 < backups.size(); ++i) {
    if (stop.load(std::memory_order_relaxed)) break;
    const std::vector<BackupName>& files_of_backup = backups[i];
    // Already compressed (with this codec or, before a change of
    // --log_compress, another one): left as it is.
    if (files_of_backup.front().compressed()) continue;
    BackupName plain = files_of_backup.front();
    BackupName packed = plain;
    packed.compression = policy.compress;
    const std::string src = BackupFileName(policy.base, plain);
    const std::string dst = BackupFileName(policy.base, packed);
    const std::string op(CodecName(policy.compress));
    if (files_of_backup.size() > 1) {
      // A compressed X.json.* was renamed into place complete; the crash came
      // before X.json was removed.
      if (::unlinkat(dir_fd, src.c_str(), 0) != 0 && errno != ENOENT) {
        fail(op, ErrnoError(errno, absl::StrCat("remove ", src)));
      }
      continue;
    }
    absl::Status s = CompressFileAt(dir_fd, policy.compress, src,
                                    TempFileName(policy.base, packed), dst, stop);
    if (!s.ok() && !absl::IsCancelled(s)) fail(op, s);
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
