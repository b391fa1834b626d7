# Debian package (and, where rpmbuild is installed, an RPM) with CPack.
# Included from the top-level CMakeLists.txt; packaging/build-deb.sh is the
# way to build it (Debian's hardening flags, strip, lintian):
#   bash packaging/build-deb.sh        -> build-deb/httptraced_<version>_amd64.deb
#
# Layout of the package (the binary's own rule is in userspace/CMakeLists.txt):
#   /usr/sbin/httptraced
#   /lib/systemd/system/httptraced.service
#   /usr/lib/sysusers.d/httptraced.conf       the httptraced system user
#   /etc/httptraced/httptraced.conf           conffile, a --flagfile
#   /usr/share/man/man8/httptraced.8.gz
#   /usr/share/doc/httptraced/{README.md,systemd.md,shipping.md}.gz, copyright, changelog.gz
set(_pkg ${PROJECT_SOURCE_DIR}/packaging)
set(_gen ${PROJECT_BINARY_DIR}/packaging)
set(HTTPTRACED_MAINTAINER "httptraced maintainers <maintainers@users.noreply.r-seed-42e29af4.example>"
    CACHE STRING "Maintainer field of the packages")

# Debian wants man pages and docs gzip-compressed with -9n (no name, no time:
# reproducible). The copyright file stays plain.
find_program(GZIP_EXECUTABLE gzip REQUIRED)
set(_compressed)
foreach(pair
    "${_pkg}/httptraced.8|httptraced.8.gz"
    "${_pkg}/changelog|changelog.gz"
    "${PROJECT_SOURCE_DIR}/README.md|README.md.gz"
    "${PROJECT_SOURCE_DIR}/docs/systemd.md|systemd.md.gz"
    "${PROJECT_SOURCE_DIR}/docs/shipping.md|shipping.md.gz")
  string(REPLACE "|" ";" pair "${pair}")
  list(GET pair 0 src)
  list(GET pair 1 out)
  add_custom_command(OUTPUT ${_gen}/${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${_gen}
    COMMAND ${GZIP_EXECUTABLE} -9n -c ${src} > ${_gen}/${out}
    DEPENDS ${src}
    VERBATIM)
  list(APPEND _compressed ${_gen}/${out})
endforeach()
add_custom_target(httptraced_package_files ALL DEPENDS ${_compressed})

# The binary is installed by userspace/CMakeLists.txt (earlier, CMP0082); Debian
# strips .comment as well as the symbols (CPACK_STRIP_FILES below).
find_program(OBJCOPY_EXECUTABLE objcopy REQUIRED)
install(CODE "execute_process(COMMAND ${OBJCOPY_EXECUTABLE} --remove-section=.comment
  \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/sbin/httptraced\" COMMAND_ERROR_IS_FATAL ANY)")
install(FILES ${PROJECT_SOURCE_DIR}/systemd/httptraced.service
        DESTINATION /lib/systemd/system PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${_pkg}/sysusers.conf RENAME httptraced.conf
        DESTINATION /usr/lib/sysusers.d PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${_pkg}/httptraced.conf
        DESTINATION /etc/httptraced PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${_gen}/httptraced.8.gz
        DESTINATION share/man/man8 PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${_gen}/changelog.gz ${_gen}/README.md.gz ${_gen}/systemd.md.gz
              ${_gen}/shipping.md.gz ${_pkg}/copyright
        DESTINATION share/doc/httptraced PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${_pkg}/lintian-overrides RENAME httptraced
        DESTINATION share/lintian/overrides PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)

set(CPACK_PACKAGE_NAME httptraced)
set(CPACK_PACKAGE_VENDOR "httptraced")
set(CPACK_PACKAGE_CONTACT "${HTTPTRACED_MAINTAINER}")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "records every HTTP/1.x exchange on the host as JSON (eBPF)")
set(CPACK_PACKAGE_DESCRIPTION [=[
httptraced loads CO-RE eBPF programs on syscall tracepoints, reassembles the
byte streams of every TCP connection on the host, parses HTTP/1.0 and 1.1 and
writes each request/response exchange (headers, bodies, timing, process and
addresses) as one JSON line with Elastic Common Schema field names to a
rotating log in /var/log/httptraced, ready for Filebeat, Fluent Bit, Vector
or rsyslog. It sees servers and clients in any language without touching
them, as long as the bytes pass through read/write-family syscalls
unencrypted.

The service is installed disabled: records carry request and response
bodies. Review /etc/httptraced/httptraced.conf, then enable it with:
systemctl enable --now httptraced]=])
set(CPACK_STRIP_FILES TRUE)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_SOURCE_IGNORE_FILES "/build.*/;/\\\\.git/")

set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)            # httptraced_<version>_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)             # dpkg-shlibdeps: libbpf1, libabsl, ...
# systemd-sysusers creates the user in postinst.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd | systemd-sysusers")
# zstd(1) reads the rotated logs (.json.zst); the daemon itself needs only libzstd1.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "zstd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${_pkg}/debian/conffiles ${_pkg}/debian/postinst ${_pkg}/debian/prerm ${_pkg}/debian/postrm)

include(CPack)
