#!/usr/bin/env python3
"""Holds many keep-alive HTTP/1.1 connections open, for the load tests.

  hold_client.py PORT FIRST COUNT

Opens COUNT connections to 127.0.0.1:PORT, sends GET /p/c1-<i> on each
(i = FIRST .. FIRST+COUNT-1), checks each answer ends with "path=/p/c1-<i>\\n",
prints "ready" and holds them. On a line "again" from stdin it sends
GET /p/c2-<i> on every connection, checks the answers, prints "done"; on end of
input it closes them all and exits 0. Any failure exits 1 with a message.
"""
import resource
import socket
import sys


def ask(s, path):
    s.sendall(b"GET %s HTTP/1.1\r\nHost: c\r\n\r\n" % path.encode())
    want = b"path=%s\n" % path.encode()
    got = b""
    while not got.endswith(want):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit(f"hold_client: connection for {path} closed early: {got[-200:]!r}")
        got += chunk


def main():
    port, first, count = (int(a) for a in sys.argv[1:4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))
    socks = []
    for i in range(first, first + count):
        s = socket.create_connection(("127.0.0.1", port))
        socks.append(s)
        ask(s, f"/p/c1-{i}")
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "again":
            for i, s in enumerate(socks):
                ask(s, f"/p/c2-{first + i}")
            print("done", flush=True)
    for s in socks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
