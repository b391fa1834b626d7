#include "bpf/tls_libraries.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <fstream>
#include <iterator>
#include <string>
#include <tuple>

#include <catch2/catch.hpp>

namespace httptraced::bpf {
namespace {

// A scratch directory removed with its contents at the end of the test.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/tls_libraries_test.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string Make(const std::string& rel) const {
    const std::string p = path + "/" + rel;
    std::ofstream(p) << "not really a library";
    return p;
  }
};

TEST_CASE("FindTlsLibraries: versioned libssl and libgnutls files, each file once") {
  TempDir t;
  REQUIRE(mkdir((t.path + "/a").c_str(), 0755) == 0);
  REQUIRE(mkdir((t.path + "/b").c_str(), 0755) == 0);
  const std::string three = t.Make("a/libssl.so.3");
  const std::string old = t.Make("a/libssl.so.1.1");
  const std::string gnutls = t.Make("a/libgnutls.so.30");
  t.Make("a/libcrypto.so.3");
  t.Make("a/libssl.so.3.bak");
  t.Make("a/libgnutls-dane.so.0");
  t.Make("a/libgnutlsxx.so.30");
  t.Make("a/libgnutls.so.30.x");
  // The development link and a second path to the same file (merged /usr).
  REQUIRE(symlink("libssl.so.3", (t.path + "/a/libssl.so").c_str()) == 0);
  REQUIRE(symlink((t.path + "/a/libssl.so.3").c_str(), (t.path + "/b/libssl.so.3").c_str()) == 0);
  REQUIRE(mkdir((t.path + "/a/libssl.so.9").c_str(), 0755) == 0);  // a directory

  CHECK(FindTlsLibraries({t.path + "/a", t.path + "/b", t.path + "/missing"}) ==
        std::vector<std::string>{gnutls, old, three});
  CHECK(FindTlsLibraries({t.path + "/b", t.path + "/a"}) ==
        std::vector<std::string>{t.path + "/b/libssl.so.3", gnutls, old});
  CHECK(FindTlsLibraries({t.path + "/missing"}).empty());
}

TEST_CASE("CheckTlsLibraries: named files must exist, duplicates dropped") {
  TempDir t;
  const std::string lib = t.Make("libssl.so.3");
  REQUIRE(symlink(lib.c_str(), (t.path + "/link").c_str()) == 0);

  absl::StatusOr<std::vector<std::string>> ok = CheckTlsLibraries({lib, t.path + "/link"});
  REQUIRE(ok.ok());
  CHECK(*ok == std::vector<std::string>{lib});

  absl::StatusOr<std::vector<std::string>> missing = CheckTlsLibraries({t.path + "/nope.so"});
  REQUIRE(!missing.ok());
  CHECK(missing.status().message() ==
        "--tls_libraries: " + t.path + "/nope.so: No such file or directory");

  absl::StatusOr<std::vector<std::string>> dir = CheckTlsLibraries({t.path});
  REQUIRE(!dir.ok());
  CHECK(dir.status().message() == "--tls_libraries: " + t.path + " is not a readable file");
}

// Little-endian rel32 of a call at `at` to `target`.
std::vector<uint8_t> Call(uint64_t at, uint64_t target) {
  const int32_t rel = static_cast<int32_t>(target - (at + 5));
  std::vector<uint8_t> out{0xe8, 0, 0, 0, 0};
  std::memcpy(&out[1], &rel, 4);
  return out;
}

std::vector<uint8_t> Concat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST_CASE("SharedCallTargets: the calls two functions have in common") {
  // SSL_read at 0x1000: sub $0x18,%rsp; ...; call internal; ...; call ERR_new@plt.
  const std::vector<uint8_t> read = Concat({{0x48, 0x83, 0xec, 0x18, 0x90}, Call(0x1005, 0x900),
                                            {0x90, 0x90}, Call(0x100c, 0x200)});
  // SSL_read_ex at 0x1100: sub $0x8,%rsp; call internal; ret.
  const std::vector<uint8_t> read_ex =
      Concat({{0x48, 0x83, 0xec, 0x08}, Call(0x1104, 0x900), {0xc3}});
  CHECK(SharedCallTargets({0x1000, read}, {0x1100, read_ex}) == std::vector<uint64_t>{0x900});
  // A call backwards (negative rel32) is decoded as one.
  const std::vector<uint8_t> back_a = Call(0x1000, 0x10), back_b = Call(0x2000, 0x10);
  CHECK(SharedCallTargets({0x1000, back_a}, {0x2000, back_b}) == std::vector<uint64_t>{0x10});
  // No call in common, or no call at all.
  const std::vector<uint8_t> other = Call(0x3000, 0x901);
  CHECK(SharedCallTargets({0x1000, read}, {0x3000, other}).empty());
  const std::vector<uint8_t> no_call{0x90, 0xc3}, cut{0xe8, 0x01, 0x02};
  CHECK(SharedCallTargets({0x1000, no_call}, {0x1100, read_ex}).empty());
  // A call cut by the end of the code given is not read past it.
  CHECK(SharedCallTargets({0x1000, cut}, {0x1100, read_ex}).empty());
}

TEST_CASE("EmulatedEntrySkip: a register push, after an endbr64 or not") {
  using B = std::vector<uint8_t>;
  CHECK(EmulatedEntrySkip(B{0x41, 0x56, 0x41, 0x55}) == 0u);  // push %r14
  CHECK(EmulatedEntrySkip(B{0x53, 0x48}) == 0u);              // push %rbx
  CHECK(EmulatedEntrySkip(B{0xf3, 0x0f, 0x1e, 0xfa, 0x55}) == 4u);
  CHECK(EmulatedEntrySkip(B{0xf3, 0x0f, 0x1e, 0xfa, 0x41, 0x54}) == 4u);
  CHECK(EmulatedEntrySkip(B{0x48, 0x83, 0xec, 0x18}) == std::nullopt);  // sub $0x18,%rsp
  CHECK(EmulatedEntrySkip(B{0xff, 0x25, 0, 0, 0, 0}) == std::nullopt);  // a PLT jmp
  CHECK(EmulatedEntrySkip(B{0x41}) == std::nullopt);
  CHECK(EmulatedEntrySkip(B{}) == std::nullopt);
}

TEST_CASE("FindTlsProbes: Debian's libssl.so.3, through its internal read and write") {
  const std::string lib = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
  absl::StatusOr<std::vector<TlsProbe>> probes = FindTlsProbes(lib);
  REQUIRE(probes.ok());
  REQUIRE(probes->size() == 5);
  CHECK((*probes)[0].name == "the function SSL_read and SSL_read_ex call");
  CHECK((*probes)[0].kind == TlsProbeKind::kReadEx);
  CHECK((*probes)[1].name == "the function SSL_write and SSL_write_ex call");
  CHECK((*probes)[1].kind == TlsProbeKind::kWriteEx);
  for (int i = 2; i < 5; ++i) CHECK((*probes)[i].kind == TlsProbeKind::kHandshake);
  CHECK((*probes)[2].name == "SSL_do_handshake");
  CHECK((*probes)[3].name == "SSL_connect");
  CHECK((*probes)[4].name == "SSL_accept");
  // The data probes land on a push, where the kernel emulates the instruction.
  std::ifstream f(lib, std::ios::binary);
  for (int i = 0; i < 2; ++i) {
    std::vector<uint8_t> head(4);
    f.seekg(static_cast<std::streamoff>((*probes)[i].offset));
    f.read(reinterpret_cast<char*>(head.data()), 4);
    CHECK(EmulatedEntrySkip(head) == 0u);
  }
  CHECK((*probes)[0].offset != (*probes)[1].offset);
}

TEST_CASE("FindTlsProbes: Debian's libgnutls.so.30, its record functions") {
  const std::string lib = "/usr/lib/x86_64-linux-gnu/libgnutls.so.30";
  absl::StatusOr<std::vector<TlsProbe>> probes = FindTlsProbes(lib);
  REQUIRE(probes.ok());
  REQUIRE(probes->size() == 3);
  CHECK((*probes)[0].name == "gnutls_record_recv");
  CHECK((*probes)[0].kind == TlsProbeKind::kRead);
  // gnutls_record_send's callee, which begins with a push the kernel emulates.
  CHECK((*probes)[1].name == "gnutls_record_send2 (gnutls_record_send calls it)");
  CHECK((*probes)[1].kind == TlsProbeKind::kWrite);
  std::ifstream f(lib, std::ios::binary);
  std::vector<uint8_t> head(4);
  f.seekg(static_cast<std::streamoff>((*probes)[1].offset));
  f.read(reinterpret_cast<char*>(head.data()), 4);
  CHECK(EmulatedEntrySkip(head) == 0u);
  CHECK((*probes)[2].name == "gnutls_handshake");
  CHECK((*probes)[2].kind == TlsProbeKind::kHandshake);
  CHECK(std::string(TlsLibraryOf(*probes)) == "GnuTLS");
  CHECK((*probes)[0].offset != (*probes)[1].offset);
  CHECK((*probes)[1].offset != (*probes)[2].offset);
  absl::StatusOr<std::vector<TlsProbe>> ssl =
      FindTlsProbes("/usr/lib/x86_64-linux-gnu/libssl.so.3");
  REQUIRE(ssl.ok());
  CHECK(std::string(TlsLibraryOf(*ssl)) == "libssl");
}

std::vector<std::tuple<std::string, uint64_t, TlsProbeKind>> Summary(
    const std::vector<TlsProbe>& probes) {
  std::vector<std::tuple<std::string, uint64_t, TlsProbeKind>> out;
  for (const TlsProbe& p : probes) out.emplace_back(p.name, p.offset, p.kind);
  return out;
}

TEST_CASE("FindTlsProbes: shared callees starting with a push are probed once for both") {
  absl::StatusOr<std::vector<TlsProbe>> probes =
      FindTlsProbes(HTTPTRACED_TLS_FIXTURES "/shared.so");
  REQUIRE(probes.ok());
  using K = TlsProbeKind;
  CHECK(Summary(*probes) ==
        std::vector<std::tuple<std::string, uint64_t, TlsProbeKind>>{
            {"the function SSL_read and SSL_read_ex call", 0x100, K::kReadEx},
            {"the function SSL_write and SSL_write_ex call", 0x114, K::kWriteEx},  // past endbr64
            {"SSL_do_handshake", 0x1a0, K::kHandshake}});
}

TEST_CASE("FindTlsProbes: no shared callee, the public functions") {
  absl::StatusOr<std::vector<TlsProbe>> probes =
      FindTlsProbes(HTTPTRACED_TLS_FIXTURES "/plain.so");
  REQUIRE(probes.ok());
  using K = TlsProbeKind;
  CHECK(Summary(*probes) == std::vector<std::tuple<std::string, uint64_t, TlsProbeKind>>{
                                {"SSL_read", 0x120, K::kRead},
                                {"SSL_read_ex", 0x140, K::kReadEx},
                                {"SSL_write", 0x160, K::kWrite},
                                {"SSL_write_ex", 0x180, K::kWriteEx},
                                {"SSL_do_handshake", 0x1a0, K::kHandshake}});
}

TEST_CASE("FindTlsProbes: code the file does not hold is not probed") {
  TempDir t;
  std::ifstream in(HTTPTRACED_TLS_FIXTURES "/shared.so", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(bytes.size() == 1048);
  // .text's section header (the second, at e_shoff + 64) claims its code at
  // file offset 0x10000, past the end of the file.
  uint64_t shoff;
  std::memcpy(&shoff, bytes.data() + 0x28, 8);
  const uint64_t far = 0x10000;
  bytes.replace(shoff + 64 + 24, 8, reinterpret_cast<const char*>(&far), 8);
  const std::string path = t.path + "/cut.so";
  std::ofstream(path, std::ios::binary) << bytes;
  absl::StatusOr<std::vector<TlsProbe>> probes = FindTlsProbes(path);
  REQUIRE(!probes.ok());
  CHECK(probes.status().message() ==
        path + " exports neither SSL_read nor SSL_write nor gnutls_record_recv nor "
               "gnutls_record_send (is it libssl or libgnutls?)");
}

TEST_CASE("FindTlsProbes: files that are not libssl") {
  absl::StatusOr<std::vector<TlsProbe>> libc = FindTlsProbes("/usr/lib/x86_64-linux-gnu/libc.so.6");
  REQUIRE(!libc.ok());
  CHECK(libc.status().message() ==
        "/usr/lib/x86_64-linux-gnu/libc.so.6 exports neither SSL_read nor SSL_write nor "
        "gnutls_record_recv nor gnutls_record_send (is it libssl or libgnutls?)");
  TempDir t;
  const std::string text = t.Make("libssl.so.3");
  absl::StatusOr<std::vector<TlsProbe>> not_elf = FindTlsProbes(text);
  REQUIRE(!not_elf.ok());
  CHECK(not_elf.status().message() == text + " is not an ELF file");
  absl::StatusOr<std::vector<TlsProbe>> missing = FindTlsProbes(t.path + "/nope");
  REQUIRE(!missing.ok());
  CHECK(missing.status().message() == t.path + "/nope: No such file or directory");
}

}  // namespace
}  // namespace httptraced::bpf
