"""A real systemd-journald for tests, isolated from the host in a private mount namespace.

``unshare --mount --propagation private`` starts a holder process (``sleep infinity``) in a new
mount namespace; tmpfs file systems are then mounted, inside that namespace only, over
``/run/systemd`` and ``/run/log`` (over all of ``/run`` where one of them is missing) and over
``/var/log/journal`` when it exists. A standalone ``/lib/systemd/systemd-journald`` runs in the
namespace, so its socket (``/run/systemd/journal/socket``) and journal files live in those tmpfs
only; the host's /run, its journal and its kernel log are never touched (a drop-in under the
namespace's ``/run/systemd/journald.conf.d`` turns off kmsg, syslog and journald's own rate
limits). Programs run in the namespace through ``nsenter -t PID -m``: :meth:`Journald.run`,
:meth:`Journald.popen`. :meth:`Journald.entries` reads entries back with ``journalctl -o json``
inside it, retrying while journald catches up. Leaving the context kills every process of the
namespace, which ends it and with it the mounts.

Fixtures: ``journald`` (a running journald, one per test module) and ``journal_namespace`` (the same
namespace with no journald at all: no journal socket is visible in it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.tools import tool

SOCKET = "/run/systemd/journal/socket"

# No kernel messages, no forwarding, no journald rate limit (the tests measure mipd's own), RAM only.
JOURNALD_CONF = """\
[Journal]
Storage=volatile
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
RateLimitIntervalSec=0
RateLimitBurst=0
"""


class NamespaceError(RuntimeError):
    """The isolated namespace or its journald could not be set up."""


def _wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise NamespaceError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class MountNamespace:
    """A private mount namespace held open by a ``sleep`` process, with tmpfs over the journal paths."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.holder: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.namespace = ""  # the /proc/PID/ns/mnt link of the namespace, e.g. "mnt:[4026532...]"

    # --- running programs inside -----------------------------------------------------------------

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed with ``nsenter`` into this namespace (for :meth:`run`/:meth:`popen` or logs)."""
        return [tool("nsenter"), "-t", str(self.pid), "-m", "--", *argv]

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run(argv)`` inside the namespace."""
        return subprocess.run([tool("nsenter"), "-t", str(self.pid), "-m", "--", *argv], **kwargs)  # noqa: PLW1510

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """``subprocess.Popen(argv)`` inside the namespace (nsenter execs it: same process id)."""
        return subprocess.Popen([tool("nsenter"), "-t", str(self.pid), "-m", "--", *argv], **kwargs)

    def path(self, inside: str) -> Path:
        """A path of the namespace, as this (outside) process can reach it: through /proc/PID/root."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    # --- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        sleep = tool("sleep")
        self.holder = subprocess.Popen(
            [tool("unshare"), "--mount", "--propagation", "private", "--", sleep, "infinity"],
            stdin=subprocess.DEVNULL,
        )
        self.pid = self.holder.pid
        # unshare(1) makes the namespace private before it execs sleep: only mount once sleep runs.
        real_sleep = os.path.realpath(sleep)
        _wait_for(lambda: self._exe() == real_sleep, 10, "unshare to exec sleep in the new namespace")
        self.namespace = os.readlink(f"/proc/{self.pid}/ns/mnt")
        if self.namespace == os.readlink("/proc/self/ns/mnt"):
            raise NamespaceError("unshare did not create a new mount namespace")
        targets = ["/run/systemd", "/run/log"] if all(Path(p).is_dir() for p in ("/run/systemd", "/run/log")) else [
            "/run"
        ]
        if Path("/var/log/journal").is_dir():
            targets.append("/var/log/journal")
        for target in targets:
            host_device = os.stat(target).st_dev
            self.run(
                [tool("mount"), "-t", "tmpfs", "-o", "mode=0755,size=64m", "mipd-test", target],
                check=True, capture_output=True, timeout=30,
            )
            # The mount must be visible inside only: the host's directory keeps its own device.
            if os.stat(target).st_dev != host_device or os.stat(self.path(target)).st_dev == host_device:
                raise NamespaceError(f"tmpfs over {target} is not confined to the namespace")
        for directory in ("/run/systemd/journald.conf.d", "/run/log/journal"):
            self.path(directory).mkdir(parents=True, exist_ok=True)

    def _exe(self) -> str | None:
        try:
            return os.readlink(f"/proc/{self.pid}/exe")
        except OSError:
            return None

    def members(self) -> list[int]:
        """The ids of the processes in this namespace (the holder, journald, whatever tests started)."""
        found: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if self.namespace and os.readlink(entry / "ns" / "mnt") == self.namespace:
                    found.append(int(entry.name))
        return found

    def close(self) -> None:
        """Kill every process of the namespace; the last one gone takes the namespace and mounts along."""
        if self.holder is None:
            return
        for pid in self.members():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait(timeout=10)
        with contextlib.suppress(Exception):
            _wait_for(lambda: not self.members(), 5, "the namespace's processes to end")
        self.holder = None


class Journald(MountNamespace):
    """A :class:`MountNamespace` with a standalone systemd-journald in it."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.journald: subprocess.Popen[bytes] | None = None
        self.log = workdir / "journald.log"

    def start(self) -> None:
        super().start()
        self.path("/run/systemd/journald.conf.d/50-mipd-tests.conf").write_text(JOURNALD_CONF)
        self.start_journald()

    def start_journald(self) -> None:
        """Start journald (again) and wait until its socket takes entries."""
        if self.journald is not None and self.journald.poll() is None:
            return
        socket = self.path(SOCKET)
        socket.unlink(missing_ok=True)  # a killed journald leaves its socket behind
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "SYSTEMD_LOG_TARGET": "console"}
        with self.log.open("ab") as log:
            self.journald = self.popen(
                [tool("systemd-journald")], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            )
        _wait_for(lambda: socket.is_socket() or self.journald is None or self.journald.poll() is not None,
                  10, f"journald's socket ({self.log})")
        if self.journald.poll() is not None:
            raise NamespaceError(f"systemd-journald exited with {self.journald.returncode}: {self.log.read_text()}")

    def kill_journald(self) -> None:
        """SIGKILL journald, as a crash would: its socket stays, nobody reads it (ECONNREFUSED)."""
        if self.journald is not None:
            self.journald.kill()
            self.journald.wait(timeout=10)

    def entries(self, *, count: int = 1, timeout: float = 10.0, **matches: str) -> list[dict[str, Any]]:
        """Entries matching ``FIELD=value`` (all of them), waiting until at least ``count`` have arrived.

        Returns what is there when ``count`` is reached or ``timeout`` passes (``count=0``: at once).
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self._read(matches)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def _read(self, matches: dict[str, str]) -> list[dict[str, Any]]:
        result = self.run(
            [tool("journalctl"), "--no-pager", "--all", "-o", "json", *[f"{k}={v}" for k, v in matches.items()]],
            capture_output=True, text=True, timeout=30, check=False,
        )
        return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@contextlib.contextmanager
def private_namespace(workdir: Path | None = None) -> Iterator[MountNamespace]:
    """A private mount namespace with tmpfs over the journal paths and no journald: no journal socket."""
    with tempfile.TemporaryDirectory(prefix="mipd-ns-") as temporary:
        namespace = MountNamespace(workdir or Path(temporary))
        try:
            namespace.start()
            yield namespace
        finally:
            namespace.close()


@contextlib.contextmanager
def running_journald(workdir: Path | None = None) -> Iterator[Journald]:
    """A standalone journald in a private mount namespace; everything is gone after the ``with``."""
    with tempfile.TemporaryDirectory(prefix="mipd-journald-") as temporary:
        journal = Journald(workdir or Path(temporary))
        try:
            journal.start()
            yield journal
        finally:
            journal.close()


@pytest.fixture(scope="module")
def journald() -> Iterator[Journald]:
    """A running, isolated journald shared by a test module (tell tests apart by MIP_INSTANCE)."""
    with running_journald() as journal:
        yield journal


@pytest.fixture(scope="module")
def journal_namespace() -> Iterator[MountNamespace]:
    """An isolated mount namespace in which no journal socket exists."""
    with private_namespace() as namespace:
        yield namespace
