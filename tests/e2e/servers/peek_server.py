"""An HTTP/1.1 server that looks at its input before taking it, as servers that
sniff a protocol do (Envoy's http_inspector and tls_inspector, TLS-or-HTTP
listeners): for each request it peeks (MSG_PEEK) at the bytes waiting, more
each time, until it sees the end of the head, takes exactly the head, then the
body. Prints its port, serves keep-alive connections one at a time.

    peek_server.py recv|recvmsg [trunc]

recv / recvmsg: how it peeks (recv(2) is the recvfrom syscall). trunc: the
body is discarded with recv(MSG_TRUNC), which on TCP consumes the bytes
without copying them. Every response is 200 with the body "n=<body length>".
"""
import socket
import sys

peek_with = sys.argv[1]
discard = len(sys.argv) > 2 and sys.argv[2] == "trunc"


def peek(c, n):
    if peek_with == "recvmsg":
        return c.recvmsg(n, 0, socket.MSG_PEEK)[0]
    return c.recv(n, socket.MSG_PEEK)


def serve(c):
    while True:
        want = 16
        while True:
            seen = peek(c, want)
            if not seen:
                return
            end = seen.find(b"\r\n\r\n")
            if end >= 0:
                break
            want = len(seen) + 16
        head = b""
        while len(head) < end + 4:
            head += c.recv(end + 4 - len(head))
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        left = length
        while left > 0:
            got = c.recv(left, socket.MSG_TRUNC) if discard else c.recv(left)
            n = got if isinstance(got, int) else len(got)
            if n == 0:
                return
            left -= n
        body = b"n=%d" % length
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
while True:
    conn, _ = s.accept()
    with conn:
        serve(conn)
