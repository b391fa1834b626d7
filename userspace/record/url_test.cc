#include "record/url.h"

#include <catch2/catch.hpp>
#include <optional>
#include <string_view>

namespace httptraced::record {
namespace {

using std::string_view_literals::operator""sv;

TEST_CASE("SplitHostPort") {
  HostPort h = SplitHostPort("example.com:8080");
  CHECK(h.host == "example.com");
  CHECK(h.port == std::optional<uint16_t>(8080));

  h = SplitHostPort("example.com");
  CHECK(h.host == "example.com");
  CHECK(h.port == std::nullopt);

  h = SplitHostPort("example.com:");
  CHECK(h.host == "example.com");
  CHECK(h.port == std::nullopt);

  h = SplitHostPort("example.com:65536");
  CHECK(h.host == "example.com");
  CHECK(h.port == std::nullopt);

  h = SplitHostPort("example.com:65535");
  CHECK(h.port == std::optional<uint16_t>(65535));

  h = SplitHostPort("example.com:0");
  CHECK(h.port == std::optional<uint16_t>(0));

  h = SplitHostPort("example.com:8o");
  CHECK(h.host == "example.com");
  CHECK(h.port == std::nullopt);

  h = SplitHostPort("example.com:000080");
  CHECK(h.port == std::nullopt);

  h = SplitHostPort("[2001:db8::1]:443");
  CHECK(h.host == "[2001:db8::1]");
  CHECK(h.port == std::optional<uint16_t>(443));

  h = SplitHostPort("[::1]");
  CHECK(h.host == "[::1]");
  CHECK(h.port == std::nullopt);

  h = SplitHostPort("[::1");
  CHECK(h.host == "[::1");
  CHECK(h.port == std::nullopt);

  h = SplitHostPort("user:pw@example.org:81");
  CHECK(h.host == "example.org");
  CHECK(h.port == std::optional<uint16_t>(81));

  h = SplitHostPort("");
  CHECK(h.host == "");
  CHECK(h.port == std::nullopt);

  h = SplitHostPort(":80");
  CHECK(h.host == "");
  CHECK(h.port == std::optional<uint16_t>(80));
}

TEST_CASE("SplitTarget: origin-form") {
  TargetParts t = SplitTarget("GET", "/search?q=ebpf&lang=en");
  CHECK(t.scheme == "");
  CHECK(t.authority == std::nullopt);
  CHECK(t.path == "/search");
  CHECK(t.query == std::optional("q=ebpf&lang=en"sv));
  CHECK(t.fragment == std::nullopt);

  t = SplitTarget("GET", "/");
  CHECK(t.path == "/");
  CHECK(t.query == std::nullopt);

  t = SplitTarget("GET", "/r?");
  CHECK(t.path == "/r");
  CHECK(t.query == std::optional(""sv));

  t = SplitTarget("GET", "/a?b?c#d?e");
  CHECK(t.path == "/a");
  CHECK(t.query == std::optional("b?c"sv));
  CHECK(t.fragment == std::optional("d?e"sv));

  t = SplitTarget("GET", "/p#f");
  CHECK(t.path == "/p");
  CHECK(t.query == std::nullopt);
  CHECK(t.fragment == std::optional("f"sv));

  t = SplitTarget("GET", "");
  CHECK(t.path == "");
  CHECK(t.query == std::nullopt);
}

TEST_CASE("SplitTarget: absolute-form") {
  TargetParts t = SplitTarget("GET", "http://user:pw@example.org:8081/p/a?x=1#frag");
  CHECK(t.scheme == "http");
  CHECK(t.authority == std::optional("user:pw@example.org:8081"sv));
  CHECK(t.path == "/p/a");
  CHECK(t.query == std::optional("x=1"sv));
  CHECK(t.fragment == std::optional("frag"sv));

  t = SplitTarget("GET", "https://example.org");
  CHECK(t.scheme == "https");
  CHECK(t.authority == std::optional("example.org"sv));
  CHECK(t.path == "");
  CHECK(t.query == std::nullopt);

  t = SplitTarget("GET", "http://example.org?q");
  CHECK(t.authority == std::optional("example.org"sv));
  CHECK(t.path == "");
  CHECK(t.query == std::optional("q"sv));
}

TEST_CASE("SplitTarget: authority-form, asterisk-form and odd targets") {
  TargetParts t = SplitTarget("CONNECT", "example.org:443");
  CHECK(t.scheme == "");
  CHECK(t.authority == std::optional("example.org:443"sv));
  CHECK(t.path == "");
  CHECK(t.query == std::nullopt);

  t = SplitTarget("OPTIONS", "*");
  CHECK(t.authority == std::nullopt);
  CHECK(t.path == "");

  // Not a scheme before "://": read as a path.
  t = SplitTarget("GET", "1http://x/y?z");
  CHECK(t.scheme == "");
  CHECK(t.authority == std::nullopt);
  CHECK(t.path == "1http://x/y");
  CHECK(t.query == std::optional("z"sv));

  t = SplitTarget("GET", "index.html?v=2");
  CHECK(t.path == "index.html");
  CHECK(t.query == std::optional("v=2"sv));
}

}  // namespace
}  // namespace httptraced::record
