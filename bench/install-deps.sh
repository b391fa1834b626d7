#!/usr/bin/env bash
# Installs what the benchmark in bench/ needs, from Debian's apt repositories only
# (Debian 12 "bookworm"): the load (nginx, wrk), the comparison tracer (tshark),
# the plot (gnuplot), the profilers (perf, valgrind), a C compiler for the tiny
# helper programs, and bpftool for per-program BPF cost. Run as root.
set -euo pipefail

BENCH_DEPS=(
  nginx-light wrk
  tshark
  gnuplot-nox
  linux-perf valgrind bpftool
  gcc libc6-dev python3 procps iproute2
  zstd                 # counting records in rotated logs (zstd -dc)
  openssl              # the tls workload's self-signed certificate
)

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/install-deps.sh: run as root (apt-get)" >&2
  exit 1
fi
missing=()
for p in "${BENCH_DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # wireshark-common asks whether non-root users may capture; answer "no" up front.
  echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's nginx package starts a system nginx on port 80 where an init system
# runs; the benchmark starts its own instance and needs none.
if pgrep -x nginx >/dev/null && [ -f /run/nginx.pid ]; then
  nginx -s stop 2>/dev/null || true
fi
echo "bench/install-deps.sh: dependencies installed"
