"""An HTTPS server on asyncio's TLS: ssl.SSLObject on memory BIOs, the
socket read and written by the event loop outside every libssl call.

    python3 py_asyncio_tls.py CERT KEY   -> prints its port
GET -> "path=<target>\\n"; POST -> "path=<target> got=<body bytes>\\n".
Keep-alive; Content-Length bodies only.
"""
import asyncio
import ssl
import sys


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            text = f"path={target} got={len(body)}\n" if method == "POST" else f"path={target}\n"
            out = text.encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(out) + out)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
