// The daemon's configuration: parsed from flags (and --flagfile) once in main,
// validated here, then passed by value. Validation is pure so tests can drive it.
#ifndef HTTPTRACED_CONFIG_CONFIG_H_
#define HTTPTRACED_CONFIG_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace httptraced::config {

// How rotated log files are compressed.
enum class LogCompression : uint8_t { kNone, kGzip, kZstd };

struct Config {
  // Output.
  std::string log_dir = "/var/log/httptraced";
  bool to_stdout = false;
  uint64_t log_max_size_mb = 100;
  uint32_t log_max_files = 10;
  absl::Duration log_max_age = absl::ZeroDuration();
  LogCompression log_compress = LogCompression::kZstd;
  // What to trace.
  std::vector<uint32_t> pids;
  std::vector<uint16_t> ports;
  bool unix_sockets = true;  // Unix domain stream sockets as well as TCP
  // Only Unix connections with an end of one of these names (empty: all);
  // they then pass whatever --port says.
  std::vector<std::string> unix_paths;
  // TLS plaintext at libssl's SSL_read/SSL_write (uprobes), in these files
  // (empty: the distribution's libssl files, found at start).
  bool tls = true;
  std::vector<std::string> tls_libraries;
  // What records hold.
  uint32_t max_body_bytes = 16384;
  uint32_t max_header_bytes = 65536;
  bool capture_bodies = true;
  bool decode_bodies = true;  // gzip, deflate, zstd content decoded for the record
  std::vector<std::string> redact_headers;  // lowercase
  std::string host_name;
  // Kernel side.
  uint32_t max_capture_bytes = 65536;
  bool kernel_skip_bodies = true;
  bool fast_fd_filter = true;  // the payload program variant with plain loads, where allowed
  bool socket_tracepoints = true;  // most payload syscalls on sock_{send,recv}_length, where allowed
  uint32_t ring_buffer_mb = 16;
  uint32_t max_connections = 65536;
  std::string tracefs = "/sys/kernel/tracing";
  // Timing.
  absl::Duration request_timeout = absl::Seconds(60);
  absl::Duration conn_idle_timeout = absl::Minutes(10);
  absl::Duration stats_interval = absl::Seconds(60);
  int verbosity = 0;
};

// "1,22,333" -> {1,22,333}. Empty string -> {}. Rejects junk, zero, duplicates.
absl::StatusOr<std::vector<uint32_t>> ParsePidList(absl::string_view text);
absl::StatusOr<std::vector<uint16_t>> ParsePortList(absl::string_view text);
// "/run/app.sock, @admin" -> {"/run/app.sock", "@admin"}: Unix socket names
// as records write them (@ for an abstract name's leading NUL). Rejects names
// longer than sun_path holds, control characters, duplicates, more than 16.
absl::StatusOr<std::vector<std::string>> ParseUnixPathList(absl::string_view text);
// "/usr/lib/x86_64-linux-gnu/libssl.so.3,/opt/app/lib/libssl.so.1.1" -> the
// paths. Each must be absolute; at most 16, no duplicates.
absl::StatusOr<std::vector<std::string>> ParseLibraryList(absl::string_view text);
// "zstd", "gzip", "none"; "true" and "false" (the flag was a bool) mean zstd
// and none. Case-insensitive.
absl::StatusOr<LogCompression> ParseLogCompression(absl::string_view text);
// "Authorization, X-Api-Key" -> {"authorization","x-api-key"}; rejects invalid tokens.
absl::StatusOr<std::vector<std::string>> ParseHeaderList(absl::string_view text);

// Checks ranges and combinations; the message names the flag and what is allowed.
absl::Status Validate(const Config& config);

// Reads the flags (after absl::ParseCommandLine) into a validated Config.
absl::StatusOr<Config> FromFlags();

// Re-evaluates httptraced's flags from scratch for a reload (SIGHUP): every
// flag back to its default, then `args` (the original command line without
// argv[0]) applied in order, each --flagfile=FILE read anew. The result is
// validated; on error the message says which flag or file line is wrong.
absl::StatusOr<Config> Reparse(const std::vector<std::string>& args);

// Flags whose change needs a restart (they shape the kernel side), by name,
// for two configurations.
std::vector<std::string> RestartOnlyChanges(const Config& before, const Config& after);

}  // namespace httptraced::config

#endif  // HTTPTRACED_CONFIG_CONFIG_H_
