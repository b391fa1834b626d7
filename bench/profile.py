#!/usr/bin/env python3
"""Where httptraced's time goes under the nginx load (bench/README.md, "Profile").

Started by `bench/run.sh --profile`. For each workload (GET, POST) it runs nginx +
wrk -t1 -c16 traced by httptraced (rotating log, every process traced) four times:

  1. plain:        daemon CPU per request and per record, and the BPF programs' own
                   run time and run count (kernel.bpf_stats_enabled=1, from the
                   programs' fdinfo), per request;
  2. perf daemon:  perf record -e cpu-clock --call-graph dwarf -p <daemon>: every
                   sample is put in the component it was spent in (decode,
                   reassembly, parser, session, record building, writes, ...);
  3. perf system:  perf record -e cpu-clock -a -g: the share of nginx's and wrk's
                   CPU spent in the BPF programs and in the tracepoint plumbing;
  4. syscalls:     perf stat of the payload syscalls nginx and wrk make per request.

and once more the daemon under valgrind --tool=callgrind (instructions per
record by function, repeatable). Writes bench/results/profile-<timestamp>/ (the
raw perf reports, callgrind output and profile.json) and prints a summary.
"""

import argparse
import collections
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httpbench as hb  # noqa: E402

# Components of the daemon, matched against stack frames from the leaf upwards:
# the first frame that matches decides where the sample's time goes.
COMPONENTS = [
    ("log compression (rotated files)", re.compile(r"BackupWorker|libz\.so|deflate|crc32|zstd|ZSTD")),
    ("log output (write(2), rotation)", re.compile(r"httptraced::output::|Daemon::Flush")),
    ("record building (JSON)", re.compile(r"httptraced::record::|Daemon::OnExchange")),
    ("HTTP parser", re.compile(r"httptraced::http::MessageParser|httptraced::http::\(anonymous namespace\)::Parse")),
    ("stitcher", re.compile(r"httptraced::http::Stitcher")),
    ("session (routing, Message copies)", re.compile(r"httptraced::http::")),
    ("reassembly (DataStream)", re.compile(r"httptraced::conn::DataStream")),
    ("connection table", re.compile(r"httptraced::conn::")),
    ("/proc lookups", re.compile(r"httptraced::proc::")),
    ("event decode", re.compile(r"httptraced::bpf::DecodeEvent")),
    ("event dispatch (Daemon::OnSample)", re.compile(r"Daemon::OnSample|Tracer::OnRingSample")),
    ("ring buffer consume (libbpf)", re.compile(r"ring_buffer__consume|ringbuf_process_ring|libbpf")),
    ("epoll_wait / poll loop", re.compile(r"epoll_wait|ring_buffer__poll|Tracer::Poll")),
    ("signalfd read, ticks, main loop", re.compile(r"Daemon::Run|Daemon::Tick|httptraced::daemon::")),
]

BPF_PROG_RE = re.compile(r"^bpf_prog_[0-9a-f]{16}_")


# Kernel-side categories for samples of the traced processes (system-wide profile).
def kernel_category(frames):
    """frames: leaf first. Category of one nginx/wrk sample."""
    for i, f in enumerate(frames):
        if BPF_PROG_RE.match(f):
            leaf = frames[0]
            if i == 0:
                return "BPF: program code"
            if re.search(r"probe_read_user|copy_from_user|_copy_from_user|strncpy_from_user|copy_user", " ".join(frames[:i])):
                return "BPF: bpf_probe_read_user (payload copy)"
            if re.search(r"irq_work", " ".join(frames[:i])):
                return "BPF: ring buffer wake-up (irq_work self-IPI)"
            if re.search(r"ringbuf", " ".join(frames[:i])):
                return "BPF: ring buffer output (copy, lock)"
            if re.search(r"probe_read_kernel|copy_from_kernel_nofault", " ".join(frames[:i])):
                return "BPF: bpf_probe_read_kernel (task, pt_regs, fd->sock fields)"
            if re.search(r"htab|lookup_elem|update_elem|delete_elem|lru|pcpu_freelist|bpf_lru", " ".join(frames[:i])):
                return "BPF: map operations"
            if re.search(r"bpf_loop", " ".join(frames[:i])):
                return "BPF: bpf_loop"
            return f"BPF: other helpers ({leaf})"
    joined = " ".join(frames[:12])
    if re.search(r"trace_call_bpf|perf_syscall_enter|perf_syscall_exit|syscall_trace_enter|"
                 r"syscall_exit_work|__bpf_prog_enter|__bpf_prog_exit|perf_trace_buf|trace_sys_", joined):
        return "tracepoint plumbing (outside the programs)"
    if frames and re.match(r"^[0-9a-f]*$|^\[unknown\]", frames[0]):
        return "user"
    return None  # decided by the dso: kernel or user


def parse_perf_script(path_or_text, is_text=False, with_ip=False):
    """Yields (comm, pid, frames leaf-first as (sym, dso)) [, function start addresses]."""
    text = path_or_text if is_text else open(path_or_text, errors="replace").read()
    for block in text.split("\n\n"):
        lines = block.strip("\n").splitlines()
        if not lines:
            continue
        head = lines[0].split()
        if len(head) < 2:
            continue
        comm, pid = " ".join(head[:-1]), head[-1]
        frames, ips = [], []
        for line in lines[1:]:
            m = re.match(r"\s*([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$", line)
            if m:
                frames.append((m.group(2), m.group(3)))
                if with_ip:
                    off = re.search(r"\+0x([0-9a-f]+)$", m.group(2))
                    ips.append(int(m.group(1), 16) - (int(off.group(1), 16) if off else 0))
        yield (comm, pid, frames, ips) if with_ip else (comm, pid, frames)


def strip_sym(sym):
    return re.sub(r"\+0x[0-9a-f]+$", "", sym)


def daemon_breakdown(script_path):
    total = 0
    comp = collections.Counter()
    kernel_leaf = 0
    leaf_syms = collections.Counter()
    kernel_by_comp = collections.Counter()
    for comm, pid, frames in parse_perf_script(script_path):
        if not frames:
            continue
        total += 1
        syms = [strip_sym(s) for s, _ in frames]
        leaf_syms[syms[0] if syms[0] != "[unknown]" else f"[unknown] ({os.path.basename(frames[0][1])})"] += 1
        is_kernel = frames[0][1].startswith("[kernel")
        kernel_leaf += is_kernel
        name = "other"
        for s in (f"{sym} ({dso})" for sym, dso in frames):
            for cname, rx in COMPONENTS:
                if rx.search(s):
                    name = cname
                    break
            else:
                continue
            break
        comp[name] += 1
        if is_kernel:
            kernel_by_comp[name] += 1
    return {
        "samples": total,
        "kernel_fraction": kernel_leaf / max(1, total),
        "components": {k: v / max(1, total) for k, v in comp.most_common()},
        "components_kernel_part": {k: v / max(1, total) for k, v in kernel_by_comp.most_common()},
        "top_self": [(k, v / max(1, total)) for k, v in leaf_syms.most_common(30)],
    }


def bpf_ksyms():
    """(address, name) of every JIT-ed BPF function. Names alone do not tell two
    daemons apart: the same binary loads functions with the same tags."""
    out = set()
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and BPF_PROG_RE.match(parts[2]):
                out.add((int(parts[0], 16), parts[2]))
    return out


def system_breakdown(script_path, own_syms, wrk_comm="wrk"):
    """CPU of nginx, wrk and the daemon by category (share of each process's samples)."""
    per = collections.defaultdict(collections.Counter)
    totals = collections.Counter()
    foreign_bpf = 0
    # Samples inside this daemon's BPF programs (and in the tracepoint plumbing), by the
    # syscall they ran for: the libc wrapper that made it is on the user part of the stack.
    bpf_by_syscall = collections.defaultdict(collections.Counter)
    plumbing_by_syscall = collections.defaultdict(collections.Counter)
    for comm, pid, frames, starts in parse_perf_script(script_path, with_ip=True):
        if not frames:
            continue
        if comm.startswith("nginx"):
            who = "nginx"
        elif comm == wrk_comm:
            who = "wrk"
        elif comm == "httptraced":
            who = "httptraced (all daemons)"
        else:
            who = "other"
        syms = [strip_sym(s) for s, _ in frames]
        bpf = [a for s, a in zip(syms, starts) if BPF_PROG_RE.match(s)]
        if bpf and not any(a in own_syms for a in bpf):
            foreign_bpf += 1
            cat = "BPF of other tracers (not this daemon)"
        else:
            cat = kernel_category(syms)
        if cat is None:
            cat = "kernel (syscall work, network stack)" if frames[0][1].startswith("[kernel") else "user"
        per[who][cat] += 1
        totals[who] += 1
        if cat.startswith("BPF: ") or cat.startswith("tracepoint plumbing"):
            sc = "?"
            for sym, dso in frames:
                if "libc.so" in dso:
                    sc = re.sub(r"^(__GI_)?_*(libc_)?", "", strip_sym(sym))
                    sc = {"recv": "recvfrom", "send": "sendto", "sendfile": "sendfile64", "open": "openat",
                          "fstatat64": "newfstatat"}.get(sc, sc)
                    break
            target = bpf_by_syscall if cat.startswith("BPF: ") else plumbing_by_syscall
            target[who][sc] += 1
    out = {}
    for who, c in per.items():
        out[who] = {"samples": totals[who],
                    "categories": {k: v / totals[who] for k, v in c.most_common()}}
    out["_foreign_bpf_samples"] = foreign_bpf
    out["_bpf_samples_by_syscall"] = {k: dict(v) for k, v in bpf_by_syscall.items()}
    out["_plumbing_samples_by_syscall"] = {k: dict(v) for k, v in plumbing_by_syscall.items()}
    return out


# x86_64 numbers. Counted on raw_syscalls:sys_exit with a filter per syscall: the
# per-syscall tracepoints cannot be counted while httptraced is attached, since a BPF
# program returning 0 there also drops the event for perf (perf_syscall_exit).
SYSCALLS = {"read": 0, "write": 1, "readv": 19, "writev": 20, "recvfrom": 45, "sendto": 44,
            "recvmsg": 47, "sendmsg": 46, "sendfile64": 40, "close": 3, "accept4": 288,
            "connect": 42, "epoll_wait": 232, "epoll_ctl": 233, "openat": 257, "pread64": 17,
            "newfstatat": 262, "fstat": 5, "setsockopt": 54}
PAYLOAD_SYSCALLS = {"read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg",
                    "sendmsg", "sendfile64"}


def syscall_events():
    """perf arguments and the label of each counter, in order."""
    args, labels = [], []
    for name, nr in SYSCALLS.items():
        args += ["-e", "raw_syscalls:sys_exit", "--filter", f"id == {nr}"]
        labels.append(name)
        if name in PAYLOAD_SYSCALLS:  # the BPF program stops at once when ret <= 0
            args += ["-e", "raw_syscalls:sys_exit", "--filter", f"id == {nr} && ret > 0"]
            labels.append(name + " (ret>0)")
    return args, labels


def callgrind_table(text, limit, combine, records):
    """Rows of callgrind_annotate output per function, per record. The inlined pieces of
    one function appear once per source file: summed for self cost, the largest kept
    for inclusive cost."""
    acc = {}
    for line in text.splitlines():
        mm = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*?):(.*)$", line)
        if not mm or "PROGRAM TOTALS" in line:
            continue
        ir = int(mm.group(1).replace(",", ""))
        fn = re.sub(r"\s*\[[^\]]*\]\s*$", "", mm.group(3)).strip()
        fn = fn.replace("(anonymous namespace)", "{anon}")
        fn = re.sub(r"\(.*\)( const)?( \[clone [^\]]*\])?$", "", fn)  # the parameter list
        if not fn or re.match(r"^(0x[0-9a-f]+|main|\(below main\)|__libc_start.*|_start)$", fn):
            continue
        acc[fn] = combine(acc.get(fn, 0), ir)
    rows = sorted(acc.items(), key=lambda kv: -kv[1])[:limit]
    return [(fn, ir / max(1, records)) for fn, ir in rows]


class Profiler:
    def __init__(self, o, workdir, outdir, procs):
        self.o = o
        self.workdir = workdir
        self.outdir = outdir
        self.procs = procs
        self.nginx = None

    def url(self, w):
        return f"http://127.0.0.1:{self.nginx.port}/" + ("index.html" if w == "get" else "echo")

    def script(self, w):
        return os.path.join(hb.BENCH_DIR, "post.lua") if w == "post" else None

    def daemon(self, name, extra=()):
        return hb.Daemon(self.procs, self.o.binary, self.workdir, name, list(extra))

    def finish(self, d, res, w):
        stats = d.stop()
        res["daemon_stats"] = stats
        res["records_written"] = stats.get("written")
        res["events"] = stats.get("events")
        res["events_per_req"] = stats.get("events", 0) / max(1, w["requests"])
        res["payload_bytes_per_req"] = stats.get("bytes", 0) / max(1, w["requests"])
        res["drops"] = stats.get("kernel_drops", 0) + stats.get("lost", 0)
        shutil.rmtree(d.log_dir, ignore_errors=True)

    def plain(self, workload):
        d = self.daemon(f"plain-{workload}")
        res = {}
        w = {"requests": 0}
        try:
            b0 = hb.bpf_stats_of(d.pid)
            c0 = d.cpu_ns()
            w = hb.run_wrk(self.procs, self.url(workload), self.o.conns, self.o.duration, self.script(workload))
            hb.settle(d.cpu_ns)
            c1 = d.cpu_ns()
            bpf = hb.bpf_stats_delta(b0, hb.bpf_stats_of(d.pid))
            res.update(wrk=w, daemon_cpu_ms=(c1 - c0) / 1e6)
            res["bpf"] = {k: dict(v, ns_per_run=v["run_time_ns"] / max(1, v["run_cnt"]),
                                  runs_per_req=v["run_cnt"] / max(1, w["requests"]),
                                  ns_per_req=v["run_time_ns"] / max(1, w["requests"]))
                          for k, v in bpf.items()}
            res["bpf_ns_per_req"] = sum(v["run_time_ns"] for v in bpf.values()) / max(1, w["requests"])
            res["daemon_mem"] = d.mem()
        finally:
            self.finish(d, res, w)
        res["daemon_cpu_us_per_req"] = res["daemon_cpu_ms"] * 1e3 / max(1, w["requests"])
        res["daemon_cpu_us_per_record"] = res["daemon_cpu_ms"] * 1e3 / max(1, res["records_written"] or 0)
        return res

    def perf_daemon(self, workload):
        d = self.daemon(f"perfd-{workload}")
        data = os.path.join(self.outdir, f"perf-daemon-{workload}.data")
        res = {}
        w = {"requests": 0}
        perf = self.procs.start(["perf", "record", "-e", "cpu-clock", "-F", str(self.o.freq),
                                 "--call-graph", "dwarf,16384", "-p", str(d.pid), "-o", data],
                                stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(self.workdir, "perf-daemon.err"), "w"))
        try:
            time.sleep(1.0)
            w = hb.run_wrk(self.procs, self.url(workload), self.o.conns, self.o.duration, self.script(workload))
            hb.settle(d.cpu_ns)
            self.procs.stop(perf, sig=signal.SIGINT, timeout=120)
            res["wrk"] = w
        finally:
            self.procs.stop(perf, sig=signal.SIGINT, timeout=60)
            self.finish(d, res, w)
        script = os.path.join(self.workdir, f"perf-daemon-{workload}.txt")
        with open(script, "w") as f:
            subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,ip,sym,dso"],
                           stdout=f, stderr=subprocess.DEVNULL)
        res["breakdown"] = daemon_breakdown(script)
        with open(os.path.join(self.outdir, f"perf-daemon-{workload}-report.txt"), "w") as f:
            subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym",
                            "--stdio", "-g", "none", "--percent-limit", "0.3"],
                           stdout=f, stderr=subprocess.DEVNULL)
        with open(os.path.join(self.outdir, f"perf-daemon-{workload}-children.txt"), "w") as f:
            subprocess.run(["perf", "report", "-i", data, "--children", "--sort", "sym",
                            "--stdio", "-g", "none", "--percent-limit", "1"],
                           stdout=f, stderr=subprocess.DEVNULL)
        os.unlink(data)  # large (dwarf stacks); the reports stay
        return res

    def perf_system(self, workload, traced=True):
        # This daemon's JIT-ed functions are the bpf_prog_<tag>_<name> symbols that appear
        # in /proc/kallsyms when it loads (a function's tag is not its program's tag).
        before = bpf_ksyms()
        d = self.daemon(f"perfs-{workload}") if traced else None
        own = {addr for addr, _ in bpf_ksyms() - before} if d else set()
        label = "traced" if traced else "untraced"
        data = os.path.join(self.workdir, f"perf-system-{workload}-{label}.data")
        res = {}
        w = {"requests": 0}
        perf = self.procs.start(["perf", "record", "-e", "cpu-clock", "-F", str(self.o.freq), "-a", "-g",
                                 "-o", data], stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(self.workdir, "perf-system.err"), "w"))
        try:
            time.sleep(1.0)
            w = hb.run_wrk(self.procs, self.url(workload), self.o.conns, self.o.duration, self.script(workload))
            self.procs.stop(perf, sig=signal.SIGINT, timeout=120)
            res["wrk"] = w
        finally:
            self.procs.stop(perf, sig=signal.SIGINT, timeout=60)
            if d:
                self.finish(d, res, w)
        script = os.path.join(self.workdir, f"perf-system-{workload}-{label}.txt")
        with open(script, "w") as f:
            subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,ip,sym,symoff,dso"],
                           stdout=f, stderr=subprocess.DEVNULL)
        res["breakdown"] = system_breakdown(script, own)
        res["own_bpf_functions"] = sorted(hex(a) for a in own)
        with open(os.path.join(self.outdir, f"perf-system-{workload}-{label}-report.txt"), "w") as f:
            subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "comm,dso,sym",
                            "--stdio", "-g", "none", "--percent-limit", "0.3"],
                           stdout=f, stderr=subprocess.DEVNULL)
        os.unlink(data)
        return res

    def syscalls(self, workload):
        """Syscalls per request of nginx's worker and of wrk (untraced run)."""
        events, labels = syscall_events()
        worker = self.nginx.workers()[0]
        nout = os.path.join(self.workdir, "perf-stat-nginx.txt")
        wout = os.path.join(self.workdir, "perf-stat-wrk.txt")
        pn = self.procs.start(["perf", "stat"] + events + ["-p", str(worker), "-x", ",", "-o", nout],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        argv = ["perf", "stat"] + events + ["-x", ",", "-o", wout, "--", "wrk", "-t1",
                                            f"-c{self.o.conns}", f"-d{max(1, int(round(self.o.duration)))}s"]
        if self.script(workload):
            argv += ["-s", self.script(workload)]
        argv.append(self.url(workload))
        r = subprocess.run(argv, capture_output=True, text=True)
        self.procs.stop(pn, sig=signal.SIGINT, timeout=30)
        w = hb.parse_wrk(r.stdout)

        def csv(path):
            counts = []
            for line in hb.read_file(path).splitlines():
                parts = line.split(",")
                if len(parts) > 2 and parts[2] == "raw_syscalls:sys_exit":
                    try:
                        counts.append(int(parts[0]))
                    except ValueError:
                        counts.append(0)
            return dict(zip(labels, counts))
        n, k = csv(nout), csv(wout)
        req = max(1, w["requests"])
        return {"wrk": w,
                "nginx_per_req": {s: v / req for s, v in n.items() if v / req >= 0.005},
                "wrk_per_req": {s: v / req for s, v in k.items() if v / req >= 0.005}}

    def callgrind(self, workload):
        """The daemon under callgrind for a short, slow load: instructions per record."""
        cg_out = os.path.join(self.outdir, f"callgrind-{workload}.out")
        log_dir = os.path.join(self.workdir, f"log-cg-{workload}")
        err = os.path.join(self.workdir, f"cg-{workload}.err")
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg_out}",
                "--collect-atstart=no", "--toggle-collect=httptraced::daemon::Daemon::Run*",
                self.o.binary, f"--log_dir={log_dir}", "--ring_buffer_mb=256"]
        p = self.procs.start(argv, stdout=subprocess.DEVNULL, stderr=open(err, "w"))
        res = {}
        try:
            deadline = time.monotonic() + 180
            while "tracing (" not in hb.read_file(err):
                if p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("httptraced under valgrind did not start:\n" + hb.read_file(err)[-2000:])
                time.sleep(0.2)
            # Few connections, short: the ring buffer holds what valgrind cannot take at once.
            w = hb.run_wrk(self.procs, self.url(workload), 4, self.o.callgrind_seconds, self.script(workload))
            res["wrk"] = w
            hb.settle(lambda: hb.cpu_ns_of(p.pid), min_s=1.0, max_s=300, idle_ns=50_000_000, step=1.0)
        finally:
            self.procs.stop(p, sig=signal.SIGTERM, timeout=300)
        m = hb.STATS_RE.findall(hb.read_file(err))
        stats = {k: int(v) for k, v in (kv.split("=") for kv in m[-1].split())} if m else {}
        res["daemon_stats"] = stats
        shutil.rmtree(log_dir, ignore_errors=True)
        records = max(1, stats.get("written", 0))
        ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", cg_out],
                             capture_output=True, text=True).stdout
        with open(os.path.join(self.outdir, f"callgrind-{workload}-inclusive.txt"), "w") as f:
            f.write(ann)
        excl = subprocess.run(["callgrind_annotate", "--threshold=99", cg_out],
                              capture_output=True, text=True).stdout
        with open(os.path.join(self.outdir, f"callgrind-{workload}-self.txt"), "w") as f:
            f.write(excl)

        total = re.search(r"([\d,]+)\s+(?:\([^)]*\)\s+)?PROGRAM TOTALS", ann)
        res["records"] = stats.get("written", 0)
        res["ir_total"] = int(total.group(1).replace(",", "")) if total else None
        res["ir_per_record"] = res["ir_total"] / records if res["ir_total"] else None
        res["inclusive_per_record"] = callgrind_table(ann, 60, max, records)
        res["self_per_record"] = callgrind_table(excl, 40, lambda a, b: a + b, records)
        return res


fmt = hb.fmt


def print_summary(prof, out=sys.stdout):
    w = out.write
    w(f"\nhttptraced profile {prof['meta']['timestamp']}  git {prof['meta']['git_commit'][:12]}"
      f"{' (dirty)' if prof['meta']['git_dirty'] else ''}; nginx + wrk -t1 -c{prof['options']['conns']} "
      f"-d{prof['options']['duration']}s, every process traced, rotating log\n")
    for workload, r in prof["workloads"].items():
        for name, x in r.items():
            if "error" in x:
                w(f"  {workload} {name}: FAILED: {x['error']}\n")
        r = {k: v for k, v in r.items() if "error" not in v}
        p = r.get("plain")
        w(f"\n== {workload.upper()} ==\n")
        if p:
            rec_per_req = (p["records_written"] or 0) / max(1, p["wrk"]["requests"])
            w(f"  {p['wrk']['rps']:.0f} req/s; daemon CPU {p['daemon_cpu_us_per_req']:.2f} us/request = "
              f"{p['daemon_cpu_us_per_record']:.2f} us/record (exchange; {rec_per_req:.2f} records/request: "
              f"server + client side); {p['events_per_req']:.2f} ring events/request, "
              f"{p['payload_bytes_per_req']:.0f} payload bytes/request; drops {p['drops']}\n")
            w(f"  BPF programs: {p['bpf_ns_per_req']:.0f} ns/request in total\n")
            w(f"    {'program':<22} {'runs/req':>9} {'ns/run':>8} {'ns/req':>8}\n")
            for name, b in sorted(p["bpf"].items(), key=lambda kv: -kv[1]["run_time_ns"]):
                if b["run_cnt"]:
                    w(f"    {name:<22} {b['runs_per_req']:9.2f} {b['ns_per_run']:8.0f} {b['ns_per_req']:8.0f}\n")
        s = r.get("syscalls")
        if s:
            w("  syscalls per request (untraced run, perf stat):\n")
            for who in ("nginx_per_req", "wrk_per_req"):
                w(f"    {who.split('_')[0]:<6} " + ", ".join(
                    f"{k} {v:.2f}" for k, v in sorted(s[who].items(), key=lambda kv: -kv[1])) + "\n")
        d = r.get("perf_daemon")
        if d:
            b = d["breakdown"]
            cpu_us = p["daemon_cpu_us_per_record"] if p else None
            w(f"  daemon CPU by component (perf, {b['samples']} samples; {b['kernel_fraction']*100:.0f}% in the kernel)"
              + (f", us/record at {cpu_us:.2f} us/record" if cpu_us else "") + ":\n")
            for k, v in b["components"].items():
                kern = b["components_kernel_part"].get(k, 0)
                w(f"    {v*100:5.1f}%  {k:<36}" + (f" {v*cpu_us:5.2f} us/rec" if cpu_us else "")
                  + (f"  (kernel {kern*100:.1f}%)" if kern >= 0.005 else "") + "\n")
            w("    top functions (self): " + "; ".join(f"{k} {v*100:.1f}%" for k, v in b["top_self"][:12]) + "\n")
        for label in ("perf_system_traced", "perf_system_untraced"):
            sy = r.get(label)
            if not sy:
                continue
            w(f"  system-wide ({label.split('_')[-1]}), share of each process's CPU samples:\n")
            for who in ("nginx", "wrk", "httptraced (all daemons)"):
                x = sy["breakdown"].get(who)
                if not x:
                    continue
                cats = ", ".join(f"{k} {v*100:.1f}%" for k, v in x["categories"].items() if v >= 0.005)
                w(f"    {who:<10} ({x['samples']} samples): {cats}\n")
        sy = r.get("perf_system_traced")
        if sy:
            freq = prof["options"]["freq"]
            req = max(1, sy["wrk"]["requests"])
            calls = r.get("syscalls") or {}
            w(f"  kernel-side cost by syscall (system-wide samples x {1e6 / freq:.0f} us, per request; "
              f"ns/call with the untraced syscall counts):\n")
            w(f"    {'process':<7} {'syscall':<11} {'BPF ns/req':>10} {'plumbing ns/req':>15} {'calls/req':>9} "
              f"{'BPF ns/call':>11} {'plumbing ns/call':>16}\n")
            for who in ("nginx", "wrk"):
                b = sy["breakdown"].get("_bpf_samples_by_syscall", {}).get(who, {})
                pl = sy["breakdown"].get("_plumbing_samples_by_syscall", {}).get(who, {})
                for sc in sorted(set(b) | set(pl), key=lambda k: -(b.get(k, 0) + pl.get(k, 0))):
                    bn = b.get(sc, 0) * 1e9 / freq / req
                    pn = pl.get(sc, 0) * 1e9 / freq / req
                    if bn + pn < 20:
                        continue
                    n = calls.get(f"{who}_per_req", {}).get(sc)
                    w(f"    {who:<7} {sc:<11} {bn:10.0f} {pn:15.0f} {fmt(n, '9.2f')} "
                      f"{fmt(bn / n if n else None, '11.0f')} {fmt(pn / n if n else None, '16.0f')}\n")
        c = r.get("callgrind")
        if c and c.get("ir_per_record"):
            w(f"  callgrind: {c['ir_per_record']:.0f} instructions per record ({c['records']} records)\n")
            w("    inclusive per record: " + "; ".join(
                f"{k} {v:.0f}" for k, v in c["inclusive_per_record"][:25]) + "\n")
            w("    self per record: " + "; ".join(f"{k} {v:.0f}" for k, v in c["self_per_record"][:20]) + "\n")
    w("\n")


def resummarize(outdir):
    """Prints (and rewrites summary.txt of) an earlier profile directory."""
    with open(os.path.join(outdir, "profile.json")) as f:
        prof = json.load(f)
    for wl, r in prof["workloads"].items():  # tables again from the saved callgrind reports
        c = r.get("callgrind")
        if c and c.get("records"):
            for key, name, limit, combine in (("inclusive_per_record", "inclusive", 60, max),
                                              ("self_per_record", "self", 40, lambda a, b: a + b)):
                path = os.path.join(outdir, f"callgrind-{wl}-{name}.txt")
                if os.path.exists(path):
                    c[key] = callgrind_table(hb.read_file(path), limit, combine, c["records"])
    with open(os.path.join(outdir, "summary.txt"), "w") as f:
        print_summary(prof, f)
    print_summary(prof)
    return 0


def main(argv):
    if len(argv) == 2 and argv[0] == "--summary":
        return resummarize(argv[1])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True)
    p.add_argument("--git-rev")
    p.add_argument("--helpers")  # accepted for run.sh's sake
    p.add_argument("--duration", type=float, default=6)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--freq", type=int, default=4999)
    p.add_argument("--workloads", default="get,post")
    p.add_argument("--skip", default="", help="plain,perf_daemon,perf_system,syscalls,callgrind")
    p.add_argument("--callgrind-seconds", type=float, default=1.0)
    p.add_argument("--results", default=os.path.join(hb.BENCH_DIR, "results"))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the work directory (perf script texts)")
    o = p.parse_args(argv)
    if o.quick:
        o.duration = 2
    o.workloads = [x for x in o.workloads.split(",") if x]
    o.skip = set(x for x in o.skip.split(",") if x)
    if os.geteuid() != 0:
        print("profile: run as root", file=sys.stderr)
        return 1
    procs = hb.Procs()

    def on_signal(signum, frame):
        raise hb.Interrupted(f"signal {signum}")

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    outdir = os.path.join(o.results, f"profile-{ts}")
    os.makedirs(outdir)
    workdir = tempfile.mkdtemp(prefix="httptraced-profile-")
    os.chmod(workdir, 0o755)
    stats_path = "/proc/sys/kernel/bpf_stats_enabled"
    old_stats = hb.read_file(stats_path).strip()
    prof = {"meta": {"timestamp": ts, "git_commit": o.git_rev or hb.git("rev-parse", "HEAD"),
                     "git_dirty": False if o.git_rev else bool(hb.git("status", "--porcelain", "--", "userspace", "bpf")),
                     "kernel": os.uname().release, "binary": o.binary},
            "options": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(o).items()},
            "workloads": {}}
    try:
        binary = os.path.join(workdir, "httptraced")
        shutil.copy2(o.binary, binary)
        prof["meta"]["binary_sha256"] = hb.sha256(binary)
        o.binary = binary
        with open(stats_path, "w") as f:
            f.write("1")
        prof["meta"]["foreign_tracers_at_start"] = hb.foreign_tracers()
        prof_nginx = hb.Nginx(procs, workdir, workers=1, worker_connections=4096)
        prof_nginx.start()
        pr = Profiler(o, workdir, outdir, procs)
        pr.nginx = prof_nginx
        for wl in o.workloads:
            hb.run_wrk(procs, pr.url(wl), o.conns, 1, pr.script(wl))  # warm-up
            r = prof["workloads"].setdefault(wl, {})
            steps = [("plain", lambda: pr.plain(wl)),
                     ("syscalls", lambda: pr.syscalls(wl)),
                     ("perf_daemon", lambda: pr.perf_daemon(wl)),
                     ("perf_system_traced", lambda: pr.perf_system(wl, True)),
                     ("perf_system_untraced", lambda: pr.perf_system(wl, False)),
                     ("callgrind", lambda: pr.callgrind(wl))]
            for name, fn in steps:
                if name in o.skip or name.rsplit("_", 1)[0] in o.skip:
                    continue
                hb.log(f"profile {wl}: {name}")
                try:
                    r[name] = fn()
                except hb.Interrupted:
                    raise
                except Exception as e:  # one failed step does not lose the others
                    hb.log(f"profile {wl}: {name} failed: {e}")
                    r[name] = {"error": str(e)}
        prof_nginx.stop()
    except hb.Interrupted as e:
        hb.log(f"interrupted ({e}); cleaning up")
        return 130
    finally:
        procs.stop_all()
        try:
            with open(stats_path, "w") as f:
                f.write(old_stats or "0")
        except OSError:
            pass
        if o.keep:
            hb.log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    with open(os.path.join(outdir, "profile.json"), "w") as f:
        json.dump(prof, f, indent=1)
    with open(os.path.join(outdir, "summary.txt"), "w") as f:
        print_summary(prof, f)
    print_summary(prof)
    print(f"profile: {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
