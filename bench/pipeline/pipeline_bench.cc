// The daemon's per-event path without the kernel: ring-buffer samples (built
// exactly as the BPF side emits them) -> decode -> connection table ->
// reassembly -> HTTP parsing and pairing -> JSON record into a batch buffer.
// Prints ns and (under valgrind --tool=callgrind, repeatable) instructions per
// exchange, and the heap allocations (operator new) the event path makes per
// exchange. Not a test: a measurement for bench/.
//
//   pipeline_bench [exchanges] [connections] [get|post|json|gzip|gzip-raw]
//
// json: a GET answered with 3.7 KiB of JSON; gzip: the same JSON gzip-coded,
// decoded for the record as the daemon does by default; gzip-raw: the same
// coded bytes recorded as sent (--decode_bodies=false).
//
// get: wrk's GET of a small static file, the body sent with sendfile().
// post: bench/post.lua's 1 KiB JSON POST and nginx's 1 KiB text answer, the
// head and body written together (one writev, one event).
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <variant>
#include <vector>

#include "bpf/event.h"
#include "conn/conn_table.h"
#include "http/body_decoder.h"
#include "ht_events.h"
#include "record/record_builder.h"

// Calls of operator new, the allocations of every container and string on
// the event path (C code's malloc, zlib's when decoding gzip, is not
// counted). One thread.
unsigned long long g_allocations = 0;

void* operator new(std::size_t size) {
  ++g_allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

using httptraced::testing::ConnIdSpec;

// What wrk sends and nginx answers for a small static file (captured bytes).
constexpr char kRequest[] =
    "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:18080\r\n\r\n";
constexpr char kResponseHead[] =
    "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 21 Nov 2026 21:22:31 GMT\r\n"
    "Content-Type: text/html\r\nContent-Length: 17\r\nLast-Modified: Sat, 21 Nov 2026 "
    "21:00:00 GMT\r\nConnection: keep-alive\r\nETag: \"673f9a10-11\"\r\nAccept-Ranges: "
    "bytes\r\n\r\n";
constexpr uint32_t kBodyLen = 17;  // sent with sendfile(): a payload-less skip

// The POST workload's bytes, as bench/post.lua and bench/httpbench.py make them.
std::string Filler(size_t n) {
  std::string s;
  while (s.size() < n) s += "0123456789abcdef";
  s.resize(n);
  return s;
}
std::string PostRequest() {
  const std::string body = "{\"data\":\"" + Filler(1024 - 11) + "\"}";
  return "POST /echo HTTP/1.1\r\nHost: 127.0.0.1:18080\r\nContent-Length: 1024\r\n"
         "Content-Type: application/json\r\n\r\n" +
         body;
}
std::string PostResponse() {
  const std::string body = Filler(1023) + "\n";
  return "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 21 Nov 2026 21:22:31 GMT\r\n"
         "Content-Type: text/plain\r\nContent-Length: 1024\r\nConnection: keep-alive\r\n\r\n" +
         body;
}

// A JSON API's answer of about 4 KiB: quotes every few bytes, as JSON has.
std::string ApiJson() {
  std::string json = "[";
  for (int i = 0; i < 60; ++i) {
    if (i > 0) json += ",";
    json += "{\"id\":" + std::to_string(i) + ",\"name\":\"item " + std::to_string(i) +
            "\",\"tags\":[\"alpha\",\"beta\"],\"price\":" + std::to_string(100 + i * 7) + "}";
  }
  json += "]";
  return json;
}

std::string JsonResponse() {
  const std::string json = ApiJson();
  return "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 21 Nov 2026 21:22:31 GMT\r\n"
         "Content-Type: application/json\r\nContent-Length: " +
         std::to_string(json.size()) + "\r\nConnection: keep-alive\r\n\r\n" + json;
}

// The same, gzip-coded (level 6, as nginx's gzip_comp_level 1..9 and most
// frameworks' defaults go), which the daemon decodes for the record
// (--decode_bodies).
std::string GzipResponse() {
  std::string json = ApiJson();
  uLongf n = compressBound(static_cast<uLong>(json.size())) + 32;
  std::string gz(n, '\0');
  z_stream s{};
  deflateInit2(&s, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  s.next_in = reinterpret_cast<Bytef*>(json.data());
  s.avail_in = static_cast<uInt>(json.size());
  s.next_out = reinterpret_cast<Bytef*>(gz.data());
  s.avail_out = static_cast<uInt>(gz.size());
  deflate(&s, Z_FINISH);
  gz.resize(s.total_out);
  deflateEnd(&s);
  return "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 21 Nov 2026 21:22:31 GMT\r\n"
         "Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: " +
         std::to_string(gz.size()) + "\r\nConnection: keep-alive\r\n\r\n" + gz;
}

class Sink final : public httptraced::conn::ExchangeSink,
                   public httptraced::conn::ConnController {
 public:
  Sink(httptraced::record::RecordBuilder& builder, bool decode)
      : builder_(builder), decode_(decode) {
    batch_.Reserve(512 * 1024);
  }
  void OnExchange(const httptraced::conn::ConnInfo& conn,
                  httptraced::http::Exchange&& exchange) override {
    // As the daemon does: coded bodies are decoded (--decode_bodies).
    if (decode_ && exchange.request) decoder_.Decode(*exchange.request);
    if (decode_ && exchange.response) decoder_.Decode(*exchange.response);
    builder_.Append(conn, exchange, {conn.executable}, clock_, batch_, &cache_);
    ++exchanges;
    if (batch_.size() > 256 * 1024) {
      bytes += batch_.size();
      batch_.clear();
    }
  }
  void StopTracing(const httptraced::conn::ConnKey&) override {}
  void Forget(const httptraced::conn::ConnKey&) override {}
  uint64_t KernelDrops() override { return 0; }
  bool KernelAhead(const httptraced::conn::ConnKey&, const uint64_t*) override { return false; }
  void SkipBody(const httptraced::conn::ConnKey&, httptraced::http::Direction, uint64_t,
                uint64_t) override {}
  void ClearSkips(const httptraced::conn::ConnKey&) override {}
  uint64_t exchanges = 0;
  uint64_t bytes = 0;
  const httptraced::record::RecordCache& cache() const { return cache_; }

 private:
  httptraced::record::RecordBuilder& builder_;
  httptraced::record::RecordCache cache_;
  httptraced::http::BodyDecoder decoder_{16384};
  bool decode_;
  httptraced::record::ClockOffset clock_;
  httptraced::record::OutBuffer batch_;
};

// The daemon's event path over the samples (built beforehand): what is
// timed, and all that bench/pipeline/instructions.sh counts (callgrind
// --toggle-collect=*ReplaySamples*), so building the samples is left out.
[[gnu::noinline]] bool ReplaySamples(const std::vector<std::string>& samples,
                                     httptraced::conn::ConnTable& table) {
  for (const std::string& s : samples) {
    absl::StatusOr<httptraced::bpf::Event> ev = httptraced::bpf::DecodeEvent(s);
    if (!ev.ok()) return false;
    if (auto* d = std::get_if<httptraced::bpf::DataEvent>(&*ev)) {
      table.OnData(*d, d->ts_ns);
    } else if (auto* o = std::get_if<httptraced::bpf::OpenEvent>(&*ev)) {
      table.OnOpen(*o, "/usr/sbin/nginx");
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const int exchanges = argc > 1 ? std::atoi(argv[1]) : 200000;
  const int conns = argc > 2 ? std::atoi(argv[2]) : 16;
  const int per_conn = exchanges / conns;
  const std::string workload = argc > 3 ? argv[3] : "get";
  if (conns <= 0 || per_conn <= 0 ||
      (workload != "get" && workload != "post" && workload != "json" && workload != "gzip" &&
       workload != "gzip-raw")) {
    std::fprintf(stderr,
                 "usage: pipeline_bench [exchanges] [connections] [get|post|json|gzip|gzip-raw]\n");
    return 64;
  }
  const bool post = workload == "post";
  const bool gzip = workload == "gzip" || workload == "gzip-raw";
  const bool json = workload == "json";
  const std::string request = post ? PostRequest() : std::string(kRequest);
  const std::string response = post   ? PostResponse()
                               : gzip ? GzipResponse()
                               : json ? JsonResponse()
                                      : std::string(kResponseHead);

  std::vector<std::string> samples;
  samples.reserve(static_cast<size_t>(exchanges) * 3 + static_cast<size_t>(conns));
  uint64_t ts = 1'000'000;
  for (int c = 0; c < conns; ++c) {
    const ConnIdSpec id{.tgid = 4242, .fd = 10 + c, .gen = 1000u + static_cast<uint64_t>(c)};
    samples.push_back(httptraced::testing::OpenSample(id, HT_ROLE_SERVER, 18080,
                                                      static_cast<uint16_t>(40000 + c), "nginx"));
  }
  std::vector<uint64_t> in_pos(static_cast<size_t>(conns)), out_pos(static_cast<size_t>(conns));
  for (int i = 0; i < per_conn; ++i) {
    for (int c = 0; c < conns; ++c) {
      const ConnIdSpec id{.tgid = 4242, .fd = 10 + c, .gen = 1000u + static_cast<uint64_t>(c)};
      const uint16_t first = i == 0 ? HT_DATA_F_STREAM_START : 0;
      auto& ip = in_pos[static_cast<size_t>(c)];
      auto& op = out_pos[static_cast<size_t>(c)];
      samples.push_back(httptraced::testing::DataSample(id, HT_DIR_INGRESS, ip, request, 0,
                                                        first, ts += 1000, 4243, HT_SYS_RECVFROM));
      ip += request.size();
      samples.push_back(httptraced::testing::DataSample(id, HT_DIR_EGRESS, op, response, 0,
                                                        first, ts += 1000, 4243, HT_SYS_WRITEV));
      op += response.size();
      if (!post && !gzip && !json) {
        samples.push_back(httptraced::testing::DataSample(id, HT_DIR_EGRESS, op, "", kBodyLen, 0,
                                                          ts += 1000, 4243, HT_SYS_SENDFILE));
        op += kBodyLen;
      }
    }
  }

  httptraced::record::RecordOptions ropts;
  ropts.host_name = "bench-host";
  httptraced::record::RecordBuilder builder(ropts);
  Sink sink(builder, /*decode=*/workload != "gzip-raw");
  httptraced::conn::ConnTable table({}, sink, sink);

  const unsigned long long allocations_before = g_allocations;
  const auto start = std::chrono::steady_clock::now();
  if (!ReplaySamples(samples, table)) return 1;
  const auto elapsed = std::chrono::steady_clock::now() - start;
  const unsigned long long allocations = g_allocations - allocations_before;
  const double ns = static_cast<double>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count());
  std::printf(
      "exchanges=%llu events=%zu ns_per_exchange=%.0f bytes_per_record=%.0f "
      "allocations_per_exchange=%.3f record_cache_hits=%llu misses=%llu\n",
      static_cast<unsigned long long>(sink.exchanges), samples.size(),
      ns / static_cast<double>(sink.exchanges),
      static_cast<double>(sink.bytes) / static_cast<double>(sink.exchanges),
      static_cast<double>(allocations) / static_cast<double>(sink.exchanges),
      static_cast<unsigned long long>(sink.cache().hits()),
      static_cast<unsigned long long>(sink.cache().misses()));
  return sink.exchanges == static_cast<uint64_t>(per_conn) * static_cast<uint64_t>(conns) ? 0 : 2;
}
