// Splitting an HTTP/1.x request-target and a Host value into ECS url.* parts.
// Pure functions over views into the caller's strings.
#ifndef HTTPTRACED_RECORD_URL_H_
#define HTTPTRACED_RECORD_URL_H_

#include <cstdint>
#include <optional>
#include <string_view>

namespace httptraced::record {

struct HostPort {
  std::string_view host;         // "" when none; an IPv6 literal keeps its [ ]
  std::optional<uint16_t> port;  // absent when missing or not a number 0..65535
};

// "user@host:port" (userinfo dropped), "[v6]:port", "host", "host:".
HostPort SplitHostPort(std::string_view authority);

// The parts of a request-target (RFC 9112 section 3.2).
struct TargetParts {
  std::string_view scheme;                    // absolute-form only ("http" in "http://h/p")
  std::optional<std::string_view> authority;  // absolute-form and authority-form
  std::string_view path;                      // "" for authority-form, asterisk-form, "http://h"
  std::optional<std::string_view> query;      // after '?', without it; "" for a bare '?'
  std::optional<std::string_view> fragment;   // after '#' (clients should not send one)
};

// origin-form "/p?q", absolute-form "http://h:1/p?q", authority-form
// "h:443" (method CONNECT), asterisk-form "*". Anything else is read as a path.
TargetParts SplitTarget(std::string_view method, std::string_view target);

}  // namespace httptraced::record

#endif  // HTTPTRACED_RECORD_URL_H_
