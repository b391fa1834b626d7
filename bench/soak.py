#!/usr/bin/env python3
"""A long run of the daemon under a changing mix of traffic: does its memory, its
open files and its threads stay flat, and is every exchange still recorded at the end?
(bench/README.md, "Soak").

  sudo /usr/bin/python3 bench/soak.py --binary=PATH --helpers=DIR [--minutes=30]
      [--idle_conns=1000] [--pause=20] [-- extra daemon flags]

The daemon traces everything (the packaged default) into a rotating log that rotates
and compresses many times over (--log_max_size_mb=100; up to 1000 rotated files are
kept, so that the records can be counted at the end: about 50 minutes of this traffic
with the default pause). nginx as in the benchmark (httpbench.py)
serves, in each cycle, in turn:
  get     wrk, 16 keep-alive connections, 1 s of GET /index.html (sendfile body);
  post    wrk, 16 connections, 1 s of POST /echo with 1 KiB bodies both ways;
  unix    wrk, 8 connections, 1 s of GET /unix/ (nginx proxies over a Unix socket);
  gzip    wrk, 8 connections, 1 s of GET /api.json gzip-coded (decoded for the record);
  churn   300 connections made here one after the other, one request each with
          `Connection: close`;
  procs   20 curl processes over HTTP and 10 over HTTPS (new processes: their
          executable is looked up, libssl's probes reach them);
  idle    idle_conns (bench/idle_conns.c) opens --idle_conns keep-alive connections,
          one request each, holds them 3 s, then closes them (even cycles) or is
          killed with SIGKILL (odd cycles: the kernel closes them at its exit).
then nothing for --pause seconds (traffic comes and goes).
Every 5th cycle the daemon is sent SIGHUP (a reload, the log reopened), every 7th
SIGUSR1 (the log reopened).

After every cycle: the daemon's RSS, peak RSS, anonymous memory, open descriptors,
threads and its last stats line (--stats_interval=5s). At the end the daemon is
stopped and the server records of the log (every file, compressed or not) are counted
against the requests nginx says it served (stub_status, both its TCP ports and its
Unix socket): they must be equal. A table on the terminal and
bench/results/soak-<timestamp>.json. A measurement, not a test.
"""
import argparse
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

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
PORT_RE = re.compile(rb'"server":\{"ip":"[^"]*","port":(\d+)\}')


def count_server_records(log_dir, ports):
    """Server records of log_dir per TCP port in `ports`, and on Unix sockets."""
    out = {"lines": 0, "files": 0, "unix": 0, "other": 0, "incomplete": 0, "client": 0}
    for p in ports:
        out[str(p)] = 0
    wanted = {str(p).encode(): str(p) for p in ports}
    for name in sorted(os.listdir(log_dir)):
        out["files"] += 1
        with hb.open_log_file(os.path.join(log_dir, name)) as f:
            for line in f:
                out["lines"] += 1
                r = hb.ROLE_RE.search(line)
                if not r or r.group(1) != b"server":
                    out["client"] += 1
                    continue
                if b'"incomplete":true' in line:
                    out["incomplete"] += 1
                if hb.UNIX_RE.search(line):
                    out["unix"] += 1
                    continue
                m = PORT_RE.search(line)
                key = wanted.get(m.group(1)) if m else None
                if key:
                    out[key] += 1
                else:
                    out["other"] += 1
    return out


def churn(port, n):
    """n connections, one request each with Connection: close; returns responses read."""
    return sum(hb.http_get(port, "/index.html").startswith("HTTP/1.1 200") for _ in range(n))


def curls(procs, url, n, insecure=False):
    ok = 0
    for _ in range(n):
        argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url]
        if insecure:
            argv.insert(1, "-k")
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        ok += p.stdout == "200"
    return ok


def idle(procs, binary, port, n, kill):
    client = procs.start([binary, "127.0.0.1", str(port), str(n), "/index.html"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = client.stdout.readline().strip()
    time.sleep(3)
    if kill:
        procs.stop(client, sig=signal.SIGKILL)
    else:
        client.stdin.write("close\n")
        client.stdin.flush()
        client.stdout.readline()
        client.wait(timeout=60)
        procs.forget(client)
    m = re.search(r"ok=(\d+)", line)
    return int(m.group(1)) if m else 0


def sample(daemon, t0, cycle):
    mem = daemon.mem()
    try:
        fds = len(os.listdir(f"/proc/{daemon.pid}/fd"))
        threads = len(os.listdir(f"/proc/{daemon.pid}/task"))
    except OSError:
        fds = threads = None
    st = daemon.last_stats()
    return {"t_s": round(time.monotonic() - t0, 1), "cycle": cycle,
            "rss_kib": mem.get("VmRSS"), "hwm_kib": mem.get("VmHWM"), "anon_kib": mem.get("RssAnon"),
            "fds": fds, "threads": threads, "connections": st.get("connections"),
            "recycled_bytes": st.get("recycled_bytes"), "written": st.get("written"),
            "kernel_drops": st.get("kernel_drops"), "lost": st.get("lost"),
            "parse_errors": st.get("parse_errors"), "cpu_s": round((daemon.cpu_ns() or 0) / 1e9, 2)}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--helpers", required=True, help="directory with the compiled idle_conns")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--idle_conns", type=int, default=1000)
    ap.add_argument("--pause", type=float, default=20)
    ap.add_argument("daemon_args", nargs="*")
    opts = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("soak.py: run as root (httptraced loads BPF programs)")
    binary = os.path.abspath(opts.binary)
    idle_bin = os.path.join(os.path.abspath(opts.helpers), "idle_conns")
    for path in (binary, idle_bin):
        if not os.access(path, os.X_OK):
            sys.exit(f"soak.py: {path} is not an executable file")
    for tool in ("wrk", "nginx", "curl", "zstd"):
        if not shutil.which(tool):
            sys.exit(f"soak.py: {tool} not found (bash bench/install-deps.sh)")
    procs = hb.Procs()
    workdir = tempfile.mkdtemp(prefix="httptraced-soak-", dir="/var/tmp")
    nginx = hb.Nginx(procs, workdir, 1, 70000)
    samples, cycles = [], []
    daemon = None
    try:
        nginx.start()
        base = f"http://127.0.0.1:{nginx.port}"
        served_before = nginx.requests()
        args = ["--stats_interval=5s", "--log_max_size_mb=100"] + opts.daemon_args
        daemon = hb.Daemon(procs, binary, workdir, "soak", args)
        t0 = time.monotonic()
        samples.append(sample(daemon, t0, 0))
        cycle = 0
        while time.monotonic() - t0 < opts.minutes * 60:
            cycle += 1
            c = {"cycle": cycle}
            c["get"] = hb.run_wrk(procs, f"{base}/index.html", 16, 1)["requests"]
            c["post"] = hb.run_wrk(procs, f"{base}/echo", 16, 1,
                                   script=os.path.join(BENCH_DIR, "post.lua"))["requests"]
            c["unix"] = hb.run_wrk(procs, f"{base}/unix/", 8, 1)["requests"]
            c["gzip"] = hb.run_wrk(procs, f"{base}/api.json", 8, 1,
                                   headers=["Accept-Encoding: gzip"])["requests"]
            c["churn_ok"] = churn(nginx.port, 300)
            c["curl_ok"] = curls(procs, f"{base}/index.html", 20)
            c["curl_tls_ok"] = curls(procs, f"https://127.0.0.1:{nginx.tls_port}/index.html", 10,
                                     insecure=True)
            c["idle_ok"] = idle(procs, idle_bin, nginx.port, opts.idle_conns, kill=cycle % 2 == 1)
            if cycle % 5 == 0:
                os.kill(daemon.pid, signal.SIGHUP)
                c["signal"] = "HUP"
            elif cycle % 7 == 0:
                os.kill(daemon.pid, signal.SIGUSR1)
                c["signal"] = "USR1"
            cycles.append(c)
            time.sleep(opts.pause)
            s = sample(daemon, t0, cycle)
            samples.append(s)
            hb.log(f"cycle {cycle} at {s['t_s']:.0f} s: RSS {s['rss_kib'] / 1024:.1f} MiB "
                   f"(peak {s['hwm_kib'] / 1024:.1f}), fds {s['fds']}, threads {s['threads']}, "
                   f"tracked {s['connections']}, written {s['written']}, drops {s['kernel_drops']}")
        hb.settle(daemon.cpu_ns)
        served = nginx.requests() - served_before - 1  # the last query counts itself
        final_stats = daemon.stop()
        exit_code = daemon.exit_code
        counted = count_server_records(daemon.log_dir, (nginx.port, nginx.tls_port))
    finally:
        nginx.stop()
        procs.stop_all()

    recorded = counted[str(nginx.port)] + counted[str(nginx.tls_port)] + counted["unix"]
    # hb.Daemon keeps 1000 rotated files: past that, retention deleted some.
    countable = counted["files"] <= 1000
    steady = [s for s in samples if s["cycle"] >= 3]
    rss = [s["rss_kib"] for s in steady if s["rss_kib"]]
    quarter = max(1, len(rss) // 4)
    summary = {
        "minutes": round(samples[-1]["t_s"] / 60, 1), "cycles": len(cycles),
        "requests_served_by_nginx": served, "server_records": recorded,
        "records_minus_served": recorded - served if countable else None,
        "countable": countable, "records": counted,
        "final_stats": final_stats, "exit_code": exit_code,
        "rss_mib_first_quarter_max": round(max(rss[:quarter]) / 1024, 1) if rss else None,
        "rss_mib_last_quarter_max": round(max(rss[-quarter:]) / 1024, 1) if rss else None,
        "rss_mib_min": round(min(rss) / 1024, 1) if rss else None,
        "rss_mib_max": round(max(rss) / 1024, 1) if rss else None,
        "hwm_mib": round(samples[-1]["hwm_kib"] / 1024, 1) if samples[-1]["hwm_kib"] else None,
        "fds_min_max": [min(s["fds"] for s in steady), max(s["fds"] for s in steady)] if steady else None,
        "threads_min_max": [min(s["threads"] for s in steady), max(s["threads"] for s in steady)]
        if steady else None,
        "daemon_cpu_s": samples[-1]["cpu_s"],
    }
    cols = ("t_s", "cycle", "rss_kib", "hwm_kib", "anon_kib", "fds", "threads", "connections",
            "recycled_bytes", "written", "kernel_drops", "cpu_s")
    print(" ".join(f"{c:>14}" for c in cols))
    for s in samples:
        print(" ".join(f"{s[c]!s:>14}" for c in cols))
    print(json.dumps(summary, indent=1))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = os.path.join(BENCH_DIR, "results", f"soak-{stamp}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"binary": binary, "options": vars(opts), "summary": summary, "cycles": cycles,
                   "samples": samples}, f, indent=1)
    print(f"results: {out}")
    shutil.rmtree(workdir, ignore_errors=True)
    if not countable:
        print("soak.py: the log reached 1000 rotated files and retention deleted the oldest: "
              "records not counted (a shorter run, or a longer --pause)")
        return 2
    return 0 if recorded == served and exit_code == 0 else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main(sys.argv[1:]))
