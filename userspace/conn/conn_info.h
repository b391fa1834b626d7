// What the daemon knows about one traced connection (TCP or Unix domain stream).
#ifndef HTTPTRACED_CONN_CONN_INFO_H_
#define HTTPTRACED_CONN_CONN_INFO_H_

#include <arpa/inet.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <string>

#include "http/session.h"

namespace httptraced::conn {

struct ConnKey {
  uint32_t tgid = 0;
  int32_t fd = 0;
  uint64_t gen = 0;  // kernel ktime at first sight: survives fd and pid reuse
  friend bool operator==(const ConnKey&, const ConnKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const ConnKey& k) {
    return H::combine(std::move(h), k.tgid, k.fd, k.gen);
  }
};

struct Endpoint {
  std::array<uint8_t, 16> addr{};  // network order; IPv4 uses the first 4 bytes
  uint16_t port = 0;               // host order
  // The address as text ("10.0.0.1", "::1", "::ffff:127.0.0.1"), formatted
  // once per connection (AddressText); "" when not formatted. For AF_UNIX the
  // socket's name (UnixNameText), "" when it has none; addr and port are 0.
  std::string text;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// Address text as inet_ntop gives it; "" for an unknown family.
inline std::string AddressText(int family, const std::array<uint8_t, 16>& addr) {
  char buf[INET6_ADDRSTRLEN];
  if ((family != AF_INET && family != AF_INET6) ||
      inet_ntop(family, addr.data(), buf, sizeof(buf)) == nullptr) {
    return {};
  }
  return buf;
}

// A Unix domain socket's name as ss(8) shows it: the path up to its first NUL,
// or an abstract name (leading NUL) with every NUL shown as '@' (some
// programs pad theirs with NULs to the full sun_path).
inline std::string UnixNameText(const char* name, size_t len) {
  if (len == 0) return {};
  if (name[0] != '\0') return std::string(name, strnlen(name, len));
  std::string out(name, len);
  for (char& c : out) {
    if (c == '\0') c = '@';
  }
  return out;
}

enum class Origin { kAccept, kConnect, kDiscovered };

struct ConnInfo {
  ConnKey key;
  int family = 0;  // AF_INET, AF_INET6 or AF_UNIX
  bool tls = false;  // the payload is TLS plaintext, taken at libssl
  http::Role role = http::Role::kUnknown;
  Origin origin = Origin::kDiscovered;
  Endpoint local;   // this process's end
  Endpoint remote;  // the peer
  std::string comm;  // process name (thread group leader's comm)
  // AF_UNIX: the process at the other end (SO_PEERCRED: the one that
  // connected, or that listened); 0 when unknown or not a Unix socket.
  uint32_t peer_pid = 0;
  // The process beyond its pid, as the kernel saw it when the connection was
  // entered: its start time (pid reuse) and how many times it had exec()ed.
  uint64_t proc_start = 0;
  uint32_t exec_id = 0;
  std::string executable;  // /proc/<pid>/exe when the connection was first seen; "" if gone
  // The container the process runs in (proc::ContainerIdFromCgroup); "" on the host.
  std::string container_id;
  uint64_t open_ts_ns = 0;  // monotonic
};

}  // namespace httptraced::conn

#endif  // HTTPTRACED_CONN_CONN_INFO_H_
