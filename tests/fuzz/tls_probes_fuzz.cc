// FindTlsProbes on any file contents: libssl is read from the file system,
// where a library may be truncated, corrupt, or not a library at all. The
// bytes are written to a memfd and read through /proc/self/fd. Properties:
// no crash; a result has a data probe and only offsets inside the file; an
// error says something. The pure helpers run on the bytes too.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "bpf/tls_libraries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using httptraced::bpf::TlsProbeKind;
  static const int fd = memfd_create("tls_probes_fuzz", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (ftruncate(fd, 0) != 0) return 0;
  if (size > 0 && pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return 0;
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  absl::StatusOr<std::vector<httptraced::bpf::TlsProbe>> probes =
      httptraced::bpf::FindTlsProbes(path);
  if (probes.ok()) {
    bool data_probe = false;
    for (const auto& p : *probes) {
      if (p.offset >= size || p.name.empty()) std::abort();
      data_probe |= p.kind != TlsProbeKind::kHandshake;
    }
    if (!data_probe) std::abort();
  } else if (probes.status().message().empty()) {
    std::abort();
  }
  const std::span<const uint8_t> all(data, size);
  const size_t half = size / 2;
  for (uint64_t t : httptraced::bpf::SharedCallTargets({0x1000, all.first(half)},
                                                       {0x1000 + half, all.subspan(half)})) {
    (void)t;
  }
  if (std::optional<uint64_t> skip = httptraced::bpf::EmulatedEntrySkip(all)) {
    if (*skip + 1 > size) std::abort();
  }
  return 0;
}
