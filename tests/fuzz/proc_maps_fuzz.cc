// libFuzzer target for bpf::ParseMappedTlsLibraries, IsLibsslName and
// IsGnutlsName, which read /proc/<pid>/maps: any bytes, as a truncated read
// or a process's own file names (which may hold spaces and anything but '/'
// and NUL) could make them.
//
// Invariants: each library found comes from one line of the input whose
// first field is its range and whose path ends with its path (plus
// " (deleted)" when marked so); the path is absolute and its last component
// is a libssl or libgnutls name; the same input gives the same answer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "bpf/tls_scanner.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::vector<httptraced::bpf::MappedLibrary> libs =
      httptraced::bpf::ParseMappedTlsLibraries(in);
  for (size_t i = 0; i < libs.size(); ++i) {
    const auto& lib = libs[i];
    Check(!lib.range.empty() && lib.path.size() > 1 && lib.path[0] == '/');
    const std::string name = lib.path.substr(lib.path.rfind('/') + 1);
    Check(httptraced::bpf::IsLibsslName(name) || httptraced::bpf::IsGnutlsName(name));
    const std::string tail = lib.deleted ? lib.path + " (deleted)" : lib.path;
    // A line that starts with the range and ends with the path.
    const std::string head = lib.range + " ";
    bool from_a_line = false;
    for (size_t at = in.find(head); at != std::string_view::npos && !from_a_line;
         at = in.find(head, at + 1)) {
      if (at != 0 && in[at - 1] != '\n') continue;
      const size_t nl = in.find('\n', at);
      const std::string_view line = in.substr(at, nl == std::string_view::npos ? nl : nl - at);
      from_a_line = line.size() >= tail.size() && line.substr(line.size() - tail.size()) == tail;
    }
    Check(from_a_line);
  }
  Check(httptraced::bpf::ParseMappedTlsLibraries(in) == libs);
  return 0;
}
