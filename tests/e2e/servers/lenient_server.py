#!/usr/bin/env python3
"""A lenient keep-alive HTTP/1.1 server on raw sockets, for hostile-traffic tests.

Prints its port. Every request head (up to a blank line) that starts with
"GET <target> HTTP/1.x" is answered with 200 and the body "path=<target>\n";
anything else (junk) is skipped silently and the connection stays open, so the
next valid request on the same connection is served. Requests with bodies are
not supported.
"""
import re
import socket
import sys
import threading

REQ = re.compile(rb"^GET (\S+) HTTP/1\.[01]\r\n")


def serve(conn):
    buf = b""
    with conn:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\r\n\r\n" in buf:
                head, buf = buf.split(b"\r\n\r\n", 1)
                # Junk may precede a request head: serve the last request line in it.
                starts = [m.start() for m in re.finditer(rb"GET \S+ HTTP/1\.[01]\r\n", head + b"\r\n")]
                if not starts:
                    continue
                m = REQ.match(head[starts[-1]:] + b"\r\n")
                body = b"path=" + m.group(1) + b"\n"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def main():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    print(srv.getsockname()[1], flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
