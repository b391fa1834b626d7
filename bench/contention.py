#!/usr/bin/env python3
"""Where events are lost when other work shares the machine, and what the daemon says
of it (bench/README.md, "Losses under contention").

  sudo /usr/bin/python3 bench/contention.py --binary=PATH [--reps=3] [--duration=8]
      [--scenarios=quiet,disk,cpu] [--conns=64] [--workload=post|get]
      [--variant=NAME:--flag=value,--flag=value ...]

nginx and wrk as in the benchmark (httpbench.py), httptraced tracing everything into
its rotating log, and beside them, in turn (interleaved, one run of each per
repetition):
  quiet  nothing else;
  disk   dd writing zeros to a file on the log's filesystem for the whole run (up to
         20 GB, removed after), 1 MiB per write;
  disk64k the same in writes of 64 KiB (each a shorter stay in the kernel);
  cpu    `yes > /dev/null`, one process that never sleeps.
Each --variant (repeatable) is a daemon configuration run in every scenario and
repetition, next to the others, in reverse order in odd repetitions (default: one,
`default`, with no extra flags).
Per run: req/s, records, the daemon's kernel_drops and output_wait_ms, and where its
drop warnings say its time went (summed over the lines: the seconds in which events
were lost, and of them run, waited for a CPU, waited for the output). A table on the
terminal and bench/results/contention-<timestamp>.json. A measurement, not a test.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httpbench as hb  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


def breakdown(stderr_text):
    """Sums the drop warnings' breakdowns: {lossy_s, ran_s, cpu_wait_s, output_wait_s}."""
    sums = [0.0, 0.0, 0.0, 0.0]
    for m in hb.BREAKDOWN_RE.finditer(stderr_text):
        for i in range(4):
            sums[i] += float(m.group(i + 1))
    keys = ("lossy_s", "ran_s", "cpu_wait_s", "output_wait_s")
    return {k: round(v, 1) for k, v in zip(keys, sums)}


def start_load(scenario, workdir):
    if scenario in ("disk", "disk64k"):
        bs, count = ("1M", "20000") if scenario == "disk" else ("64K", "320000")
        return subprocess.Popen(["dd", "if=/dev/zero", f"of={workdir}/dd.out", f"bs={bs}",
                                 f"count={count}"], stderr=subprocess.DEVNULL)
    if scenario == "cpu":
        return subprocess.Popen(["sh", "-c", "exec yes > /dev/null"])
    return None


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--workload", choices=("post", "get"), default="post")
    ap.add_argument("--scenarios", default="quiet,disk,cpu")
    ap.add_argument("--variant", action="append", default=[])
    opts = ap.parse_args(argv)
    variants = []
    for v in opts.variant or ["default:"]:
        name, sep, flags = v.partition(":")
        if not sep or not name:
            sys.exit(f"contention.py: --variant={v!r}: expected NAME:--flag=value,...")
        variants.append((name, [f for f in flags.split(",") if f]))
    if os.geteuid() != 0:
        sys.exit("contention.py: run as root (httptraced loads BPF programs)")
    binary = os.path.abspath(opts.binary)
    if not os.access(binary, os.X_OK):
        sys.exit(f"contention.py: {binary} is not an executable file")
    scenarios = opts.scenarios.split(",")
    for s in scenarios:
        if s not in ("quiet", "disk", "disk64k", "cpu"):
            sys.exit(f"contention.py: unknown scenario {s!r} (quiet, disk, disk64k, cpu)")
    procs = hb.Procs()
    # On the disk the log goes to (/var/tmp: not a tmpfs), so that dd shares it.
    workdir = tempfile.mkdtemp(prefix="httptraced-contention-", dir="/var/tmp")
    nginx = hb.Nginx(procs, workdir, 1, 70000)
    runs = []
    try:
        nginx.start()
        path = "/echo" if opts.workload == "post" else "/index.html"
        script = os.path.join(BENCH_DIR, "post.lua") if opts.workload == "post" else None
        for rep in range(opts.reps):
            for scenario, (variant, flags) in (
                    (s, v) for s in scenarios
                    for v in (variants if rep % 2 == 0 else variants[::-1])):
                name = f"{scenario}-{variant}-{rep}"
                daemon = hb.Daemon(procs, binary, workdir, name, flags)
                load = start_load(scenario, workdir)
                try:
                    wrk = hb.run_wrk(procs, f"http://127.0.0.1:{nginx.port}{path}", opts.conns,
                                     opts.duration, script=script)
                finally:
                    if load is not None:
                        load.kill()
                        load.wait()
                hb.settle(daemon.cpu_ns)
                stats = daemon.stop()
                text = hb.read_file(daemon.stderr_path)
                run = {"scenario": scenario, "variant": variant, "rep": rep, "rps": round(wrk["rps"]),
                       "requests": wrk["requests"], "records": stats.get("written"),
                       "kernel_drops": stats.get("kernel_drops"),
                       "output_wait_ms": stats.get("output_wait_ms"), **breakdown(text)}
                runs.append(run)
                hb.log(f"{name}: {run}")
                shutil.rmtree(daemon.log_dir, ignore_errors=True)
                if os.path.exists(f"{workdir}/dd.out"):
                    os.unlink(f"{workdir}/dd.out")
    finally:
        nginx.stop()
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    cols = ("scenario", "variant", "rep", "rps", "records", "kernel_drops", "output_wait_ms", "lossy_s",
            "ran_s", "cpu_wait_s", "output_wait_s")
    print(" ".join(f"{c:>14}" for c in cols))
    for r in runs:
        print(" ".join(f"{r[c]!s:>14}" for c in cols))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = os.path.join(BENCH_DIR, "results", f"contention-{stamp}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"binary": binary, "options": vars(opts), "runs": runs}, f, indent=1)
    print(f"results: {out}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main(sys.argv[1:])
