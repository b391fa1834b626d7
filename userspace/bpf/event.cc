#include "bpf/event.h"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "httptraced_abi.h"

namespace httptraced::bpf {
namespace {

conn::ConnKey KeyOf(const ht_conn_id& id) {
  return conn::ConnKey{.tgid = id.tgid, .fd = id.fd, .gen = id.gen};
}

template <typename T>
absl::StatusOr<T> CopyOut(std::string_view sample, const char* what) {
  T out;
  if (sample.size() < sizeof(T)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " sample too short: ", sample.size(), " < ", sizeof(T)));
  }
  std::memcpy(&out, sample.data(), sizeof(T));
  return out;
}

conn::Endpoint EndpointOf(const uint8_t (&addr)[16], uint16_t port) {
  conn::Endpoint e;
  std::memcpy(e.addr.data(), addr, e.addr.size());
  e.port = port;
  return e;
}

}  // namespace

absl::StatusOr<Event> DecodeEvent(std::string_view sample) {
  absl::StatusOr<ht_event_header> hdr = CopyOut<ht_event_header>(sample, "event");
  if (!hdr.ok()) return hdr.status();
  if (hdr->version != HT_ABI_VERSION) {
    return absl::FailedPreconditionError(absl::StrCat(
        "BPF event ABI version ", hdr->version, ", expected ", HT_ABI_VERSION));
  }
  switch (hdr->type) {
    case HT_EV_CONN_OPEN: {
      absl::StatusOr<ht_conn_event> ev = CopyOut<ht_conn_event>(sample, "open");
      if (!ev.ok()) return ev.status();
      OpenEvent out;
      out.tid = ev->hdr.tid;
      conn::ConnInfo& info = out.info;
      info.key = KeyOf(ev->hdr.conn);
      info.family = ev->family;
      info.role = ev->role == HT_ROLE_SERVER   ? http::Role::kServer
                  : ev->role == HT_ROLE_CLIENT ? http::Role::kClient
                                               : http::Role::kUnknown;
      info.origin = ev->origin == HT_ORIGIN_ACCEPT    ? conn::Origin::kAccept
                    : ev->origin == HT_ORIGIN_CONNECT ? conn::Origin::kConnect
                                                      : conn::Origin::kDiscovered;
      info.local = EndpointOf(ev->local_addr, ev->local_port);
      info.remote = EndpointOf(ev->remote_addr, ev->remote_port);
      if (info.family == AF_UNIX) {
        info.peer_pid = ev->peer_pid;
        info.local.text = conn::UnixNameText(
            ev->local_path, std::min<size_t>(ev->local_path_len, sizeof(ev->local_path)));
        info.remote.text = conn::UnixNameText(
            ev->remote_path, std::min<size_t>(ev->remote_path_len, sizeof(ev->remote_path)));
      }
      info.tls = ev->tls != 0;
      info.comm.assign(ev->comm, strnlen(ev->comm, sizeof(ev->comm)));
      info.proc_start = ev->proc_start;
      info.exec_id = ev->exec_id;
      info.open_ts_ns = ev->hdr.ts_ns;
      out.start_pos[0] = ev->start_pos[0];
      out.start_pos[1] = ev->start_pos[1];
      return out;
    }
    case HT_EV_DATA: {
      absl::StatusOr<ht_data_event> ev = CopyOut<ht_data_event>(sample, "data");
      if (!ev.ok()) return ev.status();
      if (ev->len > HT_CHUNK_MAX || sample.size() - sizeof(ht_data_event) < ev->len) {
        return absl::InvalidArgumentError(absl::StrCat(
            "data sample claims ", ev->len, " payload bytes but carries ",
            sample.size() - sizeof(ht_data_event)));
      }
      if (ev->dir > HT_DIR_EGRESS) {
        return absl::InvalidArgumentError(absl::StrCat("data sample direction ", ev->dir));
      }
      DataEvent out;
      out.key = KeyOf(ev->hdr.conn);
      out.ts_ns = ev->hdr.ts_ns;
      out.tid = ev->hdr.tid;
      out.pos = ev->pos;
      out.payload = sample.substr(sizeof(ht_data_event), ev->len);
      out.skip = ev->skip;
      out.dir = ev->dir == HT_DIR_INGRESS ? http::Direction::kIngress : http::Direction::kEgress;
      out.syscall = ev->syscall;
      out.stream_start = (ev->flags & HT_DATA_F_STREAM_START) != 0;
      return out;
    }
    case HT_EV_CONN_CLOSE: {
      absl::StatusOr<ht_close_event> ev = CopyOut<ht_close_event>(sample, "close");
      if (!ev.ok()) return ev.status();
      CloseEvent out;
      out.key = KeyOf(ev->hdr.conn);
      out.ts_ns = ev->hdr.ts_ns;
      out.end_pos[0] = ev->end_pos[0];
      out.end_pos[1] = ev->end_pos[1];
      out.reason = ev->reason == HT_CLOSE_NOT_HTTP   ? CloseReason::kNotHttp
                   : ev->reason == HT_CLOSE_DISABLED ? CloseReason::kDisabled
                                                     : CloseReason::kClosed;
      return out;
    }
    case HT_EV_PROC_EXIT: {
      absl::StatusOr<ht_exit_event> ev = CopyOut<ht_exit_event>(sample, "exit");
      if (!ev.ok()) return ev.status();
      return ExitEvent{.tgid = ev->hdr.conn.tgid, .proc_start = ev->proc_start, .ts_ns = ev->hdr.ts_ns};
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown BPF event type ", hdr->type));
  }
}

}  // namespace httptraced::bpf
