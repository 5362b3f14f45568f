"""Processes the benchmark starts, CPU pinning, sd_notify readiness and /proc readings.

Every process is started through :class:`Processes`, whose :meth:`~Processes.close` (run by the
harness on success, failure, Ctrl-C and SIGTERM alike) ends whatever is still running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

GENERATOR_CPU = 0
SERVER_CPU = 1


def cpus() -> int:
    return len(os.sched_getaffinity(0))


def pinned(cpu: int | None) -> list[str]:
    """``taskset -c CPU``: a prefix that pins the command (and all it execs and spawns) to ``cpu``;
    nothing on one core or without taskset (util-linux)."""
    taskset = shutil.which("taskset")
    if cpu is None or cpus() < 2 or taskset is None:
        return []
    return [taskset, "-c", str(cpu)]


class Processes:
    """Popen with a registry: :meth:`close` terminates (then kills) every one still running."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[Any]] = []

    def start(self, argv: Sequence[str], *, cpu: int | None = None, env: dict[str, str] | None = None,
              stdout: int | IO[Any] | None = subprocess.DEVNULL,
              stderr: int | IO[Any] | None = subprocess.DEVNULL) -> subprocess.Popen[Any]:
        process = subprocess.Popen([*pinned(cpu), *argv], stdin=subprocess.DEVNULL, stdout=stdout,
                                   stderr=stderr, env=env)
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen[Any], timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit status."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if process in self.running:
            self.running.remove(process)
        return process.returncode

    def close(self) -> None:
        for process in list(self.running):
            self.stop(process, timeout=5)


class NotifyListener:
    """The service manager's end of sd_notify(3): an AF_UNIX datagram socket at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def env(self) -> dict[str, str]:
        return {**os.environ, "NOTIFY_SOCKET": str(self.path)}

    def wait_ready(self, timeout: float, alive: Callable[[], bool]) -> float | None:
        """The monotonic time READY=1 arrived, or None if it did not within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            self.sock.settimeout(0.05)
            try:
                message = self.sock.recv(4096)
            except TimeoutError:
                continue
            if b"READY=1" in message.split(b"\n"):
                return time.monotonic()
        return None

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` and all its threads (/proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """VmRSS of process ``pid`` in MiB (/proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
