"""Hostile and odd traffic, end to end: the real daemon against real servers.

Whatever arrives — junk, oversize heads, lying framing, a byte at a time, answers
nobody asked for, tunnels, other protocols — the daemon stays up, bounded and
quiet where it should be, and the next valid exchange is recorded exactly.
"""
import os
import random
import socket
import time

import pytest

from conftest import (Daemon, assert_no_sanitizer_report, curl, final_stats, next_stats,
                      raw_exchange, server_port)


@pytest.fixture(scope="module")
def hd(tmp_path_factory, py_server, lenient_server, echo_nginx, servers):
    """One daemon for this module, filtered to its servers' ports (so that
    nothing else on the host reaches its log), heads capped at 1 KiB."""
    ports = [py_server.port, lenient_server.port, echo_nginx.port] + [
        servers.hostile(m).port for m in ("scripted", "server-first", "connect")]
    d = Daemon(tmp_path_factory.mktemp("hostile") / "logs", "--max_header_bytes=1024",
               "--port=" + ",".join(map(str, ports))).start()
    yield d
    rc = d.stop()
    assert rc == 0, f"httptraced exited {rc}:\n{d.stderr()}"
    assert_no_sanitizer_report(d)


def by_port(daemon, port, role="server"):
    return [r for r in daemon.records()
            if server_port(r) == port and r["httptraced"]["role"] == role]


def text_body(text):
    return {"bytes": len(text.encode()), "content": text}


def one(daemon, pred, timeout=8.0):
    found = daemon.wait_for(pred, 1, timeout)
    assert len(found) == 1, f"expected exactly one record, got {len(found)}: {found}"
    return found[0]


def at(port, original, role="server"):
    return lambda r: (server_port(r) == port and r["httptraced"]["role"] == role and
                      r.get("url", {}).get("original") == original)


def assert_next_get_exact(daemon, server, path, via_curl=True):
    """After something hostile: the daemon is alive and a plain GET on a new
    connection is recorded exactly (py_server's /path/<x> echoes the path)."""
    assert daemon.proc.poll() is None, daemon.stderr()
    out, curl_pid = curl(server.url(path), "-H", "User-Agent: hostile-check/1")
    body = f"path={path}\n"
    assert out == body.encode()
    for role, pid in (("server", server.pid), ("client", curl_pid)):
        r = one(daemon, at(server.port, path, role))
        assert r["process"]["pid"] == pid
        assert r["http"]["request"]["method"] == "GET"
        assert r["http"]["request"]["headers"]["user-agent"] == "hostile-check/1"
        assert r["http"]["request"]["body"] == {"bytes": 0}
        assert r["http"]["response"]["status_code"] == 200
        assert r["http"]["response"]["body"] == {"bytes": len(body), "content": body}
        assert r["url"]["path"] == path
        assert r["httptraced"]["connection"]["seq"] == 0
        assert r["httptraced"]["incomplete"] is False
        assert "request" not in r["httptraced"] and "response" not in r["httptraced"]
        assert r["event"]["outcome"] == "success"


def drain(sock, timeout=2.0):
    sock.settimeout(timeout)
    got = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    return got


# ---------------------------------------------------------------------------
# Junk and other protocols.

def test_non_http_protocols_cost_nothing_and_are_not_recorded(tmp_path, servers):
    """TLS, Redis RESP, raw binary and junk sent to an HTTP port: the kernel
    classifies every socket as not HTTP (2 per connection: both ends are
    traced), nothing crosses the ring buffer, no record is written. Then a
    valid exchange on a port in the same filter is recorded exactly."""
    tls, resp, echo = servers.hostile("tls"), servers.hostile("resp"), servers.hostile("echo")
    http = servers.hostile("scripted")
    # --pid too: with no pid filter, any process that exits on the host sends
    # an event (a busy CI machine's did), and this test counts every event.
    pids = (os.getpid(), tls.pid, resp.pid, echo.pid, http.pid)
    d = Daemon(tmp_path / "logs", "--pid=" + ",".join(map(str, pids)),
               f"--port={tls.port},{resp.port},{echo.port},{http.port}").start()
    rng = random.Random(5)
    client_hello = (b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03" + bytes(rng.randrange(256)
                    for _ in range(32)) + b"\x00\x00\x02\x13\x01\x01\x00\x00\x99\x00\x00")
    junk = bytes([0]) + bytes(rng.randrange(256) for _ in range(3000))
    conversations = {
        # Each socket makes at least 4 payload syscalls: the kernel's inference
        # gives a fresh connection 4 chances to start like HTTP/1.x.
        tls.port: [client_hello] * 4,
        resp.port: [b"*1\r\n$4\r\nPING\r\n"] * 4,
        echo.port: [junk[i:i + 750] for i in range(0, 3000, 750)],
    }
    connections = 0
    try:
        for port, messages in conversations.items():
            for _ in range(3):
                with socket.create_connection(("127.0.0.1", port)) as s:
                    for m in messages:
                        s.sendall(m)
                        assert s.recv(65536)  # each server answers every message
                connections += 1
        # Junk on the HTTP port: the server skips it silently; the reads are
        # separate because the writes are spaced.
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", http.port)) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for i in range(4):
                    s.sendall(junk[i * 10:(i + 1) * 10] + b"\xff")
                    time.sleep(0.05)
            connections += 1
        time.sleep(0.3)
        before = next_stats(d)
        assert (before["events"], before["bytes"], before["records"]) == (0, 0, 0), before
        assert before["not_http"] == 2 * connections == 24, before
        assert before["opened"] == 0 and before["decode_errors"] == 0, before

        got, _ = raw_exchange(http.port, b"GET /after-protocols HTTP/1.1\r\nHost: n\r\n\r\n",
                              until=b"path=/after-protocols\n")
        assert got.endswith(b"\r\n\r\npath=/after-protocols\n")
        r = one(d, at(http.port, "/after-protocols"))
        assert r["http"]["request"]["headers"] == {"host": "n"}
        assert r["http"]["response"]["body"] == text_body("path=/after-protocols\n")
        assert r["httptraced"]["incomplete"] is False
    finally:
        assert d.stop() == 0, d.stderr()
    assert_no_sanitizer_report(d)
    end = final_stats(d)
    assert end["not_http"] == 24 and end["records"] == 2 and end["lost"] == 0, end
    assert {server_port(r) for r in d.records()} == {http.port}


def test_garbage_on_http_ports_then_exact(hd, py_server, lenient_server):
    """Junk of every kind at the start of connections to two HTTP servers (one
    answers 400, one stays silent): no record for any of them."""
    rng = random.Random(7)
    samples = [
        b"\x00",
        b"\r\n\r\n\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2 prior knowledge
        bytes(rng.randrange(256) for _ in range(100_000)),
        b"GET\x00/ HTTP/1.1\r\n\r\n",
        b"GET " + bytes(rng.randrange(1, 32) for _ in range(200_000)),  # starts like HTTP
    ]
    ports = {py_server.port: set(), lenient_server.port: set()}
    for port in ports:
        for junk in samples:
            _, local = raw_exchange(port, junk, timeout=1.0)
            ports[port].add(local)
    assert_next_get_exact(hd, py_server, "/path/after-garbage-kinds")
    for port, locals_ in ports.items():
        assert not [r for r in hd.records()
                    if server_port(r) == port and r["client"]["port"] in locals_]


def test_garbage_between_requests_resynchronises(hd, lenient_server):
    """1 MiB of random bytes between two requests on one keep-alive connection:
    the second request is recorded exactly, marked as following lost bytes."""
    rng = random.Random(11)
    junk = bytes(rng.randrange(256) for _ in range(1 << 20)).replace(b"\r\n\r\n", b"\r\n..")
    with socket.create_connection(("127.0.0.1", lenient_server.port)) as s:
        s.sendall(b"GET /l/before-mib HTTP/1.1\r\nHost: l\r\n\r\n")
        assert s.recv(4096).endswith(b"path=/l/before-mib\n")
        s.sendall(junk + b"\r\n\r\n")
        time.sleep(0.2)
        s.sendall(b"GET /l/after-mib HTTP/1.1\r\nHost: l\r\n\r\n")
        got = b""
        while b"path=/l/after-mib\n" not in got:
            got += s.recv(4096)
    first = one(hd, at(lenient_server.port, "/l/before-mib"))
    r = one(hd, at(lenient_server.port, "/l/after-mib"))
    assert r["httptraced"]["connection"]["id"] == first["httptraced"]["connection"]["id"]
    assert r["httptraced"]["connection"]["seq"] == 1
    assert r["http"]["request"]["headers"] == {"host": "l"}
    assert r["http"]["response"]["body"] == text_body("path=/l/after-mib\n")
    assert r["httptraced"]["request"] == {"gap_before": True}
    assert r["httptraced"]["incomplete"] is False
    assert hd.proc.poll() is None


# ---------------------------------------------------------------------------
# Oversize heads.

def test_oversize_headers_are_capped_and_marked(hd, lenient_server):
    """--max_header_bytes=1024: a 3 KB head keeps what fits and says
    headers_truncated; a 20 KB head (past 8x the cap, where the parser stops
    scanning) is cut short and marked incomplete; the next request on the same
    connection is recorded exactly."""
    port = lenient_server.port
    with socket.create_connection(("127.0.0.1", port)) as s:
        for target, pad in (("/l/big-head", 3000), ("/l/huge-head", 20000),
                            ("/l/after-heads", 0)):
            extra = b"X-Big: " + b"a" * pad + b"\r\nX-After: 1\r\n" if pad else b""
            s.sendall(b"GET %s HTTP/1.1\r\nHost: l\r\n%s\r\n" % (target.encode(), extra))
            want = b"path=%s\n" % target.encode()
            got = b""
            while want not in got:
                got += s.recv(65536)
    big = one(hd, at(port, "/l/big-head"))
    huge = one(hd, at(port, "/l/huge-head"))
    after = one(hd, at(port, "/l/after-heads"))
    assert big["http"]["request"]["headers"] == {"host": "l"}
    assert big["httptraced"]["request"] == {"headers_truncated": True}
    assert big["httptraced"]["incomplete"] is False
    assert big["http"]["response"]["body"] == text_body("path=/l/big-head\n")
    assert huge["http"]["request"]["headers"] == {"host": "l"}
    assert huge["httptraced"]["request"] == {"headers_truncated": True, "incomplete": True}
    assert huge["httptraced"]["incomplete"] is True
    assert huge["http"]["response"]["status_code"] == 200
    assert huge["http"]["response"]["body"] == text_body("path=/l/huge-head\n")
    assert after["httptraced"]["connection"]["seq"] == 2
    assert after["httptraced"]["connection"]["id"] == big["httptraced"]["connection"]["id"]
    assert after["http"]["request"]["headers"] == {"host": "l"}
    assert after["http"]["response"]["body"] == text_body("path=/l/after-heads\n")
    assert after["httptraced"]["incomplete"] is False
    # The parser gave up scanning the huge head: what follows is after skipped bytes.
    assert after["httptraced"]["request"] == {"gap_before": True}


def test_oversize_request_line_is_recorded_truncated(hd, lenient_server):
    """A request line longer than --max_header_bytes must not make the
    connection invisible: the exchange is recorded with its head marked
    truncated, and so is the next request on the connection."""
    port = lenient_server.port
    long_target = "/l/" + "L" * 3000
    with socket.create_connection(("127.0.0.1", port)) as s:
        for target in (long_target, "/l/after-long-line"):
            s.sendall(b"GET %s HTTP/1.1\r\nHost: l\r\n\r\n" % target.encode())
            want = b"path=%s\n" % target.encode()
            got = b""
            while want not in got:
                got += s.recv(65536)
    # 1023-byte window: the target keeps 1023 // 2 - len("GET") - 10 = 498 bytes.
    cut = long_target[:498]
    for role in ("server", "client"):
        long_ = one(hd, at(port, cut, role))
        assert long_["http"]["request"]["headers"] == {"host": "l"}
        assert long_["httptraced"]["request"] == {"headers_truncated": True}
        assert long_["http"]["response"]["body"] == text_body(f"path={long_target}\n")
        assert long_["httptraced"]["incomplete"] is False
        after = one(hd, at(port, "/l/after-long-line", role))
        assert after["httptraced"]["connection"]["id"] == long_["httptraced"]["connection"]["id"]
        assert after["httptraced"]["connection"]["seq"] == 1
        assert after["http"]["response"]["body"] == text_body("path=/l/after-long-line\n")
        assert "request" not in after["httptraced"]


# ---------------------------------------------------------------------------
# Lying framing.

@pytest.mark.parametrize("name,request_bytes,status", [
    ("neg-cl", b"Content-Length: -1\r\n\r\n", 400),
    ("huge-cl", b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
    ("two-cl", b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("cl-and-te", b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    ("bad-chunk", b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    ("te-not-chunked", b"Transfer-Encoding: gzip\r\n\r\nabc", 501),
])
def test_requests_with_lying_framing(hd, echo_nginx, py_server, name, request_bytes, status):
    """nginx refuses each of these requests and closes; the record holds the
    request head, marked, paired with nginx's exact refusal."""
    path = f"/p/{name}"
    got, local = raw_exchange(echo_nginx.port,
                              b"POST %s HTTP/1.1\r\nHost: n\r\n%s" % (path.encode(), request_bytes))
    head, body = got.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 %d " % status)
    r = one(hd, at(echo_nginx.port, path))
    assert r["client"]["port"] == local
    assert r["http"]["request"]["method"] == "POST"
    assert r["http"]["request"]["headers"]["host"] == "n"
    assert r["http"]["response"]["status_code"] == status
    assert r["http"]["response"]["body"] == {"bytes": len(body), "content": body.decode()}
    assert r["http"]["response"]["headers"]["connection"] == "close"
    assert r["event"]["outcome"] == "failure"
    assert len([x for x in by_port(hd, echo_nginx.port) if x["client"]["port"] == local]) == 1
    assert_next_get_exact(hd, py_server, f"/path/after-request-{name}")


@pytest.mark.parametrize("name,headers,body,complete", [
    ("neg-cl", {"content-length": "-1", "connection": "close"}, {"bytes": 0}, False),
    ("huge-cl", {"content-length": "99999999999999999999999", "connection": "close"},
     {"bytes": 0}, False),
    ("two-cl", {"content-length": ["4", "5"], "connection": "close"}, {"bytes": 0}, False),
    ("cl-and-te", {"content-length": "3", "transfer-encoding": "chunked", "connection": "close"},
     text_body("hello"), True),
    ("bad-chunk", {"transfer-encoding": "chunked", "connection": "close"}, {"bytes": 0}, False),
    ("huge-chunk", {"transfer-encoding": "chunked", "connection": "close"}, {"bytes": 0}, False),
])
def test_responses_with_lying_framing(hd, servers, py_server, name, headers, body, complete):
    """A server whose response framing lies (negative, huge or conflicting
    Content-Length, chunked beside Content-Length, invalid chunk sizes): the
    response's head is recorded as sent, its body never trusted (no read past
    what the framing allows), marked incomplete unless RFC 9112 says how to
    read it (chunked wins over Content-Length)."""
    srv = servers.hostile("scripted")
    path = f"/script/{name}"
    got, local = raw_exchange(srv.port, b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % path.encode())
    assert got.startswith(b"HTTP/1.1 200 OK\r\n")
    for role in ("server", "client"):
        r = one(hd, at(srv.port, path, role))
        assert r["client"]["port"] == local
        assert r["http"]["request"]["headers"] == {"host": "h"}
        assert r["http"]["response"]["status_code"] == 200
        assert r["http"]["response"]["headers"] == headers
        assert r["http"]["response"]["body"] == body
        assert r["httptraced"]["incomplete"] is (not complete)
        assert r["httptraced"].get("response") == (None if complete else {"incomplete": True})
    assert_next_get_exact(hd, py_server, f"/path/after-response-{name}")


# ---------------------------------------------------------------------------
# Timing and direction oddities.

def test_slowloris_request_dribbled_a_byte_at_a_time(hd, py_server):
    """Every byte of the request in its own write, 5 ms apart: the record is
    exact, and its duration spans the dribble."""
    payload = b'{"slow": "loris"}'
    request = (b"POST /echo?t=slowloris HTTP/1.1\r\nHost: s\r\nX-Pad: abc\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
               % (len(payload), payload))
    with socket.create_connection(("127.0.0.1", py_server.port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = time.monotonic()
        for i in range(len(request)):
            s.send(request[i:i + 1])
            time.sleep(0.005)
        dribble_ns = (time.monotonic() - started) * 1e9
        got = b""
        while not got.endswith(payload):
            got += s.recv(4096)
    r = one(hd, at(py_server.port, "/echo?t=slowloris"))
    assert r["http"]["request"]["method"] == "POST"
    assert r["http"]["request"]["headers"] == {
        "host": "s", "x-pad": "abc", "content-type": "application/json",
        "content-length": str(len(payload))}
    assert r["http"]["request"]["body"] == {"bytes": len(payload), "content": payload.decode()}
    assert r["http"]["response"]["body"] == {"bytes": len(payload), "content": payload.decode()}
    assert r["httptraced"]["incomplete"] is False
    assert "request" not in r["httptraced"] and "response" not in r["httptraced"]
    # The exchange starts at the first byte: the record spans the whole dribble.
    assert r["event"]["duration"] >= 0.9 * dribble_ns
    cli = one(hd, at(py_server.port, "/echo?t=slowloris", "client"))
    assert cli["http"]["request"]["body"] == r["http"]["request"]["body"]
    assert_next_get_exact(hd, py_server, "/path/after-slowloris")


def test_response_with_no_request(hd, servers, py_server):
    """A server that speaks first: its unsolicited response is recorded alone
    (no request, incomplete) on both ends, and the request that follows on the
    same connection is paired with its own response."""
    srv = servers.hostile("server-first")
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        local = s.getsockname()[1]
        got = b""
        while not got.endswith(b"hello\n"):
            got += s.recv(4096)
        s.sendall(b"GET /after-banner HTTP/1.1\r\nHost: b\r\n\r\n")
        while not got.endswith(b"path=/after-banner\n"):
            got += s.recv(4096)
    for role in ("server", "client"):
        recs = hd.wait_for(lambda r: server_port(r) == srv.port and
                               r["client"]["port"] == local and
                               r["httptraced"]["role"] == role, 2)
        assert len(recs) == 2, recs
        alone, paired = sorted(recs, key=lambda r: r["httptraced"]["connection"]["seq"])
        assert "request" not in alone["http"] and "url" not in alone
        assert alone["http"]["response"]["status_code"] == 200
        assert alone["http"]["response"]["body"] == text_body("hello\n")
        assert alone["httptraced"]["incomplete"] is True
        assert alone["httptraced"]["connection"]["seq"] == 0
        assert paired["url"]["original"] == "/after-banner"
        assert paired["http"]["response"]["body"] == text_body("path=/after-banner\n")
        assert paired["httptraced"]["connection"]["seq"] == 1
        assert paired["httptraced"]["incomplete"] is False
    assert_next_get_exact(hd, py_server, "/path/after-server-first")


def test_connect_tunnel_is_not_parsed_after_the_switch(hd, servers, py_server):
    """CONNECT answered 200: what goes through the tunnel afterwards (here bytes
    that look exactly like HTTP) is not HTTP any more and is never recorded."""
    srv = servers.hostile("connect")
    inside = b"GET /inside-tunnel HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n")
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(4096)
        assert got == b"HTTP/1.1 200 Connection established\r\n\r\n"
        for _ in range(3):
            s.sendall(inside)
            echoed = b""
            while len(echoed) < len(inside):
                echoed += s.recv(4096)
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            echoed = b""
            while len(echoed) < 38:
                echoed += s.recv(4096)
    for role in ("server", "client"):
        r = one(hd, at(srv.port, "db.internal:5432", role))
        assert r["http"]["request"]["method"] == "CONNECT"
        assert r["url"]["domain"] == "db.internal" and r["url"]["port"] == 5432
        assert r["http"]["response"]["status_code"] == 200
        assert r["httptraced"]["incomplete"] is False
    assert_next_get_exact(hd, py_server, "/path/after-tunnel")
    assert not [r for r in hd.records() if "inside-tunnel" in r.get("url", {}).get("original", "")]
    assert len(by_port(hd, srv.port)) == 1
