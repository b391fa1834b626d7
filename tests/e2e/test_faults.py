"""Faults, end to end: signals under load, and a log directory that fills up,
disappears, turns read-only or is swapped for a symlink while the daemon runs.

The daemon keeps tracing through every output fault, says so once per
condition with the number of records it could not write, resumes by itself when
the condition clears, and never leaves a partial line; its log path cannot be
redirected.
"""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import BIN, Daemon, assert_no_sanitizer_report, curl, final_stats

BODY = b"f" * 8192  # each record > 16 KiB: never fits the slack of a full filesystem's last page


def echo(server, tag, body=BODY):
    """One POST /echo?t=<tag> exchange on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", f"/echo?t={tag}", body=body)
    assert conn.getresponse().read() == body
    conn.close()


def whole_lines(path):
    """The records of a log file, asserting it holds only whole JSON lines."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path} ends in a partial line: {data[-200:]!r}"
    return [json.loads(line) for line in data.splitlines()]


def tags(recs):
    return sorted(r["url"]["query"][2:] for r in recs if r.get("url", {}).get("path") == "/echo")


def wait_stderr(daemon, pattern, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [l for l in list(daemon.stderr_lines) if re.search(pattern, l)]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no stderr line matching {pattern!r}:\n{daemon.stderr()}")


def wait_written(daemon, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.log.exists() and daemon.log.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} records written:\n{daemon.stderr()}")


def assert_reported_once(daemon, cause):
    """One line when the condition starts (saying records are being lost and
    further losses are only counted), one when it clears."""
    lines = [l for l in daemon.stderr_lines if cause in l]
    assert len(lines) == 2, daemon.stderr()
    assert re.fullmatch(r"httptraced: .*: " + re.escape(cause) + r" \(\d+ records lost; further "
                        r"losses from this cause are only counted until output recovers\)",
                        lines[0]), lines[0]
    assert lines[1].startswith("httptraced: log: output recovered after "), lines[1]


def assert_lost(recovered, records, cause):
    """The recovery line: "output recovered after <d>: N records lost in M failed
    writes (cause: ...)". M depends on how the records were batched (one write
    per batch), N does not."""
    m = re.fullmatch(r"httptraced: log: output recovered after \S+: (\d+) records lost in "
                     r"(\d+) failed writes \(cause: (.*)\)", recovered)
    assert m, recovered
    assert int(m.group(1)) == records, recovered
    assert 1 <= int(m.group(2)) <= records, recovered
    assert cause in m.group(3), recovered


@contextmanager
def mounted(*mount_args, target):
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *mount_args, str(target)], check=True)
    try:
        yield target
    finally:
        # Lazily: the daemon may still hold it if the test failed before stopping it.
        subprocess.run(["umount", "-l", str(target)], check=False)


# ---------------------------------------------------------------------------
# Signals.

def load(server, stop, errors, prefix):
    """Keep-alive POST /echo in a loop until `stop` is set."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        i = 0
        while not stop.is_set():
            tag = f"{prefix}-{i}".encode()
            conn.request("POST", f"/echo?t={prefix}-{i}", body=tag)
            assert conn.getresponse().read() == tag
            i += 1
        conn.close()
    except Exception as e:  # reported by the test
        errors.append(e)


def test_sigterm_under_load_exits_0_with_inflight_as_incomplete(tmp_path, py_server):
    """SIGTERM while 4 clients hammer the server and 3 requests wait for slow
    answers: exit 0, the 3 written as incomplete (no response), every other
    record whole and consistent, the stats line last."""
    d = Daemon(tmp_path / "logs", f"--port={py_server.port}").start()
    stop, errors = threading.Event(), []
    loaders = [threading.Thread(target=load, args=(py_server, stop, errors, f"term{t}"))
               for t in range(4)]
    slow = [threading.Thread(target=curl, args=(py_server.url(f"/slow?ms=4000&n={i}"),))
            for i in range(3)]
    for t in loaders + slow:
        t.start()
    try:
        time.sleep(1.5)  # the slow requests are read; their answers are 2.5 s away
        rc = d.stop(signal.SIGTERM)
    finally:
        stop.set()
        for t in loaders + slow:
            t.join()
    assert not errors, errors
    assert rc == 0, d.stderr()
    assert_no_sanitizer_report(d)
    assert d.stderr_lines[-1].startswith("httptraced: stats "), d.stderr()
    recs = whole_lines(d.log)
    slow_recs = [r for r in recs if r.get("url", {}).get("path") == "/slow"]
    assert sorted(r["url"]["query"] for r in slow_recs
                  if r["httptraced"]["role"] == "server") == [f"ms=4000&n={i}" for i in range(3)]
    for r in slow_recs:
        assert r["httptraced"]["incomplete"] is True
        assert "response" not in r["http"]
        assert r["event"]["outcome"] == "unknown"
    # The load: every exchange seen whole pairs its own request and response.
    # Tracing stops at one instant for every hook, so on each connection the
    # exchange in flight at that instant (and nothing before it) may have been
    # cut: such records are incomplete and come after every whole one.
    by_conn = {}
    for r in recs:
        if r["httptraced"]["connection"]["id"] not in {x["httptraced"]["connection"]["id"]
                                                       for x in slow_recs}:
            by_conn.setdefault(r["httptraced"]["connection"]["id"], []).append(r)
    whole = one_sided = 0
    for conn_recs in by_conn.values():
        conn_recs.sort(key=lambda r: r["httptraced"]["connection"]["seq"])
        assert [r["httptraced"]["connection"]["seq"] for r in conn_recs] == \
            list(range(len(conn_recs)))
        seen_one_sided = False
        for r in conn_recs:
            req, resp = r["http"].get("request"), r["http"].get("response")
            if req is not None and resp is not None and not r["httptraced"]["incomplete"]:
                assert not seen_one_sided, r
                tag = r["url"]["query"][2:]
                assert req["body"]["content"] == tag and resp["body"]["content"] == tag, r
                assert r["httptraced"]["incomplete"] is False
                whole += 1
            else:
                assert r["httptraced"]["incomplete"] is True, r
                seen_one_sided = True
                one_sided += 1
    print(f"{whole} whole exchanges, {one_sided} one-sided records at shutdown")
    assert whole > 100, whole
    assert final_stats(d)["written"] == len(recs)


def test_sigkill_under_load_leaves_whole_lines_and_a_restart_appends_cleanly(tmp_path, py_server):
    """SIGKILL mid-load: the file holds only whole lines. A new daemon on the
    same directory keeps them and appends whole lines after them."""
    d = Daemon(tmp_path / "logs", f"--port={py_server.port}").start()
    stop, errors = threading.Event(), []
    loaders = [threading.Thread(target=load, args=(py_server, stop, errors, f"kill{t}"))
               for t in range(4)]
    for t in loaders:
        t.start()
    try:
        time.sleep(2.0)
        d.proc.send_signal(signal.SIGKILL)
        assert d.proc.wait(10) == -signal.SIGKILL
        d.returncode = -signal.SIGKILL
    finally:
        stop.set()
        for t in loaders:
            t.join()
    assert not errors, errors
    before = whole_lines(d.log)
    assert len(before) > 50, len(before)
    again = Daemon(tmp_path / "logs", f"--port={py_server.port}").start()
    try:
        echo(py_server, "after-kill", b"after-kill")
        wait_written(again, len(before) + 2)
    finally:
        assert again.stop() == 0, again.stderr()
    assert_no_sanitizer_report(again)
    after = whole_lines(again.log)
    assert after[:len(before)] == before
    assert tags(after[len(before):]) == ["after-kill", "after-kill"]


# ---------------------------------------------------------------------------
# The log directory fails while the daemon runs.

def test_full_disk_is_reported_once_counted_and_recovered(tmp_path, py_server):
    """--log_dir on a 1 MiB tmpfs. Filled up: 10 exchanges are traced but
    cannot be written; the daemon says so once, with the count, keeps tracing,
    and when space comes back resumes by itself and reports the outage's
    total. The file never holds a partial line."""
    with mounted("-t", "tmpfs", "-o", "size=1m,mode=0750", "tmpfs",
                 target=tmp_path / "full") as logdir:
        d = Daemon(logdir, f"--pid={py_server.pid}").start()  # server records only
        try:
            for i in range(3):
                echo(py_server, f"before-{i}")
            wait_written(d, 3)
            filler = logdir / "filler"
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            for i in range(10):
                echo(py_server, f"during-{i}")
                time.sleep(0.3)  # one batch per exchange: 10 failed writes
            wait_stderr(d, r"No space left on device")
            filler.unlink()
            for i in range(2):
                echo(py_server, f"after-{i}")
            recovered = wait_stderr(d, r"httptraced: log: output recovered")
            wait_written(d, 5)
        finally:
            assert d.stop() == 0, d.stderr()
        assert_no_sanitizer_report(d)
        assert_reported_once(d, "No space left on device")
        assert_lost(recovered[0], 10, "No space left on device")
        end = final_stats(d)
        assert (end["records"], end["written"], end["lost"]) == (15, 5, 10), end
        assert tags(whole_lines(d.log)) == ["after-0", "after-1"] + \
            [f"before-{i}" for i in range(3)]


def test_removed_log_directory_is_recreated_without_loss(tmp_path, py_server):
    d = Daemon(tmp_path / "logs", f"--pid={py_server.pid}").start()
    try:
        echo(py_server, "before")
        wait_written(d, 1)
        shutil.rmtree(tmp_path / "logs")
        echo(py_server, "after")
        wait_written(d, 1)
        warned = wait_stderr(d, r"was missing \(removed while running\?\); created it")
    finally:
        assert d.stop() == 0, d.stderr()
    assert_no_sanitizer_report(d)
    assert len(warned) == 1
    assert tags(whole_lines(d.log)) == ["after"]
    assert os.stat(tmp_path / "logs").st_mode & 0o777 == 0o750
    assert os.stat(d.log).st_mode & 0o777 == 0o640
    end = final_stats(d)
    assert (end["written"], end["lost"]) == (2, 0), end


def test_unwritable_log_is_reported_once_counted_and_recovered(tmp_path, py_server):
    """The active file made immutable (chattr +i, on ext4: writes through an
    open descriptor fail with EPERM, even for root) while the daemon runs: 5
    records lost, reported once, and writing resumes when it is made writable
    again."""
    image = tmp_path / "ext4.img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    with mounted("-o", "loop", str(image), target=tmp_path / "ext4") as mnt:
        os.chmod(mnt, 0o750)
        d = Daemon(mnt / "logs", f"--pid={py_server.pid}").start()
        try:
            echo(py_server, "before")
            wait_written(d, 1)
            subprocess.run(["chattr", "+i", str(d.log)], check=True)
            try:
                for i in range(5):
                    echo(py_server, f"during-{i}")
                    time.sleep(0.3)
                wait_stderr(d, r"Operation not permitted")
                assert d.proc.poll() is None
            finally:
                subprocess.run(["chattr", "-i", str(d.log)], check=True)
            echo(py_server, "after")
            recovered = wait_stderr(d, r"httptraced: log: output recovered")
            wait_written(d, 2)
        finally:
            assert d.stop() == 0, d.stderr()
        assert_no_sanitizer_report(d)
        assert_reported_once(d, "Operation not permitted")
        assert_lost(recovered[0], 5, "Operation not permitted")
        end = final_stats(d)
        assert (end["written"], end["lost"]) == (2, 5), end
        assert tags(whole_lines(d.log)) == ["after", "before"]


def test_log_directory_swapped_for_a_symlink_is_not_followed(tmp_path, py_server):
    """Removed while running and replaced by a symlink to elsewhere: nothing is
    written through the link (reported once, counted); once the link is gone,
    the daemon recreates the directory and resumes."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o750)
    d = Daemon(tmp_path / "logs", f"--pid={py_server.pid}").start()
    try:
        echo(py_server, "before")
        wait_written(d, 1)
        shutil.rmtree(tmp_path / "logs")
        os.symlink(victim, tmp_path / "logs")
        for i in range(3):
            echo(py_server, f"during-{i}")
            time.sleep(0.3)
        refused = wait_stderr(d, r"is a symlink; refusing")
        os.unlink(tmp_path / "logs")
        echo(py_server, "after")
        wait_stderr(d, r"httptraced: log: output recovered")
        wait_written(d, 1)
    finally:
        assert d.stop() == 0, d.stderr()
    assert_no_sanitizer_report(d)
    assert os.listdir(victim) == []
    assert len([l for l in d.stderr_lines if "is a symlink; refusing" in l]) == 2, d.stderr()
    assert tags(whole_lines(d.log)) == ["after"]
    end = final_stats(d)
    assert (end["written"], end["lost"]) == (2, 3), end


# ---------------------------------------------------------------------------
# The log path cannot be redirected at start.

def start_fails(log_dir):
    p = subprocess.run([str(BIN), f"--log_dir={log_dir}", "--stats_interval=0"],
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stderr.strip()


def test_symlinked_log_directory_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o750)
    os.symlink(real, tmp_path / "link")
    rc, err = start_fails(tmp_path / "link")
    assert rc == 1
    assert err == (f"httptraced: log directory {tmp_path}/link is a symlink; refusing to use it "
                   f"(whoever controls the link can redirect the log). Configure the real "
                   f"directory instead, or replace the link: rm {tmp_path}/link && "
                   f"mkdir -m 0750 {tmp_path}/link")
    assert os.listdir(real) == []


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o752])
def test_log_directory_writable_by_others_is_refused(tmp_path, mode):
    logs = tmp_path / "logs"
    logs.mkdir()
    os.chmod(logs, mode)
    rc, err = start_fails(logs)
    assert rc == 1
    assert err == (f"httptraced: log directory {logs} is writable by group or others "
                   f"(mode {mode:04o}); refusing to use it (whoever can write there can "
                   f"replace the log files). Fix: chmod go-w {logs}")
    assert os.listdir(logs) == []


def test_symlinked_log_file_is_refused(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o750)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, logs / "httptraced.json")
    rc, err = start_fails(logs)
    assert rc == 1
    assert err == (f"httptraced: active log file {logs}/httptraced.json is a symlink; refusing "
                   f"to follow it (it could point anywhere). Remove it: rm "
                   f"{logs}/httptraced.json")
    assert victim.read_text() == "precious\n"


def test_fifo_as_log_file_is_refused(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o750)
    os.mkfifo(logs / "httptraced.json")
    rc, err = start_fails(logs)
    assert rc == 1
    assert err == (f"httptraced: active log file {logs}/httptraced.json is not a regular file; "
                   f"remove it")


def test_an_open_file_limit_too_low_to_load_is_one_clear_sentence(tmp_path):
    """A hard limit of 40 descriptors leaves nothing to raise: loading fails
    with EMFILE, which is no refusal by the kernel's verifier, so no other
    program is tried and the message says what to raise."""
    p = subprocess.run(["prlimit", "--nofile=40:40", str(BIN), f"--log_dir={tmp_path / 'logs'}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip() == (
        "httptraced: cannot load the BPF programs: Too many open files (each map, program and "
        "attachment takes a file descriptor, about 100 while loading): raise the open-file "
        "limit (ulimit -n, or LimitNOFILE= in the unit)")


def test_low_open_file_soft_limit_is_raised_to_the_hard_one(tmp_path, py_server):
    """Each map, program and attachment holds a file descriptor (about 60
    once tracing, more while the programs load): under a soft limit of 40 the
    daemon would fail to load; it raises the soft limit to the hard one and
    traces."""
    d = Daemon(tmp_path / "logs", f"--port={py_server.port}")
    d.args = ["prlimit", "--nofile=40:4096", *d.args]  # prlimit execs: the same pid
    d.start()
    try:
        limits = Path(f"/proc/{d.pid()}/limits").read_text()
        assert [l.split()[3:5] for l in limits.splitlines() if l.startswith("Max open files")] \
            == [["4096", "4096"]], limits
        assert len(os.listdir(f"/proc/{d.pid()}/fd")) > 40
        _, pid = curl(py_server.url("/hello"))
        got = d.wait_for(lambda r: r["process"]["pid"] == pid)
    finally:
        assert d.stop() == 0, d.stderr()
    assert [r["url"]["path"] for r in got] == ["/hello"]
