#!/usr/bin/env bash
# Installs what httptraced needs, builds it, and runs it as root, writing one
# JSON line per HTTP exchange to /var/log/httptraced/httptraced.json:
#   sudo bash scripts/run.sh [httptraced flags...]
# Stop it with Ctrl-C (in-flight exchanges are written as incomplete).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/run.sh: httptraced loads BPF programs; run as root (sudo)" >&2
  exit 1
fi
bash scripts/install-deps.sh
bash scripts/build.sh
echo "httptraced: writing to /var/log/httptraced/httptraced.json (tail -f it)"
exec build/userspace/httptraced --log_dir=/var/log/httptraced "$@"
