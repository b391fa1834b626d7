#!/usr/bin/env bash
# Builds the Debian package with CPack, as Debian builds packages: the
# hardening flags of dpkg-buildflags, CMAKE_BUILD_TYPE=None, stripped binary.
# Then checks that the conffile and the man page document every flag with its
# default, and runs lintian (fails on any error or warning that is neither
# fixed nor overridden with a reason in packaging/lintian-overrides).
#   bash packaging/build-deb.sh     -> build-deb/httptraced_<version>_amd64.deb
# Prints the .deb's path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${DEB_BUILD_DIR:-build-deb}

export DEB_BUILD_MAINT_OPTIONS=hardening=+all
CFLAGS="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
CXXFLAGS="$(dpkg-buildflags --get CXXFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
LDFLAGS="$(dpkg-buildflags --get LDFLAGS)"
# CMAKE_SKIP_INSTALL_ALL_DEPENDENCY: cpack's install step builds only what is
# installed (not the unit tests); HTTPTRACED_WERROR=OFF: a distribution build
# does not fail on a new compiler's warnings (CI's own build keeps -Werror).
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=None -DHTTPTRACED_WERROR=OFF \
  -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON \
  -DCMAKE_C_FLAGS="$CFLAGS" -DCMAKE_CXX_FLAGS="$CXXFLAGS" \
  -DCMAKE_EXE_LINKER_FLAGS="$LDFLAGS" >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target httptraced httptraced_package_files

/usr/bin/python3 packaging/check-docs.py "$BUILD_DIR/userspace/httptraced" \
  packaging/httptraced.conf packaging/httptraced.8

rm -f "$BUILD_DIR"/httptraced_*.deb
(cd "$BUILD_DIR" && cpack -G DEB >/dev/null)
deb=$(ls "$BUILD_DIR"/httptraced_*_amd64.deb)

echo "== lintian $deb"
# --fail-on error,warning: every warning is fixed or overridden with a reason.
lintian --fail-on error,warning --info --display-info --pedantic "$deb"
echo "lintian: no errors, no warnings"
echo "$deb"
