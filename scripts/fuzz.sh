#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for a bounded time
# (default 30 s) from its checked-in corpus. New inputs go to a scratch
# directory; crashes fail the run and are left in build-fuzz/ for triage.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-30}
BUILD_DIR=build-fuzz BUILD_TYPE=Debug bash scripts/build.sh -DHTTPTRACED_FUZZ=ON \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
status=0
for corpus in tests/fuzz/corpus/*/ userspace/*/fuzz_corpus/*/; do
  [ -d "$corpus" ] || continue
  name=$(basename "$corpus")
  bin=$(find build-fuzz -type f -name "${name}_fuzz" -perm -u+x | head -n1)
  if [ -z "$bin" ]; then
    echo "fuzz.sh: no fuzzer binary for corpus $name" >&2
    status=1
    continue
  fi
  scratch=$(mktemp -d)
  echo "== fuzzing $name for ${SECONDS_PER_TARGET}s"
  if ! (cd build-fuzz && "$OLDPWD/$bin" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
        -rss_limit_mb=2048 "$scratch" "$OLDPWD/$corpus" 2>&1 | tail -n 8); then
    status=1
  fi
  rm -rf "$scratch"
done
exit $status
