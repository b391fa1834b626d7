#include "config/config.h"

#include <unistd.h>

#include <algorithm>
#include <climits>

#include <fstream>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "httptraced_abi.h"

ABSL_FLAG(std::string, log_dir, "/var/log/httptraced",
          "Directory for the JSON log: active file httptraced.json, rotated files beside it. "
          "Created with mode 0750; refused if it is a symlink or writable by group or others.");
ABSL_FLAG(bool, stdout, false,
          "Write records to standard output instead of the log directory (containers, journald).");
ABSL_FLAG(uint64_t, log_max_size_mb, 100,
          "Rotate the active log file when it would grow past this many MiB (1..1048576).");
ABSL_FLAG(uint32_t, log_max_files, 10,
          "Rotated files to keep (0..1000); older ones are deleted. All but the newest are "
          "compressed as --log_compress says.");
ABSL_FLAG(absl::Duration, log_max_age, absl::ZeroDuration(),
          "Also rotate a non-empty active file older than this (e.g. 1h); 0 turns it off.");
ABSL_FLAG(std::string, log_compress, "zstd",
          "Compress rotated files other than the newest: zstd (.json.zst), gzip (.json.gz) or "
          "none. true and false, from older configurations, mean zstd and none.");
ABSL_FLAG(std::string, pid, "",
          "Comma-separated process ids to trace (at most 16); empty traces every process.");
ABSL_FLAG(std::string, port, "",
          "Comma-separated TCP ports (at most 16); a connection is traced when either end "
          "uses one. Empty traces every port.");
ABSL_FLAG(bool, unix_sockets, true,
          "Also trace HTTP over Unix domain stream sockets (a proxy in front of an app server's "
          "socket file, a local API socket); --port never matches them.");
ABSL_FLAG(std::string, unix_path, "",
          "Comma-separated Unix socket names (at most 16; @name for an abstract one): a Unix "
          "domain connection is traced only when either end has one of them, whatever --port "
          "says. Empty traces every Unix connection (none when --port is set).");
ABSL_FLAG(bool, tls, true,
          "Also trace HTTPS: the plaintext that processes pass to OpenSSL's libssl "
          "(SSL_read/SSL_write) or GnuTLS's libgnutls (gnutls_record_recv/_send), through "
          "uprobes on the library file. Programs with their own TLS stack (Go, statically "
          "linked OpenSSL) are not seen.");
ABSL_FLAG(std::string, tls_libraries, "",
          "Comma-separated libssl or libgnutls files to probe for --tls (at most 16; absolute "
          "paths, e.g. a container's or an application's own copy), and no other. Empty: the "
          "libssl.so.* and libgnutls.so.* files in the system library directories, and every "
          "other such file a process maps "
          "(found in /proc as processes start: containers' and bundled copies, deleted files "
          "still in use).");
ABSL_FLAG(uint32_t, max_body_bytes, 16384,
          "Body bytes kept per request and per response (0..1048576); records keep the true "
          "size and a truncated flag.");
ABSL_FLAG(uint32_t, max_header_bytes, 65536,
          "Bytes of request/status line plus headers buffered per message (1024..1048576); "
          "beyond it headers are dropped and the record says so.");
ABSL_FLAG(bool, capture_bodies, true, "Record body contents; off keeps only body sizes.");
ABSL_FLAG(bool, decode_bodies, true,
          "Record the content of a body sent with Content-Encoding gzip, deflate, zstd or br "
          "decoded (its first --max_body_bytes decoded bytes); off records it as sent.");
ABSL_FLAG(std::string, redact_headers, "authorization,proxy-authorization,cookie,set-cookie",
          "Comma-separated header names whose values are written as \"[REDACTED]\". Setting "
          "this flag replaces the list; an empty value redacts nothing.");
ABSL_FLAG(std::string, host_name, "", "host.name in records; empty uses the system host name.");
ABSL_FLAG(uint32_t, max_capture_bytes, 65536,
          "Payload bytes copied from the kernel per syscall (256..1048576): of a larger read or "
          "write, its head and its last min(4 KiB, a quarter); the bytes between are skipped "
          "but still counted, so parsing stays in step.");
ABSL_FLAG(bool, kernel_skip_bodies, true,
          "Tell the kernel not to copy the bytes of a body past --max_body_bytes (bodies with "
          "a Content-Length, 64 KiB or more past the cap): they are counted, not copied. Off "
          "copies them and discards them in the daemon.");
ABSL_FLAG(bool, fast_fd_filter, true,
          "Where the kernel lets BPF programs read kernel memory with plain loads (Linux "
          "6.16+), reads and writes of files, pipes and ttys are dropped without a helper "
          "call; false loads the portable program everywhere.");
ABSL_FLAG(bool, socket_tracepoints, true,
          "Where the kernel has the socket tracepoints sock_send_length and sock_recv_length "
          "(Linux 6.4+) and --fast_fd_filter applies, take the payload of read, write, readv, "
          "writev, recvfrom, sendto, recvmsg and sendmsg there instead of at those syscalls' "
          "exits: other reads and writes then run nothing of httptraced's, and socket ones "
          "skip the per-syscall tracepoint's overhead.");
ABSL_FLAG(uint32_t, ring_buffer_mb, 16,
          "Size of the kernel-to-daemon ring buffer in MiB, a power of two (1..1024).");
ABSL_FLAG(uint32_t, max_connections, 65536,
          "Connections tracked at once, in the kernel map and in the daemon (1024..4194304).");
ABSL_FLAG(std::string, tracefs, "/sys/kernel/tracing",
          "Where tracefs is (mounted there when it is missing).");
ABSL_FLAG(absl::Duration, request_timeout, absl::Seconds(60),
          "A request unanswered after this, with no byte of a response for as long, is "
          "written as incomplete (1s..24h).");
ABSL_FLAG(absl::Duration, conn_idle_timeout, absl::Minutes(10),
          "A connection with no traffic for this long is forgotten (10s..7d).");
ABSL_FLAG(absl::Duration, stats_interval, absl::Seconds(60),
          "Print a stats line on stderr this often; 0 prints only at exit.");
ABSL_FLAG(int, verbosity, 0, "Log detail on stderr: 0 warnings, 1 info, 2 debug (libbpf too).");

namespace httptraced::config {
namespace {

template <typename T>
absl::StatusOr<std::vector<T>> ParseNumberList(absl::string_view text, absl::string_view flag,
                                               uint64_t max) {
  std::vector<T> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    uint64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v == 0 || v > max) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flag, ": \"", part, "\" is not a number between 1 and ", max));
    }
    if (std::find(out.begin(), out.end(), static_cast<T>(v)) != out.end()) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", v, " is listed twice"));
    }
    out.push_back(static_cast<T>(v));
  }
  if (out.size() > HT_MAX_FILTER) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": at most ", HT_MAX_FILTER, " values, got ", out.size()));
  }
  return out;
}

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
}

absl::Status Range(absl::string_view flag, uint64_t v, uint64_t lo, uint64_t hi) {
  if (v >= lo && v <= hi) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, "=", v, " is out of range: allowed ", lo, "..", hi));
}

absl::Status DurationRange(absl::string_view flag, absl::Duration v, absl::Duration lo,
                           absl::Duration hi) {
  if (v >= lo && v <= hi) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", absl::FormatDuration(v),
                                                 " is out of range: allowed ",
                                                 absl::FormatDuration(lo), "..",
                                                 absl::FormatDuration(hi)));
}

}  // namespace

absl::StatusOr<std::vector<uint32_t>> ParsePidList(absl::string_view text) {
  return ParseNumberList<uint32_t>(text, "pid", 4194304);  // PID_MAX_LIMIT
}

absl::StatusOr<std::vector<uint16_t>> ParsePortList(absl::string_view text) {
  return ParseNumberList<uint16_t>(text, "port", 65535);
}

absl::StatusOr<std::vector<std::string>> ParseLibraryList(absl::string_view text) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    if (part.front() != '/') {
      return absl::InvalidArgumentError(absl::StrCat(
          "--tls_libraries: \"", absl::CEscape(part), "\" is not an absolute path"));
    }
    if (std::any_of(part.begin(), part.end(),
                    [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--tls_libraries: \"", absl::CEscape(part), "\" has a control character"));
    }
    if (std::find(out.begin(), out.end(), part) != out.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls_libraries: ", part, " is listed twice"));
    }
    out.emplace_back(part);
  }
  if (out.size() > HT_MAX_FILTER) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_libraries: at most ", HT_MAX_FILTER, " files, got ", out.size()));
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ParseUnixPathList(absl::string_view text) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    // sun_path holds 108 bytes: a path and its NUL, or an abstract name
    // (written @name, as records and ss show it) without one.
    const size_t max = part.front() == '@' ? 108 : 107;
    if (part.size() > max || (part.front() == '@' && part.size() == 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--unix_path: \"", part, "\" is not a Unix socket name (a path of at most 107 bytes, "
          "or @ and an abstract name of at most 107)"));
    }
    if (std::any_of(part.begin(), part.end(),
                    [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
      return absl::InvalidArgumentError(
          absl::StrCat("--unix_path: \"", absl::CEscape(part), "\" has a control character"));
    }
    if (std::find(out.begin(), out.end(), part) != out.end()) {
      return absl::InvalidArgumentError(absl::StrCat("--unix_path: ", part, " is listed twice"));
    }
    out.emplace_back(part);
  }
  if (out.size() > HT_MAX_FILTER) {
    return absl::InvalidArgumentError(
        absl::StrCat("--unix_path: at most ", HT_MAX_FILTER, " names, got ", out.size()));
  }
  return out;
}

absl::StatusOr<LogCompression> ParseLogCompression(absl::string_view text) {
  const std::string v = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (v == "zstd" || v == "true") return LogCompression::kZstd;
  if (v == "gzip") return LogCompression::kGzip;
  if (v == "none" || v == "false") return LogCompression::kNone;
  return absl::InvalidArgumentError(absl::StrCat(
      "--log_compress: \"", text, "\" is not one of zstd, gzip, none"));
}

absl::StatusOr<std::vector<std::string>> ParseHeaderList(absl::string_view text) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    if (!std::all_of(part.begin(), part.end(), IsTokenChar)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--redact_headers: \"", part, "\" is not a valid header name"));
    }
    std::string name = absl::AsciiStrToLower(part);
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(std::move(name));
  }
  return out;
}

absl::Status Validate(const Config& c) {
  absl::Status checks[] = {
      Range("log_max_size_mb", c.log_max_size_mb, 1, 1048576),
      Range("log_max_files", c.log_max_files, 0, 1000),
      Range("max_body_bytes", c.max_body_bytes, 0, 1048576),
      Range("max_header_bytes", c.max_header_bytes, 1024, 1048576),
      Range("max_capture_bytes", c.max_capture_bytes, 256,
            static_cast<uint64_t>(HT_MAX_EVENTS_PER_SYSCALL) * HT_CHUNK_MAX),
      Range("ring_buffer_mb", c.ring_buffer_mb, 1, 1024),
      Range("max_connections", c.max_connections, 1024, 4194304),
      DurationRange("log_max_age", c.log_max_age, absl::ZeroDuration(), absl::Hours(24 * 366)),
      DurationRange("request_timeout", c.request_timeout, absl::Seconds(1), absl::Hours(24)),
      DurationRange("conn_idle_timeout", c.conn_idle_timeout, absl::Seconds(10),
                    absl::Hours(24 * 7)),
      DurationRange("stats_interval", c.stats_interval, absl::ZeroDuration(),
                    absl::Hours(24)),
  };
  for (absl::Status& s : checks) {
    if (!s.ok()) return s;
  }
  if (c.verbosity < 0 || c.verbosity > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("--verbosity=", c.verbosity, " is out of range: allowed 0..2"));
  }
  if ((c.ring_buffer_mb & (c.ring_buffer_mb - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ring_buffer_mb=", c.ring_buffer_mb, " must be a power of two"));
  }
  if (!c.to_stdout && (c.log_dir.empty() || c.log_dir[0] != '/')) {
    return absl::InvalidArgumentError(
        absl::StrCat("--log_dir=\"", c.log_dir, "\" must be an absolute path"));
  }
  if (c.tracefs.empty() || c.tracefs[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("--tracefs=\"", c.tracefs, "\" must be an absolute path"));
  }
  return absl::OkStatus();
}

namespace {

bool IsOurs(const absl::CommandLineFlag& flag) {
  return absl::EndsWith(flag.Filename(), "config/config.cc");
}

// Applies one "--name=value", "--name" or "--noname" argument.
absl::Status ApplyArg(absl::string_view arg, absl::string_view where) {
  absl::string_view body = arg;
  if (!absl::ConsumePrefix(&body, "--") && !absl::ConsumePrefix(&body, "-")) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": \"", arg, "\" is not a flag"));
  }
  absl::string_view name = body, value;
  bool has_value = false;
  if (size_t eq = body.find('='); eq != absl::string_view::npos) {
    name = body.substr(0, eq);
    value = body.substr(eq + 1);
    has_value = true;
  }
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  if (flag == nullptr && !has_value && absl::ConsumePrefix(&name, "no")) {
    flag = absl::FindCommandLineFlag(name);
    value = "false";
    has_value = flag != nullptr && flag->IsOfType<bool>();
  }
  if (flag == nullptr || !IsOurs(*flag)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": unknown flag --", name));
  }
  if (!has_value) {
    if (!flag->IsOfType<bool>()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": --", name, " needs a value"));
    }
    value = "true";
  }
  std::string error;
  if (!flag->ParseFrom(value, &error)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": --", name, ": ", error));
  }
  return absl::OkStatus();
}

absl::Status ApplyFlagfile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read flag file ", path));
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    // As absl reads flag files at startup: leading whitespace goes, the rest
    // of the line (trailing spaces too) is the value.
    absl::string_view arg = absl::StripLeadingAsciiWhitespace(line);
    if (arg.empty() || arg[0] == '#') continue;
    if (absl::Status s = ApplyArg(arg, absl::StrCat(path, ":", n)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Config> Reparse(const std::vector<std::string>& args) {
  for (auto& [name, flag] : absl::GetAllFlags()) {
    if (!IsOurs(*flag)) continue;
    std::string error;
    if (!flag->ParseFrom(flag->DefaultValue(), &error)) {
      return absl::InternalError(absl::StrCat("cannot reset --", name, ": ", error));
    }
  }
  for (const std::string& arg : args) {
    absl::string_view a = arg;
    if (absl::ConsumePrefix(&a, "--flagfile=")) {
      for (absl::string_view file : absl::StrSplit(a, ',', absl::SkipEmpty())) {
        if (absl::Status s = ApplyFlagfile(std::string(file)); !s.ok()) return s;
      }
    } else if (absl::Status s = ApplyArg(arg, "command line"); !s.ok()) {
      return s;
    }
  }
  return FromFlags();
}

std::vector<std::string> RestartOnlyChanges(const Config& a, const Config& b) {
  std::vector<std::string> out;
  if (a.pids != b.pids) out.push_back("pid");
  if (a.ports != b.ports) out.push_back("port");
  if (a.unix_sockets != b.unix_sockets) out.push_back("unix_sockets");
  if (a.unix_paths != b.unix_paths) out.push_back("unix_path");
  if (a.tls != b.tls) out.push_back("tls");
  if (a.tls_libraries != b.tls_libraries) out.push_back("tls_libraries");
  if (a.max_capture_bytes != b.max_capture_bytes) out.push_back("max_capture_bytes");
  if (a.fast_fd_filter != b.fast_fd_filter) out.push_back("fast_fd_filter");
  if (a.socket_tracepoints != b.socket_tracepoints) out.push_back("socket_tracepoints");
  if (a.ring_buffer_mb != b.ring_buffer_mb) out.push_back("ring_buffer_mb");
  if (a.max_connections != b.max_connections) out.push_back("max_connections");
  if (a.tracefs != b.tracefs) out.push_back("tracefs");
  if (a.verbosity != b.verbosity) out.push_back("verbosity");  // libbpf's log level
  return out;
}

absl::StatusOr<Config> FromFlags() {
  Config c;
  c.log_dir = absl::GetFlag(FLAGS_log_dir);
  c.to_stdout = absl::GetFlag(FLAGS_stdout);
  c.log_max_size_mb = absl::GetFlag(FLAGS_log_max_size_mb);
  c.log_max_files = absl::GetFlag(FLAGS_log_max_files);
  c.log_max_age = absl::GetFlag(FLAGS_log_max_age);
  absl::StatusOr<LogCompression> compress =
      ParseLogCompression(absl::GetFlag(FLAGS_log_compress));
  if (!compress.ok()) return compress.status();
  c.log_compress = *compress;
  absl::StatusOr<std::vector<uint32_t>> pids = ParsePidList(absl::GetFlag(FLAGS_pid));
  if (!pids.ok()) return pids.status();
  c.pids = *std::move(pids);
  absl::StatusOr<std::vector<uint16_t>> ports = ParsePortList(absl::GetFlag(FLAGS_port));
  if (!ports.ok()) return ports.status();
  c.ports = *std::move(ports);
  c.unix_sockets = absl::GetFlag(FLAGS_unix_sockets);
  absl::StatusOr<std::vector<std::string>> unix_paths =
      ParseUnixPathList(absl::GetFlag(FLAGS_unix_path));
  if (!unix_paths.ok()) return unix_paths.status();
  c.unix_paths = *std::move(unix_paths);
  c.tls = absl::GetFlag(FLAGS_tls);
  absl::StatusOr<std::vector<std::string>> tls_libraries =
      ParseLibraryList(absl::GetFlag(FLAGS_tls_libraries));
  if (!tls_libraries.ok()) return tls_libraries.status();
  c.tls_libraries = *std::move(tls_libraries);
  c.max_body_bytes = absl::GetFlag(FLAGS_max_body_bytes);
  c.max_header_bytes = absl::GetFlag(FLAGS_max_header_bytes);
  c.capture_bodies = absl::GetFlag(FLAGS_capture_bodies);
  c.decode_bodies = absl::GetFlag(FLAGS_decode_bodies);
  absl::StatusOr<std::vector<std::string>> redact =
      ParseHeaderList(absl::GetFlag(FLAGS_redact_headers));
  if (!redact.ok()) return redact.status();
  c.redact_headers = *std::move(redact);
  c.host_name = absl::GetFlag(FLAGS_host_name);
  if (c.host_name.empty()) {
    char buf[HOST_NAME_MAX + 1] = {};
    if (gethostname(buf, sizeof(buf) - 1) == 0) c.host_name = buf;
  }
  c.max_capture_bytes = absl::GetFlag(FLAGS_max_capture_bytes);
  c.kernel_skip_bodies = absl::GetFlag(FLAGS_kernel_skip_bodies);
  c.fast_fd_filter = absl::GetFlag(FLAGS_fast_fd_filter);
  c.socket_tracepoints = absl::GetFlag(FLAGS_socket_tracepoints);
  c.ring_buffer_mb = absl::GetFlag(FLAGS_ring_buffer_mb);
  c.max_connections = absl::GetFlag(FLAGS_max_connections);
  c.tracefs = absl::GetFlag(FLAGS_tracefs);
  c.request_timeout = absl::GetFlag(FLAGS_request_timeout);
  c.conn_idle_timeout = absl::GetFlag(FLAGS_conn_idle_timeout);
  c.stats_interval = absl::GetFlag(FLAGS_stats_interval);
  c.verbosity = absl::GetFlag(FLAGS_verbosity);
  if (absl::Status s = Validate(c); !s.ok()) return s;
  return c;
}

}  // namespace httptraced::config
