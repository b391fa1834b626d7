#!/usr/bin/env bash
# The httptraced benchmark in one command (see bench/README.md):
#
#   sudo bash bench/run.sh [--quick] [--rev=GIT_REV | --binary=PATH] [--no-deps]
#                          [--baseline-rev=GIT_REV | --baseline=PATH]
#                          [httpbench.py options...]
#   sudo bash bench/run.sh --profile [--rev=..] [profile.py options...]
#
# Installs the benchmark's Debian packages (bench/install-deps.sh), builds httptraced
# (scripts/build.sh, RelWithDebInfo) from the working tree into ./build-bench (not
# ./build, which developers rebuild at any moment), or with --rev=REV from that git
# revision into ./build-bench-<sha> (to compare revisions), or takes --binary=PATH
# as it is; --baseline-rev=REV builds a second revision the same way, to run every
# traced configuration with both (an A/B in one run); compiles the two helper programs, then runs bench/httpbench.py, which
# prints the table and writes bench/results/<timestamp>.json and .png.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/run.sh: run as root (httptraced loads BPF programs)" >&2
  exit 1
fi
deps=1
driver=bench/httpbench.py
binary=
rev=
baseline_rev=
args=()
for a in "$@"; do
  case "$a" in
    --no-deps) deps=0 ;;
    --binary=*) binary=${a#--binary=} ;;
    --rev=*) rev=${a#--rev=} ;;
    --baseline-rev=*) baseline_rev=${a#--baseline-rev=} ;;
    --profile) driver=bench/profile.py ;;
    *) args+=("$a") ;;
  esac
done

# The daemon only (RelWithDebInfo, as scripts/build.sh builds it), not the tests.
build_daemon() {
  cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$2" --target httptraced -j"$(nproc)" >/dev/null
}

if [ "$deps" = 1 ]; then
  bash bench/install-deps.sh
  [ -n "$binary" ] || bash scripts/install-deps.sh >/dev/null
fi
# A git revision's daemon, built once into ./build-bench-<sha>; prints its path.
build_rev() {
  local sha src
  sha=$(git rev-parse --verify "$1^{commit}")
  src=build-bench-${sha:0:12}/src
  if [ ! -x "build-bench-${sha:0:12}/userspace/httptraced" ]; then
    rm -rf "$src" && mkdir -p "$src"
    git archive "$sha" | tar -x -C "$src"
    echo "bench/run.sh: building $1 (${sha:0:12}) into build-bench-${sha:0:12}" >&2
    build_daemon "$src" "build-bench-${sha:0:12}"
  fi
  echo "build-bench-${sha:0:12}/userspace/httptraced"
}

if [ -n "$baseline_rev" ]; then
  args+=(--baseline="$(build_rev "$baseline_rev")")
fi
if [ -n "$rev" ]; then
  binary=$(build_rev "$rev")
  args+=(--git-rev="$(git rev-parse --verify "$rev^{commit}")")
elif [ -z "$binary" ]; then
  echo "bench/run.sh: building the working tree into build-bench" >&2
  build_daemon . build-bench
  binary=build-bench/userspace/httptraced
fi
args+=(--binary="$binary")

helpers=$(mktemp -d /tmp/httptraced-bench-helpers.XXXXXX)
trap 'rm -rf "$helpers"' EXIT
cc -O2 -Wall -Wextra -Werror -o "$helpers/syscall_loop" bench/syscall_loop.c
cc -O2 -Wall -Wextra -Werror -o "$helpers/idle_conns" bench/idle_conns.c

# The driver stops every process it started, on success, failure or a signal
# (a signal to this script is passed on to it).
/usr/bin/python3 "$driver" --helpers "$helpers" "${args[@]}" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT HUP
status=0
wait "$child" || status=$?
if kill -0 "$child" 2>/dev/null; then wait "$child" || status=$?; fi
exit "$status"
