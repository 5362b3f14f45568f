"""mipd's packages for tests: built once per test session, the .deb installed on this host and purged after.

- :func:`build_deb` / :func:`build_rpm` run ``make deb`` / ``make rpm`` once per session into a temporary
  directory (removed when the session ends) and return the package's path.
- :func:`deb_installed` installs a .deb with ``dpkg -i`` and purges it when the block ends, also on
  failure. It refuses to run if a mipd package is already on the host. Its maintainer scripts act on the
  host, so two things are kept safe: whatever ``/var/lib/mip`` and ``/run/mip`` held before (other
  tests' state) is moved aside and put back after the purge, which would delete it; and removal runs in
  a throwaway network namespace, so that the prerm's ``mipd cleanup`` cannot touch the host's links.
- The pytest fixtures ``deb_file`` (session) and ``installed_deb`` (module: installed for the tests of
  one module, purged after them, also after a test removed it) wrap these; a test module or conftest
  imports them by name (each stands alone).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.tools import tool

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "mipd"
STATE_DIRECTORIES = (Path("/var/lib/mip"), Path("/run/mip"))
BUILD_TIMEOUT = 1200  # seconds; a cold build (pip downloads, systemd-python compiles) takes a few minutes
_DPKG_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}


class PackageError(RuntimeError):
    """A package could not be built, installed or removed; the message carries the tool's output."""


_built: dict[str, Path] = {}
_output: list[Path] = []


def _output_directory() -> Path:
    if not _output:
        path = Path(tempfile.mkdtemp(prefix="mipd-test-packages-"))
        atexit.register(shutil.rmtree, path, True)
        _output.append(path)
    return _output[0]


def _build(kind: str, pattern: str) -> Path:
    cached = _built.get(kind)
    if cached is not None and cached.is_file():
        return cached
    output = _output_directory()
    result = subprocess.run(
        [tool("make"), "--no-print-directory", "-C", str(REPO), kind, f"DIST={output}"],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False,
    )
    found = sorted(output.glob(pattern))
    if result.returncode or len(found) != 1:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise PackageError(f"make {kind} failed (exit {result.returncode}, made {found}):\n{tail}")
    _built[kind] = found[0]
    return found[0]


def build_deb() -> Path:
    """The .deb of this tree (``make deb``), built once per test session."""
    return _build("deb", "mipd_*.deb")


def build_rpm() -> Path:
    """The .rpm of this tree (``make rpm``), built once per test session."""
    return _build("rpm", "mipd-*.rpm")


def package_status() -> str:
    """dpkg's status of mipd on this host: "installed", "config-files", ... or "" if it has none."""
    result = subprocess.run([tool("dpkg-query"), "-W", "-f=${db:Status-Status}", PACKAGE],
                            capture_output=True, text=True, timeout=60, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def dpkg(*args: str, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    """``dpkg ARGS`` (inside network namespace ``netns`` if given), retried while another dpkg or apt
    holds the lock; raises PackageError if it fails."""
    argv = [tool("dpkg"), *args]
    if netns:
        argv = [tool("ip"), "netns", "exec", netns, tool("dpkg"), *args]
    deadline = time.monotonic() + 120
    while True:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, env=_DPKG_ENV)
        locked = "lock" in result.stderr and ("locked" in result.stderr or "held" in result.stderr)
        if not (result.returncode and locked and time.monotonic() < deadline):
            break
        time.sleep(2)
    if result.returncode:
        raise PackageError(f"dpkg {' '.join(args)} failed (exit {result.returncode}):\n"
                           f"{result.stdout}{result.stderr}")
    return result


@contextmanager
def scratch_netns() -> Iterator[str]:
    """A new, empty network namespace (its name), deleted afterwards."""
    name = f"mipt-pkg-{uuid.uuid4().hex[:6]}"
    subprocess.run([tool("ip"), "netns", "add", name], check=True, capture_output=True, timeout=30)
    try:
        yield name
    finally:
        subprocess.run([tool("ip"), "netns", "del", name], check=False, capture_output=True, timeout=30)


def purge() -> None:
    """``dpkg --purge mipd`` in a scratch network namespace (see the module docstring)."""
    if package_status() not in ("", "not-installed"):
        with scratch_netns() as netns:
            dpkg("--purge", PACKAGE, netns=netns)


@contextmanager
def _state_set_aside() -> Iterator[None]:
    """Move what /var/lib/mip and /run/mip hold now out of the package's way; put it back afterwards."""
    saved: list[tuple[Path, Path]] = []
    try:
        for directory in STATE_DIRECTORIES:
            if directory.exists():
                aside = directory.with_name(f"{directory.name}.saved-by-test-{os.getpid()}")
                directory.rename(aside)
                saved.append((directory, aside))
        yield
    finally:
        for directory, aside in saved:
            if directory.exists():
                shutil.rmtree(directory)
            aside.rename(directory)


@contextmanager
def deb_installed(deb: Path) -> Iterator[Path]:
    """Install ``deb`` on this host for the block; purge it afterwards, also on failure."""
    status = package_status()
    if status and status != "not-installed":
        raise PackageError(f"a mipd package is already on this host ({status}): remove it first with "
                           f"`dpkg --purge {PACKAGE}`")
    with _state_set_aside():
        try:
            dpkg("--install", str(deb))
            yield deb
        finally:
            purge()


@pytest.fixture(scope="session")
def deb_file() -> Path:
    """The .deb of this tree, built once per session."""
    return build_deb()


@pytest.fixture(scope="module")
def installed_deb() -> Iterator[Path]:
    """The .deb's path, with the package installed on this host for the tests of one module."""
    with deb_installed(build_deb()) as path:
        yield path


SYSTEMD_GUARD = "[ -d /run/systemd/system ]"


def shell_code(script: str) -> str:
    """``script`` without its comments (a ``#`` that starts a word, outside quotes: good enough for ours)."""
    return "\n".join(line for line in (raw.split(" #", 1)[0].rstrip() for raw in script.splitlines())
                     if not line.lstrip().startswith("#"))


def unguarded_systemctl(script: str) -> list[str]:
    """The lines of shell ``script`` that run systemctl outside an ``if [ -d /run/systemd/system ]``
    block: a host without systemd as PID 1 (a container, a chroot, this CI) would fail them."""
    found: list[str] = []
    blocks: list[bool] = []  # per open if-block: is it the systemd guard?
    for raw in shell_code(script).splitlines():
        line = raw.strip()
        if line.startswith("if "):
            blocks.append(SYSTEMD_GUARD in line)
        elif line == "fi" and blocks:
            blocks.pop()
        if "systemctl" in line and not any(blocks):
            found.append(raw.strip())
    return found
