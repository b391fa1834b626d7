#include "config/config.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>

#include "absl/strings/match.h"

namespace httptraced::config {
namespace {

TEST_CASE("ParsePidList") {
  CHECK(ParsePidList("").value().empty());
  CHECK(ParsePidList("1, 22,333").value() == std::vector<uint32_t>{1, 22, 333});
  CHECK(ParsePidList("12x").status().message() ==
        "--pid: \"12x\" is not a number between 1 and 4194304");
  CHECK(ParsePidList("0").status().message() ==
        "--pid: \"0\" is not a number between 1 and 4194304");
  CHECK(ParsePidList("-5").status().message() ==
        "--pid: \"-5\" is not a number between 1 and 4194304");
  CHECK(ParsePidList("7,7").status().message() == "--pid: 7 is listed twice");
  CHECK(ParsePidList("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16").value().size() == 16);
  CHECK(ParsePidList("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17").status().message() ==
        "--pid: at most 16 values, got 17");
}

TEST_CASE("ParsePortList") {
  CHECK(ParsePortList("80,8080").value() == std::vector<uint16_t>{80, 8080});
  CHECK(ParsePortList("65535").value() == std::vector<uint16_t>{65535});
  CHECK(ParsePortList("65536").status().message() ==
        "--port: \"65536\" is not a number between 1 and 65535");
  CHECK(ParsePortList("http").status().message() ==
        "--port: \"http\" is not a number between 1 and 65535");
}

TEST_CASE("ParseUnixPathList") {
  CHECK(ParseUnixPathList("").value().empty());
  CHECK(ParseUnixPathList(" /run/app.sock, @admin ,relative.sock").value() ==
        std::vector<std::string>{"/run/app.sock", "@admin", "relative.sock"});
  CHECK(ParseUnixPathList(std::string(107, 'p')).value().size() == 1);
  CHECK(ParseUnixPathList("@" + std::string(107, 'a')).value().size() == 1);
  CHECK(ParseUnixPathList(std::string(108, 'p')).status().message() ==
        "--unix_path: \"" + std::string(108, 'p') +
            "\" is not a Unix socket name (a path of at most 107 bytes, or @ and an abstract "
            "name of at most 107)");
  CHECK_FALSE(ParseUnixPathList("@" + std::string(108, 'a')).ok());
  CHECK_FALSE(ParseUnixPathList("@").ok());
  CHECK(ParseUnixPathList("/a\tb").status().message() ==
        "--unix_path: \"/a\\tb\" has a control character");
  CHECK(ParseUnixPathList("/x,/x").status().message() == "--unix_path: /x is listed twice");
  std::string seventeen;
  for (int i = 0; i < 17; ++i) seventeen += "/s" + std::to_string(i) + ",";
  CHECK(ParseUnixPathList(seventeen).status().message() ==
        "--unix_path: at most 16 names, got 17");
}

TEST_CASE("ParseLibraryList") {
  CHECK(ParseLibraryList("").value().empty());
  CHECK(ParseLibraryList(" /usr/lib/libssl.so.3 , /opt/app/libssl.so.1.1").value() ==
        std::vector<std::string>{"/usr/lib/libssl.so.3", "/opt/app/libssl.so.1.1"});
  CHECK(ParseLibraryList("libssl.so.3").status().message() ==
        "--tls_libraries: \"libssl.so.3\" is not an absolute path");
  CHECK(ParseLibraryList("/a/libssl.so.3,/a/libssl.so.3").status().message() ==
        "--tls_libraries: /a/libssl.so.3 is listed twice");
  CHECK(ParseLibraryList("/a\tb").status().message() ==
        "--tls_libraries: \"/a\\tb\" has a control character");
  std::string seventeen;
  for (int i = 0; i < 17; ++i) seventeen += "/lib" + std::to_string(i) + ",";
  CHECK(ParseLibraryList(seventeen).status().message() ==
        "--tls_libraries: at most 16 files, got 17");
}

TEST_CASE("ParseHeaderList lowercases and rejects invalid names") {
  CHECK(ParseHeaderList("Authorization, X-Api-Key,authorization").value() ==
        std::vector<std::string>{"authorization", "x-api-key"});
  CHECK(ParseHeaderList("").value().empty());
  CHECK(ParseHeaderList("bad header").status().message() ==
        "--redact_headers: \"bad header\" is not a valid header name");
  CHECK(ParseHeaderList("x:y").status().message() ==
        "--redact_headers: \"x:y\" is not a valid header name");
}

TEST_CASE("ParseLogCompression: codecs, the old booleans, and junk") {
  CHECK(*ParseLogCompression("zstd") == LogCompression::kZstd);
  CHECK(*ParseLogCompression("gzip") == LogCompression::kGzip);
  CHECK(*ParseLogCompression("none") == LogCompression::kNone);
  CHECK(*ParseLogCompression(" GZIP ") == LogCompression::kGzip);
  // The flag was a bool: configurations written for it keep working.
  CHECK(*ParseLogCompression("true") == LogCompression::kZstd);
  CHECK(*ParseLogCompression("false") == LogCompression::kNone);
  CHECK(ParseLogCompression("xz").status().message() ==
        "--log_compress: \"xz\" is not one of zstd, gzip, none");
  CHECK(ParseLogCompression("").status().message() ==
        "--log_compress: \"\" is not one of zstd, gzip, none");
}

TEST_CASE("log_compress defaults to zstd and is read from flags") {
  absl::StatusOr<Config> c = Reparse({});
  REQUIRE(c.ok());
  CHECK(c->log_compress == LogCompression::kZstd);
  c = Reparse({"--log_compress=gzip"});
  REQUIRE(c.ok());
  CHECK(c->log_compress == LogCompression::kGzip);
  c = Reparse({"--log_compress=false"});
  REQUIRE(c.ok());
  CHECK(c->log_compress == LogCompression::kNone);
  CHECK(Reparse({"--log_compress=lz4"}).status().message() ==
        "--log_compress: \"lz4\" is not one of zstd, gzip, none");
}

TEST_CASE("Validate accepts the defaults") { CHECK(Validate(Config{}).ok()); }

TEST_CASE("Validate names the flag and the allowed range") {
  Config c;
  c.log_max_size_mb = 0;
  CHECK(Validate(c).message() == "--log_max_size_mb=0 is out of range: allowed 1..1048576");
  c = Config{};
  c.ring_buffer_mb = 12;
  CHECK(Validate(c).message() == "--ring_buffer_mb=12 must be a power of two");
  c = Config{};
  c.max_capture_bytes = 100;
  CHECK(Validate(c).message() == "--max_capture_bytes=100 is out of range: allowed 256..1048576");
  c = Config{};
  c.log_dir = "relative/dir";
  CHECK(Validate(c).message() == "--log_dir=\"relative/dir\" must be an absolute path");
  c.to_stdout = true;
  CHECK(Validate(c).ok());
  c = Config{};
  c.request_timeout = absl::Milliseconds(10);
  CHECK(Validate(c).message() == "--request_timeout=10ms is out of range: allowed 1s..24h");
  c = Config{};
  c.verbosity = 3;
  CHECK(Validate(c).message() == "--verbosity=3 is out of range: allowed 0..2");
  c = Config{};
  c.max_connections = 10;
  CHECK(Validate(c).message() == "--max_connections=10 is out of range: allowed 1024..4194304");
}

}  // namespace
}  // namespace httptraced::config

namespace httptraced::config {
namespace {

std::string WriteFlagfile(const std::string& text) {
  char path[] = "/tmp/httptraced-flags-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  return path;
}

TEST_CASE("Reparse applies defaults, then flag files and arguments in order") {
  const std::string file = WriteFlagfile(
      "# httptraced.conf\n\n--max_body_bytes=100\n--redact_headers=X-Secret\n--nocapture_bodies\n"
      "--port=80,8080\n--nokernel_skip_bodies\n--nounix_sockets\n--nodecode_bodies\n"
      "--unix_path=/run/a.sock,@b\n");
  absl::StatusOr<Config> c = Reparse({"--flagfile=" + file, "--max_body_bytes=200"});
  REQUIRE(c.ok());
  CHECK(c->max_body_bytes == 200);  // the later argument wins
  CHECK(c->redact_headers == std::vector<std::string>{"x-secret"});
  CHECK_FALSE(c->capture_bodies);
  CHECK(c->ports == std::vector<uint16_t>{80, 8080});
  CHECK_FALSE(c->kernel_skip_bodies);
  CHECK_FALSE(c->unix_sockets);
  CHECK_FALSE(c->decode_bodies);
  CHECK(c->unix_paths == std::vector<std::string>{"/run/a.sock", "@b"});
  CHECK(c->log_max_size_mb == 100);  // untouched: default

  // A second reload starts from the defaults again: removed lines revert.
  const std::string smaller = WriteFlagfile("--stdout\n");
  c = Reparse({"--flagfile=" + smaller});
  REQUIRE(c.ok());
  CHECK(c->max_body_bytes == 16384);
  CHECK(c->capture_bodies);
  CHECK(c->kernel_skip_bodies);
  CHECK(c->unix_sockets);
  CHECK(c->decode_bodies);
  CHECK(c->unix_paths.empty());
  CHECK(c->ports.empty());
  CHECK(c->to_stdout);
  unlink(file.c_str());
  unlink(smaller.c_str());
}

TEST_CASE("Reparse names the file line of a bad flag") {
  const std::string file = WriteFlagfile("--stdout\n--bogus_flag=1\n");
  CHECK(Reparse({"--flagfile=" + file}).status().message() ==
        file + ":2: unknown flag --bogus_flag");
  const std::string bad_value = WriteFlagfile("--log_max_files=many\n");
  CHECK(absl::StartsWith(Reparse({"--flagfile=" + bad_value}).status().message(),
                         bad_value + ":1: --log_max_files: "));
  const std::string out_of_range = WriteFlagfile("--ring_buffer_mb=3\n");
  CHECK(Reparse({"--flagfile=" + out_of_range}).status().message() ==
        "--ring_buffer_mb=3 must be a power of two");
  CHECK(Reparse({"--flagfile=/nonexistent/httptraced.conf"}).status().message() ==
        "cannot read flag file /nonexistent/httptraced.conf");
  unlink(file.c_str());
  unlink(bad_value.c_str());
  unlink(out_of_range.c_str());
}

TEST_CASE("RestartOnlyChanges lists the kernel-side flags that differ") {
  Config a, b;
  CHECK(RestartOnlyChanges(a, b).empty());
  b.ports = {80};
  b.ring_buffer_mb = 32;
  b.max_body_bytes = 1;  // applied at reload, not listed
  b.kernel_skip_bodies = false;  // the same: a daemon setting, no kernel reload
  CHECK(RestartOnlyChanges(a, b) == std::vector<std::string>{"port", "ring_buffer_mb"});
  b.fast_fd_filter = false;  // which payload program is loaded
  CHECK(RestartOnlyChanges(a, b) ==
        std::vector<std::string>{"port", "fast_fd_filter", "ring_buffer_mb"});
  b.unix_sockets = false;  // a load-time constant of the kernel side
  CHECK(RestartOnlyChanges(a, b) ==
        std::vector<std::string>{"port", "unix_sockets", "fast_fd_filter", "ring_buffer_mb"});
  b.unix_paths = {"/run/app.sock"};  // whether the kernel lets Unix sockets past --port
  CHECK(RestartOnlyChanges(a, b) == std::vector<std::string>{"port", "unix_sockets", "unix_path",
                                                             "fast_fd_filter", "ring_buffer_mb"});
  b.socket_tracepoints = false;  // which hooks carry the payload syscalls
  CHECK(RestartOnlyChanges(a, b) ==
        std::vector<std::string>{"port", "unix_sockets", "unix_path", "fast_fd_filter",
                                 "socket_tracepoints", "ring_buffer_mb"});
  Config c, d;
  d.tls = false;  // whether the uprobes are attached
  d.tls_libraries = {"/opt/lib/libssl.so.3"};
  CHECK(RestartOnlyChanges(c, d) == std::vector<std::string>{"tls", "tls_libraries"});
}

}  // namespace
}  // namespace httptraced::config
