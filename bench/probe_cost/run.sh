#!/usr/bin/env bash
# What attaching to a hook costs syscalls, per kind of hook: trivial BPF
# programs (probes.bpf.c) on the per-syscall tracepoints httptraced uses, on one
# that never fires in the loop (sys_enter_close), and on the socket-level
# tracepoints sock_send_length/sock_recv_length (BTF-typed and raw), against
# bench/syscall_loop.c's loops: getppid, read of a file, write to /dev/null,
# and 64-byte writes and reads through a Unix socketpair. Configurations are
# interleaved in every repetition; the figures are medians of ns per call and
# of the per-repetition ratio to no probe. A measurement, not a test.
#
#   sudo bash bench/probe_cost/run.sh [reps (5)] [seconds per loop (1.5)]
#
# Needs clang, libbpf-dev and a kernel with BTF (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
reps=${1:-5}
secs=${2:-1.5}

work=$(mktemp -d /tmp/httptraced-probe-cost.XXXXXX)
loader=
cleanup() {
  if [ -n "$loader" ]; then kill "$loader" 2>/dev/null || true; wait "$loader" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -Ivmlinux/x86 \
  -c bench/probe_cost/probes.bpf.c -o "$work/probes.bpf.o"
cc -O2 -Wall -Wextra -Werror -o "$work/load" bench/probe_cost/load.c -lbpf
cc -O2 -Wall -Wextra -Werror -o "$work/syscall_loop" bench/syscall_loop.c
head -c 65536 /dev/urandom > "$work/file"

others=$(pgrep -x httptraced | wc -l || true)
[ "$others" -gt 0 ] && echo "probe_cost: warning: $others httptraced process(es) running: every loop pays for them too" >&2

declare -A programs=(
  [none]=""
  [sys_exit_rw]="sys_exit_write sys_exit_read"
  [sys_enter_close]="sys_enter_close"
  [sock_btf]="btf_sock_send btf_sock_recv"
  [sock_raw]="raw_sock_send raw_sock_recv"
)
configs=(none sys_exit_rw sys_enter_close sock_btf sock_raw)
modes=(getppid read write unix)
out="$work/results.txt"
for rep in $(seq 1 "$reps"); do
  for config in "${configs[@]}"; do
    if [ "$config" != none ]; then
      # shellcheck disable=SC2086
      "$work/load" "$work/probes.bpf.o" ${programs[$config]} > "$work/attached" &
      loader=$!
      for _ in $(seq 100); do grep -q attached "$work/attached" && break; sleep 0.1; done
      grep -q attached "$work/attached" || { echo "probe_cost: $config did not attach" >&2; exit 1; }
    fi
    for mode in "${modes[@]}"; do
      args=("$mode" "$secs")
      [ "$mode" = read ] && args+=("$work/file")
      echo "$rep $config $("$work/syscall_loop" "${args[@]}")" >> "$out"
    done
    if [ -n "$loader" ]; then kill "$loader"; wait "$loader" 2>/dev/null || true; loader=; fi
  done
done

/usr/bin/python3 - "$out" "${configs[*]}" "${modes[*]}" <<'PY'
import collections, statistics, sys
path, configs, modes = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
ns = collections.defaultdict(dict)
for line in open(path):
    f = line.split()
    ns[(f[1], f[2])][f[0]] = float(f[-1].split("=")[1])
print(f"kernel {open('/proc/sys/kernel/osrelease').read().strip()}; "
      f"median of {len(ns[('none', modes[0])])} interleaved repetitions; ns per call (ratio to none, range)")
print(f"{'hook':<16}" + "".join(f"{m:>26}" for m in modes))
for c in configs:
    cells = []
    for m in modes:
        runs, base = ns[(c, m)], ns[("none", m)]
        r = sorted(runs[k] / base[k] for k in runs)
        cells.append(f"{statistics.median(runs.values()):8.1f} ({statistics.median(r):.2f}, {r[0]:.2f}-{r[-1]:.2f})")
    print(f"{c:<16}" + "".join(f"{x:>26}" for x in cells))
PY
