"""An HTTP/1.1 server that looks at its input before taking it, as servers that
sniff a protocol do (Envoy's http_inspector and tls_inspector, TLS-or-HTTP
listeners): for each request it peeks (MSG_PEEK) at the bytes waiting, more
each time, until it sees the end of the head, takes exactly the head, then the
body. Prints its port, serves keep-alive connections one at a time.

    peek_server.py recv|recvmsg|none [trunc|splice] [unix:PATH]

recv / recvmsg: how it peeks (recv(2) is the recvfrom syscall); none: it
does not, and takes the head a byte at a time instead. trunc: the body is
discarded with recv(MSG_TRUNC), which on TCP consumes the bytes without
copying them. splice: the request body goes from the socket into a pipe, and
the response body from a pipe into the socket, with splice(2), as proxies
forward bodies. Every response is 200 with the body "n=<body length>".
unix:PATH: listen on that Unix domain socket instead (and print PATH), where
MSG_TRUNC is ignored on a stream socket: the bytes are copied.
"""
import os
import socket
import sys

peek_with = sys.argv[1]
body_with = sys.argv[2] if len(sys.argv) > 2 else "recv"
unix_path = sys.argv[3][len("unix:"):] if len(sys.argv) > 3 else None


def peek(c, n):
    if peek_with == "recvmsg":
        return c.recvmsg(n, 0, socket.MSG_PEEK)[0]
    return c.recv(n, socket.MSG_PEEK)


def peek_head(c):
    """Peeks until the head's end is in sight, then takes exactly the head."""
    want = 16
    while True:
        seen = peek(c, want)
        if not seen:
            return None
        end = seen.find(b"\r\n\r\n")
        if end >= 0:
            break
        want = len(seen) + 16
    head = b""
    while len(head) < end + 4:
        head += c.recv(end + 4 - len(head))
    return head


def read_head(c):
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = c.recv(1)
        if not byte:
            return None
        head += byte
    return head


def serve(c, pipe_r, pipe_w):
    while True:
        head = read_head(c) if peek_with == "none" else peek_head(c)
        if head is None:
            return
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        left = length
        while left > 0:
            if body_with == "splice":
                n = os.splice(c.fileno(), pipe_w, left)
                os.read(pipe_r, n)
            else:
                n = len(c.recv(left, socket.MSG_TRUNC if body_with == "trunc" else 0))
            if n == 0:
                return
            left -= n
        body = b"n=%d" % length
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
        if body_with == "splice":
            c.sendall(head)
            os.write(pipe_w, body)
            os.splice(pipe_r, c.fileno(), len(body))
        else:
            c.sendall(head + body)


pipe_r, pipe_w = os.pipe()
if unix_path:
    s = socket.socket(socket.AF_UNIX)
    s.bind(unix_path)
    s.listen()
    print(unix_path, flush=True)
else:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    print(s.getsockname()[1], flush=True)
while True:
    conn, _ = s.accept()
    with conn:
        serve(conn, pipe_r, pipe_w)
