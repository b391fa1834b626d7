// Builders for ring-buffer samples exactly as the BPF side emits them, so that
// decoder and connection-table tests never hand-write byte blobs.
#ifndef HTTPTRACED_TESTS_SUPPORT_HT_EVENTS_H_
#define HTTPTRACED_TESTS_SUPPORT_HT_EVENTS_H_

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "httptraced_abi.h"

namespace httptraced::testing {

struct ConnIdSpec {
  uint32_t tgid = 1000;
  int32_t fd = 7;
  uint64_t gen = 555;
};

inline ht_event_header Header(uint16_t type, const ConnIdSpec& id, uint64_t ts, uint32_t tid) {
  ht_event_header h{};
  h.type = type;
  h.version = HT_ABI_VERSION;
  h.tid = tid;
  h.ts_ns = ts;
  h.conn.tgid = id.tgid;
  h.conn.fd = id.fd;
  h.conn.gen = id.gen;
  return h;
}

template <typename T>
std::string Bytes(const T& v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof(v));
}

// An IPv4 open event: local 127.0.0.1:lport, remote 127.0.0.1:rport. The
// origin is accept for a server, connect otherwise, unless given.
inline std::string OpenSample(const ConnIdSpec& id, uint8_t role, uint16_t lport, uint16_t rport,
                              std::string_view comm = "server", uint64_t ts = 100,
                              uint64_t ingress_start = 0, uint64_t egress_start = 0,
                              uint64_t proc_start = 0, uint32_t exec_id = 0,
                              int origin = -1) {
  ht_conn_event ev{};
  ev.hdr = Header(HT_EV_CONN_OPEN, id, ts, id.tgid);
  ev.family = AF_INET;
  ev.role = role;
  ev.origin = static_cast<uint8_t>(origin >= 0               ? origin
                                   : role == HT_ROLE_SERVER ? int{HT_ORIGIN_ACCEPT}
                                                            : int{HT_ORIGIN_CONNECT});
  ev.local_port = lport;
  ev.remote_port = rport;
  const uint32_t lo = htonl(INADDR_LOOPBACK);
  std::memcpy(ev.local_addr, &lo, 4);
  std::memcpy(ev.remote_addr, &lo, 4);
  std::memcpy(ev.comm, comm.data(), std::min(comm.size(), sizeof(ev.comm) - 1));
  ev.start_pos[HT_DIR_INGRESS] = ingress_start;
  ev.start_pos[HT_DIR_EGRESS] = egress_start;
  ev.proc_start = proc_start;
  ev.exec_id = exec_id;
  return Bytes(ev);
}

// An AF_UNIX open event: the two sockets' names as the kernel copies them
// (sun_path bytes, an abstract name with its leading NUL), lengths as given.
inline std::string UnixOpenSample(const ConnIdSpec& id, uint8_t role, std::string_view local_path,
                                  std::string_view remote_path, uint32_t peer_pid = 0,
                                  uint64_t ts = 100) {
  ht_conn_event ev{};
  ev.hdr = Header(HT_EV_CONN_OPEN, id, ts, id.tgid);
  ev.family = AF_UNIX;
  ev.role = role;
  ev.origin = role == HT_ROLE_SERVER ? HT_ORIGIN_ACCEPT : HT_ORIGIN_CONNECT;
  std::memcpy(ev.comm, "gunicorn", 8);
  ev.peer_pid = peer_pid;
  ev.local_path_len = static_cast<uint8_t>(std::min(local_path.size(), sizeof(ev.local_path)));
  std::memcpy(ev.local_path, local_path.data(), ev.local_path_len);
  ev.remote_path_len = static_cast<uint8_t>(std::min(remote_path.size(), sizeof(ev.remote_path)));
  std::memcpy(ev.remote_path, remote_path.data(), ev.remote_path_len);
  return Bytes(ev);
}

inline std::string DataSample(const ConnIdSpec& id, uint8_t dir, uint64_t pos,
                              std::string_view payload, uint32_t skip = 0, uint16_t flags = 0,
                              uint64_t ts = 200, uint32_t tid = 0, uint8_t sys = HT_SYS_READ) {
  ht_data_event ev{};
  ev.hdr = Header(HT_EV_DATA, id, ts, tid == 0 ? id.tgid : tid);
  ev.pos = pos;
  ev.len = static_cast<uint32_t>(payload.size());
  ev.skip = skip;
  ev.dir = dir;
  ev.syscall = sys;
  ev.flags = flags;
  return Bytes(ev) + std::string(payload);
}

inline std::string CloseSample(const ConnIdSpec& id, uint64_t ingress_end, uint64_t egress_end,
                               uint32_t reason = HT_CLOSE_SYSCALL, uint64_t ts = 900) {
  ht_close_event ev{};
  ev.hdr = Header(HT_EV_CONN_CLOSE, id, ts, id.tgid);
  ev.end_pos[HT_DIR_INGRESS] = ingress_end;
  ev.end_pos[HT_DIR_EGRESS] = egress_end;
  ev.reason = reason;
  return Bytes(ev);
}

inline std::string ExitSample(uint32_t tgid, uint64_t proc_start, uint64_t ts = 950) {
  ht_exit_event ev{};
  ev.hdr = Header(HT_EV_PROC_EXIT, ConnIdSpec{.tgid = tgid, .fd = -1, .gen = 0}, ts, tgid);
  ev.proc_start = proc_start;
  return Bytes(ev);
}

}  // namespace httptraced::testing

#endif  // HTTPTRACED_TESTS_SUPPORT_HT_EVENTS_H_
