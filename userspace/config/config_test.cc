#include "config/config.h"

#include <catch2/catch.hpp>

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

TEST_CASE("ParseHeaderList lowercases and rejects invalid names") {
  CHECK(ParseHeaderList("Authorization, X-Api-Key,authorization").value() ==
        std::vector<std::string>{"authorization", "x-api-key"});
  CHECK(ParseHeaderList("").value().empty());
  CHECK(ParseHeaderList("bad header").status().message() ==
        "--redact_headers: \"bad header\" is not a valid header name");
  CHECK(ParseHeaderList("x:y").status().message() ==
        "--redact_headers: \"x:y\" is not a valid header name");
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
