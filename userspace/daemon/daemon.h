// Daemon: the event loop tying the tracer, the connection table, the record
// builder and the output sink together.
#ifndef HTTPTRACED_DAEMON_DAEMON_H_
#define HTTPTRACED_DAEMON_DAEMON_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "bpf/tracer.h"
#include "config/config.h"
#include "conn/conn_table.h"
#include "output/sink.h"
#include "proc/process_cache.h"
#include "record/record_builder.h"

namespace httptraced::daemon {

struct DaemonStats {
  uint64_t events = 0;
  uint64_t payload_bytes = 0;
  uint64_t decode_errors = 0;
  uint64_t records = 0;  // built (written or lost: see the sink's stats)
};

class Daemon final : public bpf::SampleHandler,
                     public conn::ExchangeSink,
                     public conn::ConnController {
 public:
  Daemon(const config::Config& config, output::RecordSink& sink);

  // Runs until SIGTERM/SIGINT arrives on signal_fd (a signalfd), then detaches,
  // drains the ring buffer, writes in-flight exchanges as incomplete and returns.
  // SIGUSR1 and SIGHUP reopen the log file.
  absl::Status Run(bpf::Tracer& tracer, int signal_fd);

  // bpf::SampleHandler
  void OnSample(std::string_view sample) override;
  // conn::ExchangeSink
  void OnExchange(const conn::ConnInfo& conn, http::Exchange&& exchange) override;
  // conn::ConnController
  void StopTracing(const conn::ConnKey& key) override;

  const DaemonStats& stats() const { return stats_; }
  std::string StatsLine() const;

 private:
  void Flush();
  void Tick(uint64_t now_ns);
  void RefreshClock();

  config::Config config_;
  output::RecordSink& sink_;
  bpf::Tracer* tracer_ = nullptr;
  conn::ConnTable table_;
  record::RecordBuilder builder_;
  proc::ProcessCache processes_;
  record::ClockOffset clock_;
  std::string batch_;
  uint64_t batch_started_ns_ = 0;
  uint64_t now_ns_ = 0;
  DaemonStats stats_;
  absl::Status last_decode_error_;
};

}  // namespace httptraced::daemon

#endif  // HTTPTRACED_DAEMON_DAEMON_H_
