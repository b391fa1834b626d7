#!/usr/bin/env bash
# Instructions per exchange of the daemon's per-event path (bench/pipeline,
# no kernel), counted by callgrind: repeatable on a noisy machine where times
# are not. Two runs of pipeline_bench (N and 2N exchanges) per workload,
# counting its ReplaySamples only; the difference divided by N leaves out
# start-up. With two binaries, an A/B.
#
#   bash bench/pipeline/instructions.sh [--baseline=PIPELINE_BENCH] [PIPELINE_BENCH] [workloads]
#
# Defaults: build/bench/pipeline/pipeline_bench; workloads get,post,json.
# Needs valgrind (bench/install-deps.sh). Fewer instructions are not always
# less time (an AVX2 escaper ran 9% fewer and took longer here): check wall
# time too, interleaved (pipeline_bench prints ns_per_exchange).
set -euo pipefail
cd "$(dirname "$0")/../.."

baseline=
binary=build/bench/pipeline/pipeline_bench
workloads=get,post,json
positional=0
for a in "$@"; do
  case "$a" in
    --baseline=*) baseline=${a#--baseline=} ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "instructions.sh: unknown option $a" >&2; exit 2 ;;
    *)
      if [ "$positional" = 0 ]; then binary=$a; else workloads=$a; fi
      positional=$((positional + 1)) ;;
  esac
done
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed" >&2; exit 1; }
for b in "$binary" $baseline; do
  [ -x "$b" ] || { echo "instructions.sh: $b is not an executable file" >&2; exit 1; }
done

# Only the event path is counted: pipeline_bench's ReplaySamples, not the
# building of its samples (which grows with N too). A build from before
# ReplaySamples has no such function: then both binaries are counted whole,
# samples included (about 2,000 more instructions per GET exchange), so that
# an A/B still compares like with like.
replay_only=1
for b in "$binary" $baseline; do
  if ! grep -q ReplaySamples "$b"; then
    replay_only=0
    echo "instructions.sh: $b has no ReplaySamples (an older build): counting whole runs," \
      "the building of samples included" >&2
  fi
done
toggle=()
[ "$replay_only" = 1 ] && toggle=(--toggle-collect='*ReplaySamples*')

readonly n=20000
collected() {  # binary exchanges workload -> instructions
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "${toggle[@]}" "$1" "$2" 16 "$3" 2>&1 |
    sed -n 's/.*Collected : //p'
}
per_exchange() {  # binary workload
  local a b
  a=$(collected "$1" "$n" "$2")
  b=$(collected "$1" "$((2 * n))" "$2")
  echo $(((b - a) / n))
}

if [ -n "$baseline" ]; then
  printf '%-8s %12s %12s %8s\n' workload baseline this change
else
  printf '%-8s %12s\n' workload instructions
fi
for w in ${workloads//,/ }; do
  this=$(per_exchange "$binary" "$w")
  if [ -n "$baseline" ]; then
    base=$(per_exchange "$baseline" "$w")
    awk -v w="$w" -v a="$base" -v b="$this" \
      'BEGIN { printf "%-8s %12d %12d %+7.1f%%\n", w, a, b, (b - a) * 100 / a }'
  else
    printf '%-8s %12d\n' "$w" "$this"
  fi
done
