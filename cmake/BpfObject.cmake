# bpf_object(NAME <name> SOURCE <file.bpf.c> [DEPENDS headers...])
#
# Compiles one CO-RE BPF object with clang (-target bpf) against the checked-in
# vmlinux.h (never the build host's kernel), then wraps it with
# `bpftool gen skeleton` into <name>.skel.h (struct <name>_bpf). The result is an INTERFACE target
# `<name>_skel` that userspace links to get the skeleton header on its include path.

find_program(BPF_CLANG NAMES clang-14 clang REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|amd64")
  set(BPF_TARGET_ARCH x86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(BPF_TARGET_ARCH arm64)
else()
  message(FATAL_ERROR "httptraced: no vmlinux.h for ${CMAKE_SYSTEM_PROCESSOR}")
endif()
set(BPF_VMLINUX_DIR ${PROJECT_SOURCE_DIR}/vmlinux/${BPF_TARGET_ARCH})
if(NOT EXISTS ${BPF_VMLINUX_DIR}/vmlinux.h)
  message(FATAL_ERROR "httptraced: ${BPF_VMLINUX_DIR}/vmlinux.h is missing (see vmlinux/README.md)")
endif()

function(bpf_object)
  cmake_parse_arguments(B "" "NAME;SOURCE" "DEPENDS" ${ARGN})
  set(obj ${CMAKE_CURRENT_BINARY_DIR}/${B_NAME}.bpf.o)
  set(skel ${CMAKE_CURRENT_BINARY_DIR}/${B_NAME}.skel.h)
  get_filename_component(src ${B_SOURCE} ABSOLUTE)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${BPF_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_${BPF_TARGET_ARCH}
            -Wall -Werror -Wno-unused-function
            -I${BPF_VMLINUX_DIR} -I${CMAKE_CURRENT_SOURCE_DIR}
            -c ${src} -o ${obj}
    DEPENDS ${src} ${B_DEPENDS} ${BPF_VMLINUX_DIR}/vmlinux.h
    COMMENT "BPF ${B_NAME}.bpf.o"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${BPFTOOL} gen skeleton ${obj} name ${B_NAME}_bpf > ${skel}
    DEPENDS ${obj}
    COMMENT "skeleton ${B_NAME}.skel.h"
    VERBATIM)
  add_custom_target(${B_NAME}_skel_gen DEPENDS ${skel})
  add_library(${B_NAME}_skel INTERFACE)
  add_dependencies(${B_NAME}_skel ${B_NAME}_skel_gen)
  # SYSTEM: the generated skeleton is not held to our warning flags (it embeds
  # the object as one long string literal).
  target_include_directories(${B_NAME}_skel SYSTEM INTERFACE ${CMAKE_CURRENT_BINARY_DIR})
  target_include_directories(${B_NAME}_skel INTERFACE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${B_NAME}_skel INTERFACE PkgConfig::LIBBPF)
endfunction()
