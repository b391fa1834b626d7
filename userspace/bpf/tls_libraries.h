// Which TLS library files (OpenSSL's libssl, GnuTLS's libgnutls) the TLS
// uprobes attach to. A uprobe is set on a file
// (its inode), for every process that maps it, so each file is listed once
// however many paths lead to it (/lib and /usr/lib on a merged-/usr system).
#ifndef HTTPTRACED_BPF_TLS_LIBRARIES_H_
#define HTTPTRACED_BPF_TLS_LIBRARIES_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace httptraced::bpf {

// Where distributions install libssl (Debian's multiarch directories, then
// the plain and lib64 ones), searched when --tls_libraries is empty.
std::vector<std::string> DefaultTlsLibraryDirs();

// The regular files named libssl.so.<version> or libgnutls.so.<version> in
// `dirs` (missing directories are passed over), one path per file, in the
// order found (by name within a directory).
std::vector<std::string> FindTlsLibraries(const std::vector<std::string>& dirs);

// The files named by --tls_libraries, one path per file. An entry that is
// not a readable regular file is an error naming it.
absl::StatusOr<std::vector<std::string>> CheckTlsLibraries(const std::vector<std::string>& paths);

// What a probe site's function does, for the program that probes it.
enum class TlsProbeKind : uint8_t {
  kRead,       // SSL_read(ssl, buf, num): returns the bytes read
  kWrite,      // SSL_write(ssl, buf, num): returns the bytes written
  kReadEx,     // (ssl, buf, num, size_t *readbytes): returns 1 (SSL_read_ex, ssl_read_internal)
  kWriteEx,    // (ssl, buf, num, size_t *written): returns 1 (SSL_write_ex, ssl_write_internal)
  kHandshake,  // SSL_do_handshake, SSL_connect, SSL_accept
};

struct TlsProbe {
  std::string name;  // for messages: the function, or "ssl_read_internal (via SSL_read)"
  uint64_t offset;   // in the file, where the uprobe and the uretprobe go
  TlsProbeKind kind;
};

// Where to probe a TLS library file. GnuTLS's gnutls_record_recv and
// gnutls_record_send are probed as SSL_read and SSL_write (kRead, kWrite),
// gnutls_handshake as a handshake: the same arguments and results where the
// probes read them.
//
// Where to probe a libssl file. A uprobe on an instruction the kernel cannot
// emulate is executed out of line, single-stepped: on a virtual machine that
// trap can cost ten times the probe (about 11 us against 1.3 us per call,
// measured here). The public SSL_read and SSL_write begin with such an
// instruction (sub $n,%rsp), and each of them and its _ex form only calls a
// shared internal function (ssl_read_internal, ssl_write_internal, OpenSSL
// 1.1.1 and 3.x) with the _ex form's arguments, which begins with a push the
// kernel emulates. When the two public functions of a direction call one
// function that begins so, that function is probed, once for both; otherwise
// the public functions are. The handshake functions are probed by name.
// An error when the file cannot be read as ELF or exports none of them.
absl::StatusOr<std::vector<TlsProbe>> FindTlsProbes(const std::string& path);

// "GnuTLS" when the probes are GnuTLS's functions, else "libssl" (for messages).
const char* TlsLibraryOf(const std::vector<TlsProbe>& probes);

// The pieces of FindTlsProbes, on bytes (for tests). A function's code is
// given with its address.
struct CodeAt {
  uint64_t addr;
  std::span<const uint8_t> code;
};
// The targets of the direct calls (e8 rel32) that both functions make within
// their code as given, in a's order. (Bytes are scanned, not decoded: a
// shared target is the evidence, and the caller checks what it starts with.)
std::vector<uint64_t> SharedCallTargets(const CodeAt& a, const CodeAt& b);
// Bytes to pass over at the start of a function so that a probe lands on an
// instruction the kernel emulates (a register push, after an endbr64), or
// nullopt when it does not start so.
std::optional<uint64_t> EmulatedEntrySkip(std::span<const uint8_t> code);

}  // namespace httptraced::bpf

#endif  // HTTPTRACED_BPF_TLS_LIBRARIES_H_
