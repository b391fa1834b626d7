"""Load and bounds, end to end: the real daemon under many connections.

Kernel state (the LRU `conns` map) and userspace state (the connection table)
stay within --max_connections, with evictions counted; memory stays flat once a
load is over; pid and fd reuse never merge two connections; a ring buffer too
small for a burst drops what it must, says so, and writes only correct records.
"""
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (PYTHON, SERVERS, Daemon, assert_no_sanitizer_report, curl, fdinfo_values,
                      final_stats, next_stats, pick_port, rss_kib, start_nginx)

MAX_CONNECTIONS = 1024


@pytest.fixture(scope="module")
def storm_client(tmp_path_factory):
    exe = tmp_path_factory.mktemp("storm") / "storm_client"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-pthread", "-o", str(exe),
                    str(SERVERS / "storm_client.c")], check=True)
    return exe


def storm(exe, port, n, prefix, threads=8):
    p = subprocess.run([str(exe), "127.0.0.1", str(port), str(n), str(threads), prefix],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.strip() == f"ok={n} bad=0", (p.stdout, p.stderr)


def settle(daemon, timeout=120):
    """Waits until the daemon has taken everything the kernel queued: two stats
    lines in a row with the same payload bytes, connections and records. (Not
    the event count: with no pid filter, every process that exits on the host
    sends an event.)"""
    deadline = time.monotonic() + timeout
    prev = next_stats_or_stalled(daemon)
    while time.monotonic() < deadline:
        cur = next_stats_or_stalled(daemon)
        if all(cur[k] == prev[k] for k in ("bytes", "opened", "records")):
            return cur
        prev = cur
    raise AssertionError("the daemon did not settle:\n" + daemon.stderr()[-3000:])


def next_stats_or_stalled(daemon):
    try:
        return next_stats(daemon)
    except AssertionError:
        raise AssertionError(
            "no stats line for 10 s although --stats_interval=1s: the daemon's event loop is "
            "not coming back from reading the ring buffer (it reads until the ring is empty, "
            "which under sustained overload is never):\n" + daemon.stderr()[-2000:]) from None


def conns_map(daemon):
    """bpftool's view of this daemon's `conns` map (found through its fds)."""
    ids = {int(v) for v in fdinfo_values(daemon.pid(), "map_id")}
    for map_id in ids:
        info = json.loads(subprocess.run(["bpftool", "-j", "map", "show", "id", str(map_id)],
                                         capture_output=True, text=True, check=True).stdout)
        if info["name"] == "conns":
            return info
    raise AssertionError(f"no conns map among the daemon's maps {ids}")


def map_entries(map_id):
    """[(tgid, fd)] of every entry in the map (key: struct conn_key {u32 tgid; s32 fd})."""
    out = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(map_id)],
                         capture_output=True, text=True, check=True).stdout
    keys = []
    for e in json.loads(out):
        raw = bytes(int(b, 16) for b in e["key"])
        keys.append((int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:8], "little",
                                                                       signed=True)))
    return keys


def records_of(daemon):
    """All records, oldest first, from the rotated files (--log_compress=false)
    and the active one; parsed, not schema-validated (too many; other tests do
    that). Every file holds whole lines only."""
    files = sorted(daemon.log_dir.glob("httptraced-*.json"))
    files += [daemon.log] if daemon.log.exists() else []
    out = []
    for f in files:
        data = f.read_bytes()
        assert data == b"" or data.endswith(b"\n"), f"{f} ends in a partial line"
        out.extend(json.loads(line) for line in data.splitlines())
    return out


def wait_records(daemon, path, count, timeout=20.0):
    """The records for url.path == `path` (at least `count` of them, or what is
    there at the timeout), looked up in the active file only (the newest
    records are there, and the logs here are large)."""
    marker = f'"path":"{path}"'.encode()
    deadline = time.monotonic() + timeout
    while True:
        data = daemon.log.read_bytes() if daemon.log.exists() else b""
        found = [json.loads(l) for l in data.splitlines() if marker in l]
        found = [r for r in found if r.get("url", {}).get("path") == path]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def assert_path_echo_consistent(recs):
    """Every record whose request and response are both there pairs a request
    for /p/<x> with the answer "path=/p/<x>\\n": nothing glued, nothing crossed."""
    paired = 0
    for r in recs:
        req, resp = r["http"].get("request"), r["http"].get("response")
        if req is None or resp is None or "content" not in resp["body"]:
            continue
        want = f"path={r['url']['path']}\n"
        assert resp["body"] == {"bytes": len(want), "content": want}, r
        assert resp["status_code"] == 200, r
        paired += 1
    return paired


def unpaired_summary(recs, limit=20):
    """The records that are not a whole request/response pair, in short: what a
    failed count needs to be understood."""
    out = []
    for r in recs:
        req, resp = r["http"].get("request"), r["http"].get("response")
        if req is not None and resp is not None and "content" in resp["body"]:
            continue
        out.append({"role": r["httptraced"]["role"], "path": r.get("url", {}).get("path"),
                    "req": req is not None, "resp": resp is not None,
                    "httptraced": r["httptraced"], "ts": r.get("@timestamp")})
    return out[:limit]


def test_100k_short_lived_connections_bounded_and_flat(tmp_path, echo_nginx, storm_client):
    """Two identical rounds of 50k one-request connections (Connection: close).
    The kernel map keeps its --max_connections size and ends with no entry for
    any of them (every close was seen); the daemon's RSS after the second round
    is within 10% + 4 MiB of the first (allocator caches warm after round one;
    a leak of even 100 bytes per connection would add 5 MiB); every record
    written pairs the right request and response."""
    env_asan = os.environ.get("ASAN_OPTIONS", "")
    # 200k records (~220 MB) rotate a few times at 64 MiB: read back uncompressed.
    d = Daemon(tmp_path / "logs", f"--max_connections={MAX_CONNECTIONS}",
               f"--port={echo_nginx.port}", "--log_max_size_mb=64", "--log_compress=false",
               "--log_max_files=20")
    # Under ASan, freed memory sits in a quarantine that would look like growth.
    os.environ["ASAN_OPTIONS"] = (env_asan + ":" if env_asan else "") + \
        "quarantine_size_mb=1:thread_local_quarantine_size_kb=64"
    try:
        d.start()
    finally:
        os.environ["ASAN_OPTIONS"] = env_asan
        if not env_asan:
            del os.environ["ASAN_OPTIONS"]
    try:
        cmap = conns_map(d)
        assert cmap["type"] == "lru_hash" and cmap["max_entries"] == MAX_CONNECTIONS
        rss = []
        for round_ in (1, 2):
            started = time.monotonic()
            storm(storm_client, echo_nginx.port, 50_000, f"/p/r{round_}-")
            took = time.monotonic() - started
            s = settle(d)
            rss.append(rss_kib(d.pid()))
            print(f"round {round_}: 50000 connections in {took:.1f} s, "
                  f"VmRSS {rss[-1]} KiB, stats {s}")
            entries = map_entries(cmap["id"])
            assert len(entries) <= MAX_CONNECTIONS
            ours = set(echo_nginx.workers())
            left = [e for e in entries if e[0] in ours]
            assert left == [], left[:5]
            assert s["connections"] <= MAX_CONNECTIONS, s
        assert rss[1] <= rss[0] * 1.10 + 4096, rss
        # Still correct after the load.
        out, _ = curl(echo_nginx.url("/p/after-storm"))
        assert out == b"path=/p/after-storm\n"
        assert len(wait_records(d, "/p/after-storm", 2)) == 2
    finally:
        assert d.stop() == 0, d.stderr()
    assert_no_sanitizer_report(d)
    end = final_stats(d)
    recs = records_of(d)
    assert end["lost"] == 0 and end["decode_errors"] == 0, end
    assert end["written"] == len(recs), end
    paired = assert_path_echo_consistent(recs)
    # Each connection is recorded from both ends, except what the ring buffer
    # could not hold (then kernel_drops says so).
    if end["kernel_drops"] == 0:
        assert paired == 2 * 100_000 + 2, end
    print(f"records {len(recs)}, paired {paired}, stats {end}")
    shutil.rmtree(d.log_dir)  # 200 MB


def test_a_unix_socket_upstream_under_load_records_every_exchange(tmp_path, storm_client):
    """nginx in front of an upstream on a Unix socket (here nginx itself, so
    that the load is real), 20,000 short client connections and keep-alive
    upstream connections carrying many requests each: every request is
    recorded three times (nginx's front as server over TCP, its upstream
    request as client and the upstream's side as server over the socket),
    each pairing the right request and response, the upstream connections'
    seq running 0, 1, 2 ... without a hole, and each end naming its peer."""
    n = 20_000
    sock = tmp_path / "back.sock"
    port = pick_port()
    nginx = start_nginx(tmp_path, port, f"""
  keepalive_requests 1000000;
  upstream back {{
    server unix:{sock};
    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location /p/ {{
      proxy_pass http://back;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
  server {{
    listen unix:{sock};
    location /p/ {{ return 200 "path=$uri\\n"; }}
  }}""", worker_connections=4096)
    d = None
    try:
        workers = subprocess.run(["pgrep", "-P", str(nginx.pid)], capture_output=True,
                                 text=True).stdout.split()
        assert len(workers) == 1, workers
        d = Daemon(tmp_path / "logs", f"--pid={workers[0]}", "--ring_buffer_mb=64",
                   "--log_compress=false", "--log_max_files=20").start()
        storm(storm_client, port, n, "/p/u-")
        settle(d)
    finally:
        if d is not None:
            assert d.stop() == 0, d.stderr()
        nginx.terminate()
        nginx.wait(10)
    assert_no_sanitizer_report(d)
    end = final_stats(d)
    assert end["kernel_drops"] == 0 and end["lost"] == 0 and end["parse_errors"] == 0, end
    recs = records_of(d)
    assert assert_path_echo_consistent(recs) == 3 * n, unpaired_summary(recs)
    kinds = {}
    for r in recs:
        key = (r["network"].get("type"), r["httptraced"]["role"])
        kinds[key] = kinds.get(key, 0) + 1
    assert kinds == {("ipv4", "server"): n, ("unix", "client"): n, ("unix", "server"): n}, kinds
    paths = {(r["network"]["type"], r["httptraced"]["role"]): set() for r in recs}
    seqs = {}
    for r in recs:
        paths[(r["network"]["type"], r["httptraced"]["role"])].add(r["url"]["path"])
        if r["network"]["type"] == "unix":
            assert r["server"] == {"address": str(sock)}, r
            # The peer of the end that connected is the process that called
            # listen(): nginx's master; of the end that accepted, the worker.
            peer = nginx.pid if r["httptraced"]["role"] == "client" else int(workers[0])
            assert r["httptraced"]["connection"]["peer_pid"] == peer, r
            seqs.setdefault(r["httptraced"]["connection"]["id"], []).append(
                r["httptraced"]["connection"]["seq"])
    want = {f"/p/u-{i}" for i in range(n)}
    assert all(p == want for p in paths.values())
    # At most 16 idle upstream connections are kept, so few carry it all.
    assert len(seqs) < n // 10, len(seqs)
    for conn, got in seqs.items():
        assert sorted(got) == list(range(len(got))), conn


def test_10k_concurrent_connections_evict_and_count(tmp_path, echo_nginx):
    """10k keep-alive connections held open at once (20k traced sockets, both
    ends), --max_connections=1024: the kernel map stays at 1024 entries, the
    daemon's table at most 1024 connections with evictions counted, and a
    second request on every connection is still recorded correctly (an evicted
    connection comes back as `discovered`)."""
    n, per_client = 10_000, 1000
    d = Daemon(tmp_path / "logs", f"--max_connections={MAX_CONNECTIONS}",
               f"--port={echo_nginx.port}").start()
    clients = []
    try:
        # Clients in 10 processes of 1000 sockets each (a process's fd limit
        # may be low, and raising it needs CAP_SYS_RESOURCE).
        for first in range(0, n, per_client):
            clients.append(subprocess.Popen(
                [PYTHON, str(SERVERS / "hold_client.py"), str(echo_nginx.port), str(first),
                 str(per_client)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for round_, word in ((1, "ready"), (2, "done")):
            if round_ == 2:
                for c in clients:
                    c.stdin.write("again\n")
                    c.stdin.flush()
            for c in clients:
                assert c.stdout.readline().strip() == word, f"a client failed in round {round_}"
            held = settle(d)
            cmap = conns_map(d)
            assert cmap["max_entries"] == MAX_CONNECTIONS
            assert len(map_entries(cmap["id"])) <= MAX_CONNECTIONS
            assert held["connections"] <= MAX_CONNECTIONS, held
            print(f"round {round_}: {n} connections held, stats {held}")
        # Both ends of 10k connections went through a 1024-entry table.
        assert held["evicted"] >= 2 * n - MAX_CONNECTIONS, held
    finally:
        for c in clients:
            c.stdin.close()
        for c in clients:
            try:
                assert c.wait(60) == 0
            except subprocess.TimeoutExpired:
                c.kill()
                c.wait()
                raise
    try:
        out, _ = curl(echo_nginx.url("/p/after-concurrent"))
        assert out == b"path=/p/after-concurrent\n"
        after = wait_records(d, "/p/after-concurrent", 2)
        assert sorted(r["httptraced"]["role"] for r in after) == ["client", "server"]
    finally:
        assert d.stop() == 0, d.stderr()
    assert_no_sanitizer_report(d)
    end = final_stats(d)
    recs = records_of(d)
    assert end["lost"] == 0 and end["written"] == len(recs), end
    paired = assert_path_echo_consistent(recs)
    seen = set()
    for r in recs:
        if r["http"].get("request"):
            key = (r["httptraced"]["role"], r["url"]["path"])
            assert key not in seen, f"{key} recorded twice"
            seen.add(key)
    print(f"records {len(recs)}, paired {paired}, stats {end}")
    if end["kernel_drops"] == 0:
        if paired != 2 * 2 * n + 2:
            # In full: pytest cuts a long assertion message short.
            print(json.dumps(unpaired_summary(recs), indent=1))
        assert paired == 2 * 2 * n + 2, (end, unpaired_summary(recs))


def test_a_connection_the_kernel_loses_mid_exchange_is_carried_on(tmp_path):
    """The kernel's connection map is an LRU: under pressure it may drop the
    entry of a connection, even in the middle of an exchange. Both ends'
    entries are deleted here, as that eviction would: between the second
    request and its response, and again before the third request. Each time
    the kernel finds the sockets again under new generations, and the daemon
    carries each connection on, so every exchange is one whole record with
    the connection's own id and seq."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        d = Daemon(tmp_path / "logs", f"--port={port}", f"--pid={os.getpid()}").start()
        try:
            client = socket.create_connection(("127.0.0.1", port))
            server, _ = listener.accept()
            def lose_both_ends():
                cmap = conns_map(d)
                for fd in (client.fileno(), server.fileno()):
                    key = os.getpid().to_bytes(4, "little") + fd.to_bytes(4, "little")
                    subprocess.run(["bpftool", "map", "delete", "id", str(cmap["id"]), "key",
                                    "hex", *(f"{b:02x}" for b in key)], check=True)
                assert not {(os.getpid(), client.fileno()), (os.getpid(), server.fileno())} & \
                    set(map_entries(cmap["id"]))

            for i in range(3):
                req = b"GET /p/lost-%d HTTP/1.1\r\nHost: l\r\n\r\n" % i
                if i == 2:
                    lose_both_ends()  # between exchanges: idle, then the next request
                client.sendall(req)
                assert server.recv(4096) == req
                if i == 1:
                    lose_both_ends()  # between a request and its response
                body = b"path=/p/lost-%d\n" % i
                server.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
                               + body)
                got = b""
                while not got.endswith(body):
                    got += client.recv(4096)
            client.close()
            server.close()
            for role in ("client", "server"):
                recs = wait_records(d, "/p/lost-2", 1)
                assert [r["httptraced"]["role"] for r in recs].count(role) == 1, recs
        finally:
            assert d.stop() == 0, d.stderr()
    assert_no_sanitizer_report(d)
    end = final_stats(d)
    recs = records_of(d)
    assert len(recs) == 6, (end, unpaired_summary(recs))
    assert assert_path_echo_consistent(recs) == 6
    for role in ("client", "server"):
        mine = [r for r in recs if r["httptraced"]["role"] == role]
        assert [r["url"]["path"] for r in mine] == [f"/p/lost-{i}" for i in range(3)]
        assert [r["httptraced"]["connection"]["seq"] for r in mine] == [0, 1, 2]
        assert len({r["httptraced"]["connection"]["id"] for r in mine}) == 1, mine
        assert {r["httptraced"]["connection"]["origin"] for r in mine} == \
            {"connect" if role == "client" else "accept"}
    assert end["resumed"] == 4 and end["opened"] == 2 and end["gaps"] == 0, end


def test_a_connection_waiting_for_its_response_outlives_newer_idle_ones(tmp_path):
    """--max_connections=1024 (the least allowed) and 1100 newer keep-alive
    connections (both ends traced), each after
    one whole exchange, while the oldest one waits for its response: the
    idle ones are evicted (in the daemon, and from the kernel's LRU map), the
    waiting one keeps its exchange, which comes out whole from both ends."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(256)
        port = listener.getsockname()[1]
        d = Daemon(tmp_path / "logs", f"--max_connections={MAX_CONNECTIONS}", f"--port={port}",
                   f"--pid={os.getpid()}").start()
        held = []
        n = 1100
        limits = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(limits[0], min(limits[1], 4 * n)),
                                                    limits[1]))
        try:
            def exchange(client, server, path, respond=True):
                req = b"GET %s HTTP/1.1\r\nHost: w\r\n\r\n" % path.encode()
                client.sendall(req)
                got = b""
                while len(got) < len(req):
                    got += server.recv(4096)
                assert got == req
                if respond:
                    answer(client, server, path)

            def answer(client, server, path):
                body = b"path=%s\n" % path.encode()
                server.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
                               + body)
                got = b""
                while not got.endswith(body):
                    got += client.recv(4096)

            waiting = (socket.create_connection(("127.0.0.1", port)), listener.accept()[0])
            held.extend(waiting)
            exchange(*waiting, "/p/waiting", respond=False)
            for i in range(n):
                pair = (socket.create_connection(("127.0.0.1", port)), listener.accept()[0])
                held.extend(pair)
                exchange(*pair, f"/p/idle-{i}")
            mid = settle(d)
            assert mid["evicted"] >= 2 * (n + 1) - MAX_CONNECTIONS, mid
            answer(*waiting, "/p/waiting")
            recs = wait_records(d, "/p/waiting", 2)
            assert sorted(r["httptraced"]["role"] for r in recs) == ["client", "server"], recs
        finally:
            for sock in held:
                sock.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            assert d.stop() == 0, d.stderr()
    assert_no_sanitizer_report(d)
    end = final_stats(d)
    recs = records_of(d)
    assert end["kernel_drops"] == 0, end
    assert len(recs) == 2 * (n + 1) and assert_path_echo_consistent(recs) == 2 * (n + 1), \
        (end, unpaired_summary(recs))
    print(f"records {len(recs)}, stats {end}")
    for r in (r for r in recs if r["url"]["path"] == "/p/waiting"):
        assert r["http"]["response"]["body"]["content"] == "path=/p/waiting\n"
        assert r["httptraced"]["connection"]["origin"] in ("accept", "connect"), r


def test_pid_and_fd_reuse_never_merge_connections(tmp_path, echo_nginx):
    """Short-lived curl processes, one process reusing one fd for 300
    connections, and a process killed mid-request whose pid (and fd) a new
    process then gets: every record is one connection's, with its own id."""
    d = Daemon(tmp_path / "logs", f"--port={echo_nginx.port}").start()
    try:
        curl_pids = {}
        for i in range(100):
            out, pid = curl(echo_nginx.url(f"/p/proc-{i}"))
            assert out == f"path=/p/proc-{i}\n".encode()
            curl_pids[f"/p/proc-{i}"] = pid
        fds = set()
        for i in range(300):
            with socket.create_connection(("127.0.0.1", echo_nginx.port)) as s:
                fds.add(s.fileno())
                s.sendall(b"GET /p/fd-%d HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n" % i)
                got = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                assert got.endswith(b"path=/p/fd-%d\n" % i)
        assert len(fds) == 1, fds  # the same fd every time
        killed_pid, reused = reuse_pid_after_kill(echo_nginx.port)
        want = len(curl_pids) + 300 + 1
        recs = d.wait_for(lambda r: r.get("url", {}).get("path", "").startswith(
            ("/p/proc-", "/p/fd-", "/p/pid-reuse")), 2 * want, timeout=20)
        half = d.wait_for(lambda r: r.get("url", {}).get("path") == "/p/half-request", 2)
    finally:
        assert d.stop() == 0, d.stderr()
    assert_no_sanitizer_report(d)
    assert len(recs) == 2 * want, final_stats(d)
    assert assert_path_echo_consistent(recs) == 2 * want
    for role in ("client", "server"):
        mine = [r for r in recs if r["httptraced"]["role"] == role]
        ids = [r["httptraced"]["connection"]["id"] for r in mine]
        assert len(ids) == len(set(ids)) == want
        for r in mine:
            assert r["httptraced"]["connection"]["seq"] == 0
            assert r["httptraced"]["incomplete"] is False
            assert "request" not in r["httptraced"]
    for r in recs:
        path = r["url"]["path"]
        if r["httptraced"]["role"] == "client" and path in curl_pids:
            assert r["process"]["pid"] == curl_pids[path]
    new = [r for r in recs if r["url"]["path"] == "/p/pid-reuse"]
    assert {r["httptraced"]["role"] for r in new} == {"client", "server"}
    new_client = [r for r in new if r["httptraced"]["role"] == "client"][0]
    assert new_client["process"]["pid"] == killed_pid == reused
    assert new_client["http"]["request"]["headers"] == {"host": "r", "connection": "close"}
    # The killed process's half request is its own (incomplete) record, on
    # another connection id, never glued to the new process's request.
    half_client = [r for r in half if r["httptraced"]["role"] == "client"]
    assert len(half_client) == 1, half
    assert half_client[0]["process"]["pid"] == killed_pid
    assert half_client[0]["httptraced"]["connection"]["id"] != \
        new_client["httptraced"]["connection"]["id"]
    assert half_client[0]["httptraced"]["incomplete"] is True


HALF = """
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /p/half-request HTTP/1.1\\r\\nHo")
print(s.fileno(), flush=True)
time.sleep(60)
"""
FULL = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /p/pid-reuse HTTP/1.1\\r\\nHost: r\\r\\nConnection: close\\r\\n\\r\\n")
got = b""
while not got.endswith(b"path=/p/pid-reuse\\n"):
    got += s.recv(4096)
print(s.fileno(), flush=True)
"""


def reuse_pid_after_kill(port, attempts=50):
    """Kills a process in the middle of a request (no close() ever runs), then
    makes a new process get its pid (through ns_last_pid) and the same socket fd,
    and complete a request. Returns (the pid, the new process's pid)."""
    half = subprocess.Popen([PYTHON, "-c", HALF, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        half_fd = half.stdout.readline().strip()
        time.sleep(0.3)
    finally:
        half.send_signal(signal.SIGKILL)
        half.wait()
    for _ in range(attempts):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(half.pid - 1))
        full = subprocess.Popen([PYTHON, "-c", FULL, str(port)], stdout=subprocess.PIPE,
                                text=True)
        try:
            fd = full.stdout.readline().strip()
            assert full.wait(10) == 0
        finally:
            if full.poll() is None:
                full.kill()
                full.wait()
        if full.pid == half.pid:
            assert fd == half_fd, (fd, half_fd)
            return half.pid, full.pid
    raise AssertionError(f"could not get pid {half.pid} again in {attempts} attempts")


FD_SWAP = """
import os, socket, sys
port, path, reader = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(path, "wb") as f:
    f.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 11\\r\\n\\r\\nfrom-a-file")

def exchange(name):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /p/%s HTTP/1.1\\r\\nHost: u\\r\\n\\r\\n" % name)
    got = b""
    while not got.endswith(b"path=/p/%s\\n" % name):
        got += s.recv(4096)
    return s

fd = exchange(b"unseen-close").detach()
os.closerange(fd, fd + 1)  # close_range(2): no close() for the tracer to see
f = os.open(path, os.O_RDONLY)
assert f == fd, (f, fd)
assert os.read(f, 4096).endswith(b"from-a-file")
os.close(f)

fd = exchange(b"dup2-over").detach()
f = os.open(path, os.O_RDONLY)
os.dup2(f, fd)  # the socket's fd now holds the file; dup2 closed the socket
assert os.read(fd, 4096).endswith(b"from-a-file")
os.close(fd)
os.close(f)

s = exchange(b"before-exec")  # close-on-exec, as Python makes every socket
print("exec?", flush=True)
sys.stdin.readline()  # the test has the records of this program so far
os.execv(reader, [reader, str(port), path, str(s.fileno())])
"""
FD_SWAP_PATHS = ("/p/unseen-close", "/p/dup2-over", "/p/before-exec", "/p/after-exec")


def test_fd_taken_over_by_a_file_is_not_the_connection(tmp_path, echo_nginx):
    """A connection's fd closed in ways the tracer sees no close() for
    (close_range; dup2 over it; close-on-exec at execve, then a static C
    program in the same process), then holding a file that reads like an HTTP
    response: the file's bytes are never taken for the connection's, every
    exchange around them is recorded once, and each record names the program
    (of the two the pid ran) that made it."""
    reader = tmp_path / "exec_reader"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-static", "-o", str(reader),
                    str(SERVERS / "exec_reader.c")], check=True)
    d = Daemon(tmp_path / "logs", f"--port={echo_nginx.port}").start()
    p = subprocess.Popen([PYTHON, "-c", FD_SWAP, str(echo_nginx.port), str(tmp_path / "fake"),
                          str(reader)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "exec?\n"
        d.wait_for(lambda r: r.get("url", {}).get("path") in FD_SWAP_PATHS[:3], 6)
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.stdout.readline() == f"ok {p.pid}\n"
        d.wait_for(lambda r: r.get("url", {}).get("path") in FD_SWAP_PATHS, 2 * len(FD_SWAP_PATHS))
        p.stdin.close()
        assert p.wait(timeout=30) == 0
    finally:
        p.kill()
        p.wait()
        assert d.stop() == 0, d.stderr()
    assert_no_sanitizer_report(d)
    recs = d.records()
    assert [(r["client"]["port"], r.get("url")) for r in recs
            if "from-a-file" in json.dumps(r)] == []
    mine = [r for r in recs if r["process"]["pid"] == p.pid]
    assert sorted(r.get("url", {}).get("path", "") for r in mine) == sorted(FD_SWAP_PATHS)
    # One pid, two programs: each record names the one that made the exchange.
    python = os.path.realpath(PYTHON)
    assert {r["url"]["path"]: r["process"].get("executable") for r in mine} == {
        "/p/unseen-close": python, "/p/dup2-over": python, "/p/before-exec": python,
        "/p/after-exec": str(reader)}
    assert {r["url"]["path"]: r["process"]["name"] for r in mine} == {
        "/p/unseen-close": "python3", "/p/dup2-over": "python3", "/p/before-exec": "python3",
        "/p/after-exec": "exec_reader"}
    ours = [r for r in recs if r.get("url", {}).get("path") in FD_SWAP_PATHS]
    assert len(ours) == 2 * len(FD_SWAP_PATHS)
    for r in ours:
        assert r["httptraced"]["incomplete"] is False
        assert r["http"]["response"]["status_code"] == 200
        assert r["http"]["response"]["body"]["content"] == "path=%s\n" % r["url"]["path"]


HANG_SERVER = """
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
got = b""
while not got.endswith(b"\\r\\n\\r\\n"):
    got += c.recv(4096)
print("got", flush=True)
time.sleep(600)
"""


def test_a_server_killed_mid_request_ends_its_exchange_at_once(tmp_path):
    """A server killed with SIGKILL while it holds a request: its connection
    closes with the process, with no close() for the syscall hooks. The
    exchange comes out within a few seconds, incomplete, and not only when
    --request_timeout (here 300 s) expires."""
    srv = subprocess.Popen([PYTHON, "-c", HANG_SERVER], stdout=subprocess.PIPE, text=True)
    d = None
    try:
        port = int(srv.stdout.readline())
        d = Daemon(tmp_path / "logs", f"--port={port}", "--request_timeout=300s").start()
        cli = socket.create_connection(("127.0.0.1", port))
        cli.sendall(b"GET /p/dies HTTP/1.1\r\nHost: k\r\n\r\n")
        assert srv.stdout.readline() == "got\n"
        killed = time.monotonic()
        srv.kill()
        srv.wait()
        recs = d.wait_for(lambda r: r.get("url", {}).get("path") == "/p/dies" and
                          r["httptraced"]["role"] == "server", timeout=30)
        elapsed = time.monotonic() - killed
        cli.close()
    finally:
        srv.kill()
        srv.wait()
        if d is not None:
            assert d.stop() == 0, d.stderr()
    assert_no_sanitizer_report(d)
    assert len(recs) == 1, recs
    r = recs[0]
    assert r["process"]["pid"] == srv.pid
    assert r["httptraced"]["incomplete"] is True
    assert "response" not in r["http"]
    assert r["http"]["request"]["method"] == "GET"
    assert elapsed < 10, elapsed
    assert final_stats(d)["lost"] == 0


def test_ring_buffer_overflow_is_counted_and_records_stay_correct(tmp_path, py_server):
    """--ring_buffer_mb=1 and the daemon stopped (SIGSTOP) while 150 echo
    exchanges of 32 KiB each way go by: the ring buffer overflows, kernel_drops
    counts it, the daemon recovers (the next exchange is recorded exactly), and
    every record it wrote is internally consistent: no request is paired with
    another's response, no body glued across a gap."""
    d = Daemon(tmp_path / "logs", "--ring_buffer_mb=1", f"--port={py_server.port}").start()
    filler = b"x" * (32 * 1024)

    def client(t):
        conn = http.client.HTTPConnection("127.0.0.1", py_server.port, timeout=30)
        for i in range(50):
            tag = f"id={t}-{i};".encode()
            conn.request("POST", f"/echo?id={t}-{i}", body=tag + filler)
            assert conn.getresponse().read() == tag + filler
        conn.close()

    try:
        d.proc.send_signal(signal.SIGSTOP)
        try:
            threads = [threading.Thread(target=client, args=(t,)) for t in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            d.proc.send_signal(signal.SIGCONT)
            resumed = time.monotonic()
        while "was full" not in d.stderr() and time.monotonic() - resumed < 5:
            time.sleep(0.05)
        first_warned_within_s = time.monotonic() - resumed
        during = settle(d)
        assert during["kernel_drops"] > 0 and during["kernel_drop_bytes"] > 0, during
        out, _ = curl(py_server.url("/path/after-overflow"))
        assert out == b"path=/path/after-overflow\n"
        after = d.wait_for(lambda r: r.get("url", {}).get("path") == "/path/after-overflow", 2)
        assert len(after) == 2
        for r in after:
            assert r["http"]["response"]["body"] == {"bytes": 26,
                                                     "content": "path=/path/after-overflow\n"}
            assert r["httptraced"]["incomplete"] is False
    finally:
        assert d.stop() == 0, d.stderr()
    assert_no_sanitizer_report(d)
    end = final_stats(d)
    assert end["kernel_drops"] >= during["kernel_drops"] > 0, end
    assert end["gaps"] > 0, end
    # The loss was said as it happened (within a second, not only in the
    # stats line), and the warnings' counts add up to the stats line's.
    warned = [l for l in d.stderr().splitlines() if "lost" in l and "ring buffer" in l]
    first = re.fullmatch(
        r"httptraced: warning: the ring buffer \(--ring_buffer_mb=1\) was full: (\d+) events? "
        r"\((\d+) bytes of payload\) lost; the records of their connections have gaps\. "
        # Where the daemon's time went since its previous look, and the advice
        # for a burst; or, when the stop came before its first look (as it can
        # right after "tracing", in a slow build), the advice alone.
        r"(?:In the \d+\.\d s in which they were lost the daemon ran \d+\.\d s, waited "
        r"\d+\.\d s for a CPU and \d+\.\d s for the disk of its log: raise|Raise) "
        r"--ring_buffer_mb, or trace less \(--pid, --port\)\. Further losses are reported at "
        r"most every 10 s", warned[0] if warned else "")
    assert first, warned
    counts = [(int(first[1]), int(first[2]))]
    for line in warned[1:]:
        m = re.fullmatch(r"httptraced: warning: (\d+) more events? \((\d+) bytes of payload\) "
                         r"lost to a full ring buffer in the last \d+\.\d s; (\d+) in all\. In "
                         r"the \d+\.\d s in which they were lost the daemon ran \d+\.\d s, "
                         r"waited \d+\.\d s for a CPU and \d+\.\d s for the disk of its log",
                         line)
        assert m, line
        counts.append((int(m[1]), int(m[2])))
        assert int(m[3]) == sum(c[0] for c in counts), (line, counts)
    assert first_warned_within_s <= 2.0, first_warned_within_s
    assert sum(c[0] for c in counts) == end["kernel_drops"], (warned, end)
    assert sum(c[1] for c in counts) == end["kernel_drop_bytes"], (warned, end)
    recs = [r for r in d.records() if r.get("url", {}).get("path") == "/echo"]
    assert recs, "nothing recorded at all"
    checked = 0
    for r in recs:
        tag = f"id={r['url']['query'][3:]};"
        req, resp = r["http"].get("request"), r["http"].get("response")
        for part in (req, resp):
            body = (part or {}).get("body", {})
            if "content" in body:
                # A body that begins at its start begins with its own tag.
                gap = r["httptraced"].get("request" if part is req else "response", {})
                if not gap.get("gap_before"):
                    assert body["content"].startswith(tag), (tag, body["content"][:40])
                    checked += 1
        if resp is not None and req is not None:
            assert resp["status_code"] == 200
    print(f"{len(recs)} records, {checked} bodies checked, stats {end}")
    assert checked > 0


def test_a_stalled_output_is_named_as_the_cause_of_drops(tmp_path, py_server):
    """--stdout into a pipe whose reader stops reading while 150 echo exchanges of 32 KiB
    each way go by: the pipe fills, the daemon blocks in write(2) and the ring buffer
    (--ring_buffer_mb=1) overflows. The warning puts the loss down to the reader of
    standard output, not to the ring's size; output_wait_ms counts the time blocked; every
    line that reaches the reader is a whole record; once read again, the daemon records
    the next exchange exactly."""
    d = Daemon(tmp_path / "logs", "--stdout", "--ring_buffer_mb=1",
               f"--port={py_server.port}").start()
    lines = []
    reading = threading.Event()

    def reader():
        reading.wait()
        for line in d.proc.stdout:
            lines.append(line)

    threading.Thread(target=reader, daemon=True).start()
    filler = b"x" * (32 * 1024)

    def client(t):
        conn = http.client.HTTPConnection("127.0.0.1", py_server.port, timeout=30)
        for i in range(50):
            conn.request("POST", f"/echo?id={t}-{i}", body=filler)
            assert conn.getresponse().read() == filler
        conn.close()

    def blocked_on_the_pipe():
        with open(f"/proc/{d.pid()}/task/{d.pid()}/wchan") as f:  # the main thread
            return "pipe_write" in f.read()

    try:
        # Records enough to fill the pipe (64 KiB) at the next flush: the
        # daemon's main thread then sleeps in write(2) before the load starts,
        # so that every loss below is the stall's.
        client("fill")
        deadline = time.monotonic() + 5
        while not blocked_on_the_pipe():
            assert time.monotonic() < deadline, "the daemon never blocked on the pipe"
            time.sleep(0.02)
        stalled = time.monotonic()
        threads = [threading.Thread(target=client, args=(t,)) for t in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(1.0)  # the daemon stays blocked on the full pipe meanwhile
        reading.set()
        stalled_s = time.monotonic() - stalled
        deadline = time.monotonic() + 5
        while "was full" not in d.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        during = settle(d)
        assert during["kernel_drops"] > 0, during
        out, _ = curl(py_server.url("/path/after-stall"))
        assert out == b"path=/path/after-stall\n"
        deadline = time.monotonic() + 10
        after = []
        while len(after) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            after = [json.loads(l) for l in list(lines) if "/path/after-stall" in l]
        assert len(after) == 2, after
        for r in after:
            assert r["url"]["path"] == "/path/after-stall"
            assert r["http"]["response"]["body"] == {"bytes": 23,
                                                     "content": "path=/path/after-stall\n"}
            assert r["httptraced"]["incomplete"] is False
    finally:
        reading.set()
        assert d.stop() == 0, d.stderr()
    assert_no_sanitizer_report(d)
    warned = [l for l in d.stderr().splitlines() if "lost" in l and "ring buffer" in l]
    first = re.fullmatch(
        r"httptraced: warning: the ring buffer \(--ring_buffer_mb=1\) was full: \d+ events? "
        r"\(\d+ bytes of payload\) lost; the records of their connections have gaps\. In the "
        r"(\d+\.\d) s in which they were lost the daemon ran \d+\.\d s, waited \d+\.\d s for a "
        r"CPU and (\d+\.\d) s for the reader of standard output: read standard output faster, "
        r"or trace less \(--pid, --port\)\. Further losses are reported at most every 10 s",
        warned[0] if warned else "")
    assert first, d.stderr()
    span_s, waited_s = float(first[1]), float(first[2])
    # Blocked from the first full pipe until the reader came back: at least the
    # second after the traffic, at most the whole stall (and the span around it).
    assert 1.0 <= waited_s <= span_s, (waited_s, span_s)
    assert waited_s <= stalled_s + 0.5, (waited_s, stalled_s)
    end = final_stats(d)
    assert 1000 <= end["output_wait_ms"] <= (time.monotonic() - d.ready_at) * 1000, end
    assert end["written"] == len(lines) and end["lost"] == 0, (end, len(lines))
    for line in lines:
        assert line.endswith("\n")
        json.loads(line)  # a whole record, never a fragment


def test_idle_expiry_never_reuses_a_connection_identity(tmp_path, py_server):
    """A keep-alive connection silent for longer than --conn_idle_timeout is
    forgotten by the daemon (its state is bounded in time too); its next
    exchange must still be recorded as what it is: a whole exchange with its
    endpoints, and never under an identity (connection.id, seq) already used."""
    d = Daemon(tmp_path / "logs", "--conn_idle_timeout=10s", f"--port={py_server.port}").start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", py_server.port)
        conn.request("GET", "/path/before-idle")
        assert conn.getresponse().read() == b"path=/path/before-idle\n"
        local_port = conn.sock.getsockname()[1]
        time.sleep(11.5)  # idle past the timeout (the daemon checks every 50 ms)
        conn.request("GET", "/path/after-idle")
        assert conn.getresponse().read() == b"path=/path/after-idle\n"
        conn.close()
        recs = d.wait_for(lambda r: r.get("url", {}).get("path") in
                          ("/path/before-idle", "/path/after-idle"), 4)
    finally:
        assert d.stop() == 0, d.stderr()
    assert_no_sanitizer_report(d)
    everything = d.records()
    identities = [(r["httptraced"]["connection"]["id"], r["httptraced"]["connection"]["seq"])
                  for r in everything]
    assert len(identities) == len(set(identities)), identities
    assert len(recs) == 4, everything
    for r in recs:
        path = r["url"]["path"]
        assert r["client"] == {"ip": "127.0.0.1", "port": local_port}, r
        assert r["server"] == {"ip": "127.0.0.1", "port": py_server.port}, r
        assert r["httptraced"]["role"] in ("client", "server")
        assert r["http"]["response"]["body"] == {"bytes": len(path) + 6,
                                                 "content": f"path={path}\n"}
        assert r["httptraced"]["incomplete"] is False, r
