#!/usr/bin/env python3
"""An inetd-style HTTP/1.1 server: for each connection it forks a child whose
standard input and output are the connection (dup2 onto fds 0 and 1, as
inetd and systemd socket units with Accept=yes start services); the child
reads requests from fd 0 and writes responses to fd 1 until the client
closes. Prints its port. Every response is 200 with the body "path=<path>".
"""
import os
import signal
import socket
import sys


def serve_child():
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            chunk = os.read(0, 4096)
            if not chunk:
                return
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        path = head.split(b" ")[1]
        body = b"path=" + path
        os.write(1, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def main():
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # no zombies
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    print(s.getsockname()[1], flush=True)
    while True:
        conn, _ = s.accept()
        if os.fork() == 0:
            s.close()
            os.dup2(conn.fileno(), 0)
            os.dup2(conn.fileno(), 1)
            conn.close()
            serve_child()
            os._exit(0)
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
