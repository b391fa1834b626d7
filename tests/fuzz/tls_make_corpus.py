#!/usr/bin/env python3
"""Writes two minimal x86-64 ELF shared objects that look like libssl to
FindTlsProbes (dynamic symbols and code, nothing runnable), as the seeds of the
tls_probes fuzz target and the fixtures of its unit tests:

  shared.so  SSL_read and SSL_read_ex both call one function that starts with
             push %r14; SSL_write and SSL_write_ex one that starts with
             endbr64; push %rbx. Expected probes: the two callees (offsets
             0x100 and 0x114) and SSL_do_handshake.
  plain.so   the _ex functions call nothing: the public functions are probed.

Usage: tls_make_corpus.py OUT_DIR
"""
import struct
import sys
from pathlib import Path

TEXT = 0x100  # .text's file offset and address (the same: offsets are addresses)


def call(at, target):
    return b"\xe8" + struct.pack("<i", target - (at + 5))


def code(shared):
    out = bytearray(0xe0)

    def put(at, b):
        out[at - TEXT:at - TEXT + len(b)] = b

    put(0x100, b"\x41\x56\x41\x55\xc3")              # read callee: push %r14; push %r13; ret
    put(0x110, b"\xf3\x0f\x1e\xfa\x53\xc3")          # write callee: endbr64; push %rbx; ret
    put(0x120, b"\x48\x83\xec\x18" + call(0x124, 0x100) + b"\x48\x83\xc4\x18\xc3")  # SSL_read
    put(0x160, b"\x48\x83\xec\x18" + call(0x164, 0x110) + b"\x48\x83\xc4\x18\xc3")  # SSL_write
    if shared:
        put(0x140, b"\x48\x83\xec\x08" + call(0x144, 0x100) + b"\x48\x83\xc4\x08\xc3")
        put(0x180, b"\x48\x83\xec\x08" + call(0x184, 0x110) + b"\x48\x83\xc4\x08\xc3")
    else:
        put(0x140, b"\x48\x83\xec\x08\x31\xc0\x48\x83\xc4\x08\xc3")
        put(0x180, b"\x48\x83\xec\x08\x31\xc0\x48\x83\xc4\x08\xc3")
    put(0x1a0, b"\x53\x5b\xc3")                      # SSL_do_handshake
    return bytes(out)


FUNCS = [("SSL_read", 0x120, 16), ("SSL_read_ex", 0x140, 16), ("SSL_write", 0x160, 16),
         ("SSL_write_ex", 0x180, 16), ("SSL_do_handshake", 0x1a0, 3)]


def elf(shared):
    text = code(shared)
    dynstr = b"\0" + b"".join(n.encode() + b"\0" for n, _, _ in FUNCS)
    syms = [b"\0" * 24]
    name_off = 1
    for name, addr, size in FUNCS:
        # st_name, st_info (GLOBAL FUNC), st_other, st_shndx (.text = 1), value, size
        syms.append(struct.pack("<IBBHQQ", name_off, 0x12, 0, 1, addr, size))
        name_off += len(name) + 1
    dynsym = b"".join(syms)
    shstrtab = b"\0.text\0.dynsym\0.dynstr\0.shstrtab\0"
    layout = [(".text", text), (".dynsym", dynsym), (".dynstr", dynstr),
              (".shstrtab", shstrtab)]
    body = bytearray(b"\0" * TEXT)
    offsets = {}
    for name, data in layout:
        while len(body) % 8:
            body.append(0)
        offsets[name] = len(body)
        body += data
    while len(body) % 8:
        body.append(0)
    shoff = len(body)

    def shdr(name, type_, flags, addr, off, size, link=0, info=0, align=1, entsize=0):
        return struct.pack("<IIQQQQIIQQ", shstrtab.index(name.encode() + b"\0"), type_, flags,
                           addr, off, size, link, info, align, entsize)

    sh = [b"\0" * 64,
          shdr(".text", 1, 6, TEXT, offsets[".text"], len(text), align=16),
          shdr(".dynsym", 11, 2, 0, offsets[".dynsym"], len(dynsym), link=3, info=1,
               align=8, entsize=24),
          shdr(".dynstr", 3, 2, 0, offsets[".dynstr"], len(dynstr)),
          shdr(".shstrtab", 3, 0, 0, offsets[".shstrtab"], len(shstrtab))]
    header = (b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8 +
              struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, shoff, 0, 64, 56, 0, 64, len(sh), 4))
    body[:64] = header
    return bytes(body) + b"".join(sh)


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    (out / "shared.so").write_bytes(elf(True))
    (out / "plain.so").write_bytes(elf(False))


if __name__ == "__main__":
    main()
