"""Fixtures for the package and service tests: the .deb built by
packaging/build-deb.sh and a Debian system booted around it with
systemd-nspawn. Run as root (scripts/test.sh does):

  bash packaging/build-deb.sh && python3 -m pytest -v tests/systemd
"""
import glob
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nspawn  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    if os.geteuid() != 0:
        raise pytest.UsageError("the systemd tests boot a container and load BPF: run as root")


@pytest.fixture(scope="session")
def deb():
    path = os.environ.get("HTTPTRACED_DEB")
    if not path:
        found = sorted(glob.glob(str(REPO / "build-deb" / "httptraced_*_amd64.deb")))
        if len(found) != 1:
            raise AssertionError(f"expected one build-deb/httptraced_*_amd64.deb, found {found}:"
                                 " run `bash packaging/build-deb.sh` first (or set HTTPTRACED_DEB)")
        path = found[0]
    return Path(path)


@pytest.fixture(scope="module")
def container(deb):
    packages = nspawn.BASE_PACKAGES + nspawn.deb_depends(deb)
    # "systemd | systemd-sysusers": systemd is in the list already.
    root = nspawn.cached_rootfs(packages, log=lambda m: print(m, flush=True))
    with nspawn.Container(root, log=lambda m: print(m, flush=True)) as c:
        yield c
