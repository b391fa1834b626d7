#!/usr/bin/env python3
"""httptraced benchmark driver: nginx + wrk on loopback, traced and untraced.

Started by bench/run.sh (which installs the dependencies, builds the daemon and the
helper programs); see bench/README.md for what is measured and how. Standard
library only. Every process it starts is in its own session and is stopped by its
own id when the benchmark ends, fails or is interrupted.
"""

import argparse
import contextlib
import datetime
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)

# Configurations of the nginx benchmark, in the order they are interleaved.
CONFIGS = {
    "untraced": "no tracer",
    "log": "httptraced, rotating log, traces every process",
    "log_pid": "httptraced, rotating log, --pid=<nginx pids>",
    "stdout": "httptraced --stdout > /dev/null, traces every process",
    "tshark": "tshark -i lo -f 'tcp port P' -Y http -T ek | grep -c",
    "log_noskip": "httptraced, rotating log, --kernel_skip_bodies=false (not in the default set)",
    "log_pid_raw": "httptraced, rotating log, --pid=<nginx pids> --decode_bodies=false (not in "
                   "the default set)",
}
# Left out unless --configs names them.
OPT_IN_CONFIGS = {"log_noskip", "log_pid_raw"}
# The configurations that run httptraced: with --baseline=PATH each also runs as
# "<config>@base" with that binary, next to it in every repetition (pair_order; an A/B
# of two builds in one interleaved run).
TRACED_CONFIGS = ("log", "log_pid", "stdout", "log_noskip", "log_pid_raw")
BASELINE_SUFFIX = "@base"


def config_kind(config):
    """The configuration without its @base suffix, and whether it had one."""
    if config.endswith(BASELINE_SUFFIX):
        return config[:-len(BASELINE_SUFFIX)], True
    return config, False


def pair_order(configs, rep):
    """The order of one repetition: each `<config>@base` right before its
    `<config>` in even repetitions and right after it in odd ones (A B, B A, ...),
    so that whatever the position in the pair does to a run (the first follows
    the untraced run, the second another daemon's) falls on both builds alike
    (bench/README.md, "A/B runs")."""
    order = list(configs)
    if rep % 2 == 1:
        for i in range(len(order) - 1):
            kind, on_baseline = config_kind(order[i])
            if on_baseline and order[i + 1] == kind:
                order[i], order[i + 1] = order[i + 1], order[i]
    return order


def describe_config(config):
    kind, base = config_kind(config)
    return CONFIGS[kind] + (" (the --baseline binary)" if base else "")
WORKLOADS = {
    "get": "GET /index.html (615-byte static file, sendfile on)",
    "post": "POST /echo, 1 KiB request body, 1 KiB response body (nginx return 200)",
    "large": "GET /large.bin (1 MiB file, sendfile off: nginx writes it from user memory)",
    "close": "GET /index.html with Connection: close (a new connection for every request)",
    "unix": "GET /unix/, proxied by nginx to an upstream on a Unix socket (nginx itself, "
            "keep-alive) that answers 1 KiB: each request crosses TCP and the socket",
    "json": "GET /api.json (3.7 KiB of JSON, as an API answers; sendfile off, so the body "
            "passes through user memory and is recorded)",
    "gzip": "GET /api.json with Accept-Encoding: gzip (nginx gzip level 1, chunked; the "
            "daemon decodes it for the record)",
    "tls": "GET /index.html over HTTPS (TLS 1.3, keep-alive; nginx and wrk both use "
           "Debian's libssl, whose SSL_read/SSL_write the daemon probes)",
}
LARGE_BYTES = 1 << 20
PATHS = {"get": "index.html", "post": "echo", "large": "large.bin", "close": "index.html",
         "unix": "unix/", "json": "api.json", "gzip": "api.json", "tls": "index.html"}


class Interrupted(Exception):
    pass


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------------------
# Processes


class Procs:
    """Every child process, each in its own session, stopped by id at the end."""

    def __init__(self, nice=0):
        self.children = []
        self.nice = nice  # applied to every process started (nginx, wrk, tracers)

    def start(self, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        if self.nice:
            nice = self.nice
            kw["preexec_fn"] = lambda: os.setpriority(os.PRIO_PROCESS, 0, nice)
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.children.append(p)
        return p

    def forget(self, p):
        if p in self.children:
            self.children.remove(p)

    def stop(self, p, sig=signal.SIGTERM, timeout=30.0):
        """Signals p's process group, waits, escalates to SIGKILL; returns rusage."""
        rusage = None
        if p.returncode is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while True:
                try:
                    pid, status, rusage = os.wait4(p.pid, os.WNOHANG)
                except ChildProcessError:
                    p.returncode = p.returncode if p.returncode is not None else -1
                    break
                if pid == p.pid:
                    p.returncode = os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    deadline = time.monotonic() + 5
                time.sleep(0.02)
        # Whatever else is left in its process group (e.g. tshark's dumpcap).
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.forget(p)
        return rusage

    def stop_all(self):
        for p in list(reversed(self.children)):
            try:
                self.stop(p, timeout=10)
            except Exception as e:  # keep cleaning up
                log(f"cleanup of pid {p.pid}: {e}")


def read_file(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def cpu_ns_of(pid):
    """CPU time of every live thread of pid, in ns (schedstat), or None."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        s = read_file(f"/proc/{pid}/task/{tid}/schedstat")
        if s:
            total += int(s.split()[0])
    return total


def pids_in_group(pgid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = read_file(f"/proc/{d}/stat")
        if not st:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[2]) == pgid:  # field 5: pgrp
            out.append(int(d))
    return out


def cpu_ns_of_group(pgid):
    return sum(cpu_ns_of(p) or 0 for p in pids_in_group(pgid))


def mem_of(pid):
    """VmRSS, VmHWM, RssAnon, RssFile, RssShmem in KiB."""
    out = {}
    for line in read_file(f"/proc/{pid}/status").splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            out[k] = int(v.split()[0])
    return out


def children_of(pid):
    return [int(x) for x in read_file(f"/proc/{pid}/task/{pid}/children").split()]


def machine_busy_ticks():
    f = read_file("/proc/stat").splitlines()[0].split()[1:]
    v = [int(x) for x in f]
    idle = v[3] + v[4]
    return sum(v[:8]) - idle, sum(v[:8])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def http_get(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    return data.decode(errors="replace")


def sh(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


# ---------------------------------------------------------------------------
# Foreign tracers (the machine is shared: other engineers' daemons and tests)


def bpf_fdinfo(pid):
    """The BPF programs and maps pid holds open: ({prog_id: fields}, {map_id: fields})."""
    progs, maps = {}, {}
    try:
        fds = os.listdir(f"/proc/{pid}/fdinfo")
    except OSError:
        return progs, maps
    for fd in fds:
        text = read_file(f"/proc/{pid}/fdinfo/{fd}")
        if "prog_id:" not in text and "map_id:" not in text:
            continue
        fields = {}
        for line in text.splitlines():
            k, _, v = line.partition(":")
            fields[k.strip()] = v.strip()
        if "link_id" in fields:
            continue  # a link names its program too; the program's own fd has the stats
        if "prog_id" in fields:
            progs[int(fields["prog_id"])] = fields
        elif "map_id" in fields:
            maps[int(fields["map_id"])] = fields
    return progs, maps


def bpf_names(kind):
    """{id: name} of every BPF program or map (bpftool)."""
    r = sh(["bpftool", "-j", kind, "show"])
    try:
        return {x["id"]: x.get("name", str(x["id"])) for x in json.loads(r.stdout)}
    except (ValueError, KeyError):
        return {}


def foreign_tracers(own_pids=()):
    """Other httptraced / tshark / dumpcap / perf processes, and tracepoint BPF programs not ours."""
    procs = []
    own_progs = set()
    for pid in own_pids:
        own_progs |= set(bpf_fdinfo(pid)[0])
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in own_pids:
            continue
        comm = read_file(f"/proc/{d}/comm").strip()
        if comm in ("httptraced", "tshark", "dumpcap", "perf", "valgrind"):
            procs.append({"pid": int(d), "comm": comm})
    progs = 0
    r = sh(["bpftool", "-j", "prog", "show"])
    if r.returncode == 0:
        try:
            for p in json.loads(r.stdout):
                if p.get("type") in ("tracepoint", "raw_tracepoint", "kprobe", "tracing") and \
                        p["id"] not in own_progs:
                    progs += 1
        except (ValueError, KeyError):
            pass
    return {"processes": procs, "tracing_programs": progs}


def bpf_stats_of(pid):
    """{program name: (run_time_ns, run_cnt)} of the BPF programs pid holds."""
    progs, _ = bpf_fdinfo(pid)
    names = bpf_names("prog")
    out = {}
    for pid_, f in progs.items():
        name = names.get(pid_, str(pid_))
        t, c = out.get(name, (0, 0))
        out[name] = (t + int(f.get("run_time_ns", 0)), c + int(f.get("run_cnt", 0)))
    return out


def bpf_stats_delta(before, after):
    out = {}
    for name, (t, c) in after.items():
        t0, c0 = before.get(name, (0, 0))
        out[name] = {"run_time_ns": t - t0, "run_cnt": c - c0}
    return out


def bpf_maps_memlock(pid):
    _, maps = bpf_fdinfo(pid)
    names = bpf_names("map")
    out = {}
    for mid, f in maps.items():
        out[names.get(mid, str(mid))] = {"memlock": int(f.get("memlock", 0)),
                                         "max_entries": int(f.get("max_entries", 0)),
                                         "value_size": int(f.get("value_size", 0))}
    return {"total_bytes": sum(m["memlock"] for m in out.values()), "maps": out}


# ---------------------------------------------------------------------------
# nginx


NGINX_CONF = """\
# Generated by bench/httpbench.py for one benchmark run.
user root;
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile 65536;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections {worker_connections};
    multi_accept on;
}}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 600s;
    keepalive_requests 10000000;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    upstream unix_back {{
        server unix:{prefix}/back.sock;
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=16384;
        root {prefix}/www;
        location = /index.html {{ }}
        location = /large.bin {{ sendfile off; }}
        location = /api.json {{
            default_type application/json;
            sendfile off;
            gzip on;
            gzip_types application/json;
            gzip_min_length 1;
        }}
        location = /echo {{
            client_body_buffer_size 16k;
            default_type text/plain;
            return 200 "{body}";
        }}
        location = /unix/ {{
            proxy_pass http://unix_back/echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl backlog=16384;
        ssl_certificate {prefix}/cert.pem;
        ssl_certificate_key {prefix}/key.pem;
        root {prefix}/www;
        location = /index.html {{ }}
    }}
    server {{
        listen unix:{prefix}/back.sock;
        location = /echo {{
            default_type text/plain;
            return 200 "{body}";
        }}
    }}
    server {{
        listen 127.0.0.1:{status_port};
        location / {{ stub_status; }}
    }}
}}
"""


class Nginx:
    def __init__(self, procs, root, workers, worker_connections):
        self.procs = procs
        self.prefix = os.path.join(root, "nginx")
        os.makedirs(os.path.join(self.prefix, "www"))
        os.makedirs(os.path.join(self.prefix, "tmp"))
        shutil.copy("/usr/share/nginx/html/index.html", os.path.join(self.prefix, "www"))
        with open(os.path.join(self.prefix, "www", "large.bin"), "wb") as f:
            f.write(bytes(0x20 + (i * 7 + i // 4096) % 95 for i in range(1 << 16)) * (LARGE_BYTES >> 16))
        with open(os.path.join(self.prefix, "www", "api.json"), "w") as f:
            f.write("[" + ",".join(
                '{"id":%d,"name":"item %d","tags":["alpha","beta"],"price":%d}' % (i, i, 100 + i * 7)
                for i in range(60)) + "]")
        self.port = free_port()
        self.tls_port = free_port()
        self.status_port = free_port()
        # A self-signed certificate for the tls workload.
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-keyout", os.path.join(self.prefix, "key.pem"),
                        "-out", os.path.join(self.prefix, "cert.pem")],
                       check=True, capture_output=True)
        # 1 KiB response body, printable.
        body = ("0123456789abcdef" * 64)[:1023] + "\n"
        conf = NGINX_CONF.format(prefix=self.prefix, port=self.port, tls_port=self.tls_port,
                                 status_port=self.status_port,
                                 workers=workers, worker_connections=worker_connections,
                                 body=body.replace("\n", "\\n"))
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = None

    def start(self):
        self.proc = self.procs.start(
            ["nginx", "-p", self.prefix, "-c", self.conf, "-e", os.path.join(self.prefix, "error.log")],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.prefix, "stderr.log"), "w"))
        wait_port(self.port)
        wait_port(self.tls_port)
        wait_port(self.status_port)
        deadline = time.monotonic() + 5
        while not self.workers() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.workers():
            raise RuntimeError("nginx started no worker")

    def workers(self):
        return children_of(self.proc.pid)

    def pids(self):
        return [self.proc.pid] + self.workers()

    def requests(self):
        """nginx's total request counter (stub_status); the query itself counts one."""
        text = http_get(self.status_port, "/")
        m = re.search(r"\n\s*(\d+)\s+(\d+)\s+(\d+)\s*\n", text)
        if not m:
            raise RuntimeError(f"unexpected stub_status answer: {text!r}")
        return int(m.group(3))

    def stop(self):
        if self.proc is not None:
            self.procs.stop(self.proc, sig=signal.SIGQUIT, timeout=10)
            self.proc = None


# ---------------------------------------------------------------------------
# httptraced


STATS_RE = re.compile(r"httptraced: stats ((?:\w+=\d+ ?)+)")
# The daemon's account of a loss in its drop warnings: "In the 7.5 s in which
# they were lost the daemon ran 3.2 s, waited 3.5 s for a CPU and 0.3 s for ...".
BREAKDOWN_RE = re.compile(r"In the (\d+\.\d) s in which they were lost the daemon ran (\d+\.\d) s, "
                          r"waited (\d+\.\d) s for a CPU and (\d+\.\d) s for ([a-z ]+)")


class Daemon:
    """One httptraced process started for one measurement."""

    def __init__(self, procs, binary, workdir, name, args, to_stdout=False):
        self.procs = procs
        self.workdir = workdir
        self.log_dir = os.path.join(workdir, f"log-{name}")
        self.stderr_path = os.path.join(workdir, f"stderr-{name}.txt")
        argv = [binary] + list(args)
        if to_stdout:
            argv.append("--stdout")
            out = open(os.devnull, "w")
        else:
            argv.append(f"--log_dir={self.log_dir}")
            # Completeness counts every record in every file: keep them all. With
            # the default 10 backups, a POST run that writes over 1 GB (11 files
            # of 100 MiB) would lose its oldest file to retention, not to loss.
            argv.append("--log_max_files=1000")
            out = subprocess.DEVNULL
        self.argv = argv
        t0 = time.monotonic()
        self.proc = procs.start(argv, stdout=out, stderr=open(self.stderr_path, "w"))
        deadline = t0 + 60
        while "tracing (" not in read_file(self.stderr_path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"httptraced did not start: {read_file(self.stderr_path)}")
            time.sleep(0.02)
        self.startup_s = time.monotonic() - t0
        self.startup_cpu_ns = cpu_ns_of(self.proc.pid)
        self.pid = self.proc.pid
        self.rusage = None

    def cpu_ns(self):
        return cpu_ns_of(self.pid)

    def mem(self):
        return mem_of(self.pid)

    def stop(self):
        self.rusage = self.procs.stop(self.proc, sig=signal.SIGTERM, timeout=120)
        text = read_file(self.stderr_path)
        stats = {}
        for m in STATS_RE.finditer(text):
            stats = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
        self.stats = stats
        self.exit_code = self.proc.returncode
        return stats

    def last_stats(self):
        text = read_file(self.stderr_path)
        stats = {}
        for m in STATS_RE.finditer(text):
            stats = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
        return stats


SERVER_RE = re.compile(rb'"server":\{"ip":"[^"]*","port":(\d+)\}')
ROLE_RE = re.compile(rb'"httptraced":\{"role":"(\w+)"')
UNIX_RE = re.compile(rb'"network":\{"type":"unix"')


@contextlib.contextmanager
def open_log_file(path):
    """A log file for reading lines: .zst through zstd(1), .gz through gzip."""
    if path.endswith(".zst"):
        proc = subprocess.Popen(["zstd", "-q", "-dc", path], stdout=subprocess.PIPE)
        try:
            yield proc.stdout
        finally:
            proc.stdout.close()
            if proc.wait() != 0:
                raise RuntimeError(f"zstd -dc {path} failed")
    else:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            yield f


def count_records(log_dir, port):
    """Counts the records of log_dir (active, rotated and compressed files)."""
    res = {"lines": 0, "bytes": 0, "server_records": 0, "server_incomplete": 0,
           "server_bytes": 0, "client_records": 0, "unix_server_records": 0,
           "unix_client_records": 0, "files": 0, "checked": 0, "mismatches": 0}
    if not os.path.isdir(log_dir):
        return res
    port_b = str(port).encode()
    for name in sorted(os.listdir(log_dir)):
        path = os.path.join(log_dir, name)
        res["files"] += 1
        with open_log_file(path) as f:
            for line in f:
                res["lines"] += 1
                res["bytes"] += len(line)
                m = SERVER_RE.search(line)
                r = ROLE_RE.search(line)
                role = r.group(1) if r else None
                is_server = role == b"server" and m is not None and m.group(1) == port_b
                incomplete = b'"incomplete":true' in line
                if res["lines"] % 997 == 1:  # spot-check the fast path against a real parse
                    rec = json.loads(line)
                    ok = (rec.get("httptraced", {}).get("role") == "server" and
                          rec.get("server", {}).get("port") == port) == is_server
                    res["checked"] += 1
                    res["mismatches"] += 0 if ok else 1
                if is_server:
                    res["server_records"] += 1
                    res["server_bytes"] += len(line)
                    if incomplete:
                        res["server_incomplete"] += 1
                elif role == b"client":
                    res["client_records"] += 1
                if UNIX_RE.search(line):
                    res["unix_server_records" if role == b"server" else "unix_client_records"] += 1
    return res


# ---------------------------------------------------------------------------
# wrk


WRK_REQ_RE = re.compile(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+\w+) read")
WRK_RPS_RE = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_ERR_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_NON2XX_RE = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_LAT_RE = re.compile(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def parse_wrk(text):
    m = WRK_REQ_RE.search(text)
    r = WRK_RPS_RE.search(text)
    if not m or not r:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    out = {"requests": int(m.group(1)), "rps": float(r.group(1))}
    e = WRK_ERR_RE.search(text)
    out["socket_errors"] = sum(int(x) for x in e.groups()) if e else 0
    n = WRK_NON2XX_RE.search(text)
    out["non2xx"] = int(n.group(1)) if n else 0
    scale = {"us": 1, "ms": 1000, "s": 1_000_000}
    for p, v, u in WRK_LAT_RE.findall(text):
        out[f"latency_p{p}_us"] = float(v) * scale[u]
    return out


def run_wrk(procs, url, conns, duration, script=None, headers=()):
    duration = max(1, int(round(duration)))  # wrk takes whole seconds
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "5s", "--latency"]
    if script:
        argv += ["-s", script]
    for h in headers:
        argv += ["-H", h]
    argv.append(url)
    p = procs.start(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = p.stdout.read()
        _, status, rusage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    finally:
        procs.stop(p)
    res = parse_wrk(out)
    res["wrk_cpu_ms"] = (rusage.ru_utime + rusage.ru_stime) * 1e3
    return res


# ---------------------------------------------------------------------------
# One measurement of the nginx benchmark


def settle(cpu_fn, min_s=0.3, max_s=5.0, idle_ns=2_000_000, step=0.2):
    """Waits until cpu_fn() stops growing (the tracer caught up); returns seconds waited."""
    t0 = time.monotonic()
    last = cpu_fn()
    while True:
        time.sleep(step)
        now = cpu_fn()
        waited = time.monotonic() - t0
        if now is None or last is None:
            return waited
        if waited >= min_s and now - last < idle_ns:
            return waited
        if waited >= max_s:
            return waited
        last = now


class Bench:
    def __init__(self, opts, workdir, procs):
        self.o = opts
        self.workdir = workdir
        self.procs = procs
        self.binary = opts.binary
        self.baseline = opts.baseline
        self.nginx = None
        self.seq = 0

    def url(self, workload):
        if workload == "tls":
            return f"https://127.0.0.1:{self.nginx.tls_port}/" + PATHS[workload]
        return f"http://127.0.0.1:{self.nginx.port}/" + PATHS[workload]

    def port(self, workload):
        return self.nginx.tls_port if workload == "tls" else self.nginx.port

    def script(self, workload):
        return os.path.join(BENCH_DIR, "post.lua") if workload == "post" else None

    def headers(self, workload):
        if workload == "gzip":
            return ["Accept-Encoding: gzip"]
        return ["Connection: close"] if workload == "close" else []

    def measure(self, config, workload, conns, rep):
        self.seq += 1
        name = f"{self.seq:03d}-{config}-{workload}-c{conns}"
        port = self.port(workload)
        res = {"config": config, "workload": workload, "conns": conns, "rep": rep,
               "duration_s": self.o.duration}
        daemon = tshark = grep = None
        nginx_worker = self.nginx.workers()[0]
        kind, on_baseline = config_kind(config)
        try:
            if kind in TRACED_CONFIGS:
                args = list(self.o.daemon_args)
                if kind in ("log_pid", "log_pid_raw"):
                    args.append("--pid=" + ",".join(str(p) for p in self.nginx.pids()))
                if kind == "log_noskip":
                    args.append("--kernel_skip_bodies=false")
                if kind == "log_pid_raw":
                    args.append("--decode_bodies=false")
                daemon = Daemon(self.procs, self.baseline if on_baseline else self.binary,
                                self.workdir, name, args, to_stdout=(kind == "stdout"))
                res["daemon_startup_s"] = daemon.startup_s
                res["daemon_startup_cpu_ms"] = (daemon.startup_cpu_ns or 0) / 1e6
                own = [daemon.pid]
            elif config == "tshark":
                env = dict(os.environ, TMPDIR=self.workdir)
                ts_err = os.path.join(self.workdir, f"tshark-{name}.txt")
                tshark = self.procs.start(
                    ["tshark", "-i", "lo", "-f", f"tcp port {port}", "-Y", "http", "-T", "ek"],
                    stdout=subprocess.PIPE, stderr=open(ts_err, "w"), env=env)
                grep = self.procs.start(["grep", "-c", '"http_http_request_method"'],
                                        stdin=tshark.stdout, stdout=subprocess.PIPE, text=True)
                tshark.stdout.close()
                deadline = time.monotonic() + 30
                while "Capturing on" not in read_file(ts_err):
                    if tshark.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"tshark did not start: {read_file(ts_err)}")
                    time.sleep(0.05)
                time.sleep(0.5)
                own = [tshark.pid] + pids_in_group(tshark.pid)
            else:
                own = []
            res["foreign"] = foreign_tracers(own)

            def tracer_cpu():
                if daemon:
                    return daemon.cpu_ns()
                if tshark:
                    return cpu_ns_of_group(tshark.pid)
                return None

            nginx_before = self.nginx.requests()
            bpf_before = bpf_stats_of(daemon.pid) if daemon and self.o.bpf_stats else {}
            cpu0 = tracer_cpu()
            if daemon:
                main0 = int((read_file(f"/proc/{daemon.pid}/task/{daemon.pid}/schedstat") or "0").split()[0])
            ngx_cpu0 = cpu_ns_of(nginx_worker)
            busy0, total0 = machine_busy_ticks()
            tr0 = cpu0
            w = run_wrk(self.procs, self.url(workload), conns, self.o.duration, self.script(workload),
                        self.headers(workload))
            tr1 = tracer_cpu()
            busy1, total1 = machine_busy_ticks()
            ngx_cpu1 = cpu_ns_of(nginx_worker)
            res.update(w)
            if daemon or tshark:
                res["settle_s"] = settle(tracer_cpu, max_s=5.0 if daemon else max(6.0, 3 * self.o.duration))
            cpu1 = tracer_cpu()
            nginx_after = self.nginx.requests()
            res["nginx_requests"] = nginx_after - nginx_before - 1
            res["nginx_cpu_us_per_req"] = (ngx_cpu1 - ngx_cpu0) / 1e3 / max(1, w["requests"])
            # CPU time of everything else on the machine during the wrk run, as a share
            # of the machine (2 cores = 1.0): the noise other users add.
            tick = os.sysconf("SC_CLK_TCK")
            cpus = os.cpu_count()
            wall = (total1 - total0) / tick / cpus
            ours = (ngx_cpu1 - ngx_cpu0) / 1e9 + w["wrk_cpu_ms"] / 1e3
            if tr0 is not None and tr1 is not None:
                ours += (tr1 - tr0) / 1e9
            res["machine_busy"] = (busy1 - busy0) / max(1, total1 - total0)
            res["other_cpu_frac"] = max(0.0, ((busy1 - busy0) / tick - ours) / max(1e-9, wall * cpus))
            if daemon:
                # The main thread (events, records, writes) apart from the others (the
                # backup thread's compression of rotated files).
                main1 = int((read_file(f"/proc/{daemon.pid}/task/{daemon.pid}/schedstat") or "0").split()[0])
                if cpu1 is not None and cpu0 is not None:
                    res["daemon_main_cpu_ms"] = (main1 - main0) / 1e6
                    res["daemon_background_frac"] = 1 - (main1 - main0) / max(1, cpu1 - cpu0)
            if cpu0 is not None and cpu1 is not None:
                res["tracer_cpu_ms"] = (cpu1 - cpu0) / 1e6
                res["tracer_cpu_us_per_req"] = (cpu1 - cpu0) / 1e3 / max(1, w["requests"])
            if daemon:
                if self.o.bpf_stats:
                    d = bpf_stats_delta(bpf_before, bpf_stats_of(daemon.pid))
                    res["bpf"] = d
                    t = sum(x["run_time_ns"] for x in d.values())
                    res["bpf_ns_per_req"] = t / max(1, w["requests"])
                    res["bpf_runs_per_req"] = sum(x["run_cnt"] for x in d.values()) / max(1, w["requests"])
                mem = daemon.mem()
                res["tracer_rss_kib"] = mem.get("VmRSS")
                res["tracer_hwm_kib"] = mem.get("VmHWM")
                res["tracer_rss_anon_kib"] = mem.get("RssAnon")
                stats = daemon.stop()
                res["daemon_exit"] = daemon.exit_code
                res["daemon_stats"] = stats
                if daemon.rusage:
                    res["tracer_maxrss_kib"] = daemon.rusage.ru_maxrss
                    res["daemon_total_cpu_ms"] = (daemon.rusage.ru_utime + daemon.rusage.ru_stime) * 1e3
                res["drops"] = stats.get("kernel_drops", 0) + stats.get("lost", 0)
                # What the daemon said of its losses: where its time went meanwhile.
                res["drop_warnings"] = [l for l in read_file(daemon.stderr_path).splitlines()
                                        if "lost" in l and "ring buffer" in l]
                res["written"] = stats.get("written", 0)
                res["written_per_req"] = res["written"] / max(1, w["requests"])
                # Payload bytes the kernel copied into the ring (both sides).
                res["copied_bytes_per_req"] = stats.get("bytes", 0) / max(1, w["requests"])
                if res.get("tracer_cpu_ms") is not None and res["written"]:
                    res["tracer_cpu_us_per_record"] = res["tracer_cpu_ms"] * 1e3 / res["written"]
                if res.get("daemon_main_cpu_ms") is not None and res["written"]:
                    res["daemon_main_us_per_record"] = res["daemon_main_cpu_ms"] * 1e3 / res["written"]
                if kind != "stdout":
                    c = count_records(daemon.log_dir, port)
                    res["records"] = c
                    res["completeness"] = c["server_records"] / max(1, w["requests"])
                    res["completeness_vs_nginx"] = ((c["server_records"] - c["server_incomplete"]) /
                                                    max(1, res["nginx_requests"]))
                    if workload == "unix":
                        # Both hops must be whole: the front (TCP) and the upstream socket,
                        # whose server side nginx also counts as requests.
                        res["completeness"] = min(c["server_records"],
                                                  c["unix_server_records"]) / max(1, w["requests"])
                        res["completeness_vs_nginx"] = (
                            (c["server_records"] - c["server_incomplete"]) /
                            max(1, res["nginx_requests"] / 2))
                    res["log_bytes_per_req"] = c["bytes"] / max(1, w["requests"])
                    res["server_log_bytes_per_req"] = c["server_bytes"] / max(1, w["requests"])
                    shutil.rmtree(daemon.log_dir, ignore_errors=True)
                elif kind == "stdout" and "--pid" in " ".join(daemon.argv):
                    res["completeness"] = res["written"] / max(1, w["requests"])
                daemon = None
            if tshark:
                mem = {}
                for p in pids_in_group(tshark.pid):
                    for k, v in mem_of(p).items():
                        mem[k] = mem.get(k, 0) + v
                res["tracer_rss_kib"] = mem.get("VmRSS")
                res["tracer_hwm_kib"] = mem.get("VmHWM")
                self.procs.stop(tshark, sig=signal.SIGINT, timeout=20)
                out, _ = grep.communicate(timeout=60)
                self.procs.stop(grep)
                n = int(out.strip() or 0)
                res["tshark_requests_seen"] = n
                res["completeness"] = n / max(1, w["requests"])
                res["completeness_vs_nginx"] = n / max(1, res["nginx_requests"])
                res["drops"] = None
                tshark = grep = None
        finally:
            if daemon:
                daemon.stop()
            if tshark:
                self.procs.stop(tshark, sig=signal.SIGINT, timeout=30)
            if grep:
                self.procs.stop(grep)
        return res

    # -- the interleaved nginx benchmark ---------------------------------------

    def run_nginx_bench(self):
        runs = []
        groups = [(w, c) for w in self.o.workloads for c in self.o.conns]
        for w in self.o.workloads:  # warm-up, not recorded
            run_wrk(self.procs, self.url(w), self.o.conns[0], 1, self.script(w), self.headers(w))
        total = self.o.reps * len(groups) * len(self.o.configs)
        for rep in range(self.o.reps):
            order = pair_order(self.o.configs, rep)
            for workload, conns in groups:
                for config in order:
                    try:
                        r = self.measure(config, workload, conns, rep)
                    except Interrupted:
                        raise
                    except Exception as e:  # one failed run does not lose the others
                        log(f"{workload} c{conns} {config} rep {rep} FAILED: {e}")
                        runs.append({"config": config, "workload": workload, "conns": conns,
                                     "rep": rep, "error": str(e)})
                        continue
                    runs.append(r)
                    log(f"{len(runs)}/{total} rep {rep} {workload} c{conns} {config}: "
                        f"{r['rps']:.0f} req/s, {r['requests']} req"
                        + (f", completeness {r['completeness']:.4f}" if r.get("completeness") is not None else "")
                        + (f", tracer {r['tracer_cpu_us_per_req']:.2f} us/req" if r.get("tracer_cpu_us_per_req") is not None else "")
                        + (f", drops {r['drops']}" if r.get("drops") else "")
                        + "".join(f"\n    {m[0]}" for l in r.get("drop_warnings") or ()
                                  for m in BREAKDOWN_RE.finditer(l)))
        return runs

    # -- micro-benchmark: non-socket syscalls ----------------------------------

    def run_micro(self):
        loop = os.path.join(self.workdir, "syscall_loop")
        data = os.path.join(self.workdir, "read-64k.bin")
        with open(data, "wb") as f:
            f.write(os.urandom(65536))
        modes = ["getppid", "read", "write", "unix", "close"]
        # traced_exit: every payload syscall on its exit tracepoint
        # (--socket_tracepoints=false), what kernels before 6.4 run.
        # traced_portable: the payload program without plain loads of kernel
        # memory (--fast_fd_filter=false), what kernels before 6.16 run.
        configs = ["untraced", "traced", "traced_exit", "traced_portable", "traced_pid_other"]
        raw = {c: {m: [] for m in modes} for c in configs}
        for rep in range(self.o.micro_reps):
            for config in configs:
                daemon = None
                try:
                    if config != "untraced":
                        args = list(self.o.daemon_args)
                        if config == "traced_pid_other":
                            args.append(f"--pid={self.nginx.proc.pid}")
                        if config == "traced_exit":
                            args.append("--socket_tracepoints=false")
                        if config == "traced_portable":
                            args.append("--fast_fd_filter=false")
                        daemon = Daemon(self.procs, self.binary, self.workdir,
                                        f"micro-{rep}-{config}", args)
                        time.sleep(0.2)
                    for mode in modes:
                        argv = [loop, mode, str(self.o.micro_seconds)] + ([data] if mode == "read" else [])
                        r = sh(argv)
                        m = re.search(r"ns_per_call=([\d.]+)", r.stdout)
                        if not m:
                            raise RuntimeError(f"syscall_loop: {r.stdout} {r.stderr}")
                        raw[config][mode].append(float(m.group(1)))
                finally:
                    if daemon:
                        daemon.stop()
                        shutil.rmtree(daemon.log_dir, ignore_errors=True)
            log(f"micro rep {rep}: " + ", ".join(
                f"{c}/{m} {raw[c][m][-1]:.0f} ns" for c in configs for m in modes))
        out = {"seconds_per_run": self.o.micro_seconds, "reps": self.o.micro_reps,
               "ns_per_call": raw, "summary": {}}
        for m in modes:
            base = raw["untraced"][m]
            s = {"untraced_ns": median(base)}
            for c in configs[1:]:
                ratios = [t / b for t, b in zip(raw[c][m], base)]
                s[f"{c}_ns"] = median(raw[c][m])
                s[f"{c}_slowdown"] = median(ratios)
            out["summary"][m] = s
        return out

    # -- memory: many idle keep-alive connections --------------------------------

    def run_memory(self):
        client_bin = os.path.join(self.workdir, "idle_conns")
        n = self.o.memory_conns
        out = {"connections": n}
        for config in self.o.memory_configs:
            args = list(self.o.daemon_args) + ["--stats_interval=1s"]
            if config == "pid":
                args.append("--pid=" + ",".join(str(p) for p in self.nginx.pids()))
            daemon = Daemon(self.procs, self.binary, self.workdir, f"memory-{config}", args)
            client = None
            r = {"daemon_args": args[len(self.o.daemon_args):]}
            try:
                time.sleep(1.5)
                r["before"] = daemon.mem()
                r["bpf_maps_memlock"] = bpf_maps_memlock(daemon.pid)
                client = self.procs.start(
                    [client_bin, "127.0.0.1", str(self.nginx.port), str(n), "/index.html"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                t0 = time.monotonic()
                line = client.stdout.readline()
                r["open_s"] = time.monotonic() - t0
                r["client"] = line.strip()
                time.sleep(2.5)  # the daemon drains the ring and flushes
                r["open"] = daemon.mem()
                st = daemon.last_stats()
                r["connections_tracked_open"] = st.get("connections")
                client.stdin.write("close\n")
                client.stdin.flush()
                r["client_closed"] = client.stdout.readline().strip()
                client.wait(timeout=60)
                self.procs.forget(client)
                client = None
                time.sleep(2.5)
                r["after"] = daemon.mem()
                st = daemon.last_stats()
                r["connections_tracked_after"] = st.get("connections")
            finally:
                if client:
                    self.procs.stop(client)
                stats = daemon.stop()
            r["daemon_stats"] = stats
            c = count_records(daemon.log_dir, self.nginx.port)
            r["server_records"] = c["server_records"]
            r["server_incomplete"] = c["server_incomplete"]
            shutil.rmtree(daemon.log_dir, ignore_errors=True)
            out[config] = r
            log(f"memory {config}: RSS MiB before {r['before']['VmRSS']/1024:.1f}, "
                f"open {r['open']['VmRSS']/1024:.1f}, after {r['after']['VmRSS']/1024:.1f}, "
                f"HWM {r['after']['VmHWM']/1024:.1f}; {r['client']}; records {c['server_records']}")
        return out


# ---------------------------------------------------------------------------
# Summary, table, plot


SUMMARY_KEYS = ["rps", "requests", "completeness", "completeness_vs_nginx", "written_per_req",
                "drops", "tracer_cpu_us_per_req", "tracer_cpu_us_per_record", "tracer_hwm_kib",
                "tracer_rss_anon_kib", "log_bytes_per_req", "server_log_bytes_per_req",
                "nginx_cpu_us_per_req", "bpf_ns_per_req", "bpf_runs_per_req", "settle_s",
                "latency_p50_us", "latency_p99_us", "machine_busy", "other_cpu_frac", "wrk_cpu_ms",
                "nginx_requests", "daemon_background_frac", "daemon_main_us_per_record",
                "copied_bytes_per_req"]


def summarize(runs, opts):
    summary = []
    for workload in opts.workloads:
        for conns in opts.conns:
            group = [r for r in runs if r["workload"] == workload and r["conns"] == conns
                     and "error" not in r]
            # Ratio to untraced per repetition (the runs next to each other), then the median.
            base = {r["rep"]: r["rps"] for r in group if r["config"] == "untraced"}
            for config in opts.configs:
                rs = [r for r in group if r["config"] == config]
                s = {"workload": workload, "conns": conns, "config": config, "runs": len(rs)}
                if not rs:
                    summary.append(dict(s, **{k: None for k in SUMMARY_KEYS}, rps_min=None, rps_max=None,
                                            drops_total=None, completeness_min=None))
                    continue
                for k in SUMMARY_KEYS:
                    s[k] = median([r.get(k) for r in rs])
                s["rps_min"] = min(r["rps"] for r in rs)
                s["rps_max"] = max(r["rps"] for r in rs)
                s["drops_total"] = (sum(r.get("drops") or 0 for r in rs)
                                    if any(r.get("drops") is not None for r in rs) else None)
                s["completeness_min"] = (min(r["completeness"] for r in rs if r.get("completeness") is not None)
                                         if any(r.get("completeness") is not None for r in rs) else None)
                if base:
                    s["ratio"] = median([r["rps"] / base[r["rep"]] for r in rs if r["rep"] in base])
                    # Noise only takes throughput away: the best run of each configuration
                    # is the other estimate of what it can do.
                    s["ratio_best"] = s["rps_max"] / max(base.values())
                summary.append(s)
    return summary


def fmt(v, spec, none="-"):
    if v is None:
        m = re.match(r"(\d+)", spec)
        return none.rjust(int(m.group(1))) if m else none
    return format(v, spec)


def print_table(results, out=sys.stdout):
    o = results["options"]
    w = out.write
    w("\n")
    w(f"httptraced benchmark  {results['meta']['timestamp']}  binary {results['meta']['binary_sha256'][:12]}"
      f"  git {results['meta']['git_commit'][:12]}{' (dirty)' if results['meta']['git_dirty'] else ''}\n")
    if results["meta"].get("baseline_binary_sha256"):
        w(f"<config>@base: the same with the baseline binary {results['meta']['baseline_binary_sha256'][:12]}"
          f" ({results['meta']['baseline_binary']}), run next to it in every repetition (before it in even ones, after it in odd ones)\n")
    if results["summary"]:
        w(f"nginx {results['meta']['nginx_version']} (1 worker, keep-alive) on 127.0.0.1, "
          f"wrk -t1 -c<conns> -d{o['duration']}s; median of {o['reps']} interleaved runs per cell\n")
        mib = lambda x: x / 1024 if x else None  # noqa: E731
        pct = lambda x: x * 100 if x is not None else None  # noqa: E731
        columns = [  # header, width, format, value
            ("req/s", 7, "7.0f", lambda s: s["rps"]),
            ("ratio", 6, "6.3f", lambda s: s.get("ratio")),
            ("best", 7, "7.0f", lambda s: s["rps_max"]),
            ("ratio", 6, "6.3f", lambda s: s.get("ratio_best")),
            ("complete", 8, "8.4f", lambda s: s["completeness"]),
            ("min", 6, "6.4f", lambda s: s["completeness_min"]),
            ("rec/req", 7, "7.2f", lambda s: s["written_per_req"]),
            ("drops", 6, "6d", lambda s: s["drops_total"]),
            ("us/req", 7, "7.2f", lambda s: s["tracer_cpu_us_per_req"]),
            ("us/rec", 6, "6.2f", lambda s: s["tracer_cpu_us_per_record"]),
            ("main", 5, "5.2f", lambda s: s["daemon_main_us_per_record"]),
            ("bg%", 4, "4.0f", lambda s: pct(s["daemon_background_frac"])),
            ("HWM MiB", 7, "7.1f", lambda s: mib(s["tracer_hwm_kib"])),
            ("log B/req", 9, "9.0f", lambda s: s["log_bytes_per_req"]),
            ("copied B/req", 12, "12.0f", lambda s: s["copied_bytes_per_req"]),
            ("nginx us/req", 12, "12.2f", lambda s: s["nginx_cpu_us_per_req"]),
            ("bpf ns/req", 10, "10.0f", lambda s: s["bpf_ns_per_req"]),
            ("catch-up s", 10, "10.1f", lambda s: s["settle_s"]),
            ("idle%", 5, "5.0f", lambda s: pct(1 - s["machine_busy"]) if s["machine_busy"] is not None else None),
            ("noise%", 6, "6.0f", lambda s: pct(s["other_cpu_frac"])),
        ]
        columns = [c for c in columns if any(c[3](s) is not None for s in results["summary"])]
        hdr = f"{'load':<5} {'conns':>5} {'config':<10} " + " ".join(f"{h:>{wd}}" for h, wd, _, _ in columns)
        w(hdr + "\n")
        w("-" * len(hdr) + "\n")
        for s in results["summary"]:
            w(f"{s['workload']:<5} {s['conns']:>5} {s['config']:<10} "
              + " ".join(fmt(f(s), spec) for _, _, spec, f in columns) + "\n")
        w("  req/s, ratio: median of the runs; ratio to untraced in the same repetition, then the median.\n"
      "  best, ratio: the best run of each configuration, over the best untraced run (noise only\n"
      "  takes throughput away).  complete: records for the benchmarked server (role=server,\n"
      "  server.port) / requests wrk completed; tshark: HTTP requests it printed; not countable\n"
      "  with --stdout to /dev/null (see rec/req and drops).  min: lowest of the repetitions.\n"
      "  rec/req: records written / requests (2: nginx's and wrk's sides).  drops: kernel_drops +\n"
      "  lost, all repetitions.  us/req, us/rec: tracer CPU (all threads; tshark: + dumpcap) from\n"
      "  wrk's start until the tracer caught up, per request and per record.  main: the daemon's main\n"
      "  thread (events, parsing, records, writes) per record.  bg%: share of the daemon's CPU in\n"
      "  other threads (compression of rotated logs; cut short when the daemon stops).  HWM: peak RSS.\n"
      "  log B/req: log bytes per request.  copied B/req: payload bytes the kernel copied into the\n"
      "  ring buffer per request (both sides; the daemon's stats bytes=).  nginx us/req: nginx worker CPU per request, BPF programs\n"
      "  run in its syscalls included.  bpf ns/req: httptraced's BPF run time (bpf_stats) per request.\n"
      "  catch-up s: tracer busy after wrk stopped.  idle%: the machine's idle CPU time during the wrk\n"
      "  run (share of all cores: the load waited on latency, not on CPU).  noise%: CPU of other\n"
      "  processes (share of machine).\n")
    m = results.get("micro")
    if m:
        w("\nnon-socket syscalls (ns per call, median of %d interleaved runs; slowdown = traced/untraced)\n"
          % m["reps"])
        exit_only = any("traced_exit_ns" in s for s in m["summary"].values())
        portable = any("traced_portable_ns" in s for s in m["summary"].values())
        w(f"{'syscall':<8} {'untraced':>9} {'traced':>9} {'slowdown':>9} "
          + (f"{'exit':>9} {'slowdown':>9} " if exit_only else "")
          + (f"{'portable':>9} {'slowdown':>9} " if portable else "")
          + f"{'--pid=other':>12} {'slowdown':>9}\n")
        for mode, s in m["summary"].items():
            w(f"{mode:<8} {s['untraced_ns']:9.1f} {s['traced_ns']:9.1f} {s['traced_slowdown']:9.3f} "
              + (f"{s['traced_exit_ns']:9.1f} {s['traced_exit_slowdown']:9.3f} "
                 if exit_only else "")
              + (f"{s['traced_portable_ns']:9.1f} {s['traced_portable_slowdown']:9.3f} "
                 if portable else "")
              + f"{s['traced_pid_other_ns']:12.1f} {s['traced_pid_other_slowdown']:9.3f}\n")
        if exit_only:
            w("  exit: --socket_tracepoints=false, every payload syscall on its exit tracepoint (kernels\n"
              "  before 6.4).\n")
        if portable:
            w("  portable: --fast_fd_filter=false, the payload program kernels before 6.16 run.\n")
        if m.get("bpf_stats_enabled"):
            w("  WARNING: kernel.bpf_stats_enabled was 1 (set outside this run): every program run\n"
              "  was also timed, which inflates the traced figures.\n")
    mem = results.get("memory")
    if mem:
        w(f"\nmemory: {mem['connections']} idle keep-alive connections to the traced nginx "
          f"(one GET each, then idle)\n")
        w(f"{'daemon':<22} {'RSS before':>10} {'RSS open':>9} {'RSS after':>9} {'HWM':>7} "
          f"{'anon before/open/after':>22} {'tracked open/after':>18} {'records':>8} {'BPF maps':>8}\n")
        for config in ("all", "pid"):
            r = mem.get(config)
            if not r:
                continue
            label = "traces every process" if config == "all" else "--pid=<nginx>"
            bm = r.get("bpf_maps_memlock") or {}
            w(f"{label:<22} {r['before']['VmRSS']/1024:9.1f}M {r['open']['VmRSS']/1024:8.1f}M "
              f"{r['after']['VmRSS']/1024:8.1f}M {r['after']['VmHWM']/1024:6.1f}M "
              f"{r['before'].get('RssAnon', 0)/1024:7.1f}/{r['open'].get('RssAnon', 0)/1024:.1f}/"
              f"{r['after'].get('RssAnon', 0)/1024:.1f}M {fmt(r.get('connections_tracked_open'), '9d')}/"
              f"{fmt(r.get('connections_tracked_after'), '<8d')} "
              f"{r['server_records']:8d} {fmt(bm.get('total_bytes', 0)/2**20 if bm else None, '7.1f')}M\n")
        w("  RSS counts the ring buffer's data pages, mapped twice (2 x --ring_buffer_mb, RssFile);\n"
          "  anon is the daemon's own heap.  BPF maps: kernel memory (memlock) of the daemon's maps.\n")
    failed = [r for r in results.get("runs", []) if "error" in r]
    if failed:
        w(f"\nFAILED runs ({len(failed)}), left out of the medians: " + "; ".join(
            f"{r['workload']} c{r['conns']} {r['config']} rep {r['rep']}: {r['error'][:200]}" for r in failed) + "\n")
    f = results["meta"].get("foreign_tracers_at_start", {})
    if f.get("processes") or f.get("tracing_programs"):
        w(f"\nWARNING: other tracers were running (shared machine): {f['processes']}, "
          f"{f['tracing_programs']} foreign tracing BPF programs; every configuration pays for them.\n")
    w("\n")


COLORS = {"untraced": "#7f7f7f", "log": "#1f77b4", "log_pid": "#2ca02c", "stdout": "#17becf",
          "tshark": "#d62728", "log_noskip": "#9467bd", "log_pid_raw": "#ff7f0e"}


def plot(results, png, workdir):
    """req/s (with the ratio to untraced), completeness and tracer CPU per request,
    per configuration, grouped by workload and connection count (gnuplot, PNG)."""
    configs = results["options"]["configs"]
    groups = []
    for s in results["summary"]:
        g = (s["workload"], s["conns"])
        if g not in groups:
            groups.append(g)
    by = {(s["workload"], s["conns"], s["config"]): s for s in results["summary"]}
    dat = os.path.join(workdir, "summary.dat")
    cols = ["rps", "ratio", "completeness", "tracer_cpu_us_per_req", "rps_max", "completeness_min"]
    with open(dat, "w") as f:
        for w, c in groups:  # no header line: $0 is the group's index
            row = [f"{w.upper()} c={c}"]
            for k in configs:
                s = by[(w, c, k)]
                row += [fmt(s.get(x), ".4f", "NaN") for x in cols]
            f.write("\t".join(row) + "\n")
    n = len(configs)
    width = 1.0 / (n + 1)

    def series(metric, label_fmt, label_col=None, only=None, best=None, low=None):
        parts = []
        for j, (i, k) in enumerate((i, k) for i, k in enumerate(configs) if not only or k in only):
            base = 2 + i * len(cols)
            col = base + cols.index(metric)
            x = f"($0 + ({i} - {(n - 1) / 2.0}) * {width})"
            color = COLORS.get(config_kind(k)[0], "#888888")
            pattern = " fill pattern 4" if config_kind(k)[1] else ""
            parts.append(f"'{dat}' using {x}:{col}:({width * 0.9}) with boxes{pattern} lc rgb '{color}' "
                         f"title '{k}'")
            lcol = base + cols.index(label_col or metric)
            label = f"sprintf('{label_fmt}', column({lcol}))"
            if low:  # also the lowest repetition, when it is visibly lower
                mcol = base + cols.index(low)
                label = (f"(column({mcol}) < column({col}) - 0.0005 ? "
                         f"sprintf('{label_fmt}\\nmin {label_fmt}', column({col}), column({mcol})) : {label})")
            parts.append(f"'{dat}' using {x}:{col}:({label}) with labels offset 0,{1.4 if low else 0.6} "
                         f"font ',8' notitle")
            if best:
                bcol = base + cols.index(best)
                parts.append(f"'{dat}' using {x}:{bcol} with points pt 7 ps 0.7 lc rgb 'black' "
                             + ("title 'best run'" if j == 0 else "notitle"))
        return ", \\\n     ".join(parts)

    xtics = ", ".join(f'"{w.upper()} c={c}" {i}' for i, (w, c) in enumerate(groups))
    countable = [k for k in configs if k != "untraced" and any(
        by[(w, c, k)]["completeness"] is not None for w, c in groups)]
    tracers = [k for k in configs if k != "untraced"]
    gp = f"""set terminal pngcairo size 1400,1250 font "sans,10" noenhanced
set output '{png}'
set datafile separator '\\t'
set datafile missing 'NaN'
set style fill solid 0.85 border -1
set key outside right top vertical
set grid ytics
set xtics ({xtics}) nomirror
set xrange [-0.6:{len(groups) - 0.4}]
set multiplot layout 3,1 title "httptraced benchmark {results['meta']['timestamp']} (git {results['meta']['git_commit'][:12]}): nginx + wrk -t1 on loopback, median of {results['options']['reps']} interleaved runs" font "sans,12"
set title "Throughput: median req/s (label: median ratio to untraced in the same repetition; dot: best run)"
set ylabel "req/s"
set yrange [0:*]
plot {series("rps", "%.2f", label_col="ratio", best="rps_max")}
set title "Completeness: records for the benchmarked server / requests wrk completed, median (and lowest run); stdout to /dev/null is not countable"
set ylabel "completeness"
set yrange [0:1.25]
set ytics 0.1
plot {series("completeness", "%.4f", only=countable, low="completeness_min")}, 1 with lines dt 2 lc rgb 'black' notitle
set title "Tracer CPU per request (us, log scale; httptraced: all threads; tshark: tshark + dumpcap)"
set ylabel "us / request"
set logscale y
set yrange [0.5:*]
set ytics auto
plot {series("tracer_cpu_us_per_req", "%.1f", only=tracers)}
unset multiplot
"""
    path = os.path.join(workdir, "plot.gp")
    with open(path, "w") as f:
        f.write(gp)
    if not shutil.which("gnuplot"):
        log("gnuplot is not installed (bench/install-deps.sh): no plot")
        return None
    r = sh(["gnuplot", path])
    if r.returncode != 0:
        log(f"gnuplot failed: {r.stderr}")
        return None
    return png


# ---------------------------------------------------------------------------


def git(*args):
    r = sh(["git", "-C", REPO_DIR] + list(args))
    return r.stdout.strip() if r.returncode == 0 else ""


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run of about a minute")
    p.add_argument("--binary", default=os.path.join(REPO_DIR, "build/userspace/httptraced"),
                   help="httptraced binary to measure (copied first, so rebuilds do not disturb the run)")
    p.add_argument("--baseline", help="a second httptraced binary: every traced configuration also "
                   "runs with it, as <config>@base, next to the same configuration: before it in even "
                   "repetitions, after it in odd ones (an A/B of two builds in one run)")
    p.add_argument("--git-rev", help="git revision the binary was built from (default: HEAD of the work tree)")
    p.add_argument("--helpers", required=True, help="directory with the compiled syscall_loop and idle_conns")
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 4; quick 2)")
    p.add_argument("--reps", type=int, help="interleaved repetitions (default 5; quick 1)")
    p.add_argument("--conns", help="comma-separated wrk connection counts (default 16,64; quick 16)")
    p.add_argument("--workloads", default="get,post", help=",".join(WORKLOADS))
    p.add_argument("--configs", help=",".join(CONFIGS) + " (default all but "
                   + ",".join(sorted(OPT_IN_CONFIGS)) + "; quick: also not log_pid)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: nginx,micro,memory")
    p.add_argument("--memory-conns", type=int, help="idle connections of the memory scenario (default 10000; quick 2000)")
    p.add_argument("--daemon-arg", action="append", default=[], dest="daemon_args",
                   help="extra httptraced flag for every traced run (repeatable)")
    p.add_argument("--results", default=os.path.join(BENCH_DIR, "results"), help="where the JSON and PNG go")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--bpf-stats", action="store_true", dest="bpf_stats_on",
                   help="turn kernel.bpf_stats_enabled on for the run (restored after): BPF ns per request")
    p.add_argument("--nice", type=int, default=0,
                   help="nice value for nginx, wrk and the tracers (e.g. -10: less noise from other "
                        "users' processes, at their expense; off by default on a shared machine)")
    o = p.parse_args(argv)
    o.duration = o.duration or (2 if o.quick else 4)
    o.reps = o.reps or (1 if o.quick else 5)
    o.conns = [int(x) for x in (o.conns or ("16" if o.quick else "16,64")).split(",")]
    o.workloads = [x for x in o.workloads.split(",") if x]
    o.configs = [x for x in (o.configs or ",".join(
        c for c in CONFIGS if c not in OPT_IN_CONFIGS and not (o.quick and c == "log_pid"))).split(",") if x]
    for c in o.configs:
        kind, on_baseline = config_kind(c)
        if kind not in CONFIGS or (on_baseline and kind not in TRACED_CONFIGS):
            p.error(f"unknown configuration {c}")
        if on_baseline and not o.baseline:
            p.error(f"{c} needs --baseline=PATH")
    if o.baseline:
        if not os.access(o.baseline, os.X_OK):
            p.error(f"--baseline: {o.baseline} is not an executable file")
        configs = []
        for c in o.configs:
            if c in TRACED_CONFIGS and c + BASELINE_SUFFIX not in o.configs:
                configs.append(c + BASELINE_SUFFIX)
            configs.append(c)
        o.configs = configs
    for w in o.workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w}")
    if "untraced" in o.configs:  # the baseline first in every round
        o.configs.remove("untraced")
        o.configs.insert(0, "untraced")
    o.skip = set(x for x in o.skip.split(",") if x)
    if "tshark" in o.configs and not shutil.which("tshark"):
        print("httpbench: tshark is not installed (bench/install-deps.sh): its configuration is left out",
              file=sys.stderr)
        o.configs.remove("tshark")
    o.memory_conns = o.memory_conns or (2000 if o.quick else 10000)
    o.memory_configs = ["all"] if o.quick else ["all", "pid"]
    o.micro_reps = 2 if o.quick else 7
    o.micro_seconds = 0.3 if o.quick else 0.5
    return o


BPF_STATS = "/proc/sys/kernel/bpf_stats_enabled"


def replot(path):
    """Prints the table of a results JSON again and redraws its plot beside it."""
    with open(path) as f:
        results = json.load(f)
    results.setdefault("summary", [])
    png = None
    if results["summary"]:
        plotdir = tempfile.mkdtemp(prefix="httptraced-plot-")
        try:
            png = plot(results, os.path.splitext(path)[0] + ".png", plotdir)
        finally:
            shutil.rmtree(plotdir, ignore_errors=True)
    print_table(results)
    if png:
        print(f"plot:    {png}")
    return 0


def main(argv):
    if len(argv) == 2 and argv[0] == "--replot":
        return replot(argv[1])
    o = parse_args(argv)
    if os.geteuid() != 0:
        print("httpbench: run as root (httptraced loads BPF programs)", file=sys.stderr)
        return 1
    procs = Procs(nice=o.nice)
    bpf_stats_was = None

    def on_signal(signum, frame):
        raise Interrupted(f"signal {signum}")

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    workdir = tempfile.mkdtemp(prefix="httptraced-bench-")
    os.chmod(workdir, 0o755)
    ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    os.makedirs(o.results, exist_ok=True)
    results = {"meta": {}, "options": {}}
    try:
        # A private copy of the binary: others may rebuild build/ during the run.
        binary = os.path.join(workdir, "httptraced")
        shutil.copy2(o.binary, binary)
        baseline = None
        if o.baseline:
            baseline = os.path.join(workdir, "httptraced-baseline")
            shutil.copy2(o.baseline, baseline)
        for h in ("syscall_loop", "idle_conns"):
            shutil.copy2(os.path.join(o.helpers, h), os.path.join(workdir, h))
        bpf_stats_was = read_file(BPF_STATS).strip()
        if o.bpf_stats_on:
            with open(BPF_STATS, "w") as f:
                f.write("1")
        bpf_stats = read_file(BPF_STATS).strip() == "1"
        o.bpf_stats = bpf_stats
        results["meta"] = {
            "timestamp": ts,
            "git_commit": o.git_rev or git("rev-parse", "HEAD"),
            "git_dirty": False if o.git_rev else bool(git("status", "--porcelain", "--", "userspace", "bpf")),
            "binary": o.binary,
            "binary_sha256": sha256(binary),
            "baseline_binary": o.baseline,
            "baseline_binary_sha256": sha256(baseline) if baseline else None,
            "kernel": os.uname().release,
            "cpus": os.cpu_count(),
            "nginx_version": sh(["nginx", "-v"]).stderr.strip().split("/")[-1],
            "wrk_version": (sh(["wrk", "-v"]).stdout.splitlines() or [""])[0],
            "tshark_version": ((sh(["tshark", "-v"]).stdout.splitlines() or [""])[0]
                               if shutil.which("tshark") else None),
            "bpf_stats_enabled": bpf_stats,
            "nice": o.nice,
            "foreign_tracers_at_start": foreign_tracers(),
            "loadavg_at_start": read_file("/proc/loadavg").strip(),
        }
        o.binary = binary
        o.baseline = baseline
        results["options"] = {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(o).items()}
        results["options"]["config_descriptions"] = {c: describe_config(c) for c in o.configs}
        results["options"]["workload_descriptions"] = {w: WORKLOADS[w] for w in o.workloads}
        f = results["meta"]["foreign_tracers_at_start"]
        if f["processes"] or f["tracing_programs"]:
            log(f"WARNING: other tracers are running: {f}")
        bench = Bench(o, workdir, procs)
        bench.nginx = Nginx(procs, workdir, workers=1, worker_connections=max(4096, o.memory_conns + 1024))
        bench.nginx.start()
        results["meta"]["nginx_port"] = bench.nginx.port
        log(f"nginx on 127.0.0.1:{bench.nginx.port} (pids {bench.nginx.pids()}), workdir {workdir}")
        t0 = time.monotonic()
        if "nginx" not in o.skip:
            results["runs"] = bench.run_nginx_bench()
            results["summary"] = summarize(results["runs"], o)
        if "micro" not in o.skip:
            # bpf_stats times every program run (two clock reads each): it would
            # inflate the per-call cost this part measures, so it is off here.
            if o.bpf_stats_on and bpf_stats_was == "0":
                with open(BPF_STATS, "w") as f:
                    f.write("0")
            results["micro"] = bench.run_micro()
            results["micro"]["bpf_stats_enabled"] = read_file(BPF_STATS).strip() == "1"
        if "memory" not in o.skip:
            results["memory"] = bench.run_memory()
        results["meta"]["elapsed_s"] = time.monotonic() - t0
        results["meta"]["loadavg_at_end"] = read_file("/proc/loadavg").strip()
        bench.nginx.stop()
    except Interrupted as e:
        log(f"interrupted ({e}); cleaning up")
        return 130
    finally:
        procs.stop_all()
        if o.bpf_stats_on and bpf_stats_was in ("0", "1"):
            with open(BPF_STATS, "w") as f:
                f.write(bpf_stats_was)
        if not o.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")
    json_path = os.path.join(o.results, f"{ts}.json")
    png_path = None
    if "summary" in results:
        plotdir = tempfile.mkdtemp(prefix="httptraced-plot-")
        try:
            png_path = plot(results, os.path.join(o.results, f"{ts}.png"), plotdir)
        finally:
            shutil.rmtree(plotdir, ignore_errors=True)
    results["meta"]["png"] = png_path
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1, sort_keys=False)
    if "summary" in results or "micro" in results or "memory" in results:
        results.setdefault("summary", [])
        print_table(results)
    print(f"results: {json_path}")
    if png_path:
        print(f"plot:    {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
