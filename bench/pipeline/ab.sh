#!/usr/bin/env bash
# Wall time of the daemon's per-event path (bench/pipeline, no kernel) for two
# builds of pipeline_bench, A/B: pairs of runs, each pair alternating which
# build goes first, since on a shared machine the second run of a pair with a
# fixed order measured 10-40% slower. Prints, per workload, each build's
# median ns per exchange and the median (and range) of the per-pair ratios.
#
#   bash bench/pipeline/ab.sh BASELINE_PIPELINE_BENCH [PIPELINE_BENCH] [workloads] [pairs]
#
# Defaults: build/bench/pipeline/pipeline_bench; workloads get,post,json; 8
# pairs of 200,000 exchanges each. Fewer instructions (instructions.sh) are not
# always less time, nor the reverse: check both.
set -euo pipefail
cd "$(dirname "$0")/../.."

case "${1:-}" in
  ""|-h|--help) sed -n '2,12p' "$0"; exit 2 ;;
esac
baseline=$1
binary=${2:-build/bench/pipeline/pipeline_bench}
workloads=${3:-get,post,json}
pairs=${4:-8}
readonly exchanges=200000
for b in "$baseline" "$binary"; do
  [ -x "$b" ] || { echo "ab.sh: $b is not an executable file" >&2; exit 1; }
done
[[ "$pairs" =~ ^[1-9][0-9]*$ ]] || { echo "ab.sh: pairs must be a positive number, not $pairs" >&2; exit 2; }

ns() {  # binary workload -> ns per exchange
  local out
  out=$("$1" "$exchanges" 16 "$2")
  sed -n 's/.*ns_per_exchange=\([0-9.]*\).*/\1/p' <<<"$out"
}

printf '%-8s %10s %10s %8s %15s\n' workload baseline this ratio "ratio range"
for w in ${workloads//,/ }; do
  results=()
  for ((i = 0; i < pairs; i++)); do
    if ((i % 2 == 0)); then
      a=$(ns "$baseline" "$w"); b=$(ns "$binary" "$w")
    else
      b=$(ns "$binary" "$w"); a=$(ns "$baseline" "$w")
    fi
    [ -n "$a" ] && [ -n "$b" ] || { echo "ab.sh: no ns_per_exchange from a $w run" >&2; exit 1; }
    results+=("$a $b")
  done
  printf '%s\n' "${results[@]}" | awk -v w="$w" '
    function median(v, n,   i, j, t) {
      for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) {
        t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
      }
      return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    { n++; a[n] = $1; b[n] = $2; r[n] = $2 / $1 }
    END {
      ma = median(a, n); mb = median(b, n); mr = median(r, n)
      printf "%-8s %10.0f %10.0f %8.3f %7.3f-%.3f\n", w, ma, mb, mr, r[1], r[n]
    }'
done
