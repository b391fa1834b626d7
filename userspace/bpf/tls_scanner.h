// The TLS library files (libssl, libgnutls) that running processes map, found
// in /proc. The system's
// libssl (FindTlsLibraries) is not the only one in use on a host: containers
// bring their own, applications bundle theirs (/opt, Python wheels' renamed
// copies), and after a package upgrade a long-running server still maps the
// deleted old file. A uprobe is set on a file (its inode), so each of those
// needs its own: the scanner finds them through /proc/<pid>/maps and
// reaches each one through /proc/<pid>/map_files, which opens the very file
// the process maps, from any mount namespace, deleted or not.
#ifndef HTTPTRACED_BPF_TLS_SCANNER_H_
#define HTTPTRACED_BPF_TLS_SCANNER_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"

namespace httptraced::bpf {

// A libssl file mapped by a process, from its /proc/<pid>/maps.
struct MappedLibrary {
  std::string range;  // "7f3a1c000000-7f3a1c020000": its /proc/<pid>/map_files entry
  std::string path;   // as the process sees it (" (deleted)" removed)
  bool deleted = false;
  bool operator==(const MappedLibrary&) const = default;
};

// Whether a file name is OpenSSL's libssl: "libssl.so", "libssl.so.3",
// "libssl.so.1.1", and the renamed copies wheels bundle
// ("libssl-1a2b3c4d.so.1.1"); not NSS's "libssl3.so".
bool IsLibsslName(std::string_view name);

// Whether a file name is GnuTLS's library: "libgnutls.so", "libgnutls.so.30";
// not "libgnutls-dane.so.0" or "libgnutlsxx.so.30".
bool IsGnutlsName(std::string_view name);

// The libssl and libgnutls files in a /proc/<pid>/maps text, each file (device and inode)
// once, with the range of its first mapping. Lines that do not parse are
// passed over.
std::vector<MappedLibrary> ParseMappedTlsLibraries(std::string_view maps);

// Finds, in the processes under a procfs root, the libssl files not yet
// probed, and has them probed. Each process is scanned when first seen, then
// looked at again after 1, 2, 4 and then every 8 seconds (kMaxRescanNs): a
// process that execs after its fork, or loads libssl late (Python imports ssl
// on first use), is seen again soon. A look reads /proc/<pid>/statm, whose
// size of the address space changes with every exec and every library
// loaded; only then are its maps, much dearer to read, read again.
class TlsScanner {
 public:
  static constexpr uint64_t kFirstRescanNs = 1'000'000'000;
  static constexpr uint64_t kMaxRescanNs = 8'000'000'000;

  // Probes the file at `path` in process `target` (-1: every process that
  // maps it), under the handle `id`; returns how many functions were probed.
  using Probe =
      std::function<absl::StatusOr<int>(uint64_t id, const std::string& path, pid_t target)>;
  // Removes the probes made under `id`: no process that mapped the file is
  // left (a container's libssl once its processes exited). Were the file
  // mapped again, it would be found and probed anew.
  using Release = std::function<void(uint64_t id)>;

  struct Found {
    uint32_t pid = 0;
    uint64_t id = 0;   // the Probe's handle
    std::string path;  // as the process sees it
    bool deleted = false;
    absl::StatusOr<int> probes = 0;  // or why it could not be probed
  };

  // `pids`: only these processes, and each file is probed in each of them
  // (empty: every process, each file probed once for all).
  TlsScanner(std::string proc_root, std::vector<uint32_t> pids, Probe probe, Release release);

  // A file already probed (the system's libssl), so it is not probed again.
  void AlreadyProbed(const std::string& path);

  // Whether an executable has libssl's functions of its own (a statically
  // linked OpenSSL that exports them, as Node.js's): given the path through
  // which to read it.
  using ExportsTls = std::function<bool(const std::string& path)>;
  // Also look at each process's executable (/proc/<pid>/exe, which opens the
  // very file): one that passes `check` is probed like a libssl file. Each
  // executable is checked once; one that fails is not looked at again.
  void ProbeExecutables(ExportsTls check) { exports_tls_ = std::move(check); }

  // Scans the processes due at `now_ns` (monotonic); returns the files probed
  // (or that failed) in this call. A process found gone (listed with --pid or
  // not) loses its files, as with ProcessExited.
  std::vector<Found> Scan(uint64_t now_ns);

  // Process `pid` exited (the daemon's exit events): each file it mapped has
  // one user fewer, and loses its probes with its last. A process that takes
  // the pid next is scanned as a new one, whatever the size of its address
  // space, at the next Scan.
  void ProcessExited(uint32_t pid);

  // Processes currently tracked, files currently probed (those of
  // AlreadyProbed aside), and maps read so far (for tests).
  size_t tracked() const { return due_.size(); }
  size_t probed_files() const { return users_.size(); }
  uint64_t maps_read() const { return maps_read_; }


 private:
  struct FileKey {
    dev_t dev;
    ino_t ino;
    pid_t target;
    bool operator==(const FileKey&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const FileKey& k) {
      return H::combine(std::move(h), k.dev, k.ino, k.target);
    }
  };
  struct Due {
    uint64_t at_ns;
    uint64_t interval_ns;
    uint64_t vm_pages;  // statm's size when its maps were last read (0: never read)
  };
  void ScanProcess(uint32_t pid, Due& due, std::vector<Found>& found);
  // Probes `file` (a path into /proc/<pid>) once per FileKey; `shown` is the
  // path as the process sees it.
  void ProbeFile(uint32_t pid, const std::string& file, const struct stat& st,
                 std::string shown, bool deleted, bool executable, std::vector<Found>& found);

  std::string proc_root_;
  std::vector<uint32_t> pids_;
  Probe probe_;
  struct Users {
    uint64_t id;                               // the Probe's handle
    absl::flat_hash_set<uint32_t> pids;        // processes seen mapping it
  };
  void Forget(uint32_t pid);
  Release release_;
  absl::flat_hash_set<FileKey> known_;  // probed, or failed: not tried again while mapped
  absl::flat_hash_map<FileKey, Users> users_;  // probed files found by scans
  absl::flat_hash_map<uint32_t, std::vector<FileKey>> files_of_;  // pid -> files it maps
  uint64_t next_id_ = 1;
  absl::flat_hash_map<uint32_t, Due> due_;
  ExportsTls exports_tls_;  // unset: executables are not looked at
  std::string maps_;  // reused read buffer
  uint64_t maps_read_ = 0;

};

}  // namespace httptraced::bpf

#endif  // HTTPTRACED_BPF_TLS_SCANNER_H_
