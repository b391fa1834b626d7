#!/usr/bin/env python3
"""A Python http.server-based test server (HTTP/1.1, keep-alive, threaded).

Prints its port on stdout once listening; with --unix PATH it listens on that
Unix domain socket instead ("@name": an abstract one) and prints the path.
With --tls CERT,KEY it speaks HTTPS (Python's ssl module: OpenSSL's libssl).
Endpoints:
  GET  /hello            -> 200 "hello world\n"
  GET  /path/<x>         -> 200 "path=/path/<x>\n" (pipelining checks)
  GET  /binary           -> 200, the 256 bytes 0x00..0xff
  GET  /big?n=N          -> 200, N bytes of 'b'
  GET  /slow?ms=N        -> 200 "slow\n" after N ms
  GET  /toclose?n=N      -> 200 with no Content-Length: N pattern bytes (64 KiB
                            writes), delimited by the close
  HEAD /hello            -> 200 with Content-Length: 12, no body
  POST /echo             -> 200, the request body back (Expect: 100-continue honoured),
                            with the request's Content-Encoding, if any
  POST /customResponse   -> {"size": N} -> {"answer": "<N random letters>"}
"""
import argparse
import functools
import json
import random
import socket
import string
import sys
import threading
import time
import os
import socketserver
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@functools.lru_cache(maxsize=95)
def pattern_block(k):
    """The k-th 64 KiB block of the /toclose body: printable, each block shifted."""
    return bytes(0x20 + (j * 7 + k) % 95 for j in range(1 << 16))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    server_version = "pyserver"
    sys_version = ""

    def log_message(self, *args):
        pass

    def _send(self, status, body, ctype="text/plain", head=False, encoding=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_HEAD(self):
        self._send(200, b"hello world\n", head=True)

    def do_GET(self):
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        if url.path == "/hello":
            self._send(200, b"hello world\n")
        elif url.path.startswith("/path/"):
            self._send(200, ("path=%s\n" % url.path).encode())
        elif url.path == "/binary":
            self._send(200, bytes(range(256)), "application/octet-stream")
        elif url.path == "/big":
            self._send(200, b"b" * int(q.get("n", ["0"])[0]))
        elif url.path == "/tid":
            # The handler thread's id: the one that read the request.
            self._send(200, ("%d\n" % threading.get_native_id()).encode())
        elif url.path == "/toclose":
            n = int(q.get("n", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            for at in range(0, n, 1 << 16):
                self.wfile.write(pattern_block((at >> 16) % 95)[:n - at])
            self.close_connection = True
        elif url.path == "/slow":
            time.sleep(int(q.get("ms", ["1000"])[0]) / 1000)
            self._send(200, b"slow\n")
        else:
            self._send(404, b"not found\n")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        url = urlsplit(self.path)
        if url.path == "/refuse":
            # Answered from the head alone, before the body is read (as
            # servers refuse an upload that is too large); then the body is
            # read and dropped, and the connection closed.
            self.send_response(413)
            self.send_header("Connection", "close")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.wfile.flush()
            self.rfile.read(n)
            self.close_connection = True
            return
        body = self.rfile.read(n)
        if url.path == "/echo":
            self._send(200, body, self.headers.get("Content-Type", "application/octet-stream"),
                       encoding=self.headers.get("Content-Encoding"))
        elif url.path == "/customResponse":
            try:
                size = int(json.loads(body)["size"])
            except (ValueError, KeyError, TypeError):
                self._send(400, b'{"error": "bad request"}', "application/json")
                return
            answer = "".join(random.choice(string.ascii_letters + string.digits) for _ in range(size))
            self._send(200, json.dumps({"answer": answer}).encode(), "application/json")
        else:
            self._send(404, b"not found\n")


class V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class UnixHandler(Handler):
    disable_nagle_algorithm = False  # no TCP_NODELAY on a Unix socket

    def address_string(self):
        return "unix"


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--unix", help="listen on this Unix socket path (@name: abstract)")
    ap.add_argument("--tls", help="CERT,KEY: serve HTTPS with this certificate and key")
    args = ap.parse_args()
    if args.unix:
        name = "\0" + args.unix[1:] if args.unix.startswith("@") else args.unix
        if not args.unix.startswith("@") and os.path.exists(name):
            os.unlink(name)
        srv = UnixServer(name, UnixHandler)
        print(args.unix, flush=True)
        srv.serve_forever()
        return
    cls = V6Server if ":" in args.host else ThreadingHTTPServer
    cls.daemon_threads = True
    srv = cls((args.host, args.port), Handler)
    if args.tls:
        import ssl
        cert, key = args.tls.split(",")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
