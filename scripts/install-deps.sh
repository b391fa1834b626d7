#!/usr/bin/env bash
# Installs what httptraced needs to build and to run its tests, from Debian's
# apt repositories only (Debian 12 "bookworm"). Run as root.
set -euo pipefail

BUILD_DEPS=(
  cmake make g++ pkg-config
  clang llvm libclang-rt-14-dev   # BPF objects (clang -target bpf), sanitizers, libFuzzer
  libbpf-dev bpftool libelf-dev zlib1g-dev libdeflate-dev libzstd-dev
  libbrotli-dev                   # decoding br bodies
  libabsl-dev nlohmann-json3-dev catch2
  libsystemd-dev                  # sd_notify (Type=notify)
)
TEST_DEPS=(
  python3 python3-pytest python3-jsonschema   # end-to-end harness and schema checks
  nginx-light nodejs curl                     # real servers and clients
  libnginx-mod-http-brotli-filter             # nginx answering with br bodies
  haproxy                                     # a proxy that forwards bodies with splice()
  procps iproute2 ca-certificates
  openssl                                     # certificates for the HTTPS tests
  wget gnutls-bin                             # a GnuTLS client and server (gnutls-serv)
  zstd                                        # reading rotated logs back (zstd -dc)
)
OPS_DEPS=(
  dpkg-dev lintian                            # the .deb: dpkg-buildflags, dpkg-shlibdeps, lintian
  systemd-container debootstrap debian-archive-keyring  # a booted Debian for the service test
  rsyslog                                     # the log-shipping test (its own instance)
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (apt-get)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${BUILD_DEPS[@]}" "${TEST_DEPS[@]}" \
  "${OPS_DEPS[@]}" >/dev/null
# Debian's nginx package starts a system nginx on port 80 where an init system
# runs; the tests start their own instances and need none.
if pgrep -x nginx >/dev/null && [ -f /run/nginx.pid ]; then
  nginx -s stop 2>/dev/null || true
fi
# Likewise haproxy (its default configuration listens nowhere).
if pgrep -x haproxy >/dev/null; then
  service haproxy stop >/dev/null 2>&1 || pkill -x haproxy || true
fi
echo "install-deps.sh: dependencies installed"
