#!/usr/bin/env bash
# The one command that installs dependencies, builds and runs every test:
#   sudo bash scripts/test.sh
# 1. unit tests (parser, pairing, reassembly, records, rotation, flags, conformance,
#    fuzz-corpus replays, schema validation);
# 2. privileged end-to-end tests: the real daemon and BPF against real servers;
# 3. the Debian package (built, lintian-clean), the service in a Debian system
#    booted with systemd-nspawn (install, start, records, reload, stop, upgrade,
#    remove, purge), the capabilities it needs, and shipping the log with rsyslog;
# 4. the same unit and end-to-end tests in an ASan+UBSan build (clang), and the fuzz
#    corpora replayed in a gcc one;
# 5. a short bounded run of every libFuzzer target.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: the end-to-end tests load BPF programs; run as root (sudo)" >&2
  exit 1
fi
bash scripts/install-deps.sh

echo "== build (RelWithDebInfo)"
bash scripts/build.sh
echo "== unit and end-to-end tests"
ctest --test-dir build --output-on-failure -j"$(nproc)" -L unit
ctest --test-dir build --output-on-failure -L e2e

if [ "${HTTPTRACED_SKIP_OPS:-0}" != 1 ]; then
  echo "== package (lintian), service under systemd (nspawn), capabilities, rsyslog shipping"
  bash packaging/build-deb.sh
  /usr/bin/python3 -m pytest -v -p no:cacheprovider tests/systemd tests/shipping
fi

if [ "${HTTPTRACED_SKIP_SANITIZERS:-0}" != 1 ]; then
  echo "== ASan+UBSan build: unit and end-to-end tests"
  BUILD_DIR=build-asan BUILD_TYPE=Debug bash scripts/build.sh -DHTTPTRACED_SANITIZE=ON \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  ctest --test-dir build-asan --output-on-failure -j"$(nproc)" -L unit
  ctest --test-dir build-asan --output-on-failure -L e2e
  echo "== fuzz corpora replayed in a gcc ASan+UBSan build"
  # gcc evaluates a call's arguments (and other unsequenced operands) in another
  # order than clang: what reads fuzz input twice in one expression differs, and
  # an out-of-bounds read only gcc's order caused went unseen in the clang build.
  cmake -S . -B build-gcc-asan -DCMAKE_BUILD_TYPE=Debug -DHTTPTRACED_SANITIZE=ON >/dev/null
  cmake --build build-gcc-asan -j"$(nproc)" --target event_fuzz_replay stitch_fuzz_replay \
    stream_fuzz_replay http_parser_fuzz_replay
  ctest --test-dir build-gcc-asan --output-on-failure \
    -R '^(event|stitch|stream|http_parser)_fuzz_replay$'
fi

if [ "${HTTPTRACED_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzzing (bounded)"
  bash scripts/fuzz.sh "${HTTPTRACED_FUZZ_SECONDS:-30}"
fi
echo "== all tests passed"
