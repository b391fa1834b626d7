// Tracer: the BPF side of the daemon, as one RAII object. Open the skeleton,
// configure it (load-time filters in rodata, map sizes), load, attach the
// syscall tracepoints, and hand every ring-buffer sample to a handler.
#ifndef HTTPTRACED_BPF_TRACER_H_
#define HTTPTRACED_BPF_TRACER_H_

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bpf/background_worker.h"
#include "bpf/tls_scanner.h"
#include "conn/conn_info.h"

struct httptraced_bpf;
struct ring_buffer;
struct bpf_link;
struct bpf_program;

namespace httptraced::bpf {

struct TracerOptions {
  std::vector<uint32_t> pids;   // only these processes (empty: all)
  std::vector<uint16_t> ports;  // only connections with one end on these ports (empty: all)
  bool unix_sockets = true;     // Unix domain stream sockets too (never matched by ports)
  // Unix sockets pass the port filter: userspace picks them by name
  // (ConnTableOptions::unix_names).
  bool unix_by_name = false;
  uint32_t self_tgid = 0;       // never traced
  uint32_t max_capture_bytes = 65536;      // payload captured per syscall
  bool fast_fd_filter = true;              // sys_exit_payload_fast where the kernel allows it
  // With it, payloads of read, write, readv, writev, recvfrom, sendto, recvmsg
  // and sendmsg taken on the socket tracepoints where the kernel has them
  // (sock_send_length/sock_recv_length, Linux 6.4) instead of those syscalls' exits.
  bool socket_tracepoints = true;
  uint32_t ring_buffer_bytes = 16u << 20;  // power of two, multiple of the page size
  uint32_t max_connections = 65536;        // kernel connection map entries
  // libssl files whose SSL_read/SSL_write plaintext is traced (uprobes);
  // empty: TLS connections are not traced (their ciphertext never is).
  std::vector<std::string> tls_libraries;
  // The list was found on the system, not named by the operator: a library
  // that cannot be probed, or a kernel that refuses uprobes (they need
  // CAP_SYS_ADMIN), is a warning and tracing goes on without HTTPS.
  bool tls_libraries_found = false;
  // Also probe the libssl files that running processes map (containers'
  // own, bundled copies, deleted files still in use), found in /proc at
  // start and as processes come (TlsScanner). Only with found libraries.
  bool tls_scan_processes = false;
  std::string tracefs = "/sys/kernel/tracing";
  int verbosity = 0;  // libbpf messages: 0 warnings, 1 info, 2 debug
};

// Receives each ring-buffer sample. `sample` is valid only during the call.
// What the running kernel offers, read from its BTF rather than by trying, so
// an older kernel never sees a program or a link it lacks.
struct KernelFeatures {
  // The verifier lets a program read untrusted kernel memory with plain
  // loads: enum bpf_features lists BPF_FEAT_RDONLY_CAST_TO_VOID (Linux 6.16).
  bool untrusted_loads = false;
  // The socket-level tracepoints sock_send_length and sock_recv_length
  // (Linux 6.4) for BTF programs: their btf_trace_<name> typedefs.
  bool socket_tracepoints = false;
  // BPF_TRACE_UPROBE_MULTI's value in enum bpf_attach_type (Linux 6.6), 0
  // when absent: Debian 12's headers and libbpf 1.1.2 predate it.
  uint32_t uprobe_multi = 0;
  // A uprobe_multi link's pid filter admits every thread of the process
  // (Linux 6.10, commit 46ba0e49b642; before, only the thread whose id was
  // the pid). Read from BPF_TRACE_KPROBE_SESSION, new in the same release.
  bool uprobe_multi_pid = false;
};

class SampleHandler {
 public:
  virtual ~SampleHandler() = default;
  virtual void OnSample(std::string_view sample) = 0;
};

struct KernelCounters {
  uint64_t ring_drops = 0;       // events lost because the ring buffer was full
  uint64_t ring_drop_bytes = 0;  // bytes in those events
  uint64_t read_faults = 0;      // payload bytes the kernel could not copy
  uint64_t not_http = 0;         // connections the kernel classified as not HTTP
  uint64_t conns_seen = 0;       // connections entered into the kernel map
  uint64_t stale = 0;            // entries left by exited processes or before an exec, replaced
  uint64_t body_skipped = 0;     // payload bytes not copied: past what the daemon keeps of a body
  uint64_t tls_no_fd = 0;        // SSL_read/SSL_write calls whose socket was not found
};

// A program's attachment: a libbpf link, or the fd of a link made with bpf(2)
// directly (uprobe_multi: libbpf 1.1.2 has no call for those).
struct Link {
  ::bpf_link* libbpf = nullptr;
  int fd = -1;
  // Detaches: for a perf-event link, after the kernel's RCU grace periods.
  void Destroy() const;
};

// Checks what tracing needs before anything is loaded: privileges, kernel BTF,
// tracefs (mounted here if missing). Each failure is one sentence saying what
// is missing and how to fix it.
absl::Status CheckPrerequisites(const std::string& tracefs);

class Tracer {
 public:
  static absl::StatusOr<std::unique_ptr<Tracer>> Start(const TracerOptions& options,
                                                       SampleHandler* handler);
  ~Tracer();
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;

  // Samples handled per Poll()/Drain() call at most, so that the event loop
  // gets control back (signals, flushes, timers) even when events arrive
  // faster than they are handled.
  static constexpr int kSampleBudget = 4096;

  // Waits up to timeout_ms for samples and handles those that are ready, up
  // to kSampleBudget. Returns the number handled. EINTR is not an error.
  absl::StatusOr<int> Poll(int timeout_ms);
  // Handles samples already in the ring without waiting, up to kSampleBudget.
  absl::StatusOr<int> Drain();
  // True when the last Poll()/Drain() stopped at the budget: more are waiting.
  bool more_pending() const { return more_pending_; }
  // An fd that becomes readable when samples are ready (for epoll).
  int epoll_fd() const;

  KernelCounters ReadCounters() const;
  // Asks the kernel to stop sending events for a connection.
  absl::Status Disable(const conn::ConnKey& key);
  // Drops the kernel's entry for a connection the daemon forgot (idle expiry,
  // eviction), if it is still that connection: its next syscall makes it a
  // new connection with a new identity.
  absl::Status Forget(const conn::ConnKey& key);
  // The kernel need not copy the bytes of the connection's stream in `dir`
  // (enum ht_direction) from position `from` up to `until`:
  // the daemon would only count them. Replaces the direction's earlier range.
  absl::Status SkipBody(const conn::ConnKey& key, int dir, uint64_t from, uint64_t until);
  // Drops the connection's ranges, if the kernel has not already.
  void ClearSkips(const conn::ConnKey& key);
  // True when the kernel's entry for this connection (the same generation)
  // has counted other byte totals than `consumed` (per direction, kernel
  // positions): events for it are still on their way.
  bool CountedOtherThan(const conn::ConnKey& key, const uint64_t consumed[2]) const;
  // Every program returns at once from now on: tracing stops at one instant
  // for all syscalls (Detach() is slower and goes hook by hook).
  void StopEvents();
  // Detaches every tracepoint; the ring buffer stays readable for a final Drain().
  void Detach();
  int attached_programs() const { return attached_; }
  // TLS library functions probed (entry and return together count once).
  int tls_probes() const { return tls_probes_; }
  // The files probed at start (TracerOptions::tls_libraries), in order.
  struct ProbedLibrary {
    std::string path;
    const char* library;  // "libssl" or "GnuTLS" (TlsLibraryOf)
    int functions;
  };
  const std::vector<ProbedLibrary>& tls_libraries_probed() const { return tls_libraries_probed_; }
  // Why HTTPS is not traced though --tls asked for it ("" when it is, or not asked).
  const std::string& tls_warning() const { return tls_warning_; }
  // With TracerOptions::tls_scan_processes: looks for libssl files mapped by
  // processes and probes the new ones, at most every kTlsScanEveryNs (each
  // process on TlsScanner's schedule); each is reported on stderr. A file no
  // process maps any more loses its probes.
  void ScanTls(uint64_t now_ns);
  static constexpr uint64_t kTlsScanEveryNs = 1'000'000'000;
  // A process exited: the files the scanner probed for it lose a user (with
  // --pid, its own probes go), and its pid, if used again, is scanned anew.
  void ProcessExited(uint32_t tgid) {
    if (tls_scanner_ != nullptr) tls_scanner_->ProcessExited(tgid);
  }

 private:
  Tracer() = default;
  // Opens the skeleton's three instances (maps_, first_, skel_) afresh and sets
  // what each loads, with which settings. verifier_stats: at --verbosity=2,
  // have the verifier report its statistics for the payload programs (in
  // place of its log, which a refused program is then loaded again to show).
  absl::Status Open(const TracerOptions& options, bool verifier_stats = true);
  // One instance's load-time settings: filters in rodata, map sizes.
  absl::Status Configure(httptraced_bpf* s, const TracerOptions& options) const;
  // Loads maps_'s maps, then first_ and skel_ side by side on them, and
  // closes maps_. 0 or a negative errno.
  int Load();
  absl::Status Attach(const std::string& tracefs);
  // The uprobes on each library's SSL_read/SSL_write and handshake functions
  // (FindTlsProbes: where). A library with none of them is an error.
  // With `pids`, only in those processes: others keep their libssl code
  // untouched (no trap), where the --pid filter in the programs would only
  // have made the trap return early.
  absl::Status AttachTls(const std::vector<std::string>& libraries,
                         const std::vector<uint32_t>& pids);
  // One library's probes, in `targets` (-1: every process); its links go to
  // tls_links_. Returns the functions probed.
  // `library`, when given, is set to the file's kind (TlsLibraryOf).
  absl::StatusOr<int> AttachTlsLibrary(const std::string& lib, const std::vector<pid_t>& targets,
                                       const char** library = nullptr);
  void DetachTls();
  static bool IsTlsProgram(const httptraced_bpf* s, const bpf_program* prog);
  // Attaches prog to its own section's hook (name null) or to category:name.
  absl::Status AttachOne(bpf_program* prog, const char* category, const char* name);
  static int OnRingSample(void* ctx, void* data, size_t size);
  // ring_buffer__consume within the current budget; returns samples handled.
  int DrainSome();

  struct SkelDeleter {
    void operator()(httptraced_bpf* s) const;
  };
  using Skel = std::unique_ptr<httptraced_bpf, SkelDeleter>;
  // The programs are loaded by two instances of the skeleton side by side
  // (Load), on the maps of a third that loads none: the verifier's time is
  // most of the start-up. skel_ is the one kept: it holds the maps (taken
  // over), maps the globals, and has the programs attached at run time
  // (libssl's). first_ goes once its programs are attached (Start), maps_
  // once the loads are done.
  Skel skel_;
  Skel first_;
  Skel maps_;
  KernelFeatures kernel_;  // read once per Start, for every try
  // BPF_TRACE_UPROBE_MULTI when the TLS programs are loaded for uprobe_multi
  // links (Open says when), else 0: perf-event uprobes through libbpf.
  uint32_t uprobe_multi_ = 0;
  ring_buffer* ring_ = nullptr;
  SampleHandler* handler_ = nullptr;
  std::vector<Link> links_;
  // Attached to the payload syscalls' exits: all of them, or those the socket
  // tracepoints do not carry. In first_: null once Start is done.
  bpf_program* payload_prog_ = nullptr;
  bool untrusted_loads_ = false;         // payload_prog_ is sys_exit_payload_fast or _rest
  bool socket_tracepoints_ = false;      // sock_{send,recv}_payload carry most syscalls
  // --verbosity=2: the verifier's statistics for the payload programs (the
  // largest, and the ones near the verifier's limits), printed once loaded.
  std::vector<std::pair<bpf_program*, std::vector<char>>> verifier_stats_;
  int attached_ = 0;
  int tls_probes_ = 0;
  std::vector<ProbedLibrary> tls_libraries_probed_;
  std::vector<Link> tls_links_;  // the uprobes, also in links_ once all attached
  std::string tls_warning_;
  std::unique_ptr<TlsScanner> tls_scanner_;
  // The uprobes on files the scanner found, by its handle: removed when no
  // process maps the file any more.
  struct ScannedFile {
    std::string found_as;  // the path its process saw, for the message
    const char* library;   // "libssl" or "GnuTLS", for the message
    std::vector<Link> links;
  };
  absl::flat_hash_map<uint64_t, ScannedFile> scanned_links_;
  // Removes the probes of files no process maps any more (slow: see
  // BackgroundWorker); stopped first thing in the destructor.
  BackgroundWorker detacher_;
  uint64_t last_tls_scan_ns_ = 0;
  int ncpus_ = 1;
  int budget_left_ = 0;
  bool more_pending_ = false;
};

}  // namespace httptraced::bpf

#endif  // HTTPTRACED_BPF_TRACER_H_
