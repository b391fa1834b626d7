#!/usr/bin/env python3
"""Writes the seed corpus of http_parser_fuzz into corpus/http_parser/.

Each seed is [flags][seed][payload] (see http_parser_fuzz.cc): real requests and
responses of every shape, each under a few flag combinations, named
seed-<shape>-<hash>, so re-running is idempotent. The same directory also holds
regression inputs (regress-*) and inputs found by fuzzing (bare hashes), kept
edge-minimal with:
  http_parser_fuzz -merge=1 -use_counters=0 MERGED corpus/http_parser NEW_FINDS
"""
import hashlib
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "http_parser")

REQ, RESP, BOTH = 0, 1, 2
MID, TINY, GAPS = 4, 8, 16
UNKNOWN, CLIENT, SERVER = 0, 1 << 5, 2 << 5

def crlf(s):
    return s.replace("\n", "\r\n").encode("latin-1")

REQUESTS = {
    "get": crlf("GET /index.html?q=1 HTTP/1.1\nHost: example.com\nUser-Agent: curl/8.0\nAccept: */*\n\n"),
    "post_cl": crlf("POST /api/v1/items HTTP/1.1\nHost: api\nContent-Type: application/json\nContent-Length: 17\n\n") + b'{"name":"widget"}',
    "chunked": crlf("POST /upload HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\n\n5;ext=1\nhello\n6\n world\n0\nX-Trailer: t\n\n"),
    "pipelined": crlf("GET /a HTTP/1.1\nHost: h\n\nHEAD /b HTTP/1.1\nHost: h\n\nDELETE /c HTTP/1.1\nHost: h\nContent-Length: 0\n\n"),
    "expect": crlf("PUT /big HTTP/1.1\nHost: h\nExpect: 100-continue\nContent-Length: 10\n\n") + b"0123456789",
    "upgrade": crlf("GET /ws HTTP/1.1\nHost: h\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n\n") + b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
    "connect": crlf("CONNECT db.internal:5432 HTTP/1.1\nHost: db.internal:5432\n\n") + b"\x16\x03\x01\x00\x05hello",
    "http10": crlf("GET / HTTP/1.0\n\n"),
    "folded": crlf("GET / HTTP/1.1\nX-Long: a\n  b\n\tc\nHost: h\n\n"),
    "lf_only": b"GET /lf HTTP/1.1\nHost: h\n\n",
    "bad_cl": crlf("POST /x HTTP/1.1\nContent-Length: 99999999999999999999999\n\nGET /next HTTP/1.1\n\n"),
    "cl_te": crlf("POST / HTTP/1.1\nContent-Length: 5\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n"),
}

RESPONSES = {
    "ok_cl": crlf("HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 5\n\n") + b"hello",
    "chunked": crlf("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\nA\n0123456789\n1a;x=y\nabcdefghijklmnopqrstuvwxyz\n0\nServer-Timing: db;dur=53\n\n"),
    "close": crlf("HTTP/1.0 200 OK\nServer: old\n\n") + b"body until close",
    "head_204_304": crlf("HTTP/1.1 200 OK\nContent-Length: 1000\n\nHTTP/1.1 204 No Content\n\nHTTP/1.1 304 Not Modified\nETag: \"x\"\n\n"),
    "continue": crlf("HTTP/1.1 100 Continue\n\nHTTP/1.1 103 Early Hints\nLink: </s.css>; rel=preload\n\nHTTP/1.1 201 Created\nContent-Length: 0\n\n"),
    "switching": crlf("HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\n\n") + b"\x81\x05hello",
    "connect_ok": crlf("HTTP/1.1 200 Connection established\n\n") + b"\x16\x03\x03\x00\x02\x01\x00",
    "no_reason": crlf("HTTP/1.1 404\nContent-Length: 0\n\nHTTP/1.1 200 \nContent-Length: 2\n\nok"),
    "glued": b'...tail of a body"}' + crlf("HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
}

EXCHANGES = {
    "server_exchange": REQUESTS["get"] + RESPONSES["ok_cl"],
    "server_pipelined": REQUESTS["pipelined"] + crlf("HTTP/1.1 200 OK\nContent-Length: 1\n\naHTTP/1.1 200 OK\nContent-Length: 9\n\nHTTP/1.1 204 No Content\n\n"),
    "expect_flow": REQUESTS["expect"] + RESPONSES["continue"],
}

GARBAGE = {
    "tls": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)),
    "h2_preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00",
    "smtp_banner": b"220 mail.example.com ESMTP Postfix\r\n",
    "binary_then_http": bytes(range(256)) + REQUESTS["get"],
    "endless_head": b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 300,
    "bad_chunk": crlf("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\nzz\nHTTP/1.1 201 Created\nContent-Length: 0\n\n"),
}


def seeds():
    for name, payload in REQUESTS.items():
        for flags in (REQ | SERVER, REQ | GAPS | CLIENT, BOTH | MID, REQ | TINY):
            yield name, flags, payload
    for name, payload in RESPONSES.items():
        for flags in (RESP | CLIENT, RESP | GAPS | SERVER, BOTH | MID, RESP | TINY | GAPS):
            yield name, flags, payload
    for name, payload in EXCHANGES.items():
        for flags in (BOTH | SERVER, BOTH | GAPS | UNKNOWN, BOTH | MID | TINY):
            yield name, flags, payload
    for name, payload in GARBAGE.items():
        for flags in (REQ | SERVER, RESP | CLIENT, BOTH | MID | GAPS):
            yield name, flags, payload


def main():
    os.makedirs(OUT, exist_ok=True)
    n = 0
    for i, (name, flags, payload) in enumerate(seeds()):
        data = bytes([flags, (i * 37) & 0xFF]) + payload
        path = os.path.join(OUT, "seed-" + name + "-" + hashlib.sha1(data).hexdigest()[:12])
        with open(path, "wb") as f:
            f.write(data)
        n += 1
    print("wrote", n, "seeds to", OUT)


if __name__ == "__main__":
    main()
