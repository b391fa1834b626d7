"""HTTPS: the plaintext at OpenSSL's libssl, from real TLS clients and servers.

nginx and curl call SSL_read/SSL_write, Python's ssl module SSL_read_ex and
SSL_write_ex; all of them link Debian's libssl.so.3, which the daemon probes
by default. Each exchange must be recorded by both ends, in the clear and
exact, marked tls.established; the TLS records on the wire are never traced
as payload.
"""
import json
import subprocess
import time

import pytest

from conftest import (BIN, PYTHON, SERVERS, Daemon, curl, final_stats, pick_port, server_port,
                      start_nginx, start_server)

BIG = 100_000


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem")], check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


@pytest.fixture(scope="module")
def tls_nginx(tmp_path_factory, cert):
    """nginx serving static files over HTTPS, keep-alive."""
    root = tmp_path_factory.mktemp("nginx_tls")
    www = root / "www"
    www.mkdir()
    (www / "index.html").write_bytes(b"<h1>over TLS</h1>\n")
    (www / "big.txt").write_bytes(b"0123456789" * (BIG // 10))
    port = pick_port()
    proc = start_nginx(root, port, http=f"""
  keepalive_timeout 30;
  default_type text/plain;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert[0]};
    ssl_certificate_key {cert[1]};
    root {www};
  }}""")
    yield port, proc
    proc.terminate()
    proc.wait(5)


@pytest.fixture(scope="module")
def tls_py_server(cert):
    s = start_server([PYTHON, str(SERVERS / "py_server.py"), "--tls", f"{cert[0]},{cert[1]}"],
                     "127.0.0.1")
    yield s
    s.stop()


def workers(proc):
    return [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                           text=True).stdout.split()]


def by_pid(daemon, port, pid, count):
    got = daemon.wait_for(lambda r: server_port(r) == port and r["process"]["pid"] == pid, count)
    assert len(got) == count, (pid, got)
    return got


def test_daemon_probes_libssl(tracer):
    """Debian's libssl.so.3: SSL_read and SSL_read_ex share one internal
    function, and so do the writes; the daemon probes those two (cheaper than
    the public functions, whose first instruction the kernel single-steps)
    and the three handshake functions."""
    probed = [l for l in tracer.stderr_lines if l.startswith("httptraced: TLS: ")]
    assert probed == ["httptraced: TLS: 5 libssl functions probed in "
                      "/usr/lib/x86_64-linux-gnu/libssl.so.3"], tracer.stderr()


def test_curl_to_nginx_keepalive_both_ends_in_the_clear(tracer, tls_nginx):
    port, nginx = tls_nginx
    base = f"https://127.0.0.1:{port}"
    out, curl_pid = curl("-k", f"{base}/index.html", f"{base}/big.txt")
    assert out == b"<h1>over TLS</h1>\n" + b"0123456789" * (BIG // 10)
    (worker,) = workers(nginx)

    mine = by_pid(tracer, port, curl_pid, 2)
    theirs = by_pid(tracer, port, worker, 2)
    for recs, role in ((mine, "client"), (theirs, "server")):
        small, big = recs
        for r in recs:
            assert r["tls"] == {"established": True}
            assert r["httptraced"]["role"] == role
            assert r["network"] == {"transport": "tcp", "type": "ipv4", "protocol": "http"}
            assert r["http"]["request"]["method"] == "GET"
            assert r["http"]["response"]["status_code"] == 200
            assert r["httptraced"]["incomplete"] is False
        # One connection: the same client port, exchanges in order.
        assert small["client"]["port"] == big["client"]["port"]
        assert small["httptraced"]["connection"]["id"] == big["httptraced"]["connection"]["id"]
        assert [small["httptraced"]["connection"]["seq"], big["httptraced"]["connection"]["seq"]] \
            == [0, 1]
        assert small["url"]["path"] == "/index.html"
        assert small["http"]["response"]["body"] == {"bytes": 18, "content": "<h1>over TLS</h1>\n"}
        assert big["url"]["path"] == "/big.txt"
        assert big["http"]["response"]["body"] == {"bytes": BIG,
                                                   "content": ("0123456789" * 1700)[:16384]}
        assert big["httptraced"]["response"] == {"body": {"truncated": True}}
    assert mine[0]["client"]["port"] == theirs[0]["client"]["port"]
    # Nothing else on the port: the TLS records themselves are not traced.
    time.sleep(1.0)
    assert len([r for r in tracer.records() if server_port(r) == port]) == 4


def test_python_https_post_echo_ssl_ex_calls(tracer, tls_py_server):
    """Python's ssl module: SSL_write_ex and SSL_read_ex on both ends."""
    body = json.dumps({"order": 17, "items": ["a", "b"], "note": "é" * 50})
    client = subprocess.run([PYTHON, "-c", f"""
import http.client, os, ssl, sys
ctx = ssl._create_unverified_context()
c = http.client.HTTPSConnection("127.0.0.1", {tls_py_server.port}, context=ctx)
for i in range(3):
    c.request("POST", "/echo?i=%d" % i, body=sys.argv[1].encode(),
              headers={{"Content-Type": "application/json"}})
    r = c.getresponse()
    assert r.status == 200 and r.read() == sys.argv[1].encode()
print(os.getpid())
""", body], capture_output=True, text=True, check=True)
    client_pid = int(client.stdout)
    port = tls_py_server.port
    mine = by_pid(tracer, port, client_pid, 3)
    theirs = by_pid(tracer, port, tls_py_server.pid, 3)
    size = len(body.encode())
    for recs in (mine, theirs):
        assert [r["url"]["query"] for r in recs] == ["i=0", "i=1", "i=2"]
        for r in recs:
            assert r["tls"] == {"established": True}
            assert r["http"]["request"]["method"] == "POST"
            assert r["http"]["request"]["body"] == {"bytes": size, "content": body}
            assert r["http"]["response"]["status_code"] == 200
            assert r["http"]["response"]["body"] == {"bytes": size, "content": body}
            assert r["http"]["request"]["headers"]["content-type"] == "application/json"
    assert {r["httptraced"]["role"] for r in mine} == {"client"}
    assert {r["httptraced"]["role"] for r in theirs} == {"server"}


def test_tls_off_traces_no_https_and_still_plain_http(tmp_path, tls_nginx, py_server):
    port, _ = tls_nginx
    d = Daemon(tmp_path / "logs", "--tls=false").start()
    try:
        assert not any(l.startswith("httptraced: TLS: ") for l in d.stderr_lines), d.stderr()
        _, tls_pid = curl("-k", f"https://127.0.0.1:{port}/index.html")
        _, plain_pid = curl(py_server.url("/hello"))
        plain = d.wait_for(lambda r: r["process"]["pid"] == plain_pid)
        assert [r["url"]["path"] for r in plain] == ["/hello"]
        time.sleep(1.5)  # what the TLS exchange could have produced is written by now
        assert [r for r in d.records() if server_port(r) == port] == []
        assert [r for r in d.records() if r["process"]["pid"] == tls_pid] == []
    finally:
        assert d.stop() == 0, d.stderr()
    assert final_stats(d)["tls_unattributed"] == 0


@pytest.mark.parametrize("value,message", [
    ("/nonexistent/libssl.so.3",
     "--tls_libraries: /nonexistent/libssl.so.3: No such file or directory"),
    ("libssl.so.3", '--tls_libraries: "libssl.so.3" is not an absolute path'),
    ("/usr/lib", "--tls_libraries: /usr/lib is not a readable file"),
])
def test_bad_tls_libraries_refused_with_one_sentence(tmp_path, value, message):
    p = subprocess.run([str(BIN), f"--log_dir={tmp_path}", f"--tls_libraries={value}"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, p.stderr
    assert p.stderr == f"httptraced: {message}\n"


@pytest.mark.parametrize("lib,message", [
    ("/usr/lib/x86_64-linux-gnu/libc.so.6",
     "/usr/lib/x86_64-linux-gnu/libc.so.6 exports neither SSL_read nor SSL_write (is it libssl?)"),
    ("/etc/os-release", "/etc/os-release is not an ELF file"),
])
def test_not_libssl_refused(tmp_path, lib, message):
    """A file with none of the functions (libc), or no library at all, is an
    error at start, not silence."""
    p = subprocess.run([str(BIN), f"--log_dir={tmp_path}", f"--tls_libraries={lib}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    assert p.stderr.splitlines()[-1] == (
        f"httptraced: TLS: {message}; name the right file with --tls_libraries or pass "
        "--tls=false")


def test_session_established_before_the_daemon_is_picked_up(tmp_path, tls_py_server):
    """A keep-alive HTTPS connection whose handshake (and first exchange) came
    before the daemon started: its next calls that reach the socket tie it to
    its TLS session, and the exchanges from there on are recorded in the clear,
    as a discovered connection."""
    port = tls_py_server.port
    client = subprocess.Popen([PYTHON, "-c", f"""
import http.client, os, ssl, sys
c = http.client.HTTPSConnection("127.0.0.1", {port}, context=ssl._create_unverified_context())
print(os.getpid(), flush=True)
for line in sys.stdin:
    c.request("GET", "/path/" + line.strip())
    r = c.getresponse()
    print(r.status, r.read().decode().strip(), flush=True)
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        client_pid = int(client.stdout.readline())

        def ask(x):
            client.stdin.write(x + "\n")
            client.stdin.flush()
            assert client.stdout.readline().strip() == f"200 path=/path/{x}"

        ask("before")
        d = Daemon(tmp_path / "logs", f"--port={port}").start()
        try:
            for x in ("one", "two", "three"):
                ask(x)
            mine = d.wait_for(lambda r: r["process"]["pid"] == client_pid, 3)
            d.wait_for(lambda r: r["process"]["pid"] == tls_py_server.pid, 3)
            time.sleep(1.0)
            every = d.records()
        finally:
            assert d.stop() == 0, d.stderr()
    finally:
        client.stdin.close()
        client.wait(10)
    assert [r["url"]["path"] for r in mine] == ["/path/one", "/path/two", "/path/three"]
    for r in mine:
        assert r["tls"] == {"established": True}
        assert r["httptraced"]["connection"]["origin"] == "discovered"
        assert r["http"]["response"]["body"]["content"] == f"path={r['url']['path']}\n"
    # The server was already inside SSL_read for "one" when the probes went in:
    # that call's return is not seen, so its request is missing; its answer is
    # recorded alone, incomplete, and the next exchanges whole.
    theirs = [r for r in every if r["process"]["pid"] == tls_py_server.pid]
    assert len(theirs) == 3, theirs
    first = theirs[0]
    assert "request" not in first["http"] and first["httptraced"]["incomplete"] is True
    assert first["httptraced"]["response"] == {"gap_before": True}
    assert first["http"]["response"]["body"] == {"bytes": 15, "content": "path=/path/one\n"}
    assert [r["url"]["path"] for r in theirs[1:]] == ["/path/two", "/path/three"]
    for r in theirs:
        assert r["tls"] == {"established": True}
        assert r["httptraced"]["role"] == "server"
        assert r["httptraced"]["connection"]["origin"] == "discovered"
    for r in theirs[1:]:
        assert r["httptraced"]["incomplete"] is False
        assert r["http"]["response"]["body"]["content"] == f"path={r['url']['path']}\n"
    assert len(every) == 6, every


def test_pid_filter_probes_only_those_processes(tmp_path, tls_py_server):
    """With --pid the uprobes go into the listed processes only (the others'
    libssl code keeps no breakpoint): the server's HTTPS exchanges are
    recorded, its client's are not."""
    d = Daemon(tmp_path / "logs", f"--pid={tls_py_server.pid}").start()
    try:
        assert "httptraced: TLS: 5 libssl functions probed in " \
               "/usr/lib/x86_64-linux-gnu/libssl.so.3" in d.stderr_lines, d.stderr()
        client = subprocess.run([PYTHON, "-c", f"""
import http.client, os, ssl
c = http.client.HTTPSConnection("127.0.0.1", {tls_py_server.port},
                                context=ssl._create_unverified_context())
for p in ("/hello", "/path/pid"):
    c.request("GET", p)
    c.getresponse().read()
print(os.getpid())
"""], capture_output=True, text=True, check=True)
        client_pid = int(client.stdout)
        theirs = d.wait_for(lambda r: r["process"]["pid"] == tls_py_server.pid, 2)
        time.sleep(1.0)
        every = d.records()
    finally:
        assert d.stop() == 0, d.stderr()
    assert [r["url"]["path"] for r in theirs] == ["/hello", "/path/pid"]
    assert [r["http"]["response"]["body"]["content"] for r in theirs] == \
        ["hello world\n", "path=/path/pid\n"]
    assert all(r["tls"] == {"established": True} for r in theirs)
    assert [r for r in every if r["process"]["pid"] == client_pid] == []
    assert len(every) == 2, every
