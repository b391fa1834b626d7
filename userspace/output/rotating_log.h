// The JSON-lines log file operators tail and ship (Filebeat, Fluent Bit,
// Vector, rsyslog imfile), rotated by size and age.
//
// Files in Options::dir (see backup_name.h):
//   httptraced.json                           active; point shippers at this
//   httptraced-20261121T204559.123Z.json      newest backup, left uncompressed
//                                             so a shipper can finish it
//   httptraced-20261121T194559.120Z.json.zst  older backups, zstd (or .gz)
// Rotation is rename-then-create, so a shipper following the active path by
// name (and the renamed file by inode until it reaches EOF) sees every line
// exactly once. Compression and pruning run on a background thread.
//
// Guarantees: every line written lands whole in exactly one file, in order; a
// failed write leaves no partial line behind (the file is truncated back; we
// are its only writer). Lines that could not be written are counted in
// stats().records_lost.
//
// Failures: see sink_event.h. Write() returns a non-OK status only when a
// failing condition starts (or its cause changes); later identical failures
// return OK but are counted. The end of an outage, with the number of records
// lost during it, is reported once through Options::on_event (kRecovered).
// The sink retries on every Write() and Tick(): it recreates a removed
// directory (safely, with the same checks as Open()), and creates a new
// active file when the open one was deleted. If the active file was renamed
// away (external logrotate), writing continues into it until Reopen().
//
// Not thread-safe: call Write/Reopen/Tick from one thread (or serialize them).
#ifndef HTTPTRACED_OUTPUT_ROTATING_LOG_H_
#define HTTPTRACED_OUTPUT_ROTATING_LOG_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "output/backup_maintenance.h"
#include "output/backup_name.h"
#include "output/sink.h"
#include "output/sink_event.h"
#include "output/unique_fd.h"

namespace httptraced::output {

class RotatingLog final : public RecordSink {
 public:
  struct Options {
    // Created (0750, parents 0755) if missing. Refused if it is a symlink or
    // writable by group or others.
    std::string dir = "/var/log/httptraced";
    // Active file "<base_name>.json", backups
    // "<base_name>-<stamp>.json[.zst|.gz]".
    std::string base_name = "httptraced";
    // Rotate before a write would make the active file larger than this. A
    // single line longer than this gets a file of its own.
    uint64_t max_size_bytes = uint64_t{100} * 1024 * 1024;
    // Rotate the active file once its first record is this old; checked in
    // Tick(). Age counts from the first record written into an empty file;
    // for a file that was already non-empty when opened, from its creation
    // (statx btime; the open time where the filesystem has none). An empty
    // file never rotates. Zero: off.
    absl::Duration max_age = absl::ZeroDuration();
    // Backups kept (.json, .json.zst and .json.gz alike); the oldest are
    // deleted.
    size_t max_files = 10;
    // Compress every backup but the newest, on the background thread, with
    // this codec; kNone keeps them plain.
    Compression compress = Compression::kZstd;
    // Condition reports that have no return value to travel in (see
    // sink_event.h). Called on the caller's thread. May be null.
    EventCallback on_event;
    // Test hook: replaces write(2) for the active file. Null: ::write.
    WriteFn write_fn;
    // Disk space reserved ahead of the active file's end on ext4, with
    // fallocate(FALLOC_FL_KEEP_SIZE): appending into blocks already allocated
    // skips ext4's per-page delayed-allocation work; the log's write path took
    // 0.74-0.83 of the CPU (bench/pipeline/log_write_bench; README, "The log
    // file"). The file's size is unchanged (a
    // shipper or `tail -f` sees nothing of it); the reserve is released when the
    // file is rotated. Zero: off. Other filesystems: never reserved.
    uint64_t reserve_ahead_bytes = uint64_t{8} * 1024 * 1024;
    // Nothing is reserved while the filesystem has less than this available,
    // so the reserve never takes the last space others need.
    uint64_t reserve_min_free_bytes = uint64_t{1} << 30;
    // Test hook: replaces fallocate(2) for the reserve. Null: ::fallocate.
    std::function<int(int fd, int mode, off_t offset, off_t len)> fallocate_fn;
  };

  // Opens (creating if needed) the directory and the active file, and starts
  // the background thread, which prunes/compresses leftover backups at once.
  // `clock` names backups and measures age (tests inject a fake one).
  static absl::StatusOr<std::unique_ptr<RotatingLog>> Open(
      Options options, Clock clock = absl::Now);

  ~RotatingLog() override = default;  // the worker joins first (last member)
  RotatingLog(const RotatingLog&) = delete;
  RotatingLog& operator=(const RotatingLog&) = delete;

  // One write(2) per call unless the batch must be split for rotation or the
  // kernel writes short.
  absl::Status Write(std::string_view lines) override;
  // Reopens the directory and active path (creating them if missing), e.g.
  // after an external logrotate renamed the file. On failure the previous
  // file stays in use, if it still works, and the error is returned.
  absl::Status Reopen() override;
  // Rotates by age, retries a failed directory/file, and reports background
  // (compression/pruning) problems. Call every second or so.
  void Tick() override;
  const SinkStats& stats() const override { return stats_; }

  // True while output is failing (records being lost).
  bool failing() const { return outage_.failing(); }
  // Blocks until the background thread has nothing left to do. For tests and
  // orderly shutdown; Write() never needs it.
  void WaitForBackgroundWork() { worker_->WaitIdle(); }
  std::string active_path() const;

 private:
  RotatingLog(Options options, Clock clock);

  struct ActiveFile {
    UniqueFd fd;
    uint64_t size = 0;
    bool tail_incomplete = false;  // does not end in '\n'
    std::optional<absl::Time> first_record;
  };
  absl::StatusOr<ActiveFile> OpenActiveAt(int dir_fd) const;
  void Adopt(ActiveFile file);

  // Makes file_ usable: reopens a deleted file, recreates a removed
  // directory, rotates away a file whose tail is a partial line.
  absl::Status EnsureWritable();
  // Opens dir and active file by path; keeps the old ones on failure.
  absl::Status ReopenFromPath();
  // Renames the active file to a new backup name and creates a new one.
  // On failure, file_ is still open if the rename itself failed, closed if
  // the new file could not be created.
  absl::Status Rotate();
  absl::Status WriteChunk(std::string_view chunk);
  // Extends the reserve (Options::reserve_ahead_bytes) to cover `incoming`
  // more bytes. Best effort: a failure turns it off for this file.
  void ReserveAhead(uint64_t incoming);
  // Frees the blocks reserved past the end of the file (ftruncate to its own
  // size, which never changes its contents).
  void ReleaseReserve();

  // Records a failure that lost `records`; returns what Write() should return.
  absl::Status Fail(const absl::Status& cause, uint64_t records,
                    bool write_attempt);
  void Succeeded();
  void Warn(absl::string_view key, absl::Status status);
  void Emit(SinkEvent event);
  void ReportBackgroundErrors();

  const Options options_;
  const Clock clock_;
  const std::string active_name_;
  std::shared_ptr<const UniqueFd> dir_;
  UniqueFd file_;
  uint64_t size_ = 0;
  // When the first record went into the current (non-empty) file.
  std::optional<absl::Time> first_record_;
  // The current file may end in a partial line (a truncate after a failed
  // write failed, or a crash in an earlier run): rotate it away before
  // appending, so the fragment ends its file and line-based readers never
  // join it to the next record.
  bool tail_incomplete_ = false;
  bool file_deleted_ = false;  // noticed that the open file was deleted
  // The current file is on ext4 and reserving has not failed for it.
  bool reserve_ok_ = false;
  // Allocated up to here (at least size_): what the last reserve covered.
  uint64_t reserved_end_ = 0;
  std::optional<BackupName> last_backup_;  // newest backup name used or seen
  SinkStats stats_;
  OutageTracker outage_;
  WarningDeduper rotate_warnings_;
  WarningDeduper background_warnings_;
  std::unique_ptr<BackupWorker> worker_;  // last: joined before the rest dies
};

}  // namespace httptraced::output

#endif  // HTTPTRACED_OUTPUT_ROTATING_LOG_H_
