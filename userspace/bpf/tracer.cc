#include "bpf/tracer.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/capability.h>
#include <malloc.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bpf/concurrently.h"
#include "bpf/tls_libraries.h"
#include "httptraced.skel.h"
#include "httptraced_abi.h"

namespace httptraced::bpf {
namespace {

// libbpf's print hook is process-wide and takes no context, so the verbosity it
// filters by has to live here. It is written once, before the skeleton opens.
std::atomic<int> libbpf_verbosity{0};
// While the fast payload program is tried, libbpf's warnings (a refused
// program's whole verifier log) are shown only at --verbosity=2: a refusal
// there is answered by loading the portable program, with one warning line.
std::atomic<bool> libbpf_quiet{false};

int LibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  int wanted = level == LIBBPF_WARN ? 0 : level == LIBBPF_INFO ? 1 : 2;
  if (libbpf_quiet.load(std::memory_order_relaxed)) wanted = 2;
  if (wanted > libbpf_verbosity.load(std::memory_order_relaxed)) return 0;
  std::fputs("httptraced: ", stderr);  // libbpf's messages start with "libbpf: "
  return std::vfprintf(stderr, format, args);
}

// The payload syscalls, by name and number: sys_exit_payload is attached to
// each one's exit tracepoint and told its kind through targ_sys_kind.
struct PayloadSyscall {
  const char* name;
  long nr;
  uint8_t kind;
};
constexpr PayloadSyscall kPayloadSyscalls[] = {
    {"read", SYS_read, HT_SYS_READ},
    {"write", SYS_write, HT_SYS_WRITE},
    {"readv", SYS_readv, HT_SYS_READV},
    {"writev", SYS_writev, HT_SYS_WRITEV},
    {"recvfrom", SYS_recvfrom, HT_SYS_RECVFROM},
    {"sendto", SYS_sendto, HT_SYS_SENDTO},
    {"recvmsg", SYS_recvmsg, HT_SYS_RECVMSG},
    {"sendmsg", SYS_sendmsg, HT_SYS_SENDMSG},
    {"recvmmsg", SYS_recvmmsg, HT_SYS_RECVMMSG},
    {"sendmmsg", SYS_sendmmsg, HT_SYS_SENDMMSG},
    {"sendfile64", SYS_sendfile, HT_SYS_SENDFILE},
    {"splice", SYS_splice, HT_SYS_SPLICE},
};

std::string Errno(int err) { return std::strerror(err < 0 ? -err : err); }

// The value of the enumerator `name` of the enum `type` in the BTF, if any.
std::optional<int64_t> EnumValue(const btf* b, const char* type, const char* name) {
  const int id = btf__find_by_name_kind(b, type, BTF_KIND_ENUM);
  if (id <= 0) return std::nullopt;
  const btf_type* t = btf__type_by_id(b, id);
  const struct btf_enum* values = btf_enum(t);
  for (int i = 0; i < btf_vlen(t); ++i) {
    const char* n = btf__name_by_offset(b, values[i].name_off);
    if (n != nullptr && std::strcmp(n, name) == 0) return values[i].val;
  }
  return std::nullopt;
}

KernelFeatures ReadKernelFeatures() {
  KernelFeatures f;
  btf* vmlinux = btf__load_vmlinux_btf();
  if (vmlinux == nullptr) return f;
  f.untrusted_loads =
      EnumValue(vmlinux, "bpf_features", "BPF_FEAT_RDONLY_CAST_TO_VOID").has_value();
  f.socket_tracepoints =
      btf__find_by_name_kind(vmlinux, "btf_trace_sock_send_length", BTF_KIND_TYPEDEF) > 0 &&
      btf__find_by_name_kind(vmlinux, "btf_trace_sock_recv_length", BTF_KIND_TYPEDEF) > 0;
  const std::optional<int64_t> multi =
      EnumValue(vmlinux, "bpf_attach_type", "BPF_TRACE_UPROBE_MULTI");
  if (multi.has_value() && *multi > 0) f.uprobe_multi = static_cast<uint32_t>(*multi);
  f.uprobe_multi_pid =
      f.uprobe_multi != 0 &&
      EnumValue(vmlinux, "bpf_attach_type", "BPF_TRACE_KPROBE_SESSION").has_value();
  btf__free(vmlinux);
  return f;
}

// BPF_F_UPROBE_MULTI_RETURN (include/uapi/linux/bpf.h): return probes.
constexpr uint32_t kUprobeMultiReturn = 1;

// A uprobe_multi link (Linux 6.6): `prog` at each of `offsets` in the file at
// `path`, in process `pid` (<= 0: every process), with one bpf(BPF_LINK_CREATE).
// Returns its fd, or -1 with errno set. Made by hand: libbpf 1.1.2 has no call
// for it.
int CreateUprobeMultiLink(const bpf_program* prog, uint32_t attach_type, const std::string& path,
                          const std::vector<uint64_t>& offsets, bool retprobe, pid_t pid) {
  // union bpf_attr's link_create, as the kernel lays it out for uprobe_multi
  // (Debian 12's linux/bpf.h has no such member).
  struct {
    uint32_t prog_fd;
    uint32_t target_fd;
    uint32_t attach_type;
    uint32_t flags;
    uint64_t path;
    uint64_t offsets;
    uint64_t ref_ctr_offsets;
    uint64_t cookies;
    uint32_t cnt;
    uint32_t multi_flags;
    uint32_t pid;  // 0: every process
    uint32_t unused;
  } attr{};
  static_assert(sizeof(attr) == 64);
  attr.prog_fd = static_cast<uint32_t>(bpf_program__fd(prog));
  attr.attach_type = attach_type;
  attr.path = reinterpret_cast<uintptr_t>(path.c_str());
  attr.offsets = reinterpret_cast<uintptr_t>(offsets.data());
  attr.cnt = static_cast<uint32_t>(offsets.size());
  attr.multi_flags = retprobe ? kUprobeMultiReturn : 0;
  attr.pid = pid > 0 ? static_cast<uint32_t>(pid) : 0;
  return static_cast<int>(syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr)));
}

// Removes links side by side: each removal of a perf-event link (a syscall
// tracepoint, a uprobe) waits for the kernel's RCU grace periods (90-200 ms
// here), which concurrent removals partly overlap.
constexpr size_t kDetachThreads = 32;
void DestroyLinks(const std::vector<Link>& links) {
  RunConcurrently(links.size(), kDetachThreads, [&links](size_t i) { links[i].Destroy(); });
}

// The payload syscalls that the socket tracepoints carry when they are used
// (bpf/httptraced_abi.h): their exits are then not attached.
bool OnSocketTracepoints(uint8_t kind) {
  return kind < 32 && ((HT_SYS_ON_SOCK_TRACEPOINTS >> kind) & 1) != 0;
}

bool HasCapability(int cap) {
  __user_cap_header_struct header{};
  __user_cap_data_struct data[2]{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return (data[cap / 32].effective & (1u << (cap % 32))) != 0;
}

constexpr int kCapSysPtrace = 19;
constexpr int kCapSysAdmin = 21;
constexpr int kCapPerfmon = 38;
constexpr int kCapBpf = 39;

bool IsDir(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// "tracepoint/syscalls/sys_enter_read" -> "syscalls/sys_enter_read".
absl::string_view TracepointOf(const bpf_program* prog) {
  absl::string_view sec = bpf_program__section_name(prog);
  constexpr absl::string_view kPrefix = "tracepoint/";
  if (!absl::StartsWith(sec, kPrefix)) return {};
  return sec.substr(kPrefix.size());
}

}  // namespace

void Link::Destroy() const {
  if (libbpf != nullptr) bpf_link__destroy(libbpf);
  if (fd >= 0) close(fd);
}

absl::Status CheckPrerequisites(const std::string& tracefs) {
  if (!HasCapability(kCapSysAdmin) && !(HasCapability(kCapBpf) && HasCapability(kCapPerfmon))) {
    return absl::PermissionDeniedError(
        "httptraced needs root (or CAP_BPF and CAP_PERFMON) to load its BPF programs: run it "
        "with sudo or as the httptraced systemd service");
  }
  if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "kernel BTF is missing at /sys/kernel/btf/vmlinux (", Errno(errno),
        "): httptraced needs a kernel built with CONFIG_DEBUG_INFO_BTF=y, as Debian's "
        "kernels are since Debian 11"));
  }
  const std::string events = tracefs + "/events/syscalls";
  struct stat st;
  const int stat_err = stat(events.c_str(), &st) == 0 ? 0 : errno;
  if (stat_err == 0 && S_ISDIR(st.st_mode)) return absl::OkStatus();
  if (stat_err == EACCES) {
    return absl::PermissionDeniedError(absl::StrCat(
        "tracefs at ", tracefs, " is mounted but not readable (", Errno(EACCES),
        "): run httptraced as root or give it CAP_DAC_READ_SEARCH"));
  }
  if (!IsDir(tracefs)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tracefs mount point ", tracefs,
        " does not exist: the kernel needs CONFIG_FTRACE_SYSCALLS and tracefs"));
  }
  if (mount("nodev", tracefs.c_str(), "tracefs", 0, nullptr) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tracefs is not mounted at ", tracefs, " and mounting it failed (", Errno(errno),
        "): run `mount -t tracefs nodev ", tracefs, "` as root, or give httptraced CAP_SYS_ADMIN"));
  }
  std::fprintf(stderr, "httptraced: mounted tracefs at %s\n", tracefs.c_str());
  if (!IsDir(events)) {
    return absl::FailedPreconditionError(absl::StrCat(
        events, " does not exist: the kernel lacks syscall tracepoints (CONFIG_FTRACE_SYSCALLS)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Tracer>> Tracer::Start(const TracerOptions& options,
                                                      SampleHandler* handler) {
  if (absl::Status s = CheckPrerequisites(options.tracefs); !s.ok()) return s;
  libbpf_verbosity.store(options.verbosity, std::memory_order_relaxed);
  libbpf_set_print(LibbpfPrint);

  std::unique_ptr<Tracer> t(new Tracer());
  t->handler_ = handler;
  // Read once from the kernel's BTF, for every try below.
  t->kernel_ = ReadKernelFeatures();
  if (absl::Status s = t->Open(options); !s.ok()) return s;
  libbpf_quiet.store(t->untrusted_loads_, std::memory_order_relaxed);
  int err = t->Load();
  libbpf_quiet.store(false, std::memory_order_relaxed);
  if (err == -EMFILE || err == -ENFILE) {
    // Not the kernel refusing a program: no other program would do better.
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot load the BPF programs: ", Errno(err),
        " (each map, program and attachment takes a file descriptor, about 100 while "
        "loading): raise the open-file limit (ulimit -n, or LimitNOFILE= in the unit)"));
  }
  if (err != 0 && t->untrusted_loads_) {
    // The fast payload program is an optimisation: a kernel whose verifier
    // refuses it (the feature is listed but something else differs) still
    // gets the portable one rather than no tracer.
    std::fprintf(stderr,
                 "httptraced: warning: the kernel refused the fast payload programs (%s); loading "
                 "the portable payload program instead (--verbosity=2 shows why)\n",
                 Errno(err).c_str());
    TracerOptions portable = options;
    portable.fast_fd_filter = false;
    if (absl::Status s = t->Open(portable); !s.ok()) return s;
    err = t->Load();
  }
  if (err != 0 && !t->verifier_stats_.empty()) {
    // Its statistics took the place of the verifier's log: load the refused
    // program once more, for libbpf to print the log that says why.
    TracerOptions again = options;
    again.fast_fd_filter = t->untrusted_loads_;
    if (absl::Status s = t->Open(again, /*verifier_stats=*/false); !s.ok()) return s;
    err = t->Load();
  }
  if (err != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the kernel refused httptraced's BPF programs (", Errno(err),
        "); rerun with --verbosity=2 for the verifier log. httptraced needs Linux 5.17 or "
        "newer with BTF"));
  }
  // "processed N insns (limit 1000000) ...": how close each payload program
  // is to what the verifier accepts.
  for (const auto& [prog, log] : t->verifier_stats_) {
    for (absl::string_view line : absl::StrSplit(log.data(), '\n')) {
      if (absl::StartsWith(line, "processed ") || absl::StartsWith(line, "verification time")) {
        std::fprintf(stderr, "httptraced: verifier, %s: %.*s\n", bpf_program__name(prog),
                     static_cast<int>(line.size()), line.data());
      }
    }
  }
  if (absl::Status s = t->Attach(options.tracefs); !s.ok()) return s;
  // Its failures are reported here, in one sentence, in place of libbpf's.
  libbpf_quiet.store(true, std::memory_order_relaxed);
  absl::Status tls = t->AttachTls(options.tls_libraries, options.pids);
  libbpf_quiet.store(false, std::memory_order_relaxed);
  if (absl::Status s = tls; !s.ok()) {
    t->DetachTls();
    if (!options.tls_libraries_found) return s;
    t->tls_warning_ = std::string(s.message());
  }
  if (options.tls_scan_processes && t->tls_warning_.empty()) {
    Tracer* self = t.get();
    t->tls_scanner_ = std::make_unique<TlsScanner>(
        "/proc", options.pids,
        [self](uint64_t id, const std::string& path, pid_t target) {
          const int before = self->tls_probes_;
          const char* library = "libssl";
          absl::StatusOr<int> probed = self->AttachTlsLibrary(path, {target}, &library);
          if (probed.ok()) {
            // path: ScanTls
            self->scanned_links_[id] = {path, library, std::move(self->tls_links_)};
            self->tls_links_.clear();
          } else {
            self->DetachTls();
            self->tls_probes_ = before;
          }
          return probed;
        },
        [self, listed = !options.pids.empty()](uint64_t id) {
          auto it = self->scanned_links_.find(id);
          if (it == self->scanned_links_.end()) return;
          // Each removal waits for an RCU grace period: not on the event loop.
          self->detacher_.Post([links = std::move(it->second.links)] { DestroyLinks(links); });
          std::fprintf(stderr, "httptraced: TLS: probes removed from %s: no %sprocess maps it\n",
                       it->second.found_as.c_str(), listed ? "listed " : "");
          self->scanned_links_.erase(it);
        });
    if (!HasCapability(kCapSysPtrace)) {
      std::fprintf(stderr,
                   "httptraced: warning: TLS: without CAP_SYS_PTRACE the memory maps of other "
                   "users' processes cannot be read: a libssl of their own is not probed\n");
    }
    // The first scan is the daemon's, once it runs (Daemon::Run).
    for (const std::string& lib : options.tls_libraries) t->tls_scanner_->AlreadyProbed(lib);
    // Executables with an OpenSSL of their own that exports SSL_read and
    // SSL_write (Node.js): the check reads the file's dynamic symbols once.
    t->tls_scanner_->ProbeExecutables(
        [](const std::string& path) {
          absl::StatusOr<std::vector<TlsProbe>> probes = FindTlsProbes(path);
          if (!probes.ok()) return false;
          bool reads = false, writes = false;
          for (const TlsProbe& p : *probes) {
            reads |= p.kind == TlsProbeKind::kRead || p.kind == TlsProbeKind::kReadEx;
            writes |= p.kind == TlsProbeKind::kWrite || p.kind == TlsProbeKind::kWriteEx;
          }
          return reads && writes;
        });
  }
  if (options.verbosity >= 1) {
    if (t->socket_tracepoints_) {
      std::fprintf(stderr,
                   "httptraced: payload syscalls traced by sock_send_payload and "
                   "sock_recv_payload (socket tracepoints) and %s (sendfile, splice, "
                   "sendmmsg, recvmmsg)\n",
                   bpf_program__name(t->payload_prog_));
    } else {
      std::fprintf(stderr, "httptraced: payload syscalls traced by %s\n",
                   bpf_program__name(t->payload_prog_));
    }
  }
  // Its programs are attached (the links hold them): the first half's
  // instance, and its parse of the object, can go.
  t->first_.reset();
  t->payload_prog_ = nullptr;
  t->verifier_stats_.clear();
  malloc_trim(0);
  t->ring_ = ring_buffer__new(bpf_map__fd(t->skel_->maps.events), &Tracer::OnRingSample,
                              t.get(), nullptr);
  if (t->ring_ == nullptr) {
    return absl::InternalError(absl::StrCat("cannot open the BPF ring buffer: ", Errno(errno)));
  }
  return t;
}

void Tracer::SkelDeleter::operator()(httptraced_bpf* s) const { httptraced_bpf__destroy(s); }

namespace {

// The programs of the second loader (Tracer::Load): libssl's (attached at run
// time, so in the instance that is kept), sock_send_payload and
// sys_enter_close_range. The first has the payload exit program,
// sock_recv_payload and the small ones. The verifier's time on the 6.18 kernel
// here (--verbosity=2, strace -T): the exit program 0.24 s with the socket
// tracepoints (sys_exit_payload_rest; 0.5 s for the others), each socket
// tracepoint's 0.19 s, ssl_data_return 0.22 s, sys_enter_close_range 0.11 s,
// the others a few ms: 0.45 s and 0.52 s.
bool InSecondLoader(const httptraced_bpf* s, const bpf_program* prog) {
  const auto& p = s->progs;
  for (const bpf_program* second :
       {p.sock_send_payload, p.sys_enter_close_range, p.ssl_read_enter, p.ssl_write_enter,
        p.ssl_read_ex_enter, p.ssl_write_ex_enter, p.ssl_handshake_enter, p.ssl_data_return,
        p.ssl_handshake_return}) {
    if (prog == second) return true;
  }
  return false;
}

}  // namespace

absl::Status Tracer::Open(const TracerOptions& o, bool verifier_stats) {
  if (o.pids.size() > HT_MAX_FILTER || o.ports.size() > HT_MAX_FILTER) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", HT_MAX_FILTER, " pids and ", HT_MAX_FILTER, " ports"));
  }
  ncpus_ = libbpf_num_possible_cpus();
  if (ncpus_ <= 0) return absl::InternalError("cannot count the possible CPUs");
  for (Skel* s : {&maps_, &first_, &skel_}) {
    s->reset(httptraced_bpf__open());
    if (*s == nullptr) {
      return absl::InternalError(absl::StrCat("cannot open the BPF object: ", Errno(errno)));
    }
    if (absl::Status st = Configure(s->get(), o); !st.ok()) return st;
  }
  // One of the two payload programs: the same code, one of them dropping
  // files and untraced sockets with plain loads where the kernel allows it.
  const bool fast = untrusted_loads_ = o.fast_fd_filter && kernel_.untrusted_loads;
  // Their programs share the fast one's checks (the fd's socket is the
  // tracepoint's): only with it.
  socket_tracepoints_ = fast && o.socket_tracepoints && kernel_.socket_tracepoints;
  const bool tls = !o.tls_libraries.empty() || o.tls_scan_processes;
  // libssl's functions through uprobe_multi links where the kernel has them:
  // a library's probes as one link per program, whose removal waits for one RCU
  // grace period in all rather than one per probe under a global mutex (0.9 s
  // of a 1.35 s stop with perf-event uprobes). With --pid, a link per listed
  // process, only where their pid filter admits its every thread (Linux 6.10,
  // commit 46ba0e49b642; before, --pid keeps perf-event uprobes). And only with
  // CAP_SYS_ADMIN, which perf-event uprobes need since mid-2025 and these do
  // not: HTTPS tracing keeps asking for it (README, Security).
  uprobe_multi_ = tls && kernel_.uprobe_multi != 0 &&
                          (o.pids.empty() || kernel_.uprobe_multi_pid) &&
                          HasCapability(kCapSysAdmin)
                      ? kernel_.uprobe_multi
                      : 0;
  // The exit program of the payload syscalls: with the socket tracepoints,
  // the one built for the syscalls they leave (sendfile, splice and the
  // mmsg calls), which the verifier walks in a fraction of the time.
  const auto payload_of = [&](const httptraced_bpf* s) {
    return socket_tracepoints_ ? s->progs.sys_exit_payload_rest
           : fast              ? s->progs.sys_exit_payload_fast
                               : s->progs.sys_exit_payload;
  };
  // Which programs load, and in which instance: none in maps_, each wanted
  // one in first_ or skel_ (InSecondLoader).
  bpf_program* prog;
  bpf_object__for_each_program(prog, maps_->obj) bpf_program__set_autoload(prog, false);
  for (const Skel* loader : {&first_, &skel_}) {
    const httptraced_bpf* s = loader->get();
    const bool second = loader == &skel_;
    bpf_object__for_each_program(prog, s->obj) {
      bool wanted = InSecondLoader(s, prog) == second;
      if (prog == s->progs.sys_exit_payload_fast || prog == s->progs.sys_exit_payload ||
          prog == s->progs.sys_exit_payload_rest) {
        wanted = wanted && prog == payload_of(s);
      } else if (prog == s->progs.sock_send_payload || prog == s->progs.sock_recv_payload) {
        wanted = wanted && socket_tracepoints_;
      } else if (IsTlsProgram(s, prog)) {
        wanted = wanted && tls;
        if (wanted && uprobe_multi_ != 0) {
          bpf_program__set_expected_attach_type(prog,
                                                static_cast<bpf_attach_type>(uprobe_multi_));
        }
      } else if (wanted) {
        // Probe the hooks: a syscall this kernel lacks is skipped with a warning.
        const absl::string_view tp = TracepointOf(prog);
        if (!tp.empty() && !IsDir(absl::StrCat(o.tracefs, "/events/", tp))) {
          std::fprintf(stderr, "httptraced: warning: tracepoint %.*s is missing; not traced\n",
                       static_cast<int>(tp.size()), tp.data());
          wanted = false;
        }
      }
      bpf_program__set_autoload(prog, wanted);
    }
  }
  payload_prog_ = payload_of(first_.get());
  verifier_stats_.clear();
  if (o.verbosity >= 2 && verifier_stats) {
    for (bpf_program* p :
         {payload_prog_, skel_->progs.sock_send_payload, first_->progs.sock_recv_payload}) {
      if (!bpf_program__autoload(p)) continue;
      auto& [stats_prog, log] = verifier_stats_.emplace_back(p, std::vector<char>(64 << 10));
      // BPF_LOG_STATS (4): the totals only, not the instruction-level log.
      bpf_program__set_log_level(stats_prog, 4);
      bpf_program__set_log_buf(stats_prog, log.data(), log.size());
    }
  }
  return absl::OkStatus();
}

absl::Status Tracer::Configure(httptraced_bpf* s, const TracerOptions& o) const {
  auto* ro = s->rodata;
  ro->targ_self_tgid = o.self_tgid;
  ro->targ_npids = static_cast<uint32_t>(o.pids.size());
  for (size_t i = 0; i < o.pids.size(); ++i) ro->targ_pids[i] = o.pids[i];
  ro->targ_nports = static_cast<uint32_t>(o.ports.size());
  for (size_t i = 0; i < o.ports.size(); ++i) ro->targ_ports[i] = o.ports[i];
  ro->targ_unix_sockets = o.unix_sockets ? 1 : 0;
  ro->targ_unix_by_name = o.unix_by_name ? 1 : 0;
  ro->targ_tls = o.tls_libraries.empty() && !o.tls_scan_processes ? 0 : 1;
  ro->targ_max_capture = o.max_capture_bytes;
  ro->targ_wakeup_bytes = o.ring_buffer_bytes / 16;
  for (const PayloadSyscall& sc : kPayloadSyscalls) {
    static_assert(HT_MAX_SYSCALL_NR > 0);
    if (sc.nr < 0 || sc.nr >= HT_MAX_SYSCALL_NR) {
      return absl::InternalError(absl::StrCat("syscall number ", sc.nr, " of ", sc.name,
                                              " is outside the kernel-side table"));
    }
    ro->targ_sys_kind[sc.nr] = sc.kind;
  }
  struct {
    bpf_map* map;
    uint32_t entries;
  } sizes[] = {
      {s->maps.events, o.ring_buffer_bytes},
      {s->maps.conns, o.max_connections},
      {s->maps.scratch_space, static_cast<uint32_t>(ncpus_)},
  };
  for (const auto& [map, entries] : sizes) {
    if (int err = bpf_map__set_max_entries(map, entries); err != 0) {
      return absl::InvalidArgumentError(absl::StrCat("cannot size BPF map ", bpf_map__name(map),
                                                     " to ", entries, ": ", Errno(err)));
    }
  }
  return absl::OkStatus();
}

int Tracer::Load() {
  // The maps first, alone; then each loader takes them over (the same object:
  // the same maps in the same order) and loads its programs, both at once.
  // The verifier runs in the thread that asks for the load: two loads use two
  // cores.
  if (int err = httptraced_bpf__load(maps_.get()); err != 0) return err;
  const std::array<httptraced_bpf*, 2> loaders = {first_.get(), skel_.get()};
  for (httptraced_bpf* loader : loaders) {
    bpf_map* own = nullptr;
    bpf_map* map = nullptr;
    while ((own = bpf_object__next_map(maps_->obj, own)) != nullptr) {
      map = bpf_object__next_map(loader->obj, map);
      if (map == nullptr || std::strcmp(bpf_map__name(map), bpf_map__name(own)) != 0) {
        return -EINVAL;
      }
      if (int err = bpf_map__reuse_fd(map, bpf_map__fd(own)); err != 0) return err;
    }
  }
  std::array<int, 2> errs{};
  RunConcurrently(loaders.size(), loaders.size(),
                  [&loaders, &errs](size_t i) { errs[i] = httptraced_bpf__load(loaders[i]); });
  // The loaders hold the maps now (and skel_ maps the globals): the instance
  // that made them, and its parse of the object, can go.
  maps_.reset();
  return errs[0] != 0 ? errs[0] : errs[1];
}

absl::Status Tracer::AttachOne(bpf_program* prog, const char* category, const char* name) {
  bpf_link* link = name == nullptr ? bpf_program__attach(prog)
                                   : bpf_program__attach_tracepoint(prog, category, name);
  if (link == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot attach ", bpf_program__name(prog), " to ",
        name == nullptr ? bpf_program__section_name(prog) : name, ": ", Errno(errno)));
  }
  links_.push_back({.libbpf = link});
  ++attached_;
  return absl::OkStatus();
}

absl::Status Tracer::Attach(const std::string& tracefs) {
  for (const Skel* loader : {&first_, &skel_}) {
    bpf_program* prog;
    bpf_object__for_each_program(prog, (*loader)->obj) {
      if (!bpf_program__autoload(prog) || prog == payload_prog_ ||
          IsTlsProgram(loader->get(), prog)) {
        continue;
      }
      if (absl::Status s = AttachOne(prog, nullptr, nullptr); !s.ok()) return s;
    }
  }
  for (const PayloadSyscall& sc : kPayloadSyscalls) {
    if (socket_tracepoints_ && OnSocketTracepoints(sc.kind)) continue;
    const std::string name = absl::StrCat("sys_exit_", sc.name);
    if (!IsDir(absl::StrCat(tracefs, "/events/syscalls/", name))) {
      std::fprintf(stderr, "httptraced: warning: tracepoint syscalls/%s is missing; not traced\n",
                   name.c_str());
      continue;
    }
    if (absl::Status s = AttachOne(payload_prog_, "syscalls", name.c_str()); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

bool Tracer::IsTlsProgram(const httptraced_bpf* s, const bpf_program* prog) {
  const auto& p = s->progs;
  for (const bpf_program* tls :
       {p.ssl_read_enter, p.ssl_write_enter, p.ssl_read_ex_enter, p.ssl_write_ex_enter,
        p.ssl_handshake_enter, p.ssl_data_return, p.ssl_handshake_return}) {
    if (prog == tls) return true;
  }
  return false;
}

absl::Status Tracer::AttachTls(const std::vector<std::string>& libraries,
                               const std::vector<uint32_t>& pids) {
  std::vector<pid_t> targets;  // -1: every process
  for (uint32_t pid : pids) targets.push_back(static_cast<pid_t>(pid));
  if (targets.empty()) targets.push_back(-1);
  for (const std::string& lib : libraries) {
    const char* library = "libssl";
    absl::StatusOr<int> probed = AttachTlsLibrary(lib, targets, &library);
    if (!probed.ok()) {
      if (absl::IsPermissionDenied(probed.status())) return probed.status();
      return absl::FailedPreconditionError(
          absl::StrCat(probed.status().message(),
                       "; name the right file with --tls_libraries or pass --tls=false"));
    }
    tls_libraries_probed_.push_back({lib, library, *probed});
  }
  links_.insert(links_.end(), tls_links_.begin(), tls_links_.end());
  tls_links_.clear();
  return absl::OkStatus();
}

absl::StatusOr<int> Tracer::AttachTlsLibrary(const std::string& lib,
                                             const std::vector<pid_t>& targets,
                                             const char** library) {
  const auto& p = skel_->progs;  // InSecondLoader
  absl::StatusOr<std::vector<TlsProbe>> probes = FindTlsProbes(lib);
  if (!probes.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("TLS: ", probes.status().message()));
  }
  if (library != nullptr) *library = TlsLibraryOf(*probes);
  // With uprobe_multi: each program's offsets, entry and return apart.
  std::vector<std::pair<bpf_program*, std::vector<uint64_t>>> entries, returns;
  const auto add = [](auto& groups, bpf_program* prog, uint64_t offset) {
    auto it = std::find_if(groups.begin(), groups.end(),
                           [prog](const auto& g) { return g.first == prog; });
    if (it == groups.end()) it = groups.insert(groups.end(), {prog, {}});
    it->second.push_back(offset);
  };
  for (const TlsProbe& probe : *probes) {
    bpf_program* enter = probe.kind == TlsProbeKind::kRead      ? p.ssl_read_enter
                         : probe.kind == TlsProbeKind::kWrite   ? p.ssl_write_enter
                         : probe.kind == TlsProbeKind::kReadEx  ? p.ssl_read_ex_enter
                         : probe.kind == TlsProbeKind::kWriteEx ? p.ssl_write_ex_enter
                                                                : p.ssl_handshake_enter;
    bpf_program* exit =
        probe.kind == TlsProbeKind::kHandshake ? p.ssl_handshake_return : p.ssl_data_return;
    if (uprobe_multi_ != 0) {
      add(entries, enter, probe.offset);
      add(returns, exit, probe.offset);
    } else {
      for (bpf_program* prog : {enter, exit}) {
        for (pid_t target : targets) {
          bpf_uprobe_opts opts{};
          opts.sz = sizeof(opts);
          opts.retprobe = prog == exit;
          bpf_link* link =
              bpf_program__attach_uprobe_opts(prog, target, lib.c_str(), probe.offset, &opts);
          if (link == nullptr && errno == ESRCH) continue;  // a --pid process that is gone
          if (link == nullptr && (errno == EACCES || errno == EPERM)) {
            // Linux requires CAP_SYS_ADMIN for uprobes since mid-2025 (6.16,
            // and the stable kernels it was backported to); tracepoints and
            // BPF need only CAP_BPF and CAP_PERFMON.
            return absl::PermissionDeniedError(
                "TLS: the kernel refused a uprobe on a TLS library (uprobes need "
                "CAP_SYS_ADMIN); HTTPS is not traced: grant CAP_SYS_ADMIN, or pass --tls=false");
          }
          if (link == nullptr) {
            return absl::FailedPreconditionError(
                absl::StrCat("TLS: cannot attach a uprobe to ", probe.name, " in ", lib, " (",
                             Errno(errno), ")"));
          }
          tls_links_.push_back({.libbpf = link});
        }
      }
    }
    if (libbpf_verbosity.load(std::memory_order_relaxed) >= 1) {
      std::fprintf(stderr, "httptraced: TLS: %s: probing %s at offset 0x%llx\n", lib.c_str(),
                   probe.name.c_str(), static_cast<unsigned long long>(probe.offset));
    }
    ++tls_probes_;
  }
  for (const auto* groups : {&entries, &returns}) {
    for (const auto& [prog, offsets] : *groups) {
      for (pid_t target : targets) {  // -1: every process
        const int fd =
            CreateUprobeMultiLink(prog, uprobe_multi_, lib, offsets, groups == &returns, target);
        if (fd < 0 && errno == ESRCH) continue;  // a --pid process that is gone
        if (fd < 0 && (errno == EACCES || errno == EPERM)) {
          return absl::PermissionDeniedError(
              "TLS: the kernel refused a uprobe on a TLS library; HTTPS is not traced: grant "
              "CAP_SYS_ADMIN, or pass --tls=false");
        }
        if (fd < 0) {
          return absl::FailedPreconditionError(
              absl::StrCat("TLS: cannot attach ", bpf_program__name(prog), " to ", lib,
                           " (uprobe_multi: ", Errno(errno), ")"));
        }
        tls_links_.push_back({.fd = fd});
      }
    }
  }
  return static_cast<int>(probes->size());
}

void Tracer::ScanTls(uint64_t now_ns) {
  if (tls_scanner_ == nullptr || now_ns - last_tls_scan_ns_ < kTlsScanEveryNs) return;
  last_tls_scan_ns_ = now_ns;
  libbpf_quiet.store(true, std::memory_order_relaxed);
  std::vector<TlsScanner::Found> found = tls_scanner_->Scan(now_ns);
  libbpf_quiet.store(false, std::memory_order_relaxed);

  for (const TlsScanner::Found& f : found) {
    const std::string where =
        absl::StrCat(f.path, f.deleted ? " (deleted)" : "", ", mapped by pid ", f.pid);
    if (f.probes.ok()) {
      const char* library = "libssl";
      if (auto it = scanned_links_.find(f.id); it != scanned_links_.end()) {
        it->second.found_as = absl::StrCat(f.path, f.deleted ? " (deleted)" : "");
        library = it->second.library;
      }
      std::fprintf(stderr, "httptraced: TLS: %d %s functions probed in %s\n", *f.probes, library,
                   where.c_str());
      continue;
    }
    if (absl::IsPermissionDenied(f.probes.status())) {
      tls_warning_ = std::string(f.probes.status().message());
      std::fprintf(stderr, "httptraced: warning: %s\n", tls_warning_.c_str());
      tls_scanner_.reset();
      return;
    }
    std::fprintf(stderr, "httptraced: warning: %s (%s); its HTTPS is not traced\n",
                 std::string(f.probes.status().message()).c_str(), where.c_str());
  }
}

void Tracer::DetachTls() {
  for (const Link& link : tls_links_) link.Destroy();
  tls_links_.clear();
  tls_probes_ = 0;
  tls_libraries_probed_.clear();
}

// libbpf's consume loop runs until the ring is empty; a sample callback that
// returns this stops it after the sample (which counts as consumed).
constexpr int kBudgetSpent = -EDQUOT;

int Tracer::OnRingSample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<Tracer*>(ctx);
  self->handler_->OnSample(std::string_view(static_cast<const char*>(data), size));
  return --self->budget_left_ > 0 ? 0 : kBudgetSpent;
}

absl::StatusOr<int> Tracer::Poll(int timeout_ms) {
  budget_left_ = kSampleBudget;
  more_pending_ = false;
  int n = ring_buffer__poll(ring_, timeout_ms);
  if (n == -EINTR) n = 0;
  if (n == kBudgetSpent) {
    more_pending_ = true;
    return kSampleBudget;
  }
  if (n < 0) return absl::InternalError(absl::StrCat("ring buffer poll: ", Errno(n)));
  // The kernel side wakes us only when the backlog crosses a threshold, so a
  // quiet poll still has to look at the ring.
  return n + DrainSome();
}

absl::StatusOr<int> Tracer::Drain() {
  budget_left_ = kSampleBudget;
  more_pending_ = false;
  const int n = DrainSome();
  if (n < 0) return absl::InternalError(absl::StrCat("ring buffer consume: ", Errno(n)));
  return n;
}

int Tracer::DrainSome() {
  const int before = budget_left_;
  const int n = ring_buffer__consume(ring_);
  if (n == kBudgetSpent) {
    more_pending_ = true;
    return before;
  }
  return n;
}

void Tracer::StopEvents() {
  __atomic_store_n(&skel_->bss->tracing_stopped, 1, __ATOMIC_SEQ_CST);
}

absl::Status Tracer::Forget(const conn::ConnKey& key) {
  ht_conn_key k{};
  k.tgid = key.tgid;
  k.fd = key.fd;
  ht_conn_state st{};
  const int fd = bpf_map__fd(skel_->maps.conns);
  if (bpf_map_lookup_elem(fd, &k, &st) != 0 || st.gen != key.gen) return absl::OkStatus();
  if (bpf_map_delete_elem(fd, &k) != 0 && errno != ENOENT) {
    return absl::InternalError(absl::StrCat("cannot forget a connection: ", Errno(errno)));
  }
  return absl::OkStatus();
}

bool Tracer::CountedOtherThan(const conn::ConnKey& key, const uint64_t consumed[2]) const {
  ht_conn_key k{};
  k.tgid = key.tgid;
  k.fd = key.fd;
  ht_conn_state st{};
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.conns), &k, &st) != 0 || st.gen != key.gen) {
    return false;
  }
  return st.pos[0] != consumed[0] || st.pos[1] != consumed[1];
}

int Tracer::epoll_fd() const { return ring_buffer__epoll_fd(ring_); }

KernelCounters Tracer::ReadCounters() const {
  KernelCounters out;
  uint64_t* fields[] = {&out.ring_drops, &out.ring_drop_bytes, &out.read_faults, &out.not_http,
                        &out.conns_seen, &out.stale,           &out.body_skipped,
                        &out.tls_no_fd};
  std::vector<uint64_t> values(static_cast<size_t>(ncpus_));
  for (uint32_t i = 0; i < std::size(fields); ++i) {
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.counters), &i, values.data()) != 0) continue;
    for (uint64_t v : values) *fields[i] += v;
  }
  return out;
}

absl::Status Tracer::Disable(const conn::ConnKey& key) {
  ht_conn_id id{};
  id.tgid = key.tgid;
  id.fd = key.fd;
  id.gen = key.gen;
  uint8_t one = 1;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.disabled), &id, &one, BPF_NOEXIST) != 0) {
    if (errno == EEXIST) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("cannot disable a connection: ", Errno(errno)));
  }
  __atomic_fetch_add(&skel_->bss->disabled_pending, 1, __ATOMIC_SEQ_CST);
  return absl::OkStatus();
}

namespace {
ht_skip_key SkipKey(const conn::ConnKey& key, int dir) {
  ht_skip_key k{};
  k.conn.tgid = key.tgid;
  k.conn.fd = key.fd;
  k.conn.gen = key.gen;
  k.dir = static_cast<uint32_t>(dir & 1);
  return k;
}
}  // namespace

absl::Status Tracer::SkipBody(const conn::ConnKey& key, int dir, uint64_t from, uint64_t until) {
  const ht_skip_key k = SkipKey(key, dir);
  const ht_skip_range range{.from = from, .until = until};
  const int fd = bpf_map__fd(skel_->maps.skips);
  // A new entry is counted in skips_pending; an existing one (the same
  // direction's previous body, not passed yet) is replaced in place. The
  // kernel may delete it in between: then it is new again.
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (bpf_map_update_elem(fd, &k, &range, BPF_NOEXIST) == 0) {
      __atomic_fetch_add(&skel_->bss->skips_pending, 1, __ATOMIC_SEQ_CST);
      return absl::OkStatus();
    }
    if (errno != EEXIST) break;
    if (bpf_map_update_elem(fd, &k, &range, BPF_EXIST) == 0) return absl::OkStatus();
    if (errno != ENOENT) break;
  }
  // E2BIG: the map is full; the body is copied as before.
  return absl::ResourceExhaustedError(absl::StrCat("cannot skip a body: ", Errno(errno)));
}

void Tracer::ClearSkips(const conn::ConnKey& key) {
  const int fd = bpf_map__fd(skel_->maps.skips);
  for (int dir = 0; dir < 2; ++dir) {
    const ht_skip_key k = SkipKey(key, dir);
    if (bpf_map_delete_elem(fd, &k) == 0) {
      __atomic_fetch_sub(&skel_->bss->skips_pending, 1, __ATOMIC_SEQ_CST);
    }
  }
}

void Tracer::Detach() {
  // Every link at once (RunConcurrently: each waits for grace periods that
  // concurrent removals partly overlap).
  std::vector<Link> all = std::move(links_);
  links_.clear();
  all.insert(all.end(), tls_links_.begin(), tls_links_.end());
  tls_links_.clear();
  tls_probes_ = 0;
  for (auto& [id, probed] : scanned_links_) {
    all.insert(all.end(), probed.links.begin(), probed.links.end());
  }
  scanned_links_.clear();
  DestroyLinks(all);
}

Tracer::~Tracer() {
  detacher_.Stop();  // the removals under way end before the rest goes
  Detach();
  if (ring_ != nullptr) ring_buffer__free(ring_);
}

}  // namespace httptraced::bpf
