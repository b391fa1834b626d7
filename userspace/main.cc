// httptraced: records every HTTP/1.x exchange on this host as one JSON line.
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bpf/tls_libraries.h"
#include "bpf/tracer.h"
#include "config/config.h"
#include "daemon/daemon.h"
#include "output/rotating_log.h"
#include "output/stdout_sink.h"

namespace {

using httptraced::config::Config;
using httptraced::output::RecordSink;

int Fail(const absl::Status& status, int code) {
  std::fprintf(stderr, "httptraced: %s\n", std::string(status.message()).c_str());
  return code;
}

// sd_notify(3): a no-op when not started by systemd (NOTIFY_SOCKET unset).
class SystemdNotifier final : public httptraced::daemon::Notifier {
 public:
  void Notify(const std::string& state) override { sd_notify(0, state.c_str()); }
};

absl::StatusOr<std::unique_ptr<RecordSink>> OpenSink(const Config& config) {
  if (config.to_stdout) {
    httptraced::output::StdoutSink::Options options;
    options.on_event = [](const httptraced::output::SinkEvent& event) {
      std::fprintf(stderr, "httptraced: stdout: %s\n", event.ToString().c_str());
    };
    return std::make_unique<httptraced::output::StdoutSink>(std::move(options));
  }
  httptraced::output::RotatingLog::Options options;
  options.dir = config.log_dir;
  options.max_size_bytes = config.log_max_size_mb << 20;
  options.max_files = config.log_max_files;
  options.max_age = config.log_max_age;
  switch (config.log_compress) {
    case httptraced::config::LogCompression::kNone:
      options.compress = httptraced::output::Compression::kNone;
      break;
    case httptraced::config::LogCompression::kGzip:
      options.compress = httptraced::output::Compression::kGzip;
      break;
    case httptraced::config::LogCompression::kZstd:
      options.compress = httptraced::output::Compression::kZstd;
      break;
  }
  options.on_event = [](const httptraced::output::SinkEvent& event) {
    std::fprintf(stderr, "httptraced: log: %s\n", event.ToString().c_str());
  };
  absl::StatusOr<std::unique_ptr<httptraced::output::RotatingLog>> log =
      httptraced::output::RotatingLog::Open(std::move(options));
  if (!log.ok()) return log.status();
  return std::unique_ptr<RecordSink>(*std::move(log));
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "records every HTTP/1.x exchange on this host as one JSON line (ECS fields).\n"
      "Usage: httptraced [--log_dir=DIR | --stdout] [--pid=P,...] [--port=N,...] [flags]\n"
      "Runs as root (or with CAP_BPF, CAP_PERFMON). --flagfile=FILE reads flags from a file;\n"
      "SIGHUP re-reads it.");
  absl::FlagsUsageConfig usage;
  // --help lists httptraced's own flags (they live in config/config.cc).
  usage.contains_help_flags = [](absl::string_view path) {
    return absl::EndsWith(path, "config/config.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  usage.version_string = [] { return std::string("httptraced 0.1.0\n"); };
  absl::SetFlagsUsageConfig(usage);
  const std::vector<std::string> args(argv + 1, argv + argc);
  absl::ParseCommandLine(argc, argv);

  absl::StatusOr<Config> config = httptraced::config::FromFlags();
  if (!config.ok()) return Fail(config.status(), 2);

  // glibc's malloc raises its mmap threshold to the size of the largest
  // mmapped block freed (and its trim threshold to twice that): after libbpf
  // frees the kernel's BTF (megabytes, parsed once per skeleton instance that
  // loads programs), later blocks of that size come from the heap and stay
  // there once freed. With the programs loaded on two threads (Tracer::Load)
  // that kept 12 MiB resident in the second thread's arena for the daemon's
  // life (RSS 54.5 MiB at start, 41.9 with one thread). Fixed thresholds
  // instead (and the instances not kept closed, Tracer::Start): RSS
  // 42.6-42.8 MiB. 4 MiB is far above every per-event buffer
  // (bodies are kept up to --max_body_bytes, 16 KiB by default).
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 8 << 20);

  // Every map, program and attachment holds file descriptors (a tracepoint
  // or uprobe two: its perf event and BPF link): about 60 once tracing, more
  // while the programs load, and for each libssl file found later (per --pid
  // process with --pid) 20 more, or 5 as uprobe_multi links.
  // The soft limit (often 1024) goes up to the hard one; nothing here uses
  // select(), which the soft limit protects.
  if (rlimit nofile; getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }

  // Signals are taken synchronously by the event loop.
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&mask, sig);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  const int signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd < 0) return Fail(absl::InternalError("signalfd failed"), 1);
  signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<std::unique_ptr<RecordSink>> sink = OpenSink(*config);
  if (!sink.ok()) return Fail(sink.status(), 1);

  SystemdNotifier notifier;
  httptraced::daemon::ReloadHooks reload;
  reload.reparse = [&args] { return httptraced::config::Reparse(args); };
  reload.open_sink = OpenSink;
  httptraced::daemon::Daemon daemon(*config, *std::move(sink), std::move(reload), &notifier);

  httptraced::bpf::TracerOptions topts;
  topts.pids = config->pids;
  topts.ports = config->ports;
  topts.unix_sockets = config->unix_sockets;
  topts.unix_by_name = !config->unix_paths.empty();
  topts.self_tgid = static_cast<uint32_t>(getpid());
  topts.max_capture_bytes = config->max_capture_bytes;
  topts.ring_buffer_bytes = config->ring_buffer_mb << 20;
  topts.max_connections = config->max_connections;
  topts.tracefs = config->tracefs;
  topts.fast_fd_filter = config->fast_fd_filter;
  topts.socket_tracepoints = config->socket_tracepoints;
  topts.verbosity = config->verbosity;
  if (config->tls) {
    absl::StatusOr<std::vector<std::string>> libs =
        config->tls_libraries.empty()
            ? httptraced::bpf::FindTlsLibraries(httptraced::bpf::DefaultTlsLibraryDirs())
            : httptraced::bpf::CheckTlsLibraries(config->tls_libraries);
    if (!libs.ok()) return Fail(libs.status(), 2);
    if (libs->empty()) {
      std::fprintf(stderr,
                   "httptraced: no libssl or libgnutls found in the system library "
                   "directories: HTTPS is traced only in processes that map one of their own "
                   "(name other files with --tls_libraries)\n");
    }
    topts.tls_libraries = *std::move(libs);
    topts.tls_libraries_found = config->tls_libraries.empty();
    topts.tls_scan_processes = config->tls_libraries.empty();
  }
  auto tracer = httptraced::bpf::Tracer::Start(topts, &daemon);
  if (!tracer.ok()) return Fail(tracer.status(), 1);
  if (!(*tracer)->tls_warning().empty()) {
    std::fprintf(stderr, "httptraced: warning: %s\n", (*tracer)->tls_warning().c_str());
  } else {
    for (const auto& lib : (*tracer)->tls_libraries_probed()) {
      std::fprintf(stderr, "httptraced: TLS: %d %s functions probed in %s\n", lib.functions,
                   lib.library, lib.path.c_str());
    }
  }
  std::fprintf(stderr, "httptraced: tracing (%d tracepoints attached), writing to %s\n",
               (*tracer)->attached_programs(),
               config->to_stdout ? "standard output"
                                 : (config->log_dir + "/httptraced.json").c_str());

  if (absl::Status s = daemon.Run(**tracer, signal_fd); !s.ok()) return Fail(s, 1);
  close(signal_fd);
  return 0;
}
