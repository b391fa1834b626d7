#include "record/url.h"

#include <cstdint>
#include <optional>
#include <string_view>

namespace httptraced::record {
namespace {

std::optional<uint16_t> ParsePort(std::string_view digits) {
  if (digits.empty() || digits.size() > 5) return std::nullopt;
  uint32_t v = 0;
  for (const char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )  (RFC 3986 section 3.1)
bool IsScheme(std::string_view s) {
  if (s.empty() || !IsAlpha(s[0])) return false;
  for (const char c : s) {
    if (!IsAlpha(c) && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.') return false;
  }
  return true;
}

// Splits "path?query#fragment" into `parts`.
void SplitPathQueryFragment(std::string_view rest, TargetParts& parts) {
  const size_t hash = rest.find('#');
  if (hash != std::string_view::npos) {
    parts.fragment = rest.substr(hash + 1);
    rest = rest.substr(0, hash);
  }
  const size_t question = rest.find('?');
  if (question != std::string_view::npos) {
    parts.query = rest.substr(question + 1);
    rest = rest.substr(0, question);
  }
  parts.path = rest;
}

}  // namespace

HostPort SplitHostPort(std::string_view authority) {
  const size_t at = authority.rfind('@');
  if (at != std::string_view::npos) authority = authority.substr(at + 1);
  HostPort out;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      out.host = authority;
      return out;
    }
    out.host = authority.substr(0, close + 1);
    const std::string_view rest = authority.substr(close + 1);
    if (!rest.empty() && rest[0] == ':') out.port = ParsePort(rest.substr(1));
    return out;
  }
  const size_t colon = authority.rfind(':');
  if (colon == std::string_view::npos) {
    out.host = authority;
    return out;
  }
  out.host = authority.substr(0, colon);
  out.port = ParsePort(authority.substr(colon + 1));
  return out;
}

TargetParts SplitTarget(std::string_view method, std::string_view target) {
  TargetParts parts;
  if (method == "CONNECT") {
    parts.authority = target;
    return parts;
  }
  if (target == "*") return parts;
  if (target.empty() || target[0] == '/') {
    SplitPathQueryFragment(target, parts);
    return parts;
  }
  const size_t sep = target.find("://");
  if (sep == std::string_view::npos || !IsScheme(target.substr(0, sep))) {
    SplitPathQueryFragment(target, parts);
    return parts;
  }
  parts.scheme = target.substr(0, sep);
  std::string_view rest = target.substr(sep + 3);
  const size_t authority_end = rest.find_first_of("/?#");
  parts.authority = rest.substr(0, authority_end);
  rest = authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  SplitPathQueryFragment(rest, parts);
  return parts;
}

}  // namespace httptraced::record
