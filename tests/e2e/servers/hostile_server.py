#!/usr/bin/env python3
"""Small raw-socket servers for the hostile-traffic tests. Prints its port.

--mode scripted      reads one request head; answers GET /script/<name> with the
                     canned bytes SCRIPTS[name] (malformed framing on purpose), then
                     closes. Any other target: 200 "path=<target>\\n", keep-alive.
--mode server-first  on accept, writes a response nobody asked for, then serves
                     requests like `scripted`.
--mode connect       answers "CONNECT host:port" with 200 and then echoes every byte
                     (a tunnel: what follows is not HTTP any more).
--mode resp          a Redis-like RESP server: "+PONG\\r\\n" for each PING array.
--mode tls           answers each read with a TLS-like record (handshake bytes).
--mode echo          echoes raw bytes.
"""
import argparse
import re
import socket
import sys
import threading

SCRIPTS = {
    # Content-Length that is not a number, larger than anything, or two of them.
    "neg-cl": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\nConnection: close\r\n\r\nnegative",
    "huge-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n"
               b"Connection: close\r\n\r\nhuge",
    "two-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n"
              b"Connection: close\r\n\r\nfours",
    # Both: chunked wins (RFC 9112), the Content-Length is ignored.
    "cl-and-te": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n"
                 b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                 b"zz\r\nhello\r\n0\r\n\r\n",
    "huge-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                  b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
}
SERVER_FIRST = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n"
REQ = re.compile(rb"^(\S+) (\S+) HTTP/1\.[01]\r\n")


def ok(target):
    body = b"path=" + target + b"\n"
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def serve_http(conn, first=b""):
    """Keep-alive: canned answers for /script/<name>, 200 path=<target> otherwise."""
    buf = first
    while True:
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
        head, buf = buf.split(b"\r\n\r\n", 1)
        m = REQ.match(head + b"\r\n")
        if not m:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        target = m.group(2)
        if target.startswith(b"/script/"):
            conn.sendall(SCRIPTS[target[len(b"/script/"):].decode()])
            return
        conn.sendall(ok(target))


def handle(conn, mode):
    with conn:
        try:
            if mode == "scripted":
                serve_http(conn)
            elif mode == "server-first":
                conn.sendall(SERVER_FIRST)
                serve_http(conn)
            elif mode == "connect":
                buf = b""
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, rest = buf.split(b"\r\n\r\n", 1)
                if not head.startswith(b"CONNECT "):
                    return
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    conn.sendall(rest)
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)
            elif mode == "resp":
                buf = b""
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                    while b"PING\r\n" in buf:
                        buf = buf.split(b"PING\r\n", 1)[1]
                        conn.sendall(b"+PONG\r\n")
            elif mode == "tls":
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    # A handshake record header and an opaque body.
                    conn.sendall(b"\x16\x03\x03\x00\x31\x02\x00\x00\x2d\x03\x03" + bytes(44))
            elif mode == "echo":
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", required=True,
                    choices=["scripted", "server-first", "connect", "resp", "tls", "echo"])
    args = ap.parse_args()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    print(srv.getsockname()[1], flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn, args.mode), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
