"""A Debian bookworm system booted with systemd-nspawn, for testing the package.

The root file system comes from debootstrap (minbase + systemd + what the .deb
depends on + the test's tools) and is cached, read-only, under CACHE_DIR keyed
by the mirror, suite and package list; each boot runs on an overlayfs whose
upper layer is thrown away afterwards, so the cache is never modified. Commands
run inside with nsenter (machinectl and systemd-run -M need systemd on the host,
which this machine does not run).
"""
import fcntl
import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

CACHE_DIR = Path(os.environ.get("HTTPTRACED_CI_CACHE", "/var/cache/httptraced-ci"))
SUITE = "bookworm"
VARIANT = "minbase"
# Booting systemd, plus the tools the tests run inside (an HTTP server and
# clients, man). The .deb's own dependencies are added to this list.
BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus", "python3", "curl", "man-db", "procps"]
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "SYSTEMD_PAGER": "",
       "SYSTEMD_COLORS": "0", "MANPAGER": "cat", "PAGER": "cat"}


def apt_mirror(suite=SUITE):
    """The Debian mirror this host's apt uses for `suite` (deb822 or one-line sources)."""
    if os.environ.get("HTTPTRACED_CI_MIRROR"):
        return os.environ["HTTPTRACED_CI_MIRROR"]
    files = sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    for path in files:
        for stanza in Path(path).read_text().split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
                if m:
                    fields[m.group(1).lower()] = m.group(2).split()
            if ("deb" in fields.get("types", []) and suite in fields.get("suites", [])
                    and fields.get("enabled", ["yes"])[0] != "no"):
                return fields["uris"][0]
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        if not os.path.exists(path):
            continue
        for line in Path(path).read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                return words[1]
    raise RuntimeError(f"no apt source for {suite} in /etc/apt/sources.list*: set "
                       "HTTPTRACED_CI_MIRROR")


def deb_depends(deb):
    """Package names the .deb depends on (first of each alternative)."""
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True,
                         text=True, check=True).stdout
    names = []
    for dep in out.split(","):
        name = dep.split("|")[0].split("(")[0].strip()
        if name:
            names.append(name)
    return names


def cached_rootfs(packages, log):
    """A debootstrapped root with `packages`, built once per (mirror, suite, packages)."""
    mirror = apt_mirror()
    packages = sorted(set(packages))
    key = hashlib.sha256(f"{mirror}|{SUITE}|{VARIANT}|{','.join(packages)}".encode()).hexdigest()
    root = CACHE_DIR / f"rootfs-{key[:16]}"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / ".complete").exists():
            log(f"rootfs: cached {root} ({mirror}, {len(packages)} packages)")
            return root
        for old in CACHE_DIR.glob("rootfs-*"):  # other keys, and a half-built one
            shutil.rmtree(old, ignore_errors=True)
        tmp = CACHE_DIR / f"building-{key[:16]}"
        shutil.rmtree(tmp, ignore_errors=True)
        log(f"rootfs: debootstrap {SUITE} from {mirror} into {root}")
        started = time.monotonic()
        proc = subprocess.run(
            ["debootstrap", f"--variant={VARIANT}", f"--include={','.join(packages)}", SUITE,
             str(tmp), mirror], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"debootstrap failed ({proc.returncode}):\n"
                               f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        # No apt caches in the image; a machine id is made at each boot.
        for junk in ["var/cache/apt/archives"]:
            for f in (tmp / junk).glob("*.deb"):
                f.unlink()
        (tmp / "etc/machine-id").write_text("")
        (tmp / ".complete").write_text(f"{mirror} {SUITE} {' '.join(packages)}\n")
        tmp.rename(root)
        log(f"rootfs: built in {time.monotonic() - started:.0f} s")
        return root


class Container:
    """One booted container; use as a context manager (always powered off)."""

    def __init__(self, lower, name="httptraced-ci", log=print):
        self.lower = Path(lower)
        self.name = name
        self.log = log
        self.scratch = Path(tempfile.mkdtemp(prefix="httptraced-nspawn-", dir="/var/tmp"))
        self.merged = self.scratch / "merged"
        self.nspawn = None
        self.leader = None
        self.console_path = self.scratch / "console.log"
        self._mounted = False

    # ---- lifecycle -------------------------------------------------------
    def __enter__(self):
        try:
            self.boot()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def boot(self, timeout=60):
        for d in ("upper", "work", "merged"):
            (self.scratch / d).mkdir()
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={self.lower},upperdir={self.scratch / 'upper'},"
                        f"workdir={self.scratch / 'work'}", str(self.merged)], check=True,
                       timeout=30)
        self._mounted = True
        # The image's /etc/hostname is the build host's; a name of our own shows
        # where host.name comes from.
        (self.merged / "etc/hostname").write_text(self.name + "\n")
        console = open(self.console_path, "wb")
        # setsid: its own session and process group, killable as a whole.
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "-b", "-D", str(self.merged), f"--machine={self.name}",
             "--register=no", "--keep-unit", "--console=pipe", "--capability=all",
             "--system-call-filter=bpf perf_event_open", "--bind=/sys/kernel/tracing",
             "--bind=/sys/fs/bpf"],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True)
        console.close()
        deadline = time.monotonic() + timeout
        while self.leader is None:
            if self.nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {self.nspawn.returncode}:\n"
                                   f"{self.console()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no systemd in the container after {timeout} s:\n"
                                   f"{self.console()}")
            found = subprocess.run(["pgrep", "-P", str(self.nspawn.pid), "-x", "systemd"],
                                   capture_output=True, text=True).stdout.split()
            if found:
                self.leader = int(found[0])
            else:
                time.sleep(0.1)
        while True:  # systemctl fails until PID 1 has set up its private bus socket
            proc = self.run(["systemctl", "is-system-running", "--wait"], timeout=timeout,
                            check=False)
            state = proc.stdout.strip()
            # "offline": systemctl found no /run/systemd/system yet, which PID 1
            # creates early in boot; only a state from the running manager counts.
            if (state and state != "offline") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if state != "running":
            failed = self.run(["systemctl", "--failed", "--no-legend"], check=False).stdout
            raise RuntimeError(f"container system state is {state!r}, not running; failed "
                               f"units:\n{failed}\n{self.console()}")
        self.log(f"container: booted {self.name} (nspawn {self.nspawn.pid}, systemd "
                 f"{self.leader})")

    def close(self):
        if self.nspawn is not None and self.nspawn.poll() is None:
            if self.leader is not None:
                subprocess.run(["nsenter", "-t", str(self.leader), "-a", "--", "systemctl",
                                "poweroff"], capture_output=True, timeout=20, check=False,
                               env=ENV)
            for sig, wait in ((None, 30), (signal.SIGTERM, 15), (signal.SIGKILL, 10)):
                if sig is not None:
                    try:
                        os.killpg(self.nspawn.pid, sig)
                    except ProcessLookupError:
                        pass
                try:
                    self.nspawn.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._mounted:
            for args in (["umount", str(self.merged)], ["umount", "-l", str(self.merged)]):
                if subprocess.run(args, capture_output=True, check=False).returncode == 0:
                    self._mounted = False
                    break
                time.sleep(1)
        if not self._mounted:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def console(self):
        try:
            return self.console_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    # ---- inside the container -------------------------------------------
    def path(self, inside):
        """The host path of a file inside the running container."""
        return self.merged / str(inside).lstrip("/")

    def run(self, cmd, timeout=60, check=True, input=None):
        proc = subprocess.run(["nsenter", "-t", str(self.leader), "-a", "--", *cmd],
                              capture_output=True, text=True, timeout=timeout, input=input,
                              env=ENV)
        if check and proc.returncode != 0:
            raise AssertionError(f"in the container, {' '.join(cmd)} exited "
                                 f"{proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def spawn(self, cmd, **kwargs):
        """Starts `cmd` inside; returns (Popen of nsenter, host pid of cmd)."""
        proc = subprocess.Popen(["nsenter", "-t", str(self.leader), "-a", "--", *cmd],
                                env=ENV, **kwargs)
        deadline = time.monotonic() + 10
        while True:  # nsenter forks into the container's pid namespace
            kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                  text=True).stdout.split()
            if kids:
                return proc, int(kids[0])
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{cmd} did not start in the container")
            time.sleep(0.02)

    def show(self, unit, *props):
        out = self.run(["systemctl", "show", unit, "-p", ",".join(props)]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
