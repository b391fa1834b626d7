#include "daemon/daemon.h"

#include <malloc.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bpf/event.h"

namespace httptraced::daemon {
namespace {

constexpr int kPollTimeoutMs = 50;              // bounds record latency and signal handling
constexpr uint64_t kTickNs = 50'000'000;        // holes, timeouts, rotation by age
constexpr uint64_t kFlushAfterNs = 200'000'000; // a record reaches the file within this
// or once this much is batched. ext4's buffered writes cost less per byte in
// larger calls (bench/README.md, "Log writes": 0.27-0.31 ms/MiB of the
// writing thread at 256 KiB, 0.23-0.24 at 1 MiB).
constexpr size_t kFlushBytes = 1024 * 1024;

uint64_t Now(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

conn::ConnTableOptions TableOptions(const config::Config& c) {
  conn::ConnTableOptions o;
  // Without body capture no body byte is kept: the parser only counts them,
  // and the kernel skips every body large enough to announce.
  o.session.max_body_bytes = c.capture_bodies ? c.max_body_bytes : 0;
  o.session.max_header_bytes = c.max_header_bytes;
  o.request_timeout_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(c.request_timeout));
  o.conn_idle_timeout_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(c.conn_idle_timeout));
  o.max_connections = c.max_connections;
  if (!c.kernel_skip_bodies) o.skip_body_min_bytes = 0;
  o.unix_names = c.unix_paths;
  return o;
}

record::RecordOptions BuilderOptions(const config::Config& c) {
  record::RecordOptions o;
  o.redact_headers = c.redact_headers;
  o.capture_bodies = c.capture_bodies;
  o.host_name = c.host_name;
  return o;
}

// Decodes coded bodies for the record, or nothing when no body is kept or
// --decode_bodies is off.
std::unique_ptr<http::BodyDecoder> MakeDecoder(const config::Config& c) {
  if (!c.capture_bodies || !c.decode_bodies || c.max_body_bytes == 0) return nullptr;
  return std::make_unique<http::BodyDecoder>(c.max_body_bytes);
}

}  // namespace

Daemon::Daemon(const config::Config& config, std::unique_ptr<output::RecordSink> sink,
               ReloadHooks reload, Notifier* notifier)
    : config_(config),
      sink_(std::move(sink)),
      reload_(std::move(reload)),
      notifier_(notifier != nullptr ? notifier : &default_notifier_),
      table_(TableOptions(config), *this, *this),
      builder_(std::make_unique<record::RecordBuilder>(BuilderOptions(config))),
      decoder_(MakeDecoder(config)),
      drop_warnings_(config.ring_buffer_mb, config.to_stdout ? Output::kStdout : Output::kLog) {
  RefreshClock();
  batch_.Reserve(kFlushBytes + 64 * 1024);
}

void Daemon::RefreshClock() {
  // Bracket the realtime read with two monotonic reads to bound the error.
  const uint64_t m1 = Now(CLOCK_MONOTONIC);
  const uint64_t r = Now(CLOCK_REALTIME);
  const uint64_t m2 = Now(CLOCK_MONOTONIC);
  clock_.realtime_minus_monotonic_ns =
      static_cast<int64_t>(r) - static_cast<int64_t>(m1 + (m2 - m1) / 2);
  now_ns_ = m2;
}

void Daemon::OnSample(std::string_view sample) {
  ++stats_.events;
  absl::StatusOr<bpf::Event> ev = bpf::DecodeEvent(sample);
  if (!ev.ok()) {
    if (stats_.decode_errors++ == 0) {
      std::fprintf(stderr, "httptraced: dropping malformed BPF event: %s\n",
                   ev.status().ToString().c_str());
    }
    return;
  }
  if (auto* data = std::get_if<bpf::DataEvent>(&*ev)) {
    stats_.payload_bytes += data->payload.size();
    table_.OnData(*data, now_ns_);
  } else if (auto* open = std::get_if<bpf::OpenEvent>(&*ev)) {
    const proc::ProcessImage image{.tgid = open->info.key.tgid,
                                   .start = open->info.proc_start,
                                   .exec_id = open->info.exec_id};
    const proc::ProcessInfo& process = processes_.Lookup(image, now_ns_);
    table_.OnOpen(*open, process.executable, process.container_id);
  } else if (auto* close = std::get_if<bpf::CloseEvent>(&*ev)) {
    table_.OnClose(*close);
  } else {
    const auto& exit = std::get<bpf::ExitEvent>(*ev);
    table_.OnProcessExit(exit);
    processes_.Forget(exit.tgid, exit.proc_start);
    if (tracer_ != nullptr) tracer_->ProcessExited(exit.tgid);
  }
}

void Daemon::OnExchange(const conn::ConnInfo& conn, http::Exchange&& exchange) {
  if (decoder_ != nullptr) {
    if (exchange.request) decoder_->Decode(*exchange.request);
    if (exchange.response) decoder_->Decode(*exchange.response);
  }
  if (batch_.empty()) batch_started_ns_ = now_ns_;
  builder_->Append(conn, exchange, record::ProcessDetails{conn.executable}, clock_, batch_,
                   &record_cache_);
  ++stats_.records;
  if (batch_.size() >= kFlushBytes) Flush();
}

void Daemon::Forget(const conn::ConnKey& key) {
  if (tracer_ == nullptr) return;
  if (absl::Status s = tracer_->Forget(key); !s.ok()) {
    std::fprintf(stderr, "httptraced: %s\n", s.ToString().c_str());
  }
}

void Daemon::WarnOfDrops(bool at_exit) {
  if (tracer_ == nullptr) return;
  const bpf::KernelCounters k = tracer_->ReadCounters();  // 8 map reads
  const ThreadTimes thread = thread_clock_.Read();
  const DrainTimes times{.cpu_ns = thread.cpu_ns,
                         .cpu_wait_ns = thread.runnable_ns,
                         .output_wait_ns = stats_.output_wait_ns};
  const std::string w =
      at_exit ? drop_warnings_.Final(now_ns_, k.ring_drops, k.ring_drop_bytes, times)
              : drop_warnings_.Observe(now_ns_, k.ring_drops, k.ring_drop_bytes, times);
  if (!w.empty()) std::fprintf(stderr, "%s\n", w.c_str());
}

uint64_t Daemon::KernelDrops() {
  return tracer_ == nullptr ? 0 : tracer_->ReadCounters().ring_drops;
}

bool Daemon::KernelAhead(const conn::ConnKey& key, const uint64_t consumed[2]) {
  return tracer_ != nullptr && tracer_->CountedOtherThan(key, consumed);
}

void Daemon::SkipBody(const conn::ConnKey& key, http::Direction dir, uint64_t from,
                      uint64_t until) {
  if (tracer_ == nullptr) return;
  if (absl::Status s = tracer_->SkipBody(key, static_cast<int>(dir), from, until); !s.ok()) {
    // The map is full: those bodies are copied and discarded here, as before.
    if (stats_.skip_errors++ == 0) {
      std::fprintf(stderr, "httptraced: %s (bodies are copied in full meanwhile)\n",
                   s.ToString().c_str());
    }
  }
}

void Daemon::ClearSkips(const conn::ConnKey& key) {
  if (tracer_ != nullptr) tracer_->ClearSkips(key);
}

void Daemon::StopTracing(const conn::ConnKey& key) {
  if (tracer_ == nullptr) return;
  if (absl::Status s = tracer_->Disable(key); !s.ok()) {
    std::fprintf(stderr, "httptraced: %s\n", s.ToString().c_str());
  }
}

void Daemon::Flush() {
  if (batch_.empty()) return;
  // Per batch (a MiB or 200 ms): how long the output kept the thread that
  // drains the ring from draining it, neither running nor waiting for a CPU.
  const uint64_t wall = Now(CLOCK_MONOTONIC);
  const ThreadTimes before = thread_clock_.Read();
  absl::Status s = sink_->Write(batch_.view());
  const ThreadTimes after = thread_clock_.Read();
  const uint64_t blocked = Now(CLOCK_MONOTONIC) - wall;
  const uint64_t accounted =
      (after.cpu_ns - before.cpu_ns) + (after.runnable_ns - before.runnable_ns);
  if (blocked > accounted) stats_.output_wait_ns += blocked - accounted;
  if (!s.ok()) {
    std::fprintf(stderr, "httptraced: log: %s\n", std::string(s.message()).c_str());
  }
  batch_.clear();
}

void Daemon::Tick(uint64_t now_ns) {
  table_.Tick(now_ns);
  sink_->Tick();
  // Many sessions hibernated or connections forgotten since the last trim:
  // give the freed heap back to the system, or RSS stays at its peak after
  // a burst of connections.
  const conn::ConnTableStats t = table_.stats_counters();
  const uint64_t released = t.hibernated + t.expired + t.evicted + t.closed + t.process_exited;
  if (released - released_at_trim_ >= kTrimAfterReleases) {
    malloc_trim(0);
    released_at_trim_ = released;
  }
}

absl::Status Daemon::Reconfigure(const config::Config& next) {
  for (const std::string& flag : config::RestartOnlyChanges(config_, next)) {
    std::fprintf(stderr, "httptraced: --%s changed: it takes effect at the next restart\n",
                 flag.c_str());
  }
  Flush();  // every record built so far goes to the current output
  const bool output_changed = next.to_stdout != config_.to_stdout ||
                              next.log_dir != config_.log_dir ||
                              next.log_max_size_mb != config_.log_max_size_mb ||
                              next.log_max_files != config_.log_max_files ||
                              next.log_max_age != config_.log_max_age ||
                              next.log_compress != config_.log_compress;
  if (output_changed && reload_.open_sink) {
    absl::StatusOr<std::unique_ptr<output::RecordSink>> sink = reload_.open_sink(next);
    if (!sink.ok()) return sink.status();  // keep writing where we were
    sink_ = *std::move(sink);
    drop_warnings_.set_output(next.to_stdout ? Output::kStdout : Output::kLog);
  } else if (absl::Status s = sink_->Reopen(); !s.ok()) {
    std::fprintf(stderr, "httptraced: reopening the log: %s\n", std::string(s.message()).c_str());
  }
  config::Config applied = next;
  // Kernel-side settings stay as loaded until a restart.
  applied.pids = config_.pids;
  applied.ports = config_.ports;
  applied.unix_paths = config_.unix_paths;
  applied.tls = config_.tls;
  applied.tls_libraries = config_.tls_libraries;
  applied.max_capture_bytes = config_.max_capture_bytes;
  applied.ring_buffer_mb = config_.ring_buffer_mb;
  applied.max_connections = config_.max_connections;
  applied.tracefs = config_.tracefs;
  applied.verbosity = config_.verbosity;
  config_ = std::move(applied);
  builder_ = std::make_unique<record::RecordBuilder>(BuilderOptions(config_));
  decoder_ = MakeDecoder(config_);
  table_.SetOptions(TableOptions(config_));
  return absl::OkStatus();
}

void Daemon::Reload() {
  notifier_->Notify("RELOADING=1");
  absl::Status status = absl::UnimplementedError("no configuration source to reload from");
  if (reload_.reparse) {
    absl::StatusOr<config::Config> next = reload_.reparse();
    status = next.ok() ? Reconfigure(*next) : next.status();
  }
  if (status.ok()) {
    std::fprintf(stderr, "httptraced: configuration reloaded\n");
  } else {
    std::fprintf(stderr, "httptraced: reload failed, keeping the running configuration: %s\n",
                 std::string(status.message()).c_str());
    // Still honour the reopen part of a reload (external log rotation).
    Flush();
    if (absl::Status s = sink_->Reopen(); !s.ok()) {
      std::fprintf(stderr, "httptraced: reopening the log: %s\n",
                   std::string(s.message()).c_str());
    }
  }
  notifier_->Notify("READY=1\nSTATUS=" + Status());
}

std::string Daemon::Status() const {
  const output::SinkStats& o = sink_->stats();
  bpf::KernelCounters k;
  if (tracer_ != nullptr) k = tracer_->ReadCounters();
  return absl::StrFormat("tracing %d connections; %d records written, %d lost; %d kernel drops",
                         table_.size(), o.records_written, o.records_lost, k.ring_drops);
}

std::string Daemon::StatsLine() const {
  const conn::ConnTableStats t = table_.stats();
  const output::SinkStats& o = sink_->stats();
  bpf::KernelCounters k;
  if (tracer_ != nullptr) k = tracer_->ReadCounters();
  return absl::StrFormat(
      "httptraced: stats events=%d bytes=%d records=%d written=%d lost=%d kernel_drops=%d "
      "kernel_drop_bytes=%d parse_errors=%d gaps=%d uncopied=%d connections=%d opened=%d "
      "evicted=%d "
      "resumed=%d hibernated=%d not_http=%d unix_filtered=%d decode_errors=%d body_skips=%d "
      "kernel_skipped_bytes=%d tls_unattributed=%d recycled_bytes=%d output_wait_ms=%d",
      stats_.events, stats_.payload_bytes, stats_.records, o.records_written, o.records_lost,
      k.ring_drops, k.ring_drop_bytes, t.parse_errors, t.gaps, t.uncopied, table_.size(), t.opened,
      t.evicted, t.resumed, t.hibernated, t.not_http + k.not_http, t.unix_filtered,
      stats_.decode_errors,
      t.body_skips, k.body_skipped, k.tls_no_fd, table_.recycled_bytes(),
      stats_.output_wait_ns / 1'000'000);
}

absl::Status Daemon::Run(bpf::Tracer& tracer, int signal_fd) {
  tracer_ = &tracer;
  thread_clock_ = ThreadClock();  // this thread's: it drains the ring
  // The programs are attached and the output is open: ready.
  notifier_->Notify("READY=1\nSTATUS=" + Status());
  uint64_t last_tick = Now(CLOCK_MONOTONIC);
  uint64_t last_status = last_tick;
  uint64_t last_clock = last_tick;
  uint64_t last_stats = last_tick;
  // The start of the first span a loss is put down to.
  now_ns_ = last_tick;
  WarnOfDrops(/*at_exit=*/false);
  bool stop = false;
  while (!stop) {
    now_ns_ = Now(CLOCK_MONOTONIC);
    // A backlog (the last poll stopped at its budget) is taken without waiting.
    absl::StatusOr<int> polled = tracer.Poll(tracer.more_pending() ? 0 : kPollTimeoutMs);
    if (!polled.ok()) return polled.status();
    now_ns_ = Now(CLOCK_MONOTONIC);

    signalfd_siginfo si;
    while (read(signal_fd, &si, sizeof(si)) == sizeof(si)) {
      if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
        stop = true;
      } else if (si.ssi_signo == SIGUSR1) {
        Flush();
        if (absl::Status s = sink_->Reopen(); !s.ok()) {
          std::fprintf(stderr, "httptraced: reopening the log: %s\n",
                       std::string(s.message()).c_str());
        }
      } else if (si.ssi_signo == SIGHUP) {
        Reload();
      }
    }
    tracer.ScanTls(now_ns_);  // at most every Tracer::kTlsScanEveryNs
    if (now_ns_ - last_tick >= kTickNs) {
      Tick(now_ns_);
      last_tick = now_ns_;
    }
    if (now_ns_ - last_clock >= 1'000'000'000) {
      RefreshClock();
      last_clock = now_ns_;
      WarnOfDrops(/*at_exit=*/false);  // within a second of a loss
    }
    if (!batch_.empty() && now_ns_ - batch_started_ns_ >= kFlushAfterNs) Flush();
    if (now_ns_ - last_status >= 5'000'000'000) {
      notifier_->Notify("STATUS=" + Status());
      last_status = now_ns_;
    }
    // Read each time: a reload may change it.
    const uint64_t stats_every =
        static_cast<uint64_t>(absl::ToInt64Nanoseconds(config_.stats_interval));
    if (stats_every > 0 && now_ns_ - last_stats >= stats_every) {
      std::fprintf(stderr, "%s\n", StatsLine().c_str());
      last_stats = now_ns_;
    }
  }
  // Shutdown: stop new events, take what the kernel already queued, then
  // finish every connection so in-flight exchanges are written as incomplete.
  notifier_->Notify("STOPPING=1\nSTATUS=stopping: draining and writing in-flight exchanges");
  // One instant for every hook, then what the kernel already queued.
  tracer.StopEvents();
  usleep(10'000);  // programs already running finish their event
  do {
    now_ns_ = Now(CLOCK_MONOTONIC);
    if (absl::StatusOr<int> drained = tracer.Drain(); !drained.ok()) {
      std::fprintf(stderr, "httptraced: %s\n", drained.status().ToString().c_str());
      break;
    }
  } while (tracer.more_pending());
  table_.FinishAll();
  Flush();
  WarnOfDrops(/*at_exit=*/true);
  std::fprintf(stderr, "%s\n", StatsLine().c_str());
  tracer.Detach();
  return absl::OkStatus();
}

}  // namespace httptraced::daemon
