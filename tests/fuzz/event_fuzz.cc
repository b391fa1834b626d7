// libFuzzer target for ring-buffer event decoding and the connection table.
//
// Samples reach DecodeEvent three ways: arbitrary bytes of arbitrary size;
// well-formed samples built exactly as the kernel emits them (tests/support/
// ht_events.h) for a small pool of connections, so that positions, payloads,
// opens, closes, duplicates and lost events collide; and those samples mangled
// (cut short, a byte overwritten, the length field lied about, bytes appended).
// Every decoded event goes into a ConnTable with a small --max_connections and
// small limits; time passes and Tick runs when the input says.
//
// Checked, beyond "no crash, no sanitizer report":
//  - DecodeEvent never accepts a sample shorter than its struct, a payload
//    longer than the sample or than HT_CHUNK_MAX, an unknown type or version;
//    the payload it returns lies inside the sample; a well-formed sample
//    decodes to exactly the fields it was built from;
//  - the table never holds more than max_connections, and its counters add
//    up (opened - closed - evicted - expired == size);
//  - exchanges are about connections that events named, hold a request or a
//    response, are incomplete only without a response, and respect the caps;
//  - live heap memory stays under a bound that depends on the limits only,
//    not on how much input arrives.
#include <malloc.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "bpf/event.h"
#include "conn/conn_table.h"
#include "fuzz_input.h"
#include "ht_events.h"
#include "httptraced_abi.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HT_FUZZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define HT_FUZZ_ASAN 1
#endif
#ifdef HT_FUZZ_ASAN
#if __has_include(<sanitizer/allocator_interface.h>)
#include <sanitizer/allocator_interface.h>
#else
// gcc ships the function in libasan but not this header (clang's has it).
extern "C" size_t __sanitizer_get_current_allocated_bytes();
#endif
#endif

namespace httptraced::conn {
namespace {

using fuzz::Input;
using testing::CloseSample;
using testing::ConnIdSpec;
using testing::DataSample;
using testing::ExitSample;
using testing::OpenSample;

// Heap bytes in use by the process right now.
size_t LiveHeapBytes() {
#ifdef HT_FUZZ_ASAN
  return __sanitizer_get_current_allocated_bytes();
#else
  return mallinfo2().uordblks;
#endif
}

// The connection pool: 2 processes x 4 fds x 2 generations = 16 identities,
// twice the largest max_connections used, so that eviction happens.
ConnIdSpec IdOf(uint8_t n) {
  return ConnIdSpec{.tgid = 1000u + (n & 1), .fd = 3 + ((n >> 1) & 3), .gen = 1u + ((n >> 3) & 1)};
}
constexpr int kPool = 16;

// HTTP fragments for payloads, so that sessions get past the first line quickly.
constexpr std::string_view kFragments[] = {
    "GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
    "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 100 Continue\r\n\r\n",
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    "HTTP/1.1 204 No Content\r\n\r\n",
    "HTTP/1.0 200 OK\r\n\r\nclose-delimited",
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "*1\r\n$4\r\nPING\r\n",
};

class Sink final : public ExchangeSink, public ConnController {
 public:
  explicit Sink(const http::SessionOptions& limits) : limits_(limits) {}

  void OnExchange(const ConnInfo& conn, http::Exchange&& ex) override {
    FUZZ_CHECK(Known(conn.key));
    FUZZ_CHECK(ex.request.has_value() || ex.response.has_value());
    FUZZ_CHECK(!(ex.incomplete && ex.response.has_value()));
    for (const auto* m :
         {ex.request ? &*ex.request : nullptr, ex.response ? &*ex.response : nullptr}) {
      if (m == nullptr) continue;
      FUZZ_CHECK(m->body.content.size() <= limits_.max_body_bytes);
      FUZZ_CHECK(m->body.content.size() <= m->body.size);
      FUZZ_CHECK(m->kind == (m == &*ex.request ? http::Message::Kind::kRequest
                                               : http::Message::Kind::kResponse));
    }
    ++exchanges;
  }
  void StopTracing(const ConnKey& key) override { FUZZ_CHECK(Known(key)); }
  void Forget(const ConnKey&) override {}
  uint64_t KernelDrops() override { return 0; }
  bool KernelAhead(const ConnKey&, const uint64_t*) override { return false; }
  void SkipBody(const ConnKey& key, http::Direction, uint64_t from, uint64_t until) override {
    FUZZ_CHECK(Known(key));
    FUZZ_CHECK(from < until);
  }
  void ClearSkips(const ConnKey& key) override { FUZZ_CHECK(Known(key)); }

  bool Known(const ConnKey& key) const {
    for (int n = 0; n < kPool; ++n) {
      const ConnIdSpec id = IdOf(static_cast<uint8_t>(n));
      if (key == ConnKey{id.tgid, id.fd, id.gen}) return true;
    }
    return raw_keys_allowed;
  }

  uint64_t exchanges = 0;
  bool raw_keys_allowed = false;  // once a raw or damaged sample went in, any key may appear

 private:
  http::SessionOptions limits_;
};

enum Op : uint8_t {
  kOpen = 0,
  kData = 1,
  kClose = 2,
  kRaw = 3,      // arbitrary bytes as a sample
  kMangled = 4,  // a well-formed sample, damaged
  kTick = 5,
  kExit = 6,     // a process exit, for the pool's process of connection n
  kOps = 7,
};

struct Direction {
  uint64_t frontier = 0;  // bytes the "kernel" has counted on this direction
  bool started = false;
};

struct Fuzzer {
  Input in;
  ConnTableOptions options;
  Sink sink;
  ConnTable table;
  uint64_t now = 1'000'000'000;
  Direction dirs[kPool][2];
  size_t heap_bound = 0;
  size_t heap_base = 0;

  Fuzzer(const uint8_t* data, size_t size, const ConnTableOptions& o)
      : in(data, size), options(o), sink(o.session), table(o, sink, sink) {}

  // Decodes a sample; `want` is the event it was built as (when well-formed).
  void Feed(const std::string& sample, const bpf::Event* want, std::string_view want_payload = {}) {
    absl::StatusOr<bpf::Event> ev = bpf::DecodeEvent(sample);
    if (want != nullptr) FUZZ_CHECK(ev.ok());
    if (!ev.ok()) return;
    FUZZ_CHECK(sample.size() >= sizeof(ht_event_header));
    ht_event_header hdr;
    std::memcpy(&hdr, sample.data(), sizeof(hdr));
    FUZZ_CHECK(hdr.version == HT_ABI_VERSION);
    if (auto* d = std::get_if<bpf::DataEvent>(&*ev)) {
      FUZZ_CHECK(hdr.type == HT_EV_DATA);
      FUZZ_CHECK(sample.size() >= sizeof(ht_data_event) + d->payload.size());
      FUZZ_CHECK(d->payload.size() <= HT_CHUNK_MAX);
      FUZZ_CHECK(d->payload.data() == sample.data() + sizeof(ht_data_event));
      if (want != nullptr) {
        const auto& w = std::get<bpf::DataEvent>(*want);
        FUZZ_CHECK(d->key == w.key && d->pos == w.pos && d->payload == want_payload &&
                   d->skip == w.skip && d->dir == w.dir && d->stream_start == w.stream_start &&
                   d->ts_ns == w.ts_ns);
      }
      table.OnData(*d, now);
    } else if (auto* o = std::get_if<bpf::OpenEvent>(&*ev)) {
      FUZZ_CHECK(hdr.type == HT_EV_CONN_OPEN);
      FUZZ_CHECK(sample.size() >= sizeof(ht_conn_event));
      FUZZ_CHECK(o->info.comm.size() < sizeof(ht_conn_event::comm) + 1);
      if (want != nullptr) {
        const auto& w = std::get<bpf::OpenEvent>(*want);
        FUZZ_CHECK(o->info.key == w.info.key && o->info.role == w.info.role &&
                   o->info.local.port == w.info.local.port &&
                   o->info.remote.port == w.info.remote.port && o->start_pos[0] == w.start_pos[0] &&
                   o->start_pos[1] == w.start_pos[1] && o->info.proc_start == w.info.proc_start &&
                   o->info.exec_id == w.info.exec_id && o->info.family == w.info.family);
        if (w.info.family == AF_UNIX) {
          FUZZ_CHECK(o->info.local.text == w.info.local.text &&
                     o->info.remote.text == w.info.remote.text);
        }
      }
      FUZZ_CHECK(o->info.local.text.size() <= HT_UNIX_PATH_MAX &&
                 o->info.remote.text.size() <= HT_UNIX_PATH_MAX);
      table.OnOpen(*o, "/usr/bin/fuzz");
    } else if (auto* x = std::get_if<bpf::ExitEvent>(&*ev)) {
      FUZZ_CHECK(hdr.type == HT_EV_PROC_EXIT);
      FUZZ_CHECK(sample.size() >= sizeof(ht_exit_event));
      if (want != nullptr) {
        const auto& w = std::get<bpf::ExitEvent>(*want);
        FUZZ_CHECK(x->tgid == w.tgid && x->proc_start == w.proc_start && x->ts_ns == w.ts_ns);
      }
      table.OnProcessExit(*x);
    } else {
      const auto& c = std::get<bpf::CloseEvent>(*ev);
      FUZZ_CHECK(hdr.type == HT_EV_CONN_CLOSE);
      FUZZ_CHECK(sample.size() >= sizeof(ht_close_event));
      if (want != nullptr) {
        const auto& w = std::get<bpf::CloseEvent>(*want);
        FUZZ_CHECK(c.key == w.key && c.end_pos[0] == w.end_pos[0] && c.end_pos[1] == w.end_pos[1] &&
                   c.reason == w.reason);
      }
      table.OnClose(c);
    }
  }

  // A well-formed sample for connection n; `want` gets the event it encodes.
  std::string Build(uint8_t op, uint8_t n, bpf::Event* want, std::string* want_payload) {
    const ConnIdSpec id = IdOf(n);
    const ConnKey key{id.tgid, id.fd, id.gen};
    Direction* d = dirs[n % kPool];
    if (op == kOpen) {
      const uint8_t role = in.U8() % 3;
      const uint64_t at = in.U8() % 4 == 0 ? in.U16() : 0;
      for (int i = 0; i < 2; ++i) d[i].frontier = std::max(d[i].frontier, at);
      bpf::OpenEvent o;
      o.info.key = key;
      o.info.role = role == HT_ROLE_SERVER   ? http::Role::kServer
                    : role == HT_ROLE_CLIENT ? http::Role::kClient
                                             : http::Role::kUnknown;
      o.info.family = AF_INET;
      o.info.local.port = 8080;
      o.info.remote.port = 40000;
      o.start_pos[0] = o.start_pos[1] = at;
      // Few distinct processes, so that exits and resumed connections match.
      o.info.proc_start = in.U8() % 4;
      o.info.exec_id = in.U8() % 2;
      // A connection the kernel found mid-stream (opened before us, or lost
      // from its map and found again: the table may resume another
      // generation of the same fd).
      const bool discovered = role == HT_ROLE_UNKNOWN && in.U8() % 2 == 0;
      o.info.origin = discovered ? Origin::kDiscovered : o.info.origin;
      std::string sample = OpenSample(id, role, 8080, 40000, "fuzz", now, at, at,
                                      o.info.proc_start, o.info.exec_id,
                                      discovered ? HT_ORIGIN_DISCOVERED : -1);
      if (in.U8() % 4 == 0) {
        // A Unix domain socket: names of any bytes, lengths that may claim
        // more than the buffer holds (the decoder clamps them).
        ht_conn_event ev;
        std::memcpy(&ev, sample.data(), sizeof(ev));
        ev.family = AF_UNIX;
        ev.local_port = ev.remote_port = 0;
        std::memset(ev.local_addr, 0, sizeof(ev.local_addr));
        std::memset(ev.remote_addr, 0, sizeof(ev.remote_addr));
        ev.local_path_len = in.U8();
        ev.remote_path_len = in.U8();
        const std::string_view names = in.Bytes(2 * HT_UNIX_PATH_MAX);
        std::memcpy(ev.local_path, names.data(), std::min(names.size(), sizeof(ev.local_path)));
        if (names.size() > HT_UNIX_PATH_MAX) {
          std::memcpy(ev.remote_path, names.data() + HT_UNIX_PATH_MAX,
                      names.size() - HT_UNIX_PATH_MAX);
        }
        o.info.family = AF_UNIX;
        o.info.local.port = o.info.remote.port = 0;
        o.info.local.text = conn::UnixNameText(
            ev.local_path, std::min<size_t>(ev.local_path_len, HT_UNIX_PATH_MAX));
        o.info.remote.text = conn::UnixNameText(
            ev.remote_path, std::min<size_t>(ev.remote_path_len, HT_UNIX_PATH_MAX));
        sample.assign(reinterpret_cast<const char*>(&ev), sizeof(ev));
      }
      *want = o;
      return sample;
    }
    if (op == kExit) {
      // Sometimes the start time its connections were opened with (as kOpen
      // draws it), sometimes another process that got the pid.
      const bpf::ExitEvent x{.tgid = id.tgid, .proc_start = in.U8() % 5u, .ts_ns = now};
      *want = x;
      return ExitSample(x.tgid, x.proc_start, x.ts_ns);
    }
    if (op == kClose) {
      bpf::CloseEvent c;
      c.key = key;
      c.end_pos[0] = d[0].frontier + (in.U8() % 4 == 0 ? in.U8() : 0);
      c.end_pos[1] = d[1].frontier;
      const uint32_t reason = 1 + in.U8() % 3;
      c.reason = reason == HT_CLOSE_NOT_HTTP   ? bpf::CloseReason::kNotHttp
                 : reason == HT_CLOSE_DISABLED ? bpf::CloseReason::kDisabled
                                               : bpf::CloseReason::kClosed;
      *want = c;
      for (int i = 0; i < 2; ++i) d[i] = Direction{};
      return CloseSample(id, c.end_pos[0], c.end_pos[1], reason, now);
    }
    const uint8_t shape = in.U8();
    const uint8_t dir = shape & 1;
    std::string payload;
    if ((shape & 6) == 0) {
      payload = std::string(in.Bytes(300));
    } else {
      payload = std::string(kFragments[in.U8() % std::size(kFragments)]);
      if ((shape & 6) == 2) payload.resize(in.Below(payload.size() + 1));  // cut short
    }
    const uint32_t skip = (shape & 0x18) == 0x18 ? in.U16() : 0;
    // Usually at the frontier (in order); sometimes behind or ahead of it.
    uint64_t pos = d[dir].frontier;
    if ((shape & 0x60) == 0x60) pos += in.U8();
    if ((shape & 0x60) == 0x40 && pos > 0) pos -= std::min<uint64_t>(pos, in.U8());
    const bool start = !d[dir].started;
    d[dir].started = true;
    d[dir].frontier = std::max(d[dir].frontier, pos + payload.size() + skip);
    bpf::DataEvent ev;
    ev.key = key;
    ev.ts_ns = now;
    ev.tid = id.tgid;
    ev.pos = pos;
    ev.skip = skip;
    ev.dir = dir == HT_DIR_INGRESS ? http::Direction::kIngress : http::Direction::kEgress;
    ev.stream_start = start;
    *want = ev;
    *want_payload = payload;
    return DataSample(id, dir, pos, payload, skip, start ? HT_DATA_F_STREAM_START : 0, now);
  }

  void CheckBounds() {
    FUZZ_CHECK(table.size() <= options.max_connections);
    const ConnTableStats s = table.stats();
    FUZZ_CHECK(s.opened - s.closed - s.evicted - s.expired - s.process_exited == table.size());
    const size_t live = LiveHeapBytes();
    if (live > heap_base + heap_bound) {
      std::fprintf(stderr, "live heap %zu bytes over %zu + bound %zu with %zu connections\n", live,
                   heap_base, heap_bound, table.size());
      FUZZ_CHECK(live <= heap_base + heap_bound);
    }
  }

  void Run() {
    size_t ops = 0;
    while (!in.empty() && ops++ < 2048) {
      const uint8_t op = in.U8() % kOps;
      switch (op) {
        case kOpen:
        case kData:
        case kClose:
        case kExit: {
          bpf::Event want;
          std::string payload;
          const std::string sample = Build(op, in.U8(), &want, &payload);
          Feed(sample, &want, payload);
          break;
        }
        case kRaw: {
          const size_t len = in.U8() % 2 == 0 ? in.Below(128) : in.Below(HT_CHUNK_MAX + 200);
          std::string sample(in.Bytes(len));
          if (in.U8() % 2 == 0) sample.resize(len, '\0');
          sink.raw_keys_allowed = true;
          Feed(sample, nullptr);
          break;
        }
        case kMangled: {
          bpf::Event want;
          std::string payload;
          const auto kind = static_cast<uint8_t>(in.U8() % 3);  // read before n (see U16)
          std::string sample = Build(kind, in.U8(), &want, &payload);
          const uint8_t how = in.U8() % 4;
          if (how == 0) sample.resize(in.Below(sample.size()));
          if (how == 1 && !sample.empty())
            sample[in.Below(sample.size())] = static_cast<char>(in.U8());
          if (how == 2 && sample.size() >= sizeof(ht_data_event)) {
            const uint32_t len = in.U32();  // the data event's len field lies
            std::memcpy(sample.data() + offsetof(ht_data_event, len), &len, sizeof(len));
          }
          if (how == 3) sample += std::string(in.Bytes(64));
          sink.raw_keys_allowed = true;
          Feed(sample, nullptr);
          break;
        }
        case kTick:
          now += in.U8() % 2 == 0 ? in.Below(2'000'000) : in.U32() * uint64_t{64};
          table.Tick(now);
          break;
        default:
          break;
      }
      CheckBounds();
    }
    table.FinishAll();
    FUZZ_CHECK(table.size() == 0);
    CheckBounds();
  }
};

}  // namespace
}  // namespace httptraced::conn

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace httptraced::conn;
  if (size < 1) return 0;
  ConnTableOptions o;
  o.max_connections = 1 + data[0] % 8;
  // Sometimes --unix_path, with names short enough for the fuzzer to hit.
  if ((data[0] & 8) != 0) o.unix_names = {"a", "@b"};
  o.session.max_body_bytes = 64;
  o.session.max_header_bytes = 256;
  o.session.max_pending_requests = 4;
  o.session.not_http_after_bytes = 1024;
  o.stream.max_pending_bytes = 2048;
  o.stream.hole_timeout_ns = 1'000'000;
  o.request_timeout_ns = 50'000'000;
  o.conn_idle_timeout_ns = 500'000'000;
  // What one connection may hold with these limits (see CheckBounds): two
  // streams' pending bytes (2 KiB each, plus about 110 bytes of bookkeeping per
  // waiting chunk, which max_pending_bytes does not count: an input of at most
  // a few KiB carries at most a few hundred chunks), two parsers (about
  // 4 * max_header_bytes + max_body_bytes each plus the parsed fields of one
  // message), and max_pending_requests messages waiting for their responses.
  // Generous on purpose: it fails on state that grows with the input, not on
  // an allocator's rounding.
  constexpr size_t kPerConnection = 192 * 1024;
  const size_t base = LiveHeapBytes();
  Fuzzer f(data + 1, size - 1, o);
  f.heap_base = base;
  f.heap_bound = o.max_connections * kPerConnection + 64 * 1024;
  f.Run();
  return 0;
}
