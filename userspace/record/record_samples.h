// Representative exchanges for the record tests and the schema check: small
// builders for the inputs, and one named sample per case the records must cover.
#ifndef HTTPTRACED_RECORD_RECORD_SAMPLES_H_
#define HTTPTRACED_RECORD_RECORD_SAMPLES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "conn/conn_info.h"
#include "http/message.h"
#include "record/record_builder.h"

namespace httptraced::record::samples {

// Monotonic 1000 s is wall 2026-11-21T20:45:59.123456789Z in every sample.
inline constexpr uint64_t kMonoBaseNs = 1'000'000'000'000;
inline constexpr int64_t kRealtimeMinusMonotonicNs = 1'795'292'959'123'456'789;

http::Message Request(std::string method, std::string target, std::vector<http::Header> headers,
                      std::string body = {});
http::Message Response(int status_code, std::vector<http::Header> headers, std::string body = {});
// first/last: the syscalls carrying the message's first and last byte, at
// kMonoBaseNs + offset.
void SetTiming(http::Message& m, uint64_t first_offset_ns, uint32_t first_tid,
               uint64_t last_offset_ns, uint32_t last_tid);

// IPv4, accepted by nginx (pid 4242, fd 7, gen 99): local 10.0.0.1:8080,
// remote 192.168.1.20:51000.
conn::ConnInfo ServerConnV4();
// IPv4, connected by curl (pid 5151, fd 3, gen 12345): local 10.0.0.2:40000,
// remote 93.184.216.34:80.
conn::ConnInfo ClientConnV4();
// IPv6 server: local [2001:db8::1]:443, remote [2001:db8::abcd]:60000.
conn::ConnInfo ServerConnV6();
// IPv6 socket with IPv4-mapped addresses: local ::ffff:127.0.0.1:8080,
// remote ::ffff:127.0.0.1:55555.
conn::ConnInfo ServerConnV4Mapped();

struct Sample {
  std::string name;
  conn::ConnInfo conn;
  http::Exchange exchange;
  RecordOptions options;
  std::string executable;  // ProcessDetails.executable
};

// The record of `sample` (one line, with its '\n').
std::string Render(const Sample& sample);

Sample ServerGetWithQuery();
Sample ClientPostWithBody();
// The three exchanges of one connection with pipelined requests (seq 0, 1, 2).
std::vector<Sample> Pipelined();
Sample IncompleteNoResponse();
Sample ResponseOnly();
Sample Head();
Sample InvalidUtf8Body();
Sample InvalidUtf8HeaderAndTarget();
Sample ControlCharsAndQuotes();
Sample RedactionDefault();
Sample RedactionCustom();
Sample NoBodyCapture();
Sample Ipv6();
Sample Ipv4Mapped();
Sample TruncatedBodies();
Sample RepeatedHeadersAndTrailers();
Sample UnknownRole();
Sample UnixServer();          // AF_UNIX: the server's socket file, the client's end unnamed
Sample UnixClientAbstract();  // AF_UNIX: curl to an abstract name
Sample UnixUnknownRole();
Sample TlsClient();      // HTTPS, read at libssl: tls.established
Sample UnknownFamily();  // the open event was lost
Sample AbsoluteFormProxyRequest();
Sample InterimResponses();
Sample DecodedBodies();  // bodies decoded from gzip and zstd (BodyDecoder)

// Every sample above, for the schema check.
std::vector<Sample> AllSamples();

}  // namespace httptraced::record::samples

#endif  // HTTPTRACED_RECORD_RECORD_SAMPLES_H_
