"""The .deb and httptraced.service for real: a Debian bookworm system booted with
systemd-nspawn (systemd as its PID 1), the package installed with dpkg, the
service driven with systemctl, real HTTP traffic made inside.

The tests run in file order against one container and build on each other:
install -> start -> record -> reload -> stop -> upgrade -> remove -> purge.

Note on pids: the container has its own pid namespace but BPF sees the host's
pids, so `process.pid` is the host pid of the traced process (checked below);
`process.executable` is read from the container's /proc under that host pid and
is therefore not checked here (tests/systemd/test_capabilities.py checks it on
the host, where the namespaces agree).
"""
import json
import re
import subprocess
import time
from pathlib import Path

import jsonschema

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "schema" / "httptraced-record.schema.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)
LOG = "/var/log/httptraced/httptraced.json"
CONF = "/etc/httptraced/httptraced.conf"
UNIT = "httptraced.service"
# CAP_DAC_READ_SEARCH (2), CAP_SYS_PTRACE (19), CAP_PERFMON (38), CAP_BPF (39).
CAPS = (1 << 2) | (1 << 19) | (1 << 38) | (1 << 39)
# systemd-analyze security's figure for the unit, as reported in the README and
# docs/systemd.md: a change to the unit's sandbox changes it (update both).
EXPOSURE = "1.3"

STATE = {}


def records(c, port=None):
    """Every record in the active log, schema-checked; those of `port` if given."""
    path = c.path(LOG)
    if not path.exists():
        return []
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), "the log ends in a partial line"
    out = []
    for line in data.splitlines():
        rec = json.loads(line)
        errors = list(VALIDATOR.iter_errors(rec))
        assert not errors, f"record violates the schema: {errors[0].message}\n{line[:1000]!r}"
        if port is None or rec.get("server", {}).get("port") == port:
            out.append(rec)
    return out


def wait_records(c, port, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        found = records(c, port)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def by_role(recs, role):
    return [r for r in recs if r["httptraced"]["role"] == role]


def journal(c, *args):
    return c.run(["journalctl", "-u", UNIT, "--no-pager", "-o", "cat", *args]).stdout


class PyServer:
    """tests/e2e/servers/py_server.py inside the container."""

    def __init__(self, c):
        self.proc, self.host_pid = c.spawn(["python3", "/root/py_server.py"],
                                           stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.strip().isdigit(), f"py_server printed {line!r}"
        self.port = int(line)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def test_install(container, deb):
    c = container
    (c.path("/root/httptraced.deb")).write_bytes(deb.read_bytes())
    (c.path("/root/py_server.py")).write_bytes(
        (REPO / "tests/e2e/servers/py_server.py").read_bytes())
    out = c.run(["dpkg", "-i", "/root/httptraced.deb"], timeout=120)
    assert "Setting up httptraced (0.1.0)" in out.stdout, out.stdout

    status = c.run(["dpkg-query", "-W", "-f=${Status} ${Version}", "httptraced"]).stdout
    assert status == "install ok installed 0.1.0"
    conffiles = c.run(["dpkg-query", "-W", "-f=${Conffiles}", "httptraced"]).stdout.split()
    assert conffiles[0] == CONF, conffiles
    # Installed, not enabled, not started: tracing is the administrator's decision.
    assert c.run(["systemctl", "is-enabled", UNIT], check=False).stdout.strip() == "disabled"
    assert c.run(["systemctl", "is-active", UNIT], check=False).stdout.strip() == "inactive"
    # The system user from sysusers.d, no home, no shell.
    pw = c.run(["getent", "passwd", "httptraced"]).stdout.strip().split(":")
    assert pw[5:] == ["/nonexistent", "/usr/sbin/nologin"], pw
    assert int(pw[2]) < 1000, pw
    # The man page and the unit.
    assert c.run(["man", "-w", "httptraced"]).stdout.strip() == \
        "/usr/share/man/man8/httptraced.8.gz"
    page = " ".join(c.run(["env", "MANWIDTH=1000", "man", "httptraced"]).stdout.split())
    assert "httptraced - record every HTTP/1.x exchange on the host as one JSON line" in page
    assert "--log_max_size_mb=N" in page
    verify = c.run(["systemd-analyze", "verify", f"/lib/systemd/system/{UNIT}"], check=False)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    security = c.run(["systemd-analyze", "security", UNIT, "--no-pager"]).stdout
    m = re.search(r"Overall exposure level for httptraced.service: (\d+\.\d+)", security)
    assert m, security[-2000:]
    print(f"systemd-analyze security: exposure {m.group(1)}")
    assert m.group(1) == EXPOSURE, security
    STATE["installed"] = True


def test_start_ready_after_attach(container):
    c = container
    assert STATE.get("installed"), "needs test_install"
    server = PyServer(c)
    STATE["server"] = server
    STATE["hostname"] = c.run(["hostname"]).stdout.strip()
    assert STATE["hostname"] == c.name  # set by the fixture: host.name comes from here
    # The host may be busy with other HTTP traffic: trace this test's server only
    # (an administrator's edit of the conffile, kept across upgrades below).
    conf = c.path(CONF)
    conf.write_text(conf.read_text() + f"\n--port={server.port}\n")

    # Enabled, the unit stays loaded when inactive (systemd keeps the exit status
    # of its last run for test_stop); enabling does not start it.
    c.run(["systemctl", "enable", UNIT])
    assert c.run(["systemctl", "is-enabled", UNIT], check=False).stdout.strip() == "enabled"
    assert c.run(["systemctl", "is-active", UNIT], check=False).stdout.strip() == "inactive"
    started = time.monotonic()
    c.run(["systemctl", "start", UNIT], timeout=120)
    # Type=notify: `systemctl start` returns once READY=1 came, so an exchange
    # made right now must be recorded: the programs were attached before READY.
    c.run(["curl", "-sS", "-o", "/dev/null", f"http://127.0.0.1:{server.port}/hello?first"])
    print(f"systemctl start took {time.monotonic() - started:.1f} s")
    assert c.run(["systemctl", "is-active", UNIT], check=False).stdout.strip() == "active"
    first = wait_records(c, server.port, 2)
    assert sorted(r["httptraced"]["role"] for r in first) == ["client", "server"], first
    assert all(r["url"]["original"] == "/hello?first" for r in first)

    p = c.show(UNIT, "Type", "NotifyAccess", "MainPID", "StatusText", "User", "Group",
               "NRestarts")
    assert (p["Type"], p["NotifyAccess"], p["User"], p["Group"], p["NRestarts"]) == \
        ("notify", "main", "httptraced", "adm", "0"), p
    assert re.fullmatch(r"tracing \d+ connections; \d+ records written, 0 lost; 0 kernel drops",
                        p["StatusText"]), p["StatusText"]
    # The daemon's attach line is in the journal. (Its journal timestamp is when
    # journald read it, which may be after PID 1 took READY=1 from the other
    # socket: the exchange recorded right after `start` above is the proof of
    # the order; the status text above is the one sent with READY=1.)
    attach = [l for l in journal(c).splitlines() if re.fullmatch(
        r"httptraced: tracing \(\d+ tracepoints attached\), writing to " + LOG, l)]
    assert len(attach) == 1, journal(c)

    # The unit's credentials, as the kernel sees them.
    pid = int(p["MainPID"])
    STATE["main_pid"] = pid
    status = dict(l.split(":\t", 1) for l in
                  c.run(["cat", f"/proc/{pid}/status"]).stdout.splitlines() if ":\t" in l)
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[field], 16) == CAPS, (field, status[field])
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"
    uid = c.run(["id", "-u", "httptraced"]).stdout.strip()
    assert status["Uid"].split() == [uid] * 4
    assert status["Gid"].split() == ["4"] * 4  # adm
    # The log directory and file, for readers in group adm.
    st = c.run(["stat", "-c", "%a %U %G", "/var/log/httptraced", LOG]).stdout.split("\n")
    assert st[:2] == ["750 httptraced adm", "640 httptraced adm"], st


def test_records(container):
    c = container
    server = STATE["server"]
    base = f"http://127.0.0.1:{server.port}"
    c.run(["curl", "-sS", "-o", "/dev/null", "-H", "Authorization: Bearer s3cret",
           f"{base}/hello"])
    c.run(["curl", "-sS", "-o", "/dev/null", "-H", "Content-Type: application/json",
           "--data-binary", '{"size": 10}', f"{base}/customResponse"])
    curl_version = c.run(["curl", "--version"]).stdout.split()[1]
    recs = wait_records(c, server.port, 6)
    assert len(recs) == 6, recs
    hello = [r for r in recs if r["url"]["original"] == "/hello"]
    custom = [r for r in recs if r["url"]["original"] == "/customResponse"]
    assert len(hello) == 2 and len(custom) == 2

    srv = by_role(hello, "server")[0]
    assert srv["http"]["request"]["method"] == "GET"
    assert srv["http"]["request"]["headers"]["authorization"] == "[REDACTED]"
    assert srv["http"]["response"]["status_code"] == 200
    assert srv["http"]["response"]["body"] == {"bytes": 12, "content": "hello world\n"}
    assert srv["url"]["domain"] == "127.0.0.1" and srv["url"]["port"] == server.port
    assert srv["server"] == {"ip": "127.0.0.1", "port": server.port}
    assert srv["client"]["ip"] == "127.0.0.1"
    assert srv["process"]["name"] == "python3"
    assert srv["process"]["pid"] == server.host_pid
    assert srv["host"]["name"] == STATE["hostname"]
    assert srv["httptraced"]["connection"]["origin"] == "accept"
    assert srv["event"]["outcome"] == "success"
    assert srv["user_agent"]["original"] == f"curl/{curl_version}"

    cli = by_role(hello, "client")[0]
    assert cli["process"]["name"] == "curl"
    assert cli["httptraced"]["connection"]["origin"] == "connect"
    assert cli["client"]["port"] == srv["client"]["port"]

    post = by_role(custom, "server")[0]
    assert post["http"]["request"]["method"] == "POST"
    assert post["http"]["request"]["body"] == {"bytes": 12, "content": '{"size": 10}'}
    answer = json.loads(post["http"]["response"]["body"]["content"])
    assert re.fullmatch(r"[A-Za-z0-9]{10}", answer["answer"]), answer
    assert post["http"]["response"]["headers"]["content-type"] == "application/json"


def probe_unit(c, name, caps):
    """httptraced.service with its sandbox and identity as shipped, but running
    readlink on /proc/1/exe (systemd, root) and on the test server's (root)."""
    server_pid = c.run(["pgrep", "-f", "-x", "python3 /root/py_server.py"]).stdout.split()[0]
    unit = (c.path(f"/lib/systemd/system/{UNIT}")).read_text()
    out = []
    for line in unit.splitlines():
        key = line.split("=", 1)[0]
        if key in ("ExecReload", "Restart", "RestartSec", "NotifyAccess"):
            continue
        if key == "Type":
            line = "Type=oneshot"
        elif key == "ExecStart":
            line = (f"ExecStart=/bin/sh -c 'readlink -v /proc/1/exe; "
                    f"readlink -v /proc/{server_pid}/exe'")
        elif key in ("CapabilityBoundingSet", "AmbientCapabilities"):
            assert line == f"{key}=CAP_BPF CAP_PERFMON CAP_DAC_READ_SEARCH CAP_SYS_PTRACE", line
            line = f"{key}={caps}"
        out.append(line)
    c.path(f"/etc/systemd/system/{name}.service").write_text("\n".join(out) + "\n")
    c.run(["systemctl", "daemon-reload"])
    c.run(["systemctl", "start", f"{name}.service"], check=False, timeout=60)
    return c.run(["journalctl", "-u", f"{name}.service", "-o", "cat", "--no-pager"]).stdout


def test_sandbox_reads_executables_only_with_sys_ptrace(container):
    """process.executable comes from /proc/<pid>/exe: under the unit's sandbox
    (user httptraced, ProtectProc=invisible, ProcSubset=pid, ReadOnlyPaths=/proc)
    root's processes are readable with CAP_SYS_PTRACE, and not without it.
    (The daemon itself cannot show this here: it sees host pids, see the top.)"""
    c = container
    full = probe_unit(c, "probe-full", "CAP_BPF CAP_PERFMON CAP_DAC_READ_SEARCH CAP_SYS_PTRACE")
    lines = [l for l in full.splitlines() if l.startswith("/")]
    assert lines == ["/usr/lib/systemd/systemd", "/usr/bin/python3.11"], full
    less = probe_unit(c, "probe-noptrace", "CAP_BPF CAP_PERFMON CAP_DAC_READ_SEARCH")
    assert [l for l in less.splitlines() if l.startswith("/")] == [], less
    assert less.count("No such file or directory") == 2, less  # hidden: ProtectProc=invisible


KEEPALIVE_CLIENT = r"""
import http.client, sys, time
port, n, gap = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port)
for i in range(n):
    body = ("body-%d" % i).encode()
    conn.request("POST", "/echo?i=%d" % i, body=body)
    r = conn.getresponse()
    assert r.read() == body
    if i == n // 3:
        print("third", flush=True)
    time.sleep(gap)
conn.close()
print("done", n, flush=True)
"""


def test_reload_applies_config_and_loses_nothing(container):
    c = container
    server = STATE["server"]
    before = len(records(c, server.port))
    n = 300
    # While the client runs on one keep-alive connection, the config changes
    # (bodies off) and `systemctl reload` applies it: every exchange is still
    # recorded, with content up to the reload and without after it.
    proc, _ = c.spawn(["python3", "-c", KEEPALIVE_CLIENT, str(server.port), str(n), "0.005"],
                      stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "third"
    conf = c.path(CONF)
    conf.write_text(conf.read_text() + "\n--capture_bodies=false\n")
    c.run(["systemctl", "reload", UNIT], timeout=60)
    assert proc.stdout.readline().strip() == f"done {n}"
    assert proc.wait(30) == 0
    assert c.run(["systemctl", "is-active", UNIT], check=False).stdout.strip() == "active"
    assert c.show(UNIT, "MainPID")["MainPID"] == str(STATE["main_pid"]), "reload restarted it"

    recs = wait_records(c, server.port, before + 2 * n)
    echo = [r for r in recs if r["url"]["path"] == "/echo"]
    for role in ("server", "client"):
        mine = sorted(by_role(echo, role), key=lambda r: r["httptraced"]["connection"]["seq"])
        assert [r["httptraced"]["connection"]["seq"] for r in mine] == list(range(n)), role
        assert [r["url"]["query"] for r in mine] == [f"i={i}" for i in range(n)]
        with_body = ["content" in r["http"]["request"]["body"] for r in mine]
        k = with_body.index(False)
        assert n // 3 <= k < n and with_body == [True] * k + [False] * (n - k), (role, k)
        for i, r in enumerate(mine):
            assert r["http"]["request"]["body"]["bytes"] == len(f"body-{i}")
            if i < k:
                assert r["http"]["response"]["body"]["content"] == f"body-{i}"
    assert len(recs) == before + 2 * n
    assert "httptraced: configuration reloaded" in journal(c)


def test_stop_drains_and_exits_zero(container):
    c = container
    server = STATE["server"]
    before = len(records(c, server.port))
    # An exchange in flight at stop is written as incomplete (request, no response).
    slow = subprocess.Popen(["nsenter", "-t", str(c.leader), "-a", "--", "curl", "-sS", "-o",
                             "/dev/null", f"http://127.0.0.1:{server.port}/slow?ms=4000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not subprocess.run(
            ["ss", "-Htn", "state", "established", f"( dport = :{server.port} )"],
            capture_output=True, text=True).stdout.strip():
        time.sleep(0.05)
    time.sleep(0.3)
    c.run(["systemctl", "stop", UNIT], timeout=60)
    p = c.show(UNIT, "ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
    assert p == {"ActiveState": "inactive", "Result": "success", "ExecMainCode": "1",
                 "ExecMainStatus": "0"}, p
    log = journal(c)
    stats = [l for l in log.splitlines() if l.startswith("httptraced: stats ")]
    assert stats and " lost=0 " in stats[-1] and " kernel_drops=0 " in stats[-1], stats[-1:]
    recs = records(c, server.port)
    assert len(recs) == before + 2, recs[before:]
    for r in recs[before:]:
        assert r["url"]["original"] == "/slow?ms=4000"
        assert r["httptraced"]["incomplete"] is True and "response" not in r["http"], r
        assert r["event"]["outcome"] == "unknown"
    slow.wait(10)


def test_upgrade_restarts_a_running_service(container):
    c = container
    server = STATE["server"]
    c.run(["systemctl", "start", UNIT], timeout=120)
    pid = c.show(UNIT, "MainPID")["MainPID"]
    # Reinstalling (postinst configure with the old version) restarts it.
    c.run(["dpkg", "-i", "/root/httptraced.deb"], timeout=120)
    p = c.show(UNIT, "ActiveState", "MainPID")
    assert p["ActiveState"] == "active" and p["MainPID"] not in (pid, "0"), (pid, p)
    # The administrator's changes to the conffile survived the upgrade.
    assert f"\n--port={server.port}\n\n--capture_bodies=false\n" in c.path(CONF).read_text()
    before = len(records(c, server.port))
    c.run(["curl", "-sS", "-o", "/dev/null", f"http://127.0.0.1:{server.port}/hello?upgraded"])
    assert len(wait_records(c, server.port, before + 2)) == before + 2


def test_remove_stops_the_service(container):
    c = container
    assert c.run(["systemctl", "is-active", UNIT], check=False).stdout.strip() == "active"
    c.run(["dpkg", "--remove", "httptraced"], timeout=120)
    state = c.run(["systemctl", "is-active", UNIT], check=False).stdout.strip()
    assert state == "inactive", state
    assert c.run(["pgrep", "-x", "httptraced"], check=False).returncode == 1
    log = journal(c).splitlines()
    assert log[-2:] == ["httptraced.service: Deactivated successfully.",
                        "Stopped httptraced.service - HTTP/1.x exchange recorder (eBPF)."], log[-4:]
    assert log[-3].startswith("httptraced: stats ") and " lost=0 " in log[-3], log[-4:]
    # Masked while its conffile stays, as deb-systemd-helper does on remove.
    assert c.run(["systemctl", "is-enabled", UNIT], check=False).stdout.strip() == "masked"
    assert not c.path("/usr/sbin/httptraced").exists()
    # remove keeps the configuration and the recorded logs (purge deletes them).
    assert c.path(CONF).exists() and c.path(LOG).exists()
    status = c.run(["dpkg-query", "-W", "-f=${Status}", "httptraced"]).stdout
    assert status == "deinstall ok config-files"


def test_purge_removes_config_and_logs(container):
    c = container
    STATE["server"].stop()
    c.run(["dpkg", "--purge", "httptraced"], timeout=120)
    assert not c.path("/etc/httptraced").exists()
    assert not c.path("/var/log/httptraced").exists()
    status = c.run(["dpkg-query", "-W", "-f=${Status}", "httptraced"], check=False)
    assert status.returncode == 1 and "no packages found" in status.stderr, status
    enabled = c.run(["systemctl", "is-enabled", UNIT], check=False)
    assert (enabled.returncode, enabled.stdout) == (1, ""), enabled
    assert "No such file or directory" in enabled.stderr, enabled
    assert list(c.path("/etc/systemd/system").rglob("httptraced*")) == []
