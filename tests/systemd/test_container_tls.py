"""HTTPS inside a container that brings its own libssl, traced from the host.

The container (tests/systemd/nspawn.py: a debootstrapped Debian booted with
systemd-nspawn on an overlayfs) has its own /usr/lib/x86_64-linux-gnu/
libssl.so.3, a different file from the host's, at a path that on the host
names the host's. The daemon, run on the host from the build tree, finds it
through the server's /proc/<pid>/maps and map_files, probes it, and records
the container's HTTPS exchanges in the clear, both ends.
"""
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("HTTPTRACED_BIN", REPO / "build" / "userspace" / "httptraced"))
LIBSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3"


def test_https_in_a_container_with_its_own_libssl(container, tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(container.path("/root/key.pem")),
                    "-out", str(container.path("/root/cert.pem"))], check=True,
                   capture_output=True)
    shutil.copy(REPO / "tests" / "e2e" / "servers" / "py_server.py",
                container.path("/root/py_server.py"))
    server, pid = container.spawn(
        ["python3", "/root/py_server.py", "--tls", "/root/cert.pem,/root/key.pem"],
        stdout=subprocess.PIPE, text=True)
    log_dir = tmp_path / "logs"
    daemon = None
    try:
        port = int(server.stdout.readline())
        # The server maps the container's libssl, another file than the host's.
        mapped = [l.split()[0] for l in Path(f"/proc/{pid}/maps").read_text().splitlines()
                  if l.endswith(" " + LIBSSL)]
        assert mapped, Path(f"/proc/{pid}/maps").read_text()
        theirs = os.stat(f"/proc/{pid}/map_files/{mapped[0]}")
        ours = os.stat(LIBSSL)
        assert (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino)

        daemon = subprocess.Popen([str(BIN), f"--log_dir={log_dir}", f"--port={port}"],
                                  stderr=subprocess.PIPE, text=True)
        lines = []
        want = f"httptraced: TLS: 5 libssl functions probed in {LIBSSL}, mapped by pid {pid}"
        deadline = time.monotonic() + 60
        while want not in lines and time.monotonic() < deadline:
            line = daemon.stderr.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
        assert want in lines, "\n".join(lines)

        out = container.run(["curl", "-sSk", "--http1.1", f"https://127.0.0.1:{port}/path/boxed",
                             f"https://127.0.0.1:{port}/path/again"]).stdout
        assert out == "path=/path/boxed\npath=/path/again\n"
        log = log_dir / "httptraced.json"
        records = []
        deadline = time.monotonic() + 15
        while len(records) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
            if log.exists():
                records = [json.loads(l) for l in log.read_text().splitlines()]
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(30)
        server.terminate()
        server.wait(10)
    assert daemon.returncode == 0
    server_side = [r for r in records if r["process"]["pid"] == pid]
    client_side = [r for r in records if r["process"]["pid"] != pid]
    for side, role in ((server_side, "server"), (client_side, "client")):
        assert [r["url"]["path"] for r in side] == ["/path/boxed", "/path/again"], records
        for r in side:
            assert r["tls"] == {"established": True}
            assert r["httptraced"]["role"] == role
            assert r["http"]["response"]["body"]["content"] == f"path={r['url']['path']}\n"
    assert {r["process"]["name"] for r in client_side} == {"curl"}
    assert len(records) == 4, records
