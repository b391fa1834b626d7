"""Fixtures for httptraced's privileged end-to-end tests.

Everything here is real: the httptraced binary with its BPF programs, real
servers (Python http.server, nginx, Node.js) on loopback, real clients (curl,
raw sockets, http.client). The tracer sees the whole host, so every test
filters records by its own servers' ports and its own processes' pids.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import jsonschema
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("HTTPTRACED_BIN", REPO / "build" / "userspace" / "httptraced"))
SCHEMA = json.loads((REPO / "schema" / "httptraced-record.schema.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)
SERVERS = Path(__file__).resolve().parent / "servers"
PYTHON = "/usr/bin/python3"


def pytest_configure(config):
    if os.geteuid() != 0:
        raise pytest.UsageError("the end-to-end tests load BPF programs: run them as root")
    if not BIN.exists():
        raise pytest.UsageError(f"httptraced binary not found at {BIN} (set HTTPTRACED_BIN)")


class Daemon:
    """A running httptraced writing to its own log directory."""

    def __init__(self, log_dir, *args):
        self.log_dir = Path(log_dir)
        self.log = self.log_dir / "httptraced.json"
        self.args = [str(BIN), f"--log_dir={self.log_dir}", "--stats_interval=1s", *args]
        self.stderr_lines = []
        self.proc = None
        self.returncode = None

    def start(self, timeout=30):
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.stderr_lines.append(line.rstrip("\n"))
                if "httptraced: tracing" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            self.proc.kill()
            raise AssertionError("httptraced did not start:\n" + self.stderr())
        self.ready_at = time.monotonic()
        return self

    def stderr(self):
        return "\n".join(self.stderr_lines)

    def pid(self):
        return self.proc.pid

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None or self.returncode is not None:
            return self.returncode
        self.proc.send_signal(sig)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("httptraced did not exit after SIGTERM:\n" + self.stderr())
        time.sleep(0.05)  # let the stderr pump finish
        return self.returncode

    def records(self):
        """Every record in the active file so far, each validated against the schema.

        Reads incrementally: on a busy host the tracer's log grows fast, and
        re-parsing it on every poll would make waiting slow.
        """
        if not self.log.exists():
            return []
        st = self.log.stat()
        cache = getattr(self, "_cache", None)
        if cache is None or cache["ino"] != st.st_ino or st.st_size < cache["offset"]:
            cache = self._cache = {"ino": st.st_ino, "offset": 0, "records": []}
        if st.st_size > cache["offset"]:
            with open(self.log, "rb") as f:
                f.seek(cache["offset"])
                data = f.read()
            complete = data[:data.rfind(b"\n") + 1]
            for line in complete.splitlines():
                rec = json.loads(line)
                errors = sorted(VALIDATOR.iter_errors(rec), key=lambda e: list(e.path))
                assert not errors, f"record violates the schema: {errors[0].message} at " \
                                   f"{list(errors[0].path)}\n{line[:2000]!r}"
                cache["records"].append(rec)
            cache["offset"] += len(complete)
        return list(cache["records"])

    def whole_lines_only(self):
        data = self.log.read_bytes() if self.log.exists() else b""
        return data == b"" or data.endswith(b"\n")

    def wait_for(self, pred, count=1, timeout=15.0):
        """Waits until `count` records satisfy `pred`; returns exactly those records."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.records() if pred(r)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def server_port(r):
    return (r.get("server") or {}).get("port")


def pick_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, why, timeout=10.0):
    """Waits until something accepts on 127.0.0.1:`port`; fails with why()
    (the server's log) if `proc` exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, why()
            time.sleep(0.05)


def recv_until(s, got, suffix):
    """Reads from s until what was read, after `got`, ends with `suffix`."""
    while not got.endswith(suffix):
        chunk = s.recv(4096)
        assert chunk, f"the server closed after {got!r}"
        got += chunk
    return got


def peek_server_client(s):
    """The client of servers/peek_server.py: on one connection, a POST whose
    head is sent in two parts (so that the server peeks more than once),
    then a GET; returns the bytes that came back."""
    post = b"POST /a HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\n\r\nhello"
    s.sendall(post[:12])
    time.sleep(0.1)
    s.sendall(post[12:])
    got = recv_until(s, b"", b"n=5")
    s.sendall(b"GET /b HTTP/1.1\r\nHost: p\r\n\r\n")
    return recv_until(s, got, b"n=0")


def start_nginx(root, port, http, worker_connections=1024, main=""):
    """An nginx of its own under `root` (configuration, pid, logs and temp
    files), one worker in the foreground, `http` the body of its http block;
    returns its master process once it accepts on 127.0.0.1:`port`."""
    conf = root / "nginx.conf"
    conf.write_text(f"""
user root;
daemon off;
master_process on;
worker_processes 1;
{main}
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections {worker_connections}; }}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
{http}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-e", str(root / "error.log")])
    wait_for_port(port, proc, lambda: (root / "error.log").read_text())
    return proc


class Server:
    def __init__(self, proc, port, host):
        self.proc = proc
        self.port = port
        self.host = host

    @property
    def pid(self):
        return self.proc.pid

    def url(self, path):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_server(cmd, host):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip().isdigit(), f"server {cmd} did not print its port: {line!r}"
    return Server(proc, int(line), host)


@pytest.fixture(scope="module")
def tracer(tmp_path_factory):
    """One httptraced per test module, tracing every process (a module's load
    tests then do not flood the other modules' tracer)."""
    d = Daemon(tmp_path_factory.mktemp("tracer") / "logs").start()
    yield d
    rc = d.stop()
    assert rc == 0, f"httptraced exited {rc}:\n{d.stderr()}"
    assert d.whole_lines_only(), "the session tracer's log ends in a partial line"
    stats_lines = [l for l in d.stderr_lines if l.startswith("httptraced: stats events=")]
    # One at exit, plus one a second (--stats_interval=1s) while it traced:
    # loading the programs takes a second or two before that.
    expected = 1 + (1 if time.monotonic() - d.ready_at > 3 else 0)
    assert len(stats_lines) >= expected, d.stderr()
    assert "runtime error" not in d.stderr() and "Sanitizer" not in d.stderr(), d.stderr()


@pytest.fixture(scope="session")
def py_server():
    s = start_server([PYTHON, str(SERVERS / "py_server.py")], "127.0.0.1")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def py_server6():
    s = start_server([PYTHON, str(SERVERS / "py_server.py"), "--host", "::1"], "::1")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def lenient_server():
    s = start_server([PYTHON, str(SERVERS / "lenient_server.py")], "127.0.0.1")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def node_server():
    s = start_server(["node", str(SERVERS / "node_server.js")], "127.0.0.1")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def nginx_server(tmp_path_factory, py_server):
    """nginx serving static files, and proxying /up/<x> to py_server's
    /path/<x> over keep-alive upstream connections (HTTP/1.1)."""
    root = tmp_path_factory.mktemp("nginx")
    www = root / "www"
    (www / "nosendfile").mkdir(parents=True)
    (www / "index.html").write_bytes(b"<h1>nginx static</h1>\n")
    (www / "nosendfile" / "small.txt").write_bytes(b"served by writev\n")
    gz_text = b"".join(b"line %d of a text that nginx compresses\n" % i for i in range(300))
    for coded in ("gz", "br"):
        (www / coded).mkdir()
        (www / coded / "text.txt").write_bytes(gz_text)
    port = pick_port()
    # Debian's brotli filter module (libnginx-mod-http-brotli-filter).
    brotli = "load_module /usr/lib/nginx/modules/ngx_http_brotli_filter_module.so;"
    proc = start_nginx(root, port, main=brotli, http=f"""
  sendfile on;
  keepalive_timeout 30;
  default_type text/plain;
  upstream py {{
    server 127.0.0.1:{py_server.port};
    keepalive 4;
  }}
  server {{
    listen 127.0.0.1:{port};
    root {www};
    location /nosendfile/ {{ sendfile off; }}
    location /gz/ {{ gzip on; gzip_types text/plain; gzip_min_length 1; }}
    location /br/ {{ brotli on; brotli_types text/plain; brotli_min_length 1; }}
    location /up/ {{
      proxy_pass http://py/path/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}""")
    s = Server(proc, port, "127.0.0.1")
    s.www = www
    s.gz_text = gz_text
    s.workers = lambda: [int(p) for p in subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()]
    yield s
    s.stop()


def curl(*args, check=True):
    """Runs curl (HTTP/1.1, no proxy); returns (CompletedProcess, pid)."""
    p = subprocess.Popen(["curl", "-sS", "--http1.1", "--noproxy", "*", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=30)
    if check:
        assert p.returncode == 0, f"curl {args} failed: {err.decode()}"
    return out, p.pid


# ---------------------------------------------------------------------------
# Shared by test_hostile.py, test_load.py and test_faults.py.

STATS_PREFIX = "httptraced: stats "


def parse_stats(line):
    """{"events": 415944, ...} from one stats line."""
    assert line.startswith(STATS_PREFIX), line
    return {k: int(v) for k, v in (f.split("=") for f in line[len(STATS_PREFIX):].split())}


def stats_lines(daemon):
    return [parse_stats(l) for l in list(daemon.stderr_lines) if l.startswith(STATS_PREFIX)]


def next_stats(daemon, timeout=10.0):
    """The first stats line printed after this call (--stats_interval=1s)."""
    seen = len(stats_lines(daemon))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = stats_lines(daemon)
        if len(lines) > seen:
            return lines[-1]
        time.sleep(0.05)
    raise AssertionError("no stats line within %.0f s:\n%s" % (timeout, daemon.stderr()))


def final_stats(daemon):
    """The stats line the daemon printed at exit."""
    lines = stats_lines(daemon)
    assert lines, daemon.stderr()
    return lines[-1]


def assert_no_sanitizer_report(daemon):
    err = daemon.stderr()
    assert "runtime error" not in err and "Sanitizer" not in err, err


def fdinfo_values(pid, key):
    """The value of every `key:` line in /proc/<pid>/fdinfo, one per open
    descriptor that has one ("map_id", "prog_id", "link_type", ...)."""
    values = []
    fdinfo = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(fdinfo):
        try:
            with open(os.path.join(fdinfo, fd)) as f:
                values += [line.split()[1] for line in f if line.startswith(key + ":")]
        except OSError:
            pass  # closed meanwhile
    return values


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def raw_exchange(port, payload, until=None, timeout=5.0, host="127.0.0.1"):
    """Sends `payload` on a new connection and reads until `until` is in the
    reply (or EOF); returns (reply, local port)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        local_port = s.getsockname()[1]
        if payload:
            s.sendall(payload)
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (until is None or until not in got):
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            got += chunk
    return got, local_port


class ServerPool:
    """Servers started on first use and stopped at the end of the session."""

    def __init__(self):
        self.servers = {}

    def get(self, name, cmd, host="127.0.0.1"):
        if name not in self.servers:
            self.servers[name] = start_server(cmd, host)
        return self.servers[name]

    def hostile(self, mode):
        return self.get("hostile-" + mode,
                        [PYTHON, str(SERVERS / "hostile_server.py"), "--mode", mode])

    def stop(self):
        for s in self.servers.values():
            s.stop()


@pytest.fixture(scope="session")
def servers():
    pool = ServerPool()
    yield pool
    pool.stop()


@pytest.fixture(scope="session")
def echo_nginx(tmp_path_factory):
    """nginx that answers GET /p/<x> with "path=/p/<x>\\n" (so a record's request
    and response can be checked against each other), holds tens of thousands of
    connections, and serves /big (64 KiB, written from user memory)."""
    root = tmp_path_factory.mktemp("echo-nginx")
    www = root / "www"
    www.mkdir()
    (www / "big").write_bytes(bytes(ord("a") + i % 26 for i in range(65536)))
    port = pick_port()
    proc = start_nginx(root, port, f"""
  sendfile off;
  keepalive_timeout 120;
  keepalive_requests 1000000;
  default_type text/plain;
  server {{
    listen 127.0.0.1:{port} backlog=16384;
    root {www};
    location /p/ {{ return 200 "path=$uri\\n"; }}
  }}""", worker_connections=30000, main="worker_rlimit_nofile 65536;")
    s = Server(proc, port, "127.0.0.1")
    s.workers = lambda: [int(p) for p in subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()]
    yield s
    s.stop()
