#include "conn/conn_table.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "bpf/event.h"
#include "ht_events.h"

namespace httptraced::conn {
namespace {

using testing::CloseSample;
using testing::ConnIdSpec;
using testing::DataSample;
using testing::ExitSample;
using testing::OpenSample;
using testing::UnixOpenSample;

struct Captured {
  ConnInfo conn;
  http::Exchange exchange;
};

class FakeSink final : public ExchangeSink, public ConnController {
 public:
  void OnExchange(const ConnInfo& conn, http::Exchange&& exchange) override {
    got.push_back({conn, std::move(exchange)});
  }
  void StopTracing(const ConnKey& key) override { stopped.push_back(key); }
  void Forget(const ConnKey& key) override { forgotten.push_back(key); }
  uint64_t KernelDrops() override { return drops; }
  bool KernelAhead(const ConnKey& key, const uint64_t consumed[2]) override {
    asked_ahead.push_back({key, {consumed[0], consumed[1]}});
    return ahead.contains(key);
  }
  void SkipBody(const ConnKey& key, http::Direction dir, uint64_t from, uint64_t until) override {
    skips.push_back({key, static_cast<int>(dir), from, until});
  }
  void ClearSkips(const ConnKey& key) override { cleared.push_back(key); }
  struct Skip {
    ConnKey key;
    int dir;
    uint64_t from;
    uint64_t until;
  };
  std::vector<Skip> skips;
  std::vector<ConnKey> cleared;
  struct AskedAhead {
    ConnKey key;
    uint64_t consumed[2];
  };
  std::vector<AskedAhead> asked_ahead;
  absl::flat_hash_set<ConnKey> ahead;  // connections whose events are "in the ring"
  std::vector<Captured> got;
  uint64_t drops = 0;
  std::vector<ConnKey> stopped;
  std::vector<ConnKey> forgotten;
};

template <typename T>
T Decode(const std::string& sample) {
  absl::StatusOr<bpf::Event> ev = bpf::DecodeEvent(sample);
  REQUIRE(ev.ok());
  return std::get<T>(*ev);
}

constexpr const char* kReq = "GET /a?b=c HTTP/1.1\r\nHost: h\r\n\r\n";
constexpr const char* kResp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

ConnTableOptions TestOptions() {
  ConnTableOptions o;
  o.sweep_interval_ns = 0;  // every Tick sweeps
  return o;
}

struct Fixture {
  Fixture() = default;
  explicit Fixture(const ConnTableOptions& o) : options(o) {}
  FakeSink sink;
  ConnTableOptions options = TestOptions();
  ConnTable table{options, sink, sink};
  void Data(const ConnIdSpec& id, uint8_t dir, uint64_t pos, std::string_view bytes,
            uint64_t ts, uint32_t skip = 0, uint16_t flags = 0) {
    table.OnData(Decode<bpf::DataEvent>(DataSample(id, dir, pos, bytes, skip, flags, ts)), ts);
  }
};

TEST_CASE("ConnTable pairs a server connection's request and response") {
  Fixture f;
  const ConnIdSpec id;
  f.table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 8080, 40000, "srv")),
                 "/usr/bin/srv");
  f.Data(id, HT_DIR_INGRESS, 0, kReq, 1000, 0, HT_DATA_F_STREAM_START);
  f.Data(id, HT_DIR_EGRESS, 0, kResp, 2000, 0, HT_DATA_F_STREAM_START);
  REQUIRE(f.sink.got.size() == 1);
  const Captured& c = f.sink.got[0];
  CHECK(c.conn.key == ConnKey{1000, 7, 555});
  CHECK(c.conn.role == http::Role::kServer);
  CHECK(c.conn.comm == "srv");
  CHECK(c.conn.executable == "/usr/bin/srv");
  CHECK(c.conn.local.port == 8080);
  REQUIRE(c.exchange.request.has_value());
  REQUIRE(c.exchange.response.has_value());
  CHECK(c.exchange.request->target == "/a?b=c");
  CHECK(c.exchange.request->first.ts_ns == 1000);
  CHECK(c.exchange.response->status_code == 200);
  CHECK(c.exchange.response->body.content == "ok");
  CHECK(c.exchange.response->last.ts_ns == 2000);
  CHECK(c.exchange.seq == 0);
  CHECK_FALSE(c.exchange.incomplete);

  f.table.OnClose(Decode<bpf::CloseEvent>(CloseSample(id, 32, 40)));
  CHECK(f.table.size() == 0);
  CHECK(f.table.stats().closed == 1);
  CHECK(f.table.stats().gaps == 0);
}

TEST_CASE("ConnTable learns the role of a connection found mid-stream") {
  Fixture f;
  const ConnIdSpec id{.tgid = 5, .fd = 3, .gen = 9};
  f.Data(id, HT_DIR_EGRESS, 500, kReq, 10, 0, HT_DATA_F_STREAM_START);
  f.Data(id, HT_DIR_INGRESS, 900, kResp, 20, 0, HT_DATA_F_STREAM_START);
  REQUIRE(f.sink.got.size() == 1);
  CHECK(f.sink.got[0].conn.role == http::Role::kClient);
  CHECK(f.table.stats().unknown_conn == 1);
}

TEST_CASE("ConnTable: the same fd with a new generation is a new connection") {
  Fixture f;
  const ConnIdSpec a{.tgid = 1, .fd = 4, .gen = 100};
  const ConnIdSpec b{.tgid = 1, .fd = 4, .gen = 200};
  f.table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(a, HT_ROLE_SERVER, 80, 1)), "");
  f.Data(a, HT_DIR_INGRESS, 0, "GET /first HTTP/1.1\r\n\r\n", 1, 0, HT_DATA_F_STREAM_START);
  f.table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(b, HT_ROLE_SERVER, 80, 2)), "");
  f.Data(b, HT_DIR_INGRESS, 0, "GET /second HTTP/1.1\r\n\r\n", 2, 0, HT_DATA_F_STREAM_START);
  f.Data(b, HT_DIR_EGRESS, 0, kResp, 3, 0, HT_DATA_F_STREAM_START);
  REQUIRE(f.sink.got.size() == 1);
  CHECK(f.sink.got[0].exchange.request->target == "/second");
  f.table.OnClose(Decode<bpf::CloseEvent>(CloseSample(a, 24, 0)));
  REQUIRE(f.sink.got.size() == 2);
  CHECK(f.sink.got[1].exchange.request->target == "/first");
  CHECK(f.sink.got[1].exchange.incomplete);
  CHECK_FALSE(f.sink.got[1].exchange.response.has_value());
}

// The open event the kernel sends when it finds a connection it has no entry
// for: mid-stream, role not known yet.
bpf::OpenEvent Discovered(const ConnIdSpec& id, uint16_t lport, uint16_t rport, uint64_t ts,
                          uint64_t ingress_start = 0, uint64_t egress_start = 0) {
  return Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_UNKNOWN, lport, rport, "srv", ts,
                                           ingress_start, egress_start, 0, 0,
                                           HT_ORIGIN_DISCOVERED));
}

TEST_CASE("ConnTable carries on a connection the kernel lost mid-exchange and found again") {
  Fixture f;
  const ConnIdSpec was{.tgid = 1000, .fd = 7, .gen = 100};
  const ConnIdSpec again{.tgid = 1000, .fd = 7, .gen = 200};
  const std::string req2 = "GET /second HTTP/1.1\r\n\r\n";
  f.table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(was, HT_ROLE_SERVER, 8080, 40000)), "");
  f.Data(was, HT_DIR_INGRESS, 0, kReq, 10, 0, HT_DATA_F_STREAM_START);
  // The kernel's LRU map dropped the entry; the response write finds the
  // socket again under a new generation, positions from 0.
  f.table.OnOpen(Discovered(again, 8080, 40000, 20), "");
  f.Data(again, HT_DIR_EGRESS, 0, kResp, 20, 0, HT_DATA_F_STREAM_START);
  REQUIRE(f.sink.got.size() == 1);
  const Captured& c = f.sink.got[0];
  CHECK(c.conn.key == ConnKey{1000, 7, 100});  // the connection keeps its identity
  CHECK(c.conn.role == http::Role::kServer);
  CHECK(c.conn.origin == Origin::kAccept);
  REQUIRE(c.exchange.request.has_value());
  REQUIRE(c.exchange.response.has_value());
  CHECK(c.exchange.request->target == "/a?b=c");
  CHECK(c.exchange.response->body.content == "ok");
  CHECK_FALSE(c.exchange.incomplete);
  // The next exchange continues the same streams, seq and all.
  f.Data(again, HT_DIR_INGRESS, 0, req2, 30);
  f.Data(again, HT_DIR_EGRESS, std::strlen(kResp), kResp, 40);
  REQUIRE(f.sink.got.size() == 2);
  CHECK(f.sink.got[1].exchange.request->target == "/second");
  CHECK(f.sink.got[1].exchange.seq == 1);
  CHECK(f.table.size() == 1);
  CHECK(f.table.stats().resumed == 1);
  CHECK(f.table.stats().opened == 1);
  // Events of the old generation still in flight are dropped, not a new connection.
  f.Data(was, HT_DIR_INGRESS, std::strlen(kReq), "GET /late HTTP/1.1\r\n\r\n", 45);
  CHECK(f.table.size() == 1);
  CHECK(f.table.stats().stale_events == 1);
  f.table.OnClose(Decode<bpf::CloseEvent>(
      CloseSample(again, req2.size(), std::strlen(kResp))));
  CHECK(f.table.size() == 0);
  CHECK(f.table.stats().gaps == 0);
  CHECK(f.sink.got.size() == 2);
}

TEST_CASE("ConnTable: bytes the kernel saw before it found the connection again are a gap") {
  Fixture f;
  const ConnIdSpec was{.tgid = 1000, .fd = 7, .gen = 100};
  const ConnIdSpec again{.tgid = 1000, .fd = 7, .gen = 200};
  f.table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(was, HT_ROLE_SERVER, 8080, 40000)), "");
  f.Data(was, HT_DIR_INGRESS, 0, kReq, 10, 0, HT_DATA_F_STREAM_START);
  // 9 response bytes went by before the kernel recognised HTTP again.
  f.table.OnOpen(Discovered(again, 8080, 40000, 20, 0, 9), "");
  REQUIRE(f.sink.got.size() == 1);
  CHECK(f.sink.got[0].exchange.request->target == "/a?b=c");
  CHECK_FALSE(f.sink.got[0].exchange.response.has_value());
  CHECK(f.sink.got[0].exchange.incomplete);
  CHECK(f.table.stats().gaps == 1);
  CHECK(f.table.stats().gap_bytes == 9);
  CHECK(f.table.stats().uncopied == 0);
  CHECK(f.table.stats().resumed == 1);
}

TEST_CASE("ConnTable resumes only the same socket, and only when no event was lost since") {
  SECTION("other endpoints on the fd: a new connection") {
    Fixture f;
    f.table.OnOpen(Decode<bpf::OpenEvent>(OpenSample({.gen = 100}, HT_ROLE_SERVER, 8080, 40000)),
                   "");
    f.Data({.gen = 100}, HT_DIR_INGRESS, 0, kReq, 10, 0, HT_DATA_F_STREAM_START);
    f.table.OnOpen(Discovered({.gen = 200}, 8080, 40001, 20), "");
    f.Data({.gen = 200}, HT_DIR_EGRESS, 0, kResp, 20, 0, HT_DATA_F_STREAM_START);
    CHECK(f.table.size() == 2);
    CHECK(f.table.stats().resumed == 0);
    REQUIRE(f.sink.got.size() == 1);
    CHECK_FALSE(f.sink.got[0].exchange.request.has_value());
  }
  SECTION("the ring buffer dropped events: a new connection, and so for the streams last seen "
          "before the drop") {
    Fixture f;
    for (uint64_t fd : {7, 8}) {
      const ConnIdSpec id{.fd = static_cast<int32_t>(fd), .gen = 100};
      f.table.OnOpen(Decode<bpf::OpenEvent>(
                         OpenSample(id, HT_ROLE_SERVER, 8080, static_cast<uint16_t>(fd))), "");
      f.Data(id, HT_DIR_INGRESS, 0, kReq, 10, 0, HT_DATA_F_STREAM_START);
    }
    f.sink.drops = 3;
    f.table.OnOpen(Discovered({.fd = 7, .gen = 200}, 8080, 7, 20), "");
    f.table.OnOpen(Discovered({.fd = 8, .gen = 200}, 8080, 8, 21), "");
    CHECK(f.table.stats().resumed == 0);
    CHECK(f.table.size() == 4);
    // A stream with events after the drop was seen resumes again.
    const ConnIdSpec later{.fd = 9, .gen = 100};
    f.table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(later, HT_ROLE_SERVER, 8080, 9)), "");
    f.Data(later, HT_DIR_INGRESS, 0, kReq, 30, 0, HT_DATA_F_STREAM_START);
    f.table.OnOpen(Discovered({.fd = 9, .gen = 200}, 8080, 9, 40), "");
    CHECK(f.table.stats().resumed == 1);
    CHECK(f.table.size() == 5);
  }
}

TEST_CASE("ConnTable: bytes lost at the end of a direction show up as a gap") {
  Fixture f;
  const ConnIdSpec id;
  f.table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 80, 1)), "");
  f.Data(id, HT_DIR_INGRESS, 0, kReq, 1, 0, HT_DATA_F_STREAM_START);
  f.table.OnClose(Decode<bpf::CloseEvent>(CloseSample(id, 32, 57)));
  REQUIRE(f.sink.got.size() == 1);
  CHECK(f.sink.got[0].exchange.incomplete);
  CHECK(f.table.stats().gaps == 1);
  CHECK(f.table.stats().gap_bytes == 57);
}

TEST_CASE("ConnTable tells the kernel, once per body, which body bytes it would only count") {
  Fixture f;
  const ConnIdSpec id{.tgid = 1000, .fd = 7, .gen = 555};
  const ConnKey key{1000, 7, 555};
  f.table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 8080, 40000)), "");
  const std::string head = "POST /up HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n";
  f.Data(id, HT_DIR_INGRESS, 0, head + std::string(100, 'a'), 10, 0, HT_DATA_F_STREAM_START);
  // The default cap keeps 16384 body bytes: the rest may be skipped.
  REQUIRE(f.sink.skips.size() == 1);
  CHECK(f.sink.skips[0].key == key);
  CHECK(f.sink.skips[0].dir == HT_DIR_INGRESS);
  CHECK(f.sink.skips[0].from == head.size() + 16384);
  CHECK(f.sink.skips[0].until == head.size() + 1000000);
  CHECK(f.table.stats().body_skips == 1);
  // More of the same body: nothing new to announce. Then the kernel skips.
  for (uint64_t at = 100; at < 16384; at += 4096) {
    f.Data(id, HT_DIR_INGRESS, head.size() + at, std::string(std::min<uint64_t>(4096, 16384 - at), 'b'),
           11);
  }
  f.Data(id, HT_DIR_INGRESS, head.size() + 16384, "", 12, 1000000 - 16384);
  CHECK(f.sink.skips.size() == 1);
  f.Data(id, HT_DIR_EGRESS, 0, kResp, 13, 0, HT_DATA_F_STREAM_START);
  REQUIRE(f.sink.got.size() == 1);
  const http::Message& up = *f.sink.got[0].exchange.request;
  CHECK(up.body.size == 1000000);
  CHECK(up.body.content == std::string(100, 'a') + std::string(16284, 'b'));
  CHECK(up.body.truncated);
  CHECK_FALSE(up.body.gap);  // the skipped bytes were past the cap: no gap
  CHECK(up.complete);
  // In the stats: bytes not copied by design, no loss.
  CHECK(f.table.stats().uncopied == 1);
  CHECK(f.table.stats().uncopied_bytes == 1000000 - 16384);
  CHECK(f.table.stats().gaps == 0);

  // The next body on the connection gets its own range; a small one none.
  const uint64_t in2 = head.size() + 1000000;
  const std::string small = "POST /s HTTP/1.1\r\nContent-Length: 70000\r\n\r\n";
  f.Data(id, HT_DIR_INGRESS, in2, small, 20);  // 53616 bytes past the cap: under 64 KiB
  CHECK(f.sink.skips.size() == 1);
  for (uint64_t at = 0; at < 70000; at += 10000) {
    f.Data(id, HT_DIR_INGRESS, in2 + small.size() + at, std::string(10000, 's'), 21);
  }
  const uint64_t in3 = in2 + small.size() + 70000;
  f.Data(id, HT_DIR_INGRESS, in3, head, 22);
  REQUIRE(f.sink.skips.size() == 2);
  CHECK(f.sink.skips[1].from == in3 + head.size() + 16384);
  CHECK(f.sink.skips[1].until == in3 + head.size() + 1000000);

  // Gone from the table: its ranges are dropped in the kernel too.
  CHECK(f.sink.cleared.empty());
  f.table.OnClose(Decode<bpf::CloseEvent>(CloseSample(id, in3 + head.size(), std::strlen(kResp))));
  REQUIRE(f.sink.cleared.size() == 1);
  CHECK(f.sink.cleared[0] == key);
}

TEST_CASE("ConnTable skip ranges: responses too, none when turned off, kernel positions after a "
          "resumption") {
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n";
  SECTION("a large response") {
    Fixture f;
    const ConnIdSpec id;
    f.table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 8080, 40000)), "");
    f.Data(id, HT_DIR_INGRESS, 0, kReq, 1, 0, HT_DATA_F_STREAM_START);
    f.Data(id, HT_DIR_EGRESS, 0, resp, 2, 0, HT_DATA_F_STREAM_START);
    REQUIRE(f.sink.skips.size() == 1);
    CHECK(f.sink.skips[0].dir == HT_DIR_EGRESS);
    CHECK(f.sink.skips[0].from == resp.size() + 16384);
    CHECK(f.sink.skips[0].until == resp.size() + 200000);
  }
  SECTION("turned off") {
    ConnTableOptions off = TestOptions();
    off.skip_body_min_bytes = 0;
    Fixture f(off);
    const ConnIdSpec id;
    f.table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 8080, 40000)), "");
    f.Data(id, HT_DIR_INGRESS, 0, kReq, 1, 0, HT_DATA_F_STREAM_START);
    f.Data(id, HT_DIR_EGRESS, 0, resp, 2, 0, HT_DATA_F_STREAM_START);
    REQUIRE(f.sink.got.size() == 0);  // the response body is still coming
    CHECK(f.sink.skips.empty());
    CHECK(f.table.stats().body_skips == 0);
  }
  SECTION("after the kernel lost the connection and found it again") {
    Fixture f;
    const ConnIdSpec was{.tgid = 1000, .fd = 7, .gen = 100};
    const ConnIdSpec again{.tgid = 1000, .fd = 7, .gen = 200};
    f.table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(was, HT_ROLE_SERVER, 8080, 40000)), "");
    f.Data(was, HT_DIR_INGRESS, 0, kReq, 10, 0, HT_DATA_F_STREAM_START);
    f.Data(was, HT_DIR_EGRESS, 0, resp, 11, 0, HT_DATA_F_STREAM_START);
    REQUIRE(f.sink.skips.size() == 1);
    f.Data(was, HT_DIR_EGRESS, resp.size(), "", 12, 200000);
    // The new generation counts from 0: its range is in its own positions.
    f.table.OnOpen(Discovered(again, 8080, 40000, 20), "");
    REQUIRE(f.sink.cleared.size() == 1);
    CHECK(f.sink.cleared[0] == ConnKey{1000, 7, 100});
    f.Data(again, HT_DIR_INGRESS, 0, kReq, 21, 0, HT_DATA_F_STREAM_START);
    f.Data(again, HT_DIR_EGRESS, 0, resp, 22, 0, HT_DATA_F_STREAM_START);
    REQUIRE(f.sink.skips.size() == 2);
    CHECK(f.sink.skips[1].key == ConnKey{1000, 7, 200});
    CHECK(f.sink.skips[1].from == resp.size() + 16384);
    CHECK(f.sink.skips[1].until == resp.size() + 200000);
    CHECK(f.table.stats().resumed == 1);
  }
}

TEST_CASE("ConnTable stops tracing what is not HTTP") {
  Fixture f;
  f.options.session.not_http_after_bytes = 64;
  ConnTable table(f.options, f.sink, f.sink);
  const ConnIdSpec id;
  table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 80, 1)), "");
  const std::string junk(200, '\x01');
  table.OnData(Decode<bpf::DataEvent>(
                   DataSample(id, HT_DIR_INGRESS, 0, junk, 0, HT_DATA_F_STREAM_START, 5)),
               5);
  REQUIRE(f.sink.stopped.size() == 1);
  CHECK(f.sink.stopped[0] == ConnKey{1000, 7, 555});
  CHECK(table.stats().not_http == 1);
  // Events still in flight are dropped without asking again.
  table.OnData(Decode<bpf::DataEvent>(DataSample(id, HT_DIR_INGRESS, 200, kReq, 0, 0, 6)), 6);
  CHECK(f.sink.stopped.size() == 1);
  CHECK(f.sink.got.empty());
  CHECK(table.size() == 1);
  table.OnClose(Decode<bpf::CloseEvent>(CloseSample(id, 232, 0, HT_CLOSE_DISABLED)));
  CHECK(table.size() == 0);
}

TEST_CASE("ConnTable follows only the Unix sockets --unix_path names") {
  using namespace std::string_literals;
  ConnTableOptions o = TestOptions();
  o.unix_names = {"/run/app.sock", "@admin"};
  Fixture f(o);
  // A listed name at either end (the server's own, or the one a client
  // connected to, abstract names with @), and an unlisted one.
  const ConnIdSpec server{.tgid = 10, .fd = 5, .gen = 1};
  const ConnIdSpec client{.tgid = 11, .fd = 6, .gen = 2};
  const ConnIdSpec other{.tgid = 12, .fd = 7, .gen = 3};
  const ConnIdSpec tcp{.tgid = 13, .fd = 8, .gen = 4};
  f.table.OnOpen(Decode<bpf::OpenEvent>(
                     UnixOpenSample(server, HT_ROLE_SERVER, "/run/app.sock\0"s, "")),
                 "");
  f.table.OnOpen(Decode<bpf::OpenEvent>(UnixOpenSample(client, HT_ROLE_CLIENT, "", "\0admin"s)),
                 "");
  f.table.OnOpen(Decode<bpf::OpenEvent>(
                     UnixOpenSample(other, HT_ROLE_SERVER, "/run/docker.sock\0"s, "")),
                 "");
  f.table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(tcp, HT_ROLE_SERVER, 8080, 40000)), "");
  REQUIRE(f.sink.stopped.size() == 1);
  CHECK(f.sink.stopped[0] == ConnKey{12, 7, 3});
  CHECK(f.table.stats().unix_filtered == 1);
  CHECK(f.table.stats().opened == 4);  // the ignored one's tracker too, until its close
  for (const ConnIdSpec& id : {server, client, other, tcp}) {
    const bool is_client = id.tgid == client.tgid;
    f.Data(id, is_client ? HT_DIR_EGRESS : HT_DIR_INGRESS, 0, kReq, 1000, 0,
           HT_DATA_F_STREAM_START);
    f.Data(id, is_client ? HT_DIR_INGRESS : HT_DIR_EGRESS, 0, kResp, 2000, 0,
           HT_DATA_F_STREAM_START);
  }
  // TCP is not --unix_path's business: it is recorded.
  REQUIRE(f.sink.got.size() == 3);
  CHECK(f.sink.got[0].conn.key == ConnKey{10, 5, 1});
  CHECK(f.sink.got[0].conn.local.text == "/run/app.sock");
  CHECK(f.sink.got[1].conn.key == ConnKey{11, 6, 2});
  CHECK(f.sink.got[1].conn.remote.text == "@admin");
  CHECK(f.sink.got[2].conn.key == ConnKey{13, 8, 4});
  CHECK(f.sink.stopped.size() == 1);  // asked once

  // Bytes that raced ahead of the open event are dropped too, and no record
  // comes of them.
  const ConnIdSpec raced{.tgid = 14, .fd = 9, .gen = 5};
  f.Data(raced, HT_DIR_INGRESS, 0, kReq, 3000, 0, HT_DATA_F_STREAM_START);
  f.table.OnOpen(Decode<bpf::OpenEvent>(
                     UnixOpenSample(raced, HT_ROLE_SERVER, "/run/other.sock\0"s, "")),
                 "");
  f.Data(raced, HT_DIR_EGRESS, 0, kResp, 4000, 0, HT_DATA_F_STREAM_START);
  CHECK(f.sink.got.size() == 3);
  CHECK(f.sink.stopped.size() == 2);
  CHECK(f.table.stats().unix_filtered == 2);
  f.table.OnClose(Decode<bpf::CloseEvent>(CloseSample(raced, 32, 40)));
  f.table.OnClose(Decode<bpf::CloseEvent>(CloseSample(other, 32, 40)));
  CHECK(f.sink.got.size() == 3);
}

TEST_CASE("ConnTable writes unanswered requests as incomplete after the timeout") {
  Fixture f;
  f.options.request_timeout_ns = 1000;
  ConnTable table(f.options, f.sink, f.sink);
  const ConnIdSpec id;
  table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 80, 1)), "");
  table.OnData(
      Decode<bpf::DataEvent>(DataSample(id, HT_DIR_INGRESS, 0, kReq, 0, HT_DATA_F_STREAM_START, 100)),
      100);
  table.Tick(1000);
  CHECK(f.sink.got.empty());
  table.Tick(1101);
  REQUIRE(f.sink.got.size() == 1);
  CHECK(f.sink.got[0].exchange.incomplete);
  CHECK(table.size() == 1);  // the connection itself lives on
}

TEST_CASE("ConnTable forgets idle connections and evicts beyond its bound") {
  Fixture f;
  f.options.conn_idle_timeout_ns = 10'000;
  f.options.max_connections = 20;
  ConnTable table(f.options, f.sink, f.sink);
  for (int i = 0; i < 21; ++i) {
    const ConnIdSpec id{.tgid = 1, .fd = i, .gen = static_cast<uint64_t>(i)};
    table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 80, 1, "s",
                                                   static_cast<uint64_t>(i))),
                 "");
  }
  CHECK(table.stats().evicted == 3);  // 21 > 20: the idlest tenth (+1) go
  CHECK(table.size() == 18);
  table.Tick(20'000);
  CHECK(table.stats().expired == 18);
  CHECK(table.size() == 0);
}

TEST_CASE("ConnTable evicts connections between exchanges before one with a request in flight") {
  Fixture f;
  f.options.max_connections = 20;
  ConnTable table(f.options, f.sink, f.sink);
  // The oldest connection has a request waiting for its response (a slow
  // server, or a client not scheduled for a while); 20 newer ones are idle.
  const ConnIdSpec slow{.tgid = 1, .fd = 100, .gen = 1};
  table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(slow, HT_ROLE_SERVER, 80, 1, "s", 1)), "");
  table.OnData(Decode<bpf::DataEvent>(
                   DataSample(slow, HT_DIR_INGRESS, 0, kReq, 0, HT_DATA_F_STREAM_START, 2)),
               2);
  for (int i = 0; i < 20; ++i) {
    const ConnIdSpec id{.tgid = 1, .fd = i, .gen = static_cast<uint64_t>(10 + i)};
    table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 80, 2, "s",
                                                   static_cast<uint64_t>(10 + i))),
                 "");
  }
  CHECK(table.stats().evicted == 3);
  CHECK(table.size() == 18);
  // The idle ones went, the idlest first: fds 0, 1, 2 (in no particular order).
  std::vector<ConnKey> forgotten = f.sink.forgotten;
  std::sort(forgotten.begin(), forgotten.end(),
            [](const ConnKey& a, const ConnKey& b) { return a.fd < b.fd; });
  CHECK(forgotten == std::vector<ConnKey>{{1, 0, 10}, {1, 1, 11}, {1, 2, 12}});
  CHECK(f.sink.got.empty());
  table.OnData(Decode<bpf::DataEvent>(
                   DataSample(slow, HT_DIR_EGRESS, 0, kResp, 0, HT_DATA_F_STREAM_START, 50)),
               50);
  REQUIRE(f.sink.got.size() == 1);
  CHECK(f.sink.got[0].exchange.request->target == "/a?b=c");
  CHECK(f.sink.got[0].exchange.response->status_code == 200);
}

TEST_CASE("ConnTable spares, once, an idle-looking connection whose events are still coming") {
  Fixture f;
  f.options.max_connections = 20;
  ConnTable table(f.options, f.sink, f.sink);
  auto open = [&](int fd, uint64_t ts) {
    const ConnIdSpec id{.tgid = 1, .fd = fd, .gen = static_cast<uint64_t>(100 + fd)};
    table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 80, 1, "s", ts)), "");
  };
  // fd 0 had a whole exchange; the kernel has counted more since (a new
  // request whose event is still in the ring buffer).
  const ConnIdSpec first{.tgid = 1, .fd = 0, .gen = 100};
  open(0, 1);
  table.OnData(Decode<bpf::DataEvent>(
                   DataSample(first, HT_DIR_INGRESS, 0, kReq, 0, HT_DATA_F_STREAM_START, 2)),
               2);
  table.OnData(Decode<bpf::DataEvent>(
                   DataSample(first, HT_DIR_EGRESS, 0, kResp, 0, HT_DATA_F_STREAM_START, 3)),
               3);
  f.sink.ahead.insert(ConnKey{1, 0, 100});
  for (int fd = 1; fd <= 20; ++fd) open(fd, 10 + static_cast<uint64_t>(fd));
  // The three idlest were fds 0, 1, 2: fd 0 is spared.
  CHECK(table.stats().evicted == 2);
  CHECK(table.stats().reprieved == 1);
  CHECK(table.size() == 19);
  REQUIRE(f.sink.asked_ahead.size() == 3);
  const auto asked_it = std::find_if(f.sink.asked_ahead.begin(), f.sink.asked_ahead.end(),
                                     [](const auto& a) { return a.key == ConnKey{1, 0, 100}; });
  REQUIRE(asked_it != f.sink.asked_ahead.end());
  const auto& asked = *asked_it;
  CHECK(asked.consumed[HT_DIR_INGRESS] == std::strlen(kReq));
  CHECK(asked.consumed[HT_DIR_EGRESS] == std::strlen(kResp));
  // Still the idlest at the next eviction: it goes this time.
  open(21, 40);
  open(22, 41);
  CHECK(table.stats().evicted == 5);
  CHECK(table.stats().reprieved == 1);
  CHECK(std::count(f.sink.forgotten.begin(), f.sink.forgotten.end(), ConnKey{1, 0, 100}) == 1);
}

TEST_CASE("ConnTable FinishAll writes in-flight exchanges as incomplete") {
  Fixture f;
  const ConnIdSpec id;
  f.table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 80, 1)), "");
  f.Data(id, HT_DIR_INGRESS, 0, kReq, 1, 0, HT_DATA_F_STREAM_START);
  f.table.FinishAll();
  REQUIRE(f.sink.got.size() == 1);
  CHECK(f.sink.got[0].exchange.incomplete);
  CHECK(f.table.size() == 0);
}

}  // namespace
}  // namespace httptraced::conn

namespace httptraced::conn {
namespace {

TEST_CASE("ConnTable ages holes at every Tick even between sweeps") {
  FakeSink sink;
  ConnTableOptions options;  // sweeps once a second
  options.stream.hole_timeout_ns = 100;
  ConnTable table(options, sink, sink);
  const ConnIdSpec id;
  table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 80, 1)), "");
  // The first request's bytes never arrive (a drop); the second waits behind the hole.
  const std::string second = "GET /second HTTP/1.1\r\n\r\n";
  table.OnData(Decode<bpf::DataEvent>(DataSample(id, HT_DIR_INGRESS, 30, second, 0, 0, 10)), 10);
  // The response to the lost request has nothing to pair with: recorded alone.
  table.OnData(Decode<bpf::DataEvent>(DataSample(id, HT_DIR_EGRESS, 0, kResp, 0, 0, 20)), 20);
  REQUIRE(sink.got.size() == 1);
  CHECK_FALSE(sink.got[0].exchange.request.has_value());
  table.Tick(50);  // the hole is younger than the timeout: /second still waits
  CHECK(sink.got.size() == 1);
  table.FinishAll();  // shutdown: what waited comes out, unanswered
  REQUIRE(sink.got.size() == 2);
  CHECK(sink.got[1].exchange.request->target == "/second");
  CHECK(sink.got[1].exchange.incomplete);
}

TEST_CASE("ConnTable delivers what waited behind a hole once it times out") {
  FakeSink sink;
  ConnTableOptions options;  // sweeps once a second: holes are aged regardless
  options.stream.hole_timeout_ns = 100;
  ConnTable table(options, sink, sink);
  const ConnIdSpec id;
  table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 80, 1)), "");
  table.OnData(Decode<bpf::DataEvent>(
                   DataSample(id, HT_DIR_INGRESS, 30, "GET /second HTTP/1.1\r\n\r\n", 0, 0, 10)),
               10);
  table.Tick(120);  // a gap now: /second reaches the parser and waits for its response
  table.OnData(Decode<bpf::DataEvent>(DataSample(id, HT_DIR_EGRESS, 0, kResp, 0, 0, 130)), 130);
  REQUIRE(sink.got.size() == 1);
  CHECK(sink.got[0].exchange.request->target == "/second");
  CHECK(sink.got[0].exchange.request->gap_before);
  CHECK(sink.got[0].exchange.response->status_code == 200);
}

}  // namespace
}  // namespace httptraced::conn

namespace httptraced::conn {
namespace {

// A table that forgets a connection idle for 1000 ns, and a server
// connection whose request was read at 10.
struct IdleFixture {
  static ConnTableOptions Options() {
    ConnTableOptions o = TestOptions();
    o.conn_idle_timeout_ns = 1000;
    return o;
  }
  IdleFixture() {
    table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 80, 1)), "");
    table.OnData(Decode<bpf::DataEvent>(
                     DataSample(id, HT_DIR_INGRESS, 0, kReq, 0, HT_DATA_F_STREAM_START, 10)),
                 10);
  }
  FakeSink sink;
  ConnTableOptions options = Options();
  ConnTable table{options, sink, sink};
  const ConnIdSpec id;
};

TEST_CASE("ConnTable tells the kernel what it forgot and drops that connection's stale events") {
  IdleFixture f;
  FakeSink& sink = f.sink;
  ConnTable& table = f.table;
  const ConnIdSpec& id = f.id;
  table.OnData(
      Decode<bpf::DataEvent>(DataSample(id, HT_DIR_EGRESS, 0, kResp, 0, HT_DATA_F_STREAM_START, 20)),
      20);
  REQUIRE(sink.got.size() == 1);
  table.Tick(5000);  // idle for longer than the timeout
  CHECK(table.size() == 0);
  REQUIRE(sink.forgotten.size() == 1);
  CHECK(sink.forgotten[0] == ConnKey{1000, 7, 555});
  // An event of the old identity still in flight is dropped, not revived.
  table.OnData(Decode<bpf::DataEvent>(DataSample(id, HT_DIR_INGRESS, 32, kReq, 0, 0, 5001)), 5001);
  CHECK(table.size() == 0);
  CHECK(table.stats().stale_events == 1);
  CHECK(table.stats().unknown_conn == 0);
  // The kernel's next event is a new identity: a new connection.
  const ConnIdSpec reborn{.tgid = 1000, .fd = 7, .gen = 9999};
  table.OnData(Decode<bpf::DataEvent>(
                   DataSample(reborn, HT_DIR_INGRESS, 32, kReq, 0, HT_DATA_F_STREAM_START, 6000)),
               6000);
  CHECK(table.size() == 1);
}

TEST_CASE("ConnTable lets a forgotten key go once an event a second younger has been read") {
  IdleFixture f;
  ConnTable& table = f.table;
  const ConnIdSpec& id = f.id;
  table.Tick(5000);  // forgotten at 5000
  REQUIRE(table.forgotten_keys() == 1);
  // Another connection's events: up to a second later, the key stays.
  const ConnIdSpec other{.tgid = 2000, .fd = 3, .gen = 777};
  uint64_t pos = 0;
  const auto other_data = [&](uint64_t ts) {
    table.OnData(Decode<bpf::DataEvent>(DataSample(other, HT_DIR_INGRESS, pos, kReq, 0,
                                                   pos == 0 ? HT_DATA_F_STREAM_START : 0, ts)),
                 ts);
    pos += std::strlen(kReq);
  };
  other_data(1'000'005'000);
  table.Tick(1'000'005'000);
  CHECK(table.forgotten_keys() == 1);
  table.OnData(Decode<bpf::DataEvent>(DataSample(id, HT_DIR_INGRESS, 32, kReq, 0, 0, 4000)),
               1'000'005'000);
  CHECK(table.stats().stale_events == 1);
  // One made more than a second after it: every event of the key was read before.
  other_data(1'000'005'001);
  table.Tick(1'000'005'001);
  CHECK(table.forgotten_keys() == 0);
  CHECK(table.stats().stale_events == 1);
}

}  // namespace
}  // namespace httptraced::conn

namespace httptraced::conn {
namespace {

TEST_CASE("ConnTable hibernates quiet sessions and their seq carries on") {
  FakeSink sink;
  ConnTableOptions options;
  options.sweep_interval_ns = 100;
  ConnTable table(options, sink, sink);
  const ConnIdSpec id;
  table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 80, 1)), "");
  table.OnData(Decode<bpf::DataEvent>(DataSample(id, HT_DIR_INGRESS, 0, kReq, 0, 0, 10)), 10);
  table.OnData(Decode<bpf::DataEvent>(DataSample(id, HT_DIR_EGRESS, 0, kResp, 0, 0, 20)), 20);
  table.Tick(500);
  CHECK(table.stats().hibernated == 1);
  table.OnData(Decode<bpf::DataEvent>(DataSample(id, HT_DIR_INGRESS, 32, kReq, 0, 0, 600)), 600);
  table.OnData(Decode<bpf::DataEvent>(DataSample(id, HT_DIR_EGRESS, 40, kResp, 0, 0, 610)), 610);
  REQUIRE(sink.got.size() == 2);
  CHECK(sink.got[1].exchange.seq == 1);
  CHECK(sink.got[1].conn.role == http::Role::kServer);
}


TEST_CASE("ConnTable ends an exited process's connections at the next tick, not a later one's") {
  FakeSink sink;
  ConnTable table(TestOptions(), sink, sink);
  // Process 1000 (started at 77) is mid-request on two connections; a third
  // connection has lost its open event. Process 1000 started at 99 (the pid
  // reused) is mid-request too, and so is process 2000.
  const ConnIdSpec a{.tgid = 1000, .fd = 5, .gen = 1};
  const ConnIdSpec b{.tgid = 1000, .fd = 6, .gen = 2};
  const ConnIdSpec no_open{.tgid = 1000, .fd = 7, .gen = 3};
  const ConnIdSpec reused{.tgid = 1000, .fd = 8, .gen = 4};
  const ConnIdSpec other{.tgid = 2000, .fd = 5, .gen = 5};
  for (const ConnIdSpec& id : {a, b, other}) {
    table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 80, 1, "srv", 10, 0, 0,
                                                   id.tgid == 1000 ? 77 : 55, 1)),
                 "");
  }
  table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(reused, HT_ROLE_SERVER, 80, 1, "srv", 10, 0, 0,
                                                 99, 1)),
               "");
  for (const ConnIdSpec& id : {a, b, no_open, reused, other}) {
    table.OnData(Decode<bpf::DataEvent>(
                     DataSample(id, HT_DIR_INGRESS, 0, kReq, 0, HT_DATA_F_STREAM_START, 20)),
                 20);
  }
  REQUIRE(table.size() == 5);
  table.OnProcessExit(Decode<bpf::ExitEvent>(ExitSample(1000, 77, 500)));
  CHECK(sink.got.empty());  // nothing before the tick
  table.Tick(600);
  REQUIRE(sink.got.size() == 3);
  std::vector<int32_t> fds;
  for (const Captured& c : sink.got) {
    fds.push_back(c.conn.key.fd);
    CHECK(c.exchange.incomplete);
    CHECK(c.exchange.request.has_value());
    CHECK_FALSE(c.exchange.response.has_value());
    CHECK(c.exchange.request->target == "/a?b=c");
  }
  std::sort(fds.begin(), fds.end());
  CHECK(fds == std::vector<int32_t>{5, 6, 7});
  CHECK(table.size() == 2);
  CHECK(table.stats().process_exited == 3);
  CHECK(sink.forgotten.size() == 3);
  // The exit is handled once: a later tick leaves the others alone.
  table.Tick(700);
  CHECK(table.size() == 2);
  CHECK(sink.got.size() == 3);
}


TEST_CASE("ConnTable does not queue process exits without bound between ticks") {
  FakeSink sink;
  ConnTable table(TestOptions(), sink, sink);
  const ConnIdSpec id{.tgid = 1000, .fd = 5, .gen = 1};
  table.OnOpen(Decode<bpf::OpenEvent>(OpenSample(id, HT_ROLE_SERVER, 80, 1, "srv", 10, 0, 0, 77, 1)),
               "");
  table.OnData(
      Decode<bpf::DataEvent>(DataSample(id, HT_DIR_INGRESS, 0, kReq, 0, HT_DATA_F_STREAM_START, 20)),
      20);
  table.OnProcessExit(Decode<bpf::ExitEvent>(ExitSample(1000, 77, 500)));
  for (uint32_t pid = 5000; pid < 5000 + 4094; ++pid) {
    table.OnProcessExit(Decode<bpf::ExitEvent>(ExitSample(pid, 1, 501)));
  }
  CHECK(table.size() == 1);  // 4095 queued
  table.OnProcessExit(Decode<bpf::ExitEvent>(ExitSample(9999, 1, 502)));
  CHECK(table.size() == 0);  // the 4096th walked the table, before any tick
  REQUIRE(sink.got.size() == 1);
  CHECK(sink.got[0].exchange.incomplete);
}

}  // namespace
}  // namespace httptraced::conn
