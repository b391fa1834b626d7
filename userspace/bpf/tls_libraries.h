// Which libssl files the TLS uprobes attach to. A uprobe is set on a file
// (its inode), for every process that maps it, so each file is listed once
// however many paths lead to it (/lib and /usr/lib on a merged-/usr system).
#ifndef HTTPTRACED_BPF_TLS_LIBRARIES_H_
#define HTTPTRACED_BPF_TLS_LIBRARIES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace httptraced::bpf {

// Where distributions install libssl (Debian's multiarch directories, then
// the plain and lib64 ones), searched when --tls_libraries is empty.
std::vector<std::string> DefaultTlsLibraryDirs();

// The regular files named libssl.so.<version> in `dirs` (missing directories
// are passed over), one path per file, in the order found.
std::vector<std::string> FindTlsLibraries(const std::vector<std::string>& dirs);

// The files named by --tls_libraries, one path per file. An entry that is
// not a readable regular file is an error naming it.
absl::StatusOr<std::vector<std::string>> CheckTlsLibraries(const std::vector<std::string>& paths);

}  // namespace httptraced::bpf

#endif  // HTTPTRACED_BPF_TLS_LIBRARIES_H_
