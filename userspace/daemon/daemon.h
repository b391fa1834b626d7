// Daemon: the event loop tying the tracer, the connection table, the record
// builder and the output sink together.
#ifndef HTTPTRACED_DAEMON_DAEMON_H_
#define HTTPTRACED_DAEMON_DAEMON_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "bpf/tracer.h"
#include "config/config.h"
#include "conn/conn_table.h"
#include "daemon/drop_warnings.h"
#include "daemon/thread_clock.h"
#include "http/body_decoder.h"
#include "output/sink.h"
#include "proc/process_cache.h"
#include "record/out_buffer.h"
#include "record/record_builder.h"

namespace httptraced::daemon {

// Service-manager notifications (sd_notify): READY=1, STATUS=..., RELOADING=1,
// STOPPING=1. The default does nothing.
class Notifier {
 public:
  virtual ~Notifier() = default;
  virtual void Notify(const std::string& state) { (void)state; }
};

// What the daemon needs from main() to reload (SIGHUP).
struct ReloadHooks {
  // Re-reads the configuration (flags and flag files).
  std::function<absl::StatusOr<config::Config>()> reparse;
  // Opens the output a configuration asks for.
  std::function<absl::StatusOr<std::unique_ptr<output::RecordSink>>(const config::Config&)>
      open_sink;
};

struct DaemonStats {
  uint64_t events = 0;
  uint64_t payload_bytes = 0;
  uint64_t decode_errors = 0;
  uint64_t records = 0;  // built (written or lost: see the sink's stats)
  uint64_t skip_errors = 0;  // body skips the kernel's map had no room for
  // Wall time the main thread spent in the output's writes, neither running
  // nor waiting for a CPU: blocked on a disk (or a reader of standard output)
  // slower than the records come. Tens of ms a minute on a healthy host.
  uint64_t output_wait_ns = 0;
};

class Daemon final : public bpf::SampleHandler,
                     public conn::ExchangeSink,
                     public conn::ConnController {
 public:
  Daemon(const config::Config& config, std::unique_ptr<output::RecordSink> sink,
         ReloadHooks reload = {}, Notifier* notifier = nullptr);

  // Runs until SIGTERM/SIGINT arrives on signal_fd (a signalfd), then detaches,
  // drains the ring buffer, writes in-flight exchanges as incomplete and returns.
  // SIGUSR1 reopens the log file. SIGHUP reloads the configuration (all but the
  // kernel-side flags, which need a restart) and reopens the log; no record is lost.
  absl::Status Run(bpf::Tracer& tracer, int signal_fd);

  // Applies a new configuration (what SIGHUP does after re-reading it).
  absl::Status Reconfigure(const config::Config& next);

  // bpf::SampleHandler
  void OnSample(std::string_view sample) override;
  // conn::ExchangeSink
  void OnExchange(const conn::ConnInfo& conn, http::Exchange&& exchange) override;
  // conn::ConnController
  void StopTracing(const conn::ConnKey& key) override;
  void Forget(const conn::ConnKey& key) override;
  uint64_t KernelDrops() override;
  bool KernelAhead(const conn::ConnKey& key, const uint64_t consumed[2]) override;
  void SkipBody(const conn::ConnKey& key, http::Direction dir, uint64_t from,
                uint64_t until) override;
  void ClearSkips(const conn::ConnKey& key) override;

  const DaemonStats& stats() const { return stats_; }
  std::string StatsLine() const;

 private:
  // Says on stderr what the ring buffer lost since the last warning (DropWarnings).
  void WarnOfDrops(bool at_exit);
  void Flush();
  void Tick(uint64_t now_ns);
  void RefreshClock();
  void Reload();
  std::string Status() const;

  config::Config config_;
  std::unique_ptr<output::RecordSink> sink_;
  ReloadHooks reload_;
  Notifier default_notifier_;
  Notifier* notifier_;
  bpf::Tracer* tracer_ = nullptr;
  conn::ConnTable table_;
  std::unique_ptr<record::RecordBuilder> builder_;
  std::unique_ptr<http::BodyDecoder> decoder_;  // null: bodies recorded as sent
  // What records share: per-connection parts, the last start time.
  record::RecordCache record_cache_;
  proc::ProcessCache processes_;
  record::ClockOffset clock_;
  record::OutBuffer batch_;
  uint64_t batch_started_ns_ = 0;
  uint64_t now_ns_ = 0;
  DaemonStats stats_;
  DropWarnings drop_warnings_;
  ThreadClock thread_clock_;  // of the thread in Run()
  absl::Status last_decode_error_;
  // Connections released (hibernated, closed, expired, evicted) at the last
  // malloc_trim, and how many more make the next one worth it.
  uint64_t released_at_trim_ = 0;
  static constexpr uint64_t kTrimAfterReleases = 1024;
};

}  // namespace httptraced::daemon

#endif  // HTTPTRACED_DAEMON_DAEMON_H_
