// Decoding of ring-buffer samples into typed events. The kernel is trusted to
// follow the ABI, but every size is still checked: a sample is copied out with
// memcpy after its length is validated, never reinterpret_cast.
#ifndef HTTPTRACED_BPF_EVENT_H_
#define HTTPTRACED_BPF_EVENT_H_

#include <cstdint>
#include <string_view>
#include <variant>

#include "absl/status/statusor.h"
#include "conn/conn_info.h"

namespace httptraced::bpf {

struct OpenEvent {
  conn::ConnInfo info;
  uint32_t tid = 0;
  uint64_t start_pos[2] = {0, 0};  // where each direction's events begin
};

struct DataEvent {
  conn::ConnKey key;
  uint64_t ts_ns = 0;
  uint32_t tid = 0;
  uint64_t pos = 0;          // stream position of payload[0]
  std::string_view payload;  // points into the ring buffer: valid during the callback
  uint32_t skip = 0;         // stream bytes after the payload that were not captured
  http::Direction dir = http::Direction::kIngress;
  uint8_t syscall = 0;
  bool stream_start = false;
};

enum class CloseReason { kClosed, kNotHttp, kDisabled };

struct CloseEvent {
  conn::ConnKey key;
  uint64_t ts_ns = 0;
  uint64_t end_pos[2] = {0, 0};  // final stream length: ingress, egress
  CloseReason reason = CloseReason::kClosed;
};

// A process ended: its connections closed with it.
struct ExitEvent {
  uint32_t tgid = 0;
  uint64_t proc_start = 0;  // matches ConnInfo::proc_start of its connections
  uint64_t ts_ns = 0;
};

using Event = std::variant<OpenEvent, DataEvent, CloseEvent, ExitEvent>;

// Decodes one sample. Malformed samples (short, unknown type, wrong ABI
// version, inconsistent lengths) give InvalidArgument/FailedPrecondition.
absl::StatusOr<Event> DecodeEvent(std::string_view sample);

}  // namespace httptraced::bpf

#endif  // HTTPTRACED_BPF_EVENT_H_
