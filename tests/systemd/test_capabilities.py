"""Which capabilities httptraced.service needs, proven on this host.

The unit runs httptraced as a non-root system user whose capability sets
(bounding = ambient = inheritable = permitted = effective) are exactly
CAP_BPF CAP_PERFMON CAP_DAC_READ_SEARCH CAP_SYS_PTRACE, with no_new_privs.
Each test starts the real daemon with setpriv under the same kind of identity
(an unused uid, no groups, no_new_privs, the four sets equal) and one set of
capabilities, so each capability's effect is seen alone:

- without CAP_BPF or without CAP_PERFMON it refuses to start;
- without CAP_DAC_READ_SEARCH it cannot reach the tracepoints: tracefs's root
  is mode 0700, root's; a non-root user cannot even look up events/ in it;
- without CAP_SYS_PTRACE it records, but `process.executable` is missing for
  every process of another user (/proc/<pid>/exe needs ptrace read access);
- with the four it records everything, executables included: nothing else
  (CAP_SYS_ADMIN, CAP_SYS_RESOURCE, CAP_NET_ADMIN, ...) is needed.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("HTTPTRACED_BIN", REPO / "build" / "userspace" / "httptraced"))
SERVER = REPO / "tests" / "e2e" / "servers" / "py_server.py"
PYTHON = "/usr/bin/python3"
UID = 64123  # no such user: the daemon needs none, only a uid that is not root's
TRACEFS = "/sys/kernel/tracing"
SYSTEM_LIBSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3"


def setpriv(caps, uid=UID):
    c = ",".join(["-all"] + [f"+{cap}" for cap in caps])
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            f"--inh-caps={c}", f"--ambient-caps={c}", f"--bounding-set={c}", "--no-new-privs",
            "--"]


class Unprivileged:
    """httptraced as uid UID with only `caps`, logging to its own directory."""

    def __init__(self, caps, port=None, extra=()):
        self.dir = Path(tempfile.mkdtemp(prefix="httptraced-caps-", dir="/tmp"))
        os.chown(self.dir, UID, UID)
        os.chmod(self.dir, 0o750)
        self.log = self.dir / "httptraced.json"
        self.proc = subprocess.Popen(
            setpriv(caps) + [str(BIN), f"--log_dir={self.dir}", "--stats_interval=0"] +
            ([f"--port={port}"] if port else []) + list(extra),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("httptraced: tracing ("):
                self.ready.set()
        self.ready.set()

    def stderr(self):
        return "\n".join(self.lines)

    def wait_ready(self, timeout=30):
        assert self.ready.wait(timeout), "httptraced neither started nor failed"
        time.sleep(0.05)
        return self.proc.poll() is None

    def records(self, port, count, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            recs = [json.loads(l) for l in self.log.read_text().splitlines()] \
                if self.log.exists() else []
            recs = [r for r in recs if r.get("server", {}).get("port") == port]
            if len(recs) >= count or time.monotonic() > deadline:
                return recs
            time.sleep(0.05)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode


@pytest.fixture
def server():
    """py_server.py as root: another user's process, as far as the daemon goes."""
    proc = subprocess.Popen([PYTHON, str(SERVER)], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    yield proc, port
    proc.terminate()
    proc.wait(10)


def exchange(port, path, uid=None):
    """One curl request, as root or as `uid` (no capabilities). The server answers
    after 800 ms, so curl is still alive when the daemon reads its /proc entry
    (the executable of a process gone by then is absent by design)."""
    prefix = [] if uid is None else setpriv([], uid)
    subprocess.run(prefix + ["curl", "-sS", "-o", "/dev/null", f"http://127.0.0.1:{port}{path}"],
                   check=True, timeout=20)


def run_case(caps, port=None, extra=()):
    # --port: only this test's traffic, whatever else the host is doing.
    d = Unprivileged(caps, port, extra)
    try:
        started = d.wait_ready()
    except BaseException:
        d.close()
        raise
    return d, started


@pytest.fixture(scope="module", autouse=True)
def tracefs_mounted():
    """Whether tracefs is mounted depends on what ran before on this host (it is
    not at boot here); every case below wants it mounted, as systemd does at boot."""
    if not os.path.isdir(f"{TRACEFS}/events"):
        subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], check=True, timeout=30)


def test_tracefs_is_root_only_here():
    """The premise of CAP_DAC_READ_SEARCH: tracefs's root directory is 0700 root."""
    st = os.stat(TRACEFS)
    assert (st.st_uid, oct(st.st_mode & 0o777)) == (0, "0o700"), \
        "tracefs is not 0700 root here: re-check whether CAP_DAC_READ_SEARCH is needed"


@pytest.mark.parametrize("missing", ["bpf", "perfmon"])
def test_refused_without_bpf_or_perfmon(missing):
    caps = [c for c in ("bpf", "perfmon", "dac_read_search", "sys_ptrace") if c != missing]
    d, started = run_case(caps)
    rc = d.close()
    assert not started and rc == 1, d.stderr()
    assert "httptraced needs root (or CAP_BPF and CAP_PERFMON)" in d.stderr()


def test_no_tracepoints_without_dac_read_search():
    d, started = run_case(["bpf", "perfmon", "sys_ptrace"])
    rc = d.close()
    assert not started and rc == 1, d.stderr()
    assert (f"httptraced: tracefs at {TRACEFS} is mounted but not readable (Permission "
            "denied): run httptraced as root or give it CAP_DAC_READ_SEARCH") in d.stderr(), \
        d.stderr()


def test_unmounted_tracefs_needs_sys_admin():
    """A tracefs that is not mounted: the daemon tries to mount it, which takes
    CAP_SYS_ADMIN; without it the message says how to mount it by hand. An empty
    directory given as --tracefs stands in for the unmounted mount point."""
    empty = Path(tempfile.mkdtemp(prefix="httptraced-notracefs-", dir="/tmp"))
    os.chmod(empty, 0o755)
    try:
        d, started = run_case(["bpf", "perfmon", "dac_read_search", "sys_ptrace"],
                              extra=[f"--tracefs={empty}"])
        rc = d.close()
    finally:
        empty.rmdir()
    assert not started and rc == 1, d.stderr()
    assert (f"httptraced: tracefs is not mounted at {empty} and mounting it failed "
            f"(Operation not permitted): run `mount -t tracefs nodev {empty}` as root, or give "
            "httptraced CAP_SYS_ADMIN") in d.stderr(), d.stderr()


def test_no_executable_of_other_users_without_sys_ptrace(server):
    _, port = server
    d, started = run_case(["bpf", "perfmon", "dac_read_search"], port)
    try:
        assert started, d.stderr()
        exchange(port, "/slow?ms=800&as=root")          # curl as root -> python3 as root
        exchange(port, "/slow?ms=800&as=uid", uid=UID)  # curl as the daemon's own uid
        recs = d.records(port, 4)
    finally:
        rc = d.close()
    assert rc == 0, d.stderr()
    got = sorted((r["url"]["original"], r["httptraced"]["role"],
                  r["process"].get("executable")) for r in recs)
    assert got == [
        ("/slow?ms=800&as=root", "client", None),
        ("/slow?ms=800&as=root", "server", None),
        ("/slow?ms=800&as=uid", "client", "/usr/bin/curl"),   # the daemon's uid: readable
        ("/slow?ms=800&as=uid", "server", None),              # root's python3: not
    ], got


def test_four_capabilities_are_enough(server):
    _, port = server
    d, started = run_case(["bpf", "perfmon", "dac_read_search", "sys_ptrace"], port)
    try:
        assert started, d.stderr()
        exchange(port, "/slow?ms=800&as=root")
        exchange(port, "/slow?ms=800&as=uid", uid=UID)
        recs = d.records(port, 4)
    finally:
        rc = d.close()
    assert rc == 0, d.stderr()
    python = os.path.realpath(PYTHON)
    got = sorted((r["url"]["original"], r["httptraced"]["role"],
                  r["process"].get("executable")) for r in recs)
    assert got == [
        ("/slow?ms=800&as=root", "client", "/usr/bin/curl"),
        ("/slow?ms=800&as=root", "server", python),
        ("/slow?ms=800&as=uid", "client", "/usr/bin/curl"),
        ("/slow?ms=800&as=uid", "server", python),
    ], got
    for r in recs:
        assert r["http"]["response"]["status_code"] == 200


TLS_REFUSED = ("httptraced: warning: TLS: the kernel refused a uprobe on a TLS library (uprobes "
               "need CAP_SYS_ADMIN); HTTPS is not traced: grant CAP_SYS_ADMIN, or pass --tls=false")


def test_https_needs_sys_admin_for_its_uprobes():
    """Linux requires CAP_SYS_ADMIN for uprobes (since 6.16 and the stable
    kernels it went back to): with the service's four capabilities the daemon
    says HTTPS is not traced and traces the rest; with CAP_SYS_ADMIN it
    probes libssl; naming the library makes the refusal an error."""
    four = ["bpf", "perfmon", "dac_read_search", "sys_ptrace"]
    d, started = run_case(four)
    try:
        assert started, d.stderr()
    finally:
        rc = d.close()
    assert rc == 0, d.stderr()
    assert TLS_REFUSED in d.lines, d.stderr()
    assert not any("libbpf" in l for l in d.lines), d.stderr()

    # A root process that runs from a deleted copy of libssl: with CAP_SYS_PTRACE
    # the daemon reads its maps, with CAP_SYS_ADMIN it opens the copy through
    # /proc/<pid>/map_files.
    with tempfile.TemporaryDirectory() as lib:
        shutil.copy(SYSTEM_LIBSSL, f"{lib}/libssl.so.3")
        holder = subprocess.Popen(
            [PYTHON, "-c", "import ssl, sys; print(ssl.OPENSSL_VERSION, flush=True); "
                           "sys.stdin.read()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, LD_LIBRARY_PATH=lib))
        holder.stdout.readline()
        os.unlink(f"{lib}/libssl.so.3")
        found = (f"httptraced: TLS: 5 libssl functions probed in {lib}/libssl.so.3 "
                 f"(deleted), mapped by pid {holder.pid}")
        denied = ("httptraced: warning: TLS: without CAP_SYS_PTRACE the memory maps of other "
                  "users' processes cannot be read: a libssl of their own is not probed")
        try:
            d, started = run_case(four + ["sys_admin"])
            try:
                assert started, d.stderr()
                deadline = time.monotonic() + 10
                while found not in d.lines and time.monotonic() < deadline:
                    time.sleep(0.1)
            finally:
                rc = d.close()
            assert rc == 0, d.stderr()
            assert f"httptraced: TLS: 5 libssl functions probed in {SYSTEM_LIBSSL}" in d.lines, \
                d.stderr()
            assert found in d.lines and denied not in d.lines, d.stderr()
            # Without CAP_SYS_PTRACE root's processes' maps stay closed: said at start.
            d, started = run_case(["bpf", "perfmon", "dac_read_search", "sys_admin"])
            try:
                assert started, d.stderr()
                time.sleep(2.5)  # scans at once and a second later: the holder not found
            finally:
                rc = d.close()
            assert rc == 0, d.stderr()
            assert d.lines.count(denied) == 1 and found not in d.lines, d.stderr()
        finally:
            holder.stdin.close()
            holder.wait(10)

    d, started = run_case(four, extra=["--tls_libraries=/usr/lib/x86_64-linux-gnu/libssl.so.3"])
    rc = d.close()
    assert not started and rc == 1, d.stderr()
    assert d.lines[-1] == TLS_REFUSED.replace("warning: ", ""), d.stderr()
