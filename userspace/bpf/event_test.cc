#include "bpf/event.h"

#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstring>
#include <string>
#include <variant>

#include "ht_events.h"

namespace httptraced::bpf {
namespace {

using testing::CloseSample;
using testing::ConnIdSpec;
using testing::DataSample;
using testing::ExitSample;
using testing::OpenSample;
using testing::UnixOpenSample;

TEST_CASE("DecodeEvent: open event carries identity, role, endpoints and comm") {
  const ConnIdSpec id{.tgid = 4242, .fd = 9, .gen = 123456789};
  absl::StatusOr<Event> ev = DecodeEvent(
      OpenSample(id, HT_ROLE_SERVER, 8080, 51000, "nginx", 100, 0, 0, 987654321, 3));
  REQUIRE(ev.ok());
  const auto& open = std::get<OpenEvent>(*ev);
  CHECK(open.info.key == conn::ConnKey{4242, 9, 123456789});
  CHECK(open.info.role == http::Role::kServer);
  CHECK(open.info.origin == conn::Origin::kAccept);
  CHECK(open.info.family == AF_INET);
  CHECK(open.info.local.port == 8080);
  CHECK(open.info.remote.port == 51000);
  CHECK(open.info.local.addr[0] == 127);
  CHECK(open.info.local.addr[3] == 1);
  CHECK(open.info.comm == "nginx");
  CHECK(open.info.open_ts_ns == 100);
  CHECK(open.info.proc_start == 987654321);
  CHECK(open.info.exec_id == 3);
  CHECK(open.info.tls == false);
}

TEST_CASE("DecodeEvent: an open event's tls byte marks a TLS connection") {
  const ConnIdSpec id{.tgid = 4242, .fd = 9, .gen = 123456789};
  std::string sample = OpenSample(id, HT_ROLE_CLIENT, 51000, 443, "curl", 100, 0, 0, 1, 0);
  sample[offsetof(ht_conn_event, tls)] = 1;
  absl::StatusOr<Event> ev = DecodeEvent(sample);
  REQUIRE(ev.ok());
  CHECK(std::get<OpenEvent>(*ev).info.tls == true);
  CHECK(std::get<OpenEvent>(*ev).info.remote.port == 443);
}

TEST_CASE("DecodeEvent: a Unix socket's open event carries the sockets' names") {
  using std::string_literals::operator""s;
  const ConnIdSpec id{.tgid = 4242, .fd = 11, .gen = 5};
  // A path bound with its terminating NUL counted (as many servers do).
  absl::StatusOr<Event> ev =
      DecodeEvent(UnixOpenSample(id, HT_ROLE_SERVER, "/run/app/gunicorn.sock\0"s, "", 777));
  REQUIRE(ev.ok());
  const auto& server = std::get<OpenEvent>(*ev);
  CHECK(server.info.family == AF_UNIX);
  CHECK(server.info.role == http::Role::kServer);
  CHECK(server.info.local.text == "/run/app/gunicorn.sock");
  CHECK(server.info.remote.text == "");
  CHECK(server.info.local.port == 0);
  CHECK(server.info.comm == "gunicorn");
  CHECK(server.info.peer_pid == 777);

  // The client's end: unnamed, its peer carries an abstract name.
  ev = DecodeEvent(UnixOpenSample(id, HT_ROLE_CLIENT, "", "\0api\0v1"s));
  REQUIRE(ev.ok());
  const auto& client = std::get<OpenEvent>(*ev);
  CHECK(client.info.local.text == "");
  CHECK(client.info.remote.text == "@api@v1");  // every byte, its NULs as '@' (as ss shows)
  CHECK(client.info.peer_pid == 0);

  // The longest name, all 108 bytes and no NUL.
  const std::string longest(108, 'p');
  ev = DecodeEvent(UnixOpenSample(id, HT_ROLE_SERVER, longest, ""));
  REQUIRE(ev.ok());
  CHECK(std::get<OpenEvent>(*ev).info.local.text == longest);
}

TEST_CASE("DecodeEvent: a name length past its buffer is clamped") {
  std::string sample = UnixOpenSample({.tgid = 1, .fd = 3, .gen = 1}, HT_ROLE_SERVER, "/s", "");
  ht_conn_event ev;
  std::memcpy(&ev, sample.data(), sizeof(ev));
  ev.local_path_len = 255;  // more than the buffer holds: a corrupt event
  std::memset(ev.local_path, 'x', sizeof(ev.local_path));
  sample.assign(reinterpret_cast<const char*>(&ev), sizeof(ev));
  absl::StatusOr<Event> out = DecodeEvent(sample);
  REQUIRE(out.ok());
  CHECK(std::get<OpenEvent>(*out).info.local.text == std::string(HT_UNIX_PATH_MAX, 'x'));
}

TEST_CASE("DecodeEvent: process exit carries the process and its start time") {
  absl::StatusOr<Event> ev = DecodeEvent(ExitSample(4242, 987654321, 777));
  REQUIRE(ev.ok());
  const auto& exit = std::get<ExitEvent>(*ev);
  CHECK(exit.tgid == 4242);
  CHECK(exit.proc_start == 987654321);
  CHECK(exit.ts_ns == 777);
  const std::string sample = ExitSample(1, 2);
  CHECK_FALSE(DecodeEvent(sample.substr(0, sample.size() - 1)).ok());
}

TEST_CASE("DecodeEvent: data event points at its payload") {
  const std::string sample =
      DataSample({}, HT_DIR_EGRESS, 77, "HTTP/1.1 200 OK\r\n", 5, HT_DATA_F_STREAM_START, 300, 99);
  absl::StatusOr<Event> ev = DecodeEvent(sample);
  REQUIRE(ev.ok());
  const auto& data = std::get<DataEvent>(*ev);
  CHECK(data.key == conn::ConnKey{1000, 7, 555});
  CHECK(data.pos == 77);
  CHECK(data.payload == "HTTP/1.1 200 OK\r\n");
  CHECK(data.payload.data() == sample.data() + sizeof(ht_data_event));  // no copy
  CHECK(data.skip == 5);
  CHECK(data.dir == http::Direction::kEgress);
  CHECK(data.stream_start);
  CHECK(data.ts_ns == 300);
  CHECK(data.tid == 99);
}

TEST_CASE("DecodeEvent: close event carries final positions and reason") {
  absl::StatusOr<Event> ev = DecodeEvent(CloseSample({}, 10, 20, HT_CLOSE_NOT_HTTP));
  REQUIRE(ev.ok());
  const auto& close = std::get<CloseEvent>(*ev);
  CHECK(close.end_pos[0] == 10);
  CHECK(close.end_pos[1] == 20);
  CHECK(close.reason == CloseReason::kNotHttp);
}

TEST_CASE("DecodeEvent rejects malformed samples with a message") {
  CHECK(DecodeEvent("").status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(DecodeEvent(std::string(10, 'x')).status().code() == absl::StatusCode::kInvalidArgument);

  std::string data = DataSample({}, HT_DIR_INGRESS, 0, "GET / HTTP/1.1\r\n");
  // Payload shorter than the header says.
  CHECK(DecodeEvent(data.substr(0, data.size() - 1)).status().code() ==
        absl::StatusCode::kInvalidArgument);
  // Truncated in the middle of the fixed part.
  CHECK(DecodeEvent(data.substr(0, sizeof(ht_data_event) - 1)).status().code() ==
        absl::StatusCode::kInvalidArgument);

  std::string bad_dir = DataSample({}, 7, 0, "x");
  CHECK(DecodeEvent(bad_dir).status().message() == "data sample direction 7");

  std::string open = OpenSample({}, HT_ROLE_CLIENT, 1, 2);
  ht_event_header h;
  std::memcpy(&h, open.data(), sizeof(h));
  h.type = 99;
  std::memcpy(open.data(), &h, sizeof(h));
  CHECK(DecodeEvent(open).status().message() == "unknown BPF event type 99");
  h.type = HT_EV_CONN_OPEN;
  h.version = HT_ABI_VERSION + 1;
  std::memcpy(open.data(), &h, sizeof(h));
  CHECK(DecodeEvent(open).status().code() == absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace httptraced::bpf
