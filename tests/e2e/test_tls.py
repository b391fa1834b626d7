"""HTTPS: the plaintext at OpenSSL's libssl, from real TLS clients and servers.

nginx and curl call SSL_read/SSL_write, Python's ssl module SSL_read_ex and
SSL_write_ex; all of them link Debian's libssl.so.3, which the daemon probes
by default. Each exchange must be recorded by both ends, in the clear and
exact, marked tls.established; the TLS records on the wire are never traced
as payload.
"""
import collections
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (BIN, PYTHON, SERVERS, Daemon, curl, fdinfo_values, final_stats, pick_port,
                      server_port, start_nginx, start_server)

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



def daemon_fds_become(d, want, timeout=10.0):
    """The daemon's count of open descriptors once it is `want`, or what it is
    at the timeout. Probes are removed off the event loop (each removal waits
    for an RCU grace period, about 0.1 s here), so after their message."""
    deadline = time.monotonic() + timeout
    while True:
        n = len(os.listdir(f"/proc/{d.pid()}/fd"))
        if n == want or time.monotonic() > deadline:
            return n
        time.sleep(0.05)

def link_types(pid):
    """{link type: count} of the BPF links the process holds, from
    /proc/<pid>/fdinfo ("perf", "raw_tracepoint", "uprobe_multi", ...)."""
    return dict(collections.Counter(fdinfo_values(pid, "link_type")))


def tracepoints_attached(daemon):
    line = next(l for l in daemon.stderr_lines if l.startswith("httptraced: tracing ("))
    return int(re.match(r"httptraced: tracing \((\d+) tracepoints attached\)", line).group(1))


def test_daemon_probes_libssl_and_libgnutls(tracer):
    """Debian's libssl.so.3: SSL_read and SSL_read_ex share one internal
    function, and so do the writes; the daemon probes those two (cheaper than
    the public functions, whose first instruction the kernel single-steps)
    and the three handshake functions. Every process being traced, and the
    kernel having them (Linux 6.6), they are uprobe_multi links, one per
    program: the entry programs of the read, the write and the handshakes,
    and the two return programs (data, handshake), whose removal at stop
    waits for one RCU grace period in all rather than one per probe.
    Debian's libgnutls.so.30 too (wget, apt, git's libcurl-gnutls): its
    gnutls_record_recv, gnutls_record_send and gnutls_handshake."""
    probed = [l for l in tracer.stderr_lines
              if l.startswith("httptraced: TLS: ") and "mapped by pid" not in l]
    assert probed == ["httptraced: TLS: 3 GnuTLS functions probed in "
                      "/usr/lib/x86_64-linux-gnu/libgnutls.so.30",
                      "httptraced: TLS: 5 libssl functions probed in "
                      "/usr/lib/x86_64-linux-gnu/libssl.so.3"], tracer.stderr()
    types = link_types(tracer.pid())
    tracepoints = tracepoints_attached(tracer)
    # Per file: libssl's 3 entry programs and 2 return programs; GnuTLS's read,
    # write and handshake entries and the 2 returns.
    assert types.pop("uprobe_multi") == 6 and types.pop("uretprobe_multi") == 4, types
    assert sum(types.values()) == tracepoints and set(types) <= {"perf", "raw_tracepoint"}, \
        types


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


def test_gnutls_client_wget_both_ends_in_the_clear(tracer, tls_py_server):
    """wget links GnuTLS (libgnutls.so.30): its gnutls_record_send and
    gnutls_record_recv carry the plaintext, as SSL_write and SSL_read do for
    the Python server (OpenSSL) at the other end. Two GETs on one kept-alive
    connection, then a POST with a body: each exchange recorded by both ends,
    exact, marked tls.established."""
    port = tls_py_server.port
    base = f"https://127.0.0.1:{port}"
    runs = []
    for extra, urls in (([], [f"{base}/path/gnutls-1", f"{base}/path/gnutls-2"]),
                        (["--post-data=order=17&item=gnu"], [f"{base}/echo"])):
        p = subprocess.Popen(["wget", "-q", "-O", "-", "--no-check-certificate", "--no-proxy",
                              "--no-hsts", *extra, *urls],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        runs.append((p.pid, out))
    (get_pid, get_out), (post_pid, post_out) = runs
    assert get_out == b"path=/path/gnutls-1\npath=/path/gnutls-2\n"
    assert post_out == b"order=17&item=gnu"

    def exchanges(pid, role):
        recs = tracer.wait_for(lambda r: server_port(r) == port and r["process"]["pid"] == pid
                               and r["httptraced"]["role"] == role, 3 if role == "server" else
                               (2 if pid == get_pid else 1))
        return recs

    gets = exchanges(get_pid, "client")
    posts = exchanges(post_pid, "client")
    server = [r for r in tracer.wait_for(
        lambda r: server_port(r) == port and r["process"]["pid"] == tls_py_server.pid and
        (r["url"]["path"].startswith("/path/gnutls-") or
         r["http"]["request"].get("body", {}).get("content") == "order=17&item=gnu"), 3)]
    assert [r["process"]["name"] for r in gets + posts] == ["wget"] * 3
    for mine, theirs in ((gets, server[:2]), (posts, server[2:])):
        assert [r["httptraced"]["role"] for r in theirs] == ["server"] * len(mine)
        for a, b in zip(mine, theirs):
            assert a["client"]["port"] == b["client"]["port"]
            for r in (a, b):
                assert r["tls"] == {"established": True}
                assert r["httptraced"]["incomplete"] is False
                assert r["http"]["response"]["status_code"] == 200
    assert [(r["http"]["request"]["method"], r["url"]["path"], r["http"]["response"]["body"],
             r["httptraced"]["connection"]["seq"]) for r in gets] == [
        ("GET", "/path/gnutls-1", {"bytes": 20, "content": "path=/path/gnutls-1\n"}, 0),
        ("GET", "/path/gnutls-2", {"bytes": 20, "content": "path=/path/gnutls-2\n"}, 1)]
    assert gets[0]["httptraced"]["connection"]["id"] == gets[1]["httptraced"]["connection"]["id"]
    assert gets[0]["http"]["request"]["headers"]["user-agent"].startswith("Wget/")
    (post,) = posts
    assert (post["http"]["request"]["method"], post["http"]["request"]["body"],
            post["http"]["response"]["body"]) == (
        "POST", {"bytes": 17, "content": "order=17&item=gnu"},
        {"bytes": 17, "content": "order=17&item=gnu"})
    assert [(r["url"]["path"], r["http"]["response"]["body"]) for r in server] == [
        (r["url"]["path"], r["http"]["response"]["body"]) for r in gets + posts]


def test_gnutls_server_answering_curl_both_ends_in_the_clear(tmp_path, cert):
    """gnutls-serv (GnuTLS's test server, `--http`) answering curl (OpenSSL):
    the server's gnutls_record_recv and gnutls_record_send carry the request
    and its HTTP/1.0 response, a page delimited by the close. Both ends are
    recorded, exact: the server's record holds the very page curl printed."""
    port = pick_port("0.0.0.0")
    server = subprocess.Popen(["gnutls-serv", "--http", f"--x509certfile={cert[0]}",
                               f"--x509keyfile={cert[1]}", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d = Daemon(tmp_path / "logs", f"--port={port}").start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        out, curl_pid = curl("-k", f"https://127.0.0.1:{port}/gnutls/page?q=1")
        page = out.decode()
        assert "This is <a href=\"http://www.gnu.org/software/gnutls\">GnuTLS</a>" in page
        recs = d.wait_for(lambda r: server_port(r) == port, 2)
    finally:
        assert d.stop() == 0, d.stderr()
        server.terminate()
        server.wait(5)
    by_role = {r["httptraced"]["role"]: r for r in recs}
    assert sorted(by_role) == ["client", "server"]
    assert by_role["client"]["process"]["pid"] == curl_pid
    assert by_role["server"]["process"]["pid"] == server.pid
    for r in recs:
        assert r["tls"] == {"established": True}
        assert (r["http"]["request"]["method"], r["url"]["path"], r["url"]["query"]) == \
            ("GET", "/gnutls/page", "q=1")
        assert r["http"]["response"]["status_code"] == 200
        assert r["http"]["response"]["body"] == {"bytes": len(out), "content": page}
        assert r["httptraced"]["incomplete"] is False
    assert final_stats(d)["tls_unattributed"] == 0


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
     "/usr/lib/x86_64-linux-gnu/libc.so.6 exports neither SSL_read nor SSL_write nor "
     "gnutls_record_recv nor gnutls_record_send (is it libssl or libgnutls?)"),
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


SYSTEM_LIBSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3"


def code_byte(pid, path, offset):
    """The byte of `path` at file offset `offset` as process pid sees it in
    its memory (where a uprobe has put its breakpoint, 0xcc), or None if it
    does not map that part of the file."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        f = line.split()
        if len(f) < 6 or f[5] != path:
            continue
        start, end = (int(x, 16) for x in f[0].split("-"))
        off = int(f[2], 16)
        if off <= offset < off + (end - start):
            with open(f"/proc/{pid}/mem", "rb") as mem:
                mem.seek(start + offset - off)
                return mem.read(1)[0]
    return None


def uprobe_multi_pids(daemon_pid):
    """The pid filter of each uprobe_multi link the daemon holds (0: every
    process), from /proc/<pid>/fdinfo."""
    pids = []
    fdinfo = f"/proc/{daemon_pid}/fdinfo"
    for fd in os.listdir(fdinfo):
        try:
            fields = dict(line.split(":", 1) for line in Path(fdinfo, fd).read_text().splitlines()
                          if ":" in line)
        except OSError:
            continue  # closed meanwhile
        if fields.get("link_type", "").strip() in ("uprobe_multi", "uretprobe_multi"):
            pids.append(int(fields["pid"]))
    return pids


def test_pid_filter_probes_only_those_processes(tmp_path, tls_py_server):
    """With --pid the uprobes go into the listed processes only: every
    uprobe_multi link is filtered by the listed server's pid, and its libssl
    code has the breakpoints in its memory; the server's HTTPS exchanges are
    recorded, its client's are not."""
    d = Daemon(tmp_path / "logs", f"--pid={tls_py_server.pid}", "--verbosity=1").start()
    try:
        offsets = [int(m.group(1), 16) for m in (
            re.match(rf"httptraced: TLS: {SYSTEM_LIBSSL}: probing .* at offset (0x[0-9a-f]+)$", l)
            for l in d.stderr_lines) if m]
        assert len(offsets) == 5, d.stderr()
        assert [code_byte(tls_py_server.pid, SYSTEM_LIBSSL, o) for o in offsets] == [0xcc] * 5
        assert uprobe_multi_pids(d.pid()) == [tls_py_server.pid] * 10
        assert "httptraced: TLS: 5 libssl functions probed in " \
               "/usr/lib/x86_64-linux-gnu/libssl.so.3" in d.stderr_lines, d.stderr()
        # uprobe_multi links whose pid filter is that process (which admits
        # its every thread since Linux 6.10): per file, one per program, as
        # when every process is traced (test_daemon_probes_libssl_and_libgnutls).
        types = link_types(d.pid())
        assert types.pop("uprobe_multi") == 6 and types.pop("uretprobe_multi") == 4, types
        assert sum(types.values()) == tracepoints_attached(d) and \
            set(types) <= {"perf", "raw_tracepoint"}, types
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


def https_get(port, path):
    """curl over HTTPS; returns curl's pid."""
    out, pid = curl("-k", f"https://127.0.0.1:{port}{path}")
    assert out == f"path={path}\n".encode(), out
    return pid


def maps_of(pid):
    return [l.split(None, 5)[5] for l in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if "libssl" in l and len(l.split(None, 5)) == 6]


def wait_line_match(daemon, pattern, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not any(re.fullmatch(pattern, l) for l in daemon.stderr_lines) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(re.fullmatch(pattern, l) for l in daemon.stderr_lines), daemon.stderr()


def wait_line(daemon, line, timeout=10.0):
    deadline = time.monotonic() + timeout
    while line not in daemon.stderr_lines and time.monotonic() < deadline:
        time.sleep(0.05)
    assert line in daemon.stderr_lines, daemon.stderr()


@pytest.fixture
def own_libssl_servers(tmp_path, cert):
    """Two HTTPS servers that do not map the system's libssl:
    - `deleted`: a copy loaded from its own directory, then deleted, as a
      server still running after its libssl package was upgraded;
    - `private`: a copy on a tmpfs mounted in the server's own mount
      namespace, which the daemon's namespace cannot see (a container's)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(SYSTEM_LIBSSL, lib / "libssl.so.3")
    tls = f"{cert[0]},{cert[1]}"
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib))
    deleted = subprocess.Popen([PYTHON, str(SERVERS / "py_server.py"), "--tls", tls],
                               stdout=subprocess.PIPE, text=True, env=env)
    deleted_port = int(deleted.stdout.readline())
    (lib / "libssl.so.3").unlink()
    priv = tmp_path / "private"
    priv.mkdir()

    def start_private():
        # unshare and sh exec in place: the server keeps the pid Popen gave.
        p = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f'mount -t tmpfs none "{priv}" && cp {SYSTEM_LIBSSL} "{priv}/" && '
             f'LD_LIBRARY_PATH="{priv}" exec "$0" "$@"',
             PYTHON, str(SERVERS / "py_server.py"), "--tls", tls],
            stdout=subprocess.PIPE, text=True)
        return p, int(p.stdout.readline())

    servers = {"deleted": (deleted, deleted_port)}
    try:
        yield servers, start_private
    finally:
        for p, _ in servers.values():
            p.terminate()
            p.wait(5)


def test_libssl_mapped_by_processes_is_found_deleted_or_in_another_mount_namespace(
        tmp_path, own_libssl_servers):
    """The daemon probes every libssl file that a process maps, found through
    /proc: a deleted file (a library upgraded under a running server) at
    start, and one in another mount namespace (a container's own) when its
    process appears; each reached through /proc/<pid>/map_files. Both
    servers' exchanges are recorded exactly, as are their clients'."""
    servers, start_private = own_libssl_servers
    deleted, deleted_port = servers["deleted"]
    assert maps_of(deleted.pid)[0] == f"{tmp_path}/lib/libssl.so.3 (deleted)"
    assert not any(SYSTEM_LIBSSL in m for m in maps_of(deleted.pid))
    d = Daemon(tmp_path / "logs").start()
    try:
        wait_line(d, f"httptraced: TLS: 5 libssl functions probed in {tmp_path}/lib/libssl.so.3 "
                     f"(deleted), mapped by pid {deleted.pid}")
        servers["private"] = start_private()
        private, private_port = servers["private"]
        assert maps_of(private.pid)[0] == f"{tmp_path}/private/libssl.so.3"
        assert list((tmp_path / "private").iterdir()) == []  # not in the daemon's namespace
        wait_line(d, f"httptraced: TLS: 5 libssl functions probed in {tmp_path}/private/"
                     f"libssl.so.3, mapped by pid {private.pid}")
        clients = {}
        for name, port, proc in (("deleted", deleted_port, deleted),
                                 ("private", private_port, private)):
            clients[name] = [https_get(port, f"/path/{name}{i}") for i in range(2)]
            theirs = d.wait_for(lambda r: r["process"]["pid"] == proc.pid, 2)
            assert [r["url"]["path"] for r in theirs] == [f"/path/{name}0", f"/path/{name}1"]
            for r in theirs:
                assert r["tls"] == {"established": True}
                assert r["httptraced"]["role"] == "server"
                assert r["httptraced"]["incomplete"] is False
                assert r["http"]["response"]["status_code"] == 200
                assert r["http"]["response"]["body"]["content"] == f"path={r['url']['path']}\n"
            for pid, path in zip(clients[name], (f"/path/{name}0", f"/path/{name}1")):
                mine = d.wait_for(lambda r: r["process"]["pid"] == pid)
                assert [(r["url"]["path"], r["httptraced"]["role"], r["tls"]) for r in mine] == \
                    [(path, "client", {"established": True})]
        time.sleep(1.0)
        ports = {deleted_port, private_port}
        assert len([r for r in d.records() if server_port(r) in ports]) == 8
        # The private server exits: no process maps its libssl any more, and
        # the file's uprobes (5 functions, entry and return) are removed: 5
        # uprobe_multi links, one per program (test_daemon_probes_libssl).
        fds = len(os.listdir(f"/proc/{d.pid()}/fd"))
        types = link_types(d.pid())
        private.terminate()
        private.wait(5)
        wait_line(d, f"httptraced: TLS: probes removed from {tmp_path}/private/libssl.so.3: "
                     "no process maps it")
        assert daemon_fds_become(d, fds - 5) == fds - 5
        types["uprobe_multi"] -= 3
        types["uretprobe_multi"] -= 2
        assert link_types(d.pid()) == types
    finally:
        assert d.stop() == 0, d.stderr()
    # The system's libssl, and the two copies, each once (a node running on
    # the host is reported too: an executable with OpenSSL of its own).
    probed = [l for l in d.stderr_lines
              if l.startswith("httptraced: TLS: ") and " probed in " in l and "/libssl." in l]
    assert len(probed) == 3, d.stderr()
    assert final_stats(d)["tls_unattributed"] == 0


def test_named_tls_libraries_are_the_only_ones_probed(tmp_path, own_libssl_servers):
    """--tls_libraries names exactly the files to probe: no process's own copy
    is looked for. The server on the deleted copy goes unrecorded; its client,
    on the system's libssl, is recorded."""
    servers, _ = own_libssl_servers
    deleted, port = servers["deleted"]
    d = Daemon(tmp_path / "logs", f"--tls_libraries={SYSTEM_LIBSSL}").start()
    try:
        client = https_get(port, "/path/named")
        mine = d.wait_for(lambda r: r["process"]["pid"] == client)
        time.sleep(1.5)
        every = d.records()
    finally:
        assert d.stop() == 0, d.stderr()
    assert [r["url"]["path"] for r in mine] == ["/path/named"]
    assert [r for r in every if r["process"]["pid"] == deleted.pid] == []
    assert not any("mapped by pid" in l for l in d.stderr_lines), d.stderr()


def test_pid_filter_probes_a_listed_process_own_libssl(tmp_path, own_libssl_servers):
    """With --pid, the listed process's own libssl is probed in it alone, and
    its probes go when it exits (5 uprobe_multi links whose pid filter is that
    process, a descriptor each)."""
    servers, _ = own_libssl_servers
    deleted, port = servers["deleted"]
    d = Daemon(tmp_path / "logs", f"--pid={deleted.pid}").start()
    try:
        wait_line(d, f"httptraced: TLS: 5 libssl functions probed in {tmp_path}/lib/libssl.so.3 "
                     f"(deleted), mapped by pid {deleted.pid}")
        client = https_get(port, "/path/listed")
        theirs = d.wait_for(lambda r: r["process"]["pid"] == deleted.pid)
        time.sleep(1.0)
        every = d.records()
        fds = len(os.listdir(f"/proc/{d.pid()}/fd"))
        deleted.terminate()
        deleted.wait(5)
        wait_line(d, f"httptraced: TLS: probes removed from {tmp_path}/lib/libssl.so.3 "
                     "(deleted): no listed process maps it", timeout=3.0)
        assert daemon_fds_become(d, fds - 5) == fds - 5
    finally:
        assert d.stop() == 0, d.stderr()
    assert [(r["url"]["path"], r["tls"]) for r in theirs] == \
        [("/path/listed", {"established": True})]
    assert [r for r in every if r["process"]["pid"] == client] == []
    assert len(every) == 1, every


NODE = shutil.which("node") or "/usr/bin/node"


@pytest.mark.parametrize("server_kind", ["node", "python-asyncio"])
def test_tls_through_memory_bios_both_ends_exact(tmp_path, cert, server_kind):
    """Node.js links its own OpenSSL, which it exports, and drives it through
    memory BIOs: libuv reads and writes the socket, outside every libssl call;
    Python's asyncio does the same with the system's libssl (ssl.SSLObject).
    The daemon finds the functions in the node executable itself (no libssl
    file is mapped) and ties each SSL object to the socket its thread read TLS
    records from just before. The server (Node or asyncio) answers curl and a
    Node client (20 POSTs over at most 4 kept-alive connections): every
    exchange is recorded by both ends, in the clear and exact, and no libssl
    call is left without its socket."""
    if server_kind == "node":
        cmd = [NODE, str(SERVERS / "node_tls.js"), "server", str(cert[0]), str(cert[1])]
    else:
        cmd = [PYTHON, str(SERVERS / "py_asyncio_tls.py"), str(cert[0]), str(cert[1])]
    server = start_server(cmd, "127.0.0.1")
    d = Daemon(tmp_path / "logs", f"--port={server.port}").start()
    try:
        if server_kind == "node":
            wait_line_match(d, rf"httptraced: TLS: \d+ libssl functions probed in "
                               rf"{re.escape(os.path.realpath(NODE))}, mapped by pid \d+")
        # curl (the system's libssl) to the server, one connection each.
        curls = [https_get(server.port, f"/curl{i}") for i in range(3)]
        client = subprocess.Popen([NODE, str(SERVERS / "node_tls.js"), "client",
                                   str(server.port), "20"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            # The client starts once its node is probed: found by the scanner
            # when it appears, or already (the file's uprobes are in every
            # process that maps it; another node on the host may be named).
            wait_line_match(d, rf"httptraced: TLS: \d+ libssl functions probed in "
                               rf"{re.escape(os.path.realpath(NODE))}, mapped by pid \d+")
            client.stdin.write("go\n")
            client.stdin.flush()
            out, _ = client.communicate(timeout=20)
        finally:
            if client.poll() is None:
                client.kill()
        assert out.splitlines()[-1] == "done"
        assert sorted(out.splitlines()[:-1]) == sorted(
            f"path=/c{i} got={1000 + i}" for i in range(20))
        mine = d.wait_for(lambda r: server_port(r) == server.port, 46)
        time.sleep(1.0)
        every = d.records()
    finally:
        assert d.stop() == 0, d.stderr()
        server.stop()
    assert len(every) == 46, [r["url"]["path"] for r in every]
    by = {}
    for r in every:
        assert r["tls"] == {"established": True}, r
        assert r["httptraced"]["incomplete"] is False, r
        assert r["http"]["response"]["status_code"] == 200
        by.setdefault((r["httptraced"]["role"], r["process"]["pid"]), []).append(r)
    # curl's exchanges: the Node server's records and curl's own.
    for i, pid in enumerate(curls):
        assert [r["url"]["path"] for r in by.pop(("client", pid))] == [f"/curl{i}"]
    server_records = by.pop(("server", server.pid))
    node_client = by.pop(("client", client.pid))
    assert by == {}
    assert sorted(r["url"]["path"] for r in server_records) == \
        sorted([f"/curl{i}" for i in range(3)] + [f"/c{i}" for i in range(20)])
    for records in (server_records, node_client):
        conns = {}
        for r in records:
            path = r["url"]["path"]
            body = r["http"]["response"]["body"]
            if path.startswith("/curl"):
                assert r["http"]["request"]["method"] == "GET"
                assert body == {"bytes": len(path) + 6, "content": f"path={path}\n"}
                continue
            i = int(path[2:])
            assert r["http"]["request"]["method"] == "POST"
            assert r["http"]["request"]["body"] == {"bytes": 1000 + i, "content": "x" * (1000 + i)}
            text = f"path={path} got={1000 + i}\n"
            assert body == {"bytes": len(text), "content": text}
            conns.setdefault(r["httptraced"]["connection"]["id"], []).append(
                r["httptraced"]["connection"]["seq"])
        # At most 4 connections; on each, the exchanges in order from 0.
        assert 1 <= len(conns) <= 4 and sum(map(len, conns.values())) == 20, conns
        for seqs in conns.values():
            assert seqs == list(range(len(seqs))), conns
    st = final_stats(d)
    assert st["tls_unattributed"] == 0 and st["parse_errors"] == 0 and st["gaps"] == 0, st
