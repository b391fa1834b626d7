"""End-to-end: HTTP over Unix domain stream sockets, with real servers (the
Python test server, nginx) and real clients (curl, nginx, raw sockets)."""
import os
import secrets
import socket
import subprocess
import types

import pytest

from conftest import BIN, PYTHON, SERVERS, Daemon, curl, final_stats, peek_server_client, pick_port, \
    recv_until, server_port, start_nginx

UNIX_NETWORK = {"type": "unix", "protocol": "http"}


def start_unix_server(path):
    """servers/py_server.py listening on the Unix socket `path` (@name: abstract)."""
    proc = subprocess.Popen([PYTHON, str(SERVERS / "py_server.py"), "--unix", str(path)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line == str(path), f"unix server did not start: {line!r}"
    return types.SimpleNamespace(proc=proc, pid=proc.pid, path=str(path))


def stop(proc):
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def unix_server(tmp_path_factory):
    s = start_unix_server(tmp_path_factory.mktemp("unix") / "app.sock")
    yield s
    stop(s.proc)


def on_unix(name, path=None, pid=None):
    """Records of exchanges over the Unix socket `name`, optionally for one URL
    path and one process."""
    def pred(r):
        return (r["network"].get("type") == "unix"
                and (r.get("server") or {}).get("address") == name
                and (path is None or r.get("url", {}).get("path") == path)
                and (pid is None or r["process"]["pid"] == pid))
    return pred


def check_unix_record(r, name, role, url_path, body, peer, seq=0):
    """One end's record of an exchange over the socket `name`; `peer`: the
    process at the other end (what ties the two ends' records together)."""
    assert r["network"] == UNIX_NETWORK
    assert r["httptraced"]["connection"]["peer_pid"] == peer
    assert r["server"] == {"address": name}
    assert "client" not in r  # the connecting end's socket has no name
    assert r["httptraced"]["role"] == role
    assert r["httptraced"]["connection"]["origin"] == ("accept" if role == "server" else "connect")
    assert r["httptraced"]["connection"]["seq"] == seq
    assert r["httptraced"]["incomplete"] is False
    assert r["url"]["path"] == url_path
    assert r["http"]["response"]["status_code"] == 200
    assert r["http"]["response"]["body"] == {"bytes": len(body), "content": body.decode()}


@pytest.mark.parametrize("fast", [True, False])
def test_curl_over_a_unix_socket_records_both_ends_exactly(tmp_path, unix_server, fast):
    """curl --unix-socket to the Python server: two GETs on one keep-alive
    connection and a POST on another. Both ends of each exchange are recorded,
    with the socket file as server.address, with both payload programs."""
    d = Daemon(tmp_path / "logs", f"--fast_fd_filter={str(fast).lower()}").start()
    tok = secrets.token_hex(4)
    try:
        out, get_pid = curl("--unix-socket", unix_server.path, f"http://localhost/path/a-{tok}",
                            f"http://localhost/path/b-{tok}")
        assert out == f"path=/path/a-{tok}\npath=/path/b-{tok}\n".encode()
        body = (tok * 1000)[:3000]
        (tmp_path / "body").write_text(body)
        out, post_pid = curl("--unix-socket", unix_server.path, "-H", "Content-Type: text/plain",
                             "--data-binary", f"@{tmp_path / 'body'}",
                             f"http://localhost/echo?t={tok}")
        assert out == body.encode()
        recs = d.wait_for(lambda r: on_unix(unix_server.path)(r) and tok in r["url"]["original"],
                          6)
    finally:
        assert d.stop() == 0, d.stderr()
    assert len(recs) == 6, recs
    by = {(r["process"]["pid"], r["url"]["path"]): r for r in recs}
    for pid, role, peer in ((get_pid, "client", unix_server.pid),
                            (unix_server.pid, "server", get_pid)):
        a, b = by[(pid, f"/path/a-{tok}")], by[(pid, f"/path/b-{tok}")]
        check_unix_record(a, unix_server.path, role, f"/path/a-{tok}",
                          f"path=/path/a-{tok}\n".encode(), peer)
        check_unix_record(b, unix_server.path, role, f"/path/b-{tok}",
                          f"path=/path/b-{tok}\n".encode(), peer, seq=1)
        assert a["httptraced"]["connection"]["id"] == b["httptraced"]["connection"]["id"]
        assert a["http"]["request"]["method"] == "GET"
    assert by[(get_pid, f"/path/a-{tok}")]["process"]["name"] == "curl"
    for pid, role, peer in ((post_pid, "client", unix_server.pid),
                            (unix_server.pid, "server", post_pid)):
        echo = by[(pid, "/echo")]
        check_unix_record(echo, unix_server.path, role, "/echo", body.encode(), peer)
        assert echo["http"]["request"]["method"] == "POST"
        assert echo["http"]["request"]["body"] == {"bytes": 3000, "content": body}
    st = final_stats(d)
    assert st["parse_errors"] == 0 and st["kernel_drops"] == 0 and st["gaps"] == 0, st


def test_nginx_proxying_to_an_app_server_socket(tmp_path, tracer, unix_server):
    """The common production shape: nginx on TCP in front of an application
    server on a socket file (gunicorn, uWSGI in HTTP mode, a Node.js app), over
    keep-alive upstream connections. Each request gives four records: curl and
    nginx on TCP, nginx and the app server on the Unix socket."""
    port = pick_port()
    nginx = start_nginx(tmp_path, port, f"""
  upstream app {{
    server unix:{unix_server.path};
    keepalive 4;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://app/path/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}""", worker_connections=64)
    tok = secrets.token_hex(4)
    try:
        out, _ = curl(f"http://127.0.0.1:{port}/one-{tok}", f"http://127.0.0.1:{port}/two-{tok}")
        assert out == f"path=/path/one-{tok}\npath=/path/two-{tok}\n".encode()
        upstream = tracer.wait_for(
            lambda r: on_unix(unix_server.path)(r) and tok in r["url"]["path"], 4)
        front = tracer.wait_for(lambda r: server_port(r) == port and tok in r["url"]["path"], 4)
    finally:
        stop(nginx)
    assert len(upstream) == 4 and len(front) == 4
    by = {(r["process"]["name"], r["url"]["path"]): r for r in upstream}
    assert sorted(by) == [("nginx", f"/path/one-{tok}"), ("nginx", f"/path/two-{tok}"),
                          ("python3", f"/path/one-{tok}"), ("python3", f"/path/two-{tok}")]
    worker = by[("nginx", f"/path/one-{tok}")]["process"]["pid"]
    for name, role, peer in (("nginx", "client", unix_server.pid),
                             ("python3", "server", worker)):
        one_, two = by[(name, f"/path/one-{tok}")], by[(name, f"/path/two-{tok}")]
        check_unix_record(one_, unix_server.path, role, f"/path/one-{tok}",
                          f"path=/path/one-{tok}\n".encode(), peer)
        # nginx kept the upstream connection open: the second request reuses it.
        check_unix_record(two, unix_server.path, role, f"/path/two-{tok}",
                          f"path=/path/two-{tok}\n".encode(), peer, seq=1)
        assert one_["httptraced"]["connection"]["id"] == two["httptraced"]["connection"]["id"]
    assert by[("python3", f"/path/one-{tok}")]["process"]["pid"] == unix_server.pid
    for r in front:
        assert r["network"]["transport"] == "tcp" and r["server"]["port"] == port
        assert r["url"]["path"] in (f"/one-{tok}", f"/two-{tok}")


def raw_unix_exchange(address, request, response_end):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(address)
        s.sendall(request)
        return recv_until(s, b"", response_end)


def test_an_abstract_socket_and_a_raw_client(tmp_path, tracer):
    """An abstract socket (no file; Linux-only, used by D-Bus-like services and
    container runtimes) shows as "@name", as ss(8) writes it. The client is a
    raw socket in this process, its request and body sent in one write."""
    name = f"@httptraced-test-{secrets.token_hex(4)}"
    srv = start_unix_server(name)
    try:
        got = raw_unix_exchange(
            "\0" + name[1:],
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Content-Type: text/plain\r\nConnection: close\r\n\r\nhello", b"hello")
        assert got.startswith(b"HTTP/1.1 200 OK\r\n")
        recs = tracer.wait_for(on_unix(name), 2)
    finally:
        stop(srv.proc)
    assert len(recs) == 2
    by = {r["process"]["pid"]: r for r in recs}
    assert sorted(by) == sorted([os.getpid(), srv.pid])
    check_unix_record(by[os.getpid()], name, "client", "/echo", b"hello", srv.pid)
    check_unix_record(by[srv.pid], name, "server", "/echo", b"hello", os.getpid())
    assert by[srv.pid]["http"]["request"]["body"] == {"bytes": 5, "content": "hello"}


def test_a_node_server_on_a_unix_socket_with_chunked_bodies(tmp_path, tracer):
    """Node.js (libuv: writev, chunked transfer coding) listening on a socket
    file, curl as the client: the chunked bodies are decoded exactly on both
    ends, on one keep-alive connection."""
    path = tmp_path / "node.sock"
    node = subprocess.Popen(["node", str(SERVERS / "node_server.js"), f"unix:{path}"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert node.stdout.readline().strip() == str(path)
        body = secrets.token_hex(1000)
        (tmp_path / "body").write_text(body)
        out, curl_pid = curl("--unix-socket", str(path), "http://localhost/chunked", "--next",
                             "--unix-socket", str(path), "--data-binary",
                             f"@{tmp_path / 'body'}", "http://localhost/echo")
        assert out == b"part1part2part3" + body.encode()
        recs = tracer.wait_for(on_unix(str(path)), 4)
    finally:
        stop(node)
    assert len(recs) == 4
    by = {(r["process"]["pid"], r["url"]["path"]): r for r in recs}
    assert sorted(by) == sorted([(curl_pid, "/chunked"), (curl_pid, "/echo"),
                                 (node.pid, "/chunked"), (node.pid, "/echo")])
    for pid, role, peer in ((curl_pid, "client", node.pid), (node.pid, "server", curl_pid)):
        chunked, echo = by[(pid, "/chunked")], by[(pid, "/echo")]
        check_unix_record(chunked, str(path), role, "/chunked", b"part1part2part3", peer)
        check_unix_record(echo, str(path), role, "/echo", body.encode(), peer, seq=1)
        assert echo["http"]["request"]["body"] == {"bytes": 2000, "content": body}
        assert echo["http"]["response"]["headers"]["transfer-encoding"] == "chunked"
        assert chunked["httptraced"]["connection"]["id"] == echo["httptraced"]["connection"]["id"]
    assert by[(node.pid, "/echo")]["process"]["name"] == "node"


@pytest.mark.parametrize("fast", [True, False])
def test_peeks_and_msg_trunc_on_a_unix_socket(tmp_path, fast):
    """A server that peeks at each head before taking it and reads bodies
    with recv(MSG_TRUNC), on a Unix socket (servers/peek_server.py): the
    peeked bytes are recorded once, and the body whole, since a Unix stream
    socket ignores MSG_TRUNC and copies the bytes (on TCP they are counted
    as not seen: test_core.py)."""
    path = tmp_path / "peek.sock"
    srv = subprocess.Popen([PYTHON, str(SERVERS / "peek_server.py"), "recv", "trunc",
                            f"unix:{path}"], stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == str(path)
        d = Daemon(tmp_path / "logs", f"--pid={srv.pid}",
                   f"--fast_fd_filter={str(fast).lower()}").start()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(path))
                got = peek_server_client(s)
            assert got == (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nn=5"
                           b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nn=0")
            recs = d.wait_for(on_unix(str(path)), 2)
        finally:
            assert d.stop() == 0, d.stderr()
    finally:
        stop(srv)
    by = {r["url"]["path"]: r for r in recs}
    assert sorted(by) == ["/a", "/b"]
    a, b = by["/a"], by["/b"]
    assert a["http"]["request"]["body"] == {"bytes": 5, "content": "hello"}
    assert "request" not in a["httptraced"]  # no gap, nothing truncated
    assert a["http"]["response"]["body"] == {"bytes": 3, "content": "n=5"}
    assert b["http"]["response"]["body"] == {"bytes": 3, "content": "n=0"}
    assert b["httptraced"]["connection"]["seq"] == 1
    assert a["httptraced"]["connection"]["peer_pid"] == os.getpid()
    st = final_stats(d)
    assert st["parse_errors"] == 0 and st["gaps"] == 0, st


@pytest.mark.parametrize("flag", ["--unix_sockets=false", "--port={tcp_port}"])
def test_unix_sockets_can_be_left_out(tmp_path, py_server, unix_server, flag):
    """--unix_sockets=false leaves Unix sockets out; so does --port, which
    names TCP ports only. TCP is still traced in the same run."""
    d = Daemon(tmp_path / "logs", flag.format(tcp_port=py_server.port)).start()
    tok = secrets.token_hex(4)
    try:
        curl("--unix-socket", unix_server.path, f"http://localhost/path/unix-{tok}")
        curl(py_server.url(f"/path/tcp-{tok}"))
        tcp = d.wait_for(lambda r: r.get("url", {}).get("path") == f"/path/tcp-{tok}", 2)
    finally:
        assert d.stop() == 0, d.stderr()
    assert len(tcp) == 2
    assert [r for r in d.records() if r["network"].get("type") == "unix"] == []


@pytest.mark.parametrize("with_port", [False, True])
def test_unix_path_traces_only_the_sockets_it_names(tmp_path, py_server, unix_server, with_port):
    """--unix_path: the named socket file's connections are recorded (both
    ends: the server's socket has the name, the client's peer has it), another
    socket's are not, whatever --port says; --port keeps choosing TCP."""
    other = start_unix_server(tmp_path / "other.sock")
    args = [f"--unix_path={unix_server.path},@not-this-one"]
    if with_port:
        args.append(f"--port={py_server.port}")
    d = Daemon(tmp_path / "logs", *args).start()
    tok = secrets.token_hex(4)
    try:
        _, named_pid = curl("--unix-socket", unix_server.path, f"http://localhost/path/named-{tok}")
        curl("--unix-socket", other.path, f"http://localhost/path/other-{tok}")
        curl(py_server.url(f"/path/tcp-{tok}"))
        named = d.wait_for(on_unix(unix_server.path, f"/path/named-{tok}"), 2)
        tcp = d.wait_for(lambda r: r.get("url", {}).get("path") == f"/path/tcp-{tok}", 2)
    finally:
        assert d.stop() == 0, d.stderr()
        stop(other.proc)
    assert sorted(r["httptraced"]["role"] for r in named) == ["client", "server"]
    for r in named:
        peer = unix_server.pid if r["httptraced"]["role"] == "client" else named_pid
        check_unix_record(r, unix_server.path, r["httptraced"]["role"], f"/path/named-{tok}",
                          f"path=/path/named-{tok}\n".encode(), peer)
    assert len(tcp) == 2
    assert [r for r in d.records() if f"other-{tok}" in r.get("url", {}).get("path", "")] == []
    # Both ends of the other socket's connection were stopped at their open event.
    assert final_stats(d)["unix_filtered"] >= 2


def test_a_bad_unix_path_is_refused_before_loading():
    p = subprocess.run([str(BIN), "--unix_path=/run/a.sock,/run/a.sock"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2
    assert p.stderr.strip() == "httptraced: --unix_path: /run/a.sock is listed twice"


def test_a_unix_connection_opened_before_the_daemon_started(tmp_path, unix_server):
    """A keep-alive connection made before the daemon ran is found at its next
    request (origin "discovered"): both ends recorded, with the server's name,
    and nothing of the request made before."""
    tok = secrets.token_hex(4)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(unix_server.path)
        before = f"GET /path/before-{tok} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        s.sendall(before)
        recv_until(s, b"", f"path=/path/before-{tok}\n".encode())
        d = Daemon(tmp_path / "logs").start()
        try:
            s.sendall(f"GET /path/after-{tok} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            recv_until(s, b"", f"path=/path/after-{tok}\n".encode())
            recs = d.wait_for(on_unix(unix_server.path, f"/path/after-{tok}"), 2)
        finally:
            assert d.stop() == 0, d.stderr()
    assert len(recs) == 2
    by = {r["process"]["pid"]: r for r in recs}
    assert sorted(by) == sorted([os.getpid(), unix_server.pid])
    for pid, role, peer in ((os.getpid(), "client", unix_server.pid),
                            (unix_server.pid, "server", os.getpid())):
        r = by[pid]
        assert r["httptraced"]["role"] == role
        assert r["httptraced"]["connection"]["peer_pid"] == peer
        assert r["httptraced"]["connection"]["origin"] == "discovered"
        assert r["server"] == {"address": unix_server.path}
        assert r["network"] == UNIX_NETWORK
        assert r["http"]["response"]["body"]["content"] == f"path=/path/after-{tok}\n"
    assert not [r for r in d.records() if f"before-{tok}" in r.get("url", {}).get("path", "")]
