"""Programs the demo runs inside its namespaces: ``mipd run`` for each role and the traffic helpers.

Each is started with ``ip netns exec`` in a session of its own (a Ctrl-C at the terminal reaches the demo,
which stops them in order). Their output lines are read by a thread, kept with the time they came in
and copied to a log file in the demo's directory. When journald is running, the daemons are started in a
private mount namespace where its socket is hidden, so that their events come on stderr as JSON lines.
Given a :class:`Journal` (a journald in the mount namespace of some process, as tests run one), the
daemons run in that mount namespace instead and log to that journald; their events are read back from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from mipd.control.client import Unreachable, call
from mipd.control.protocol import ProtocolError, Request
from mipd.demo.topology import ip_path

JOURNAL_DIRECTORY = "/run/systemd/journal"


def mipd_command() -> list[str]:
    script = Path(sys.executable).parent / "mipd"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "mipd.cli.mipd"]


def mipctl_command() -> list[str]:
    script = Path(sys.executable).parent / "mipctl"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "mipd.cli.mipctl"]


def _hide_journal(command: list[str]) -> list[str]:
    if not os.path.exists(os.path.join(JOURNAL_DIRECTORY, "socket")):
        return command
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            f'mount -t tmpfs demo {JOURNAL_DIRECTORY} && exec "$@"', "sh", *command]


@dataclass(frozen=True)
class Journal:
    """A journald running in the mount namespace of process ``pid`` (entered with ``nsenter``)."""

    pid: int

    def enter(self, command: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-m", "--", *command]

    def entries(self, *matches: str) -> list[dict[str, Any]]:
        """``journalctl -o json MATCHES`` in that namespace, oldest first."""
        out = subprocess.run(self.enter(["journalctl", "--no-pager", "--all", "-o", "json", *matches]),
                             capture_output=True, text=True, timeout=30, check=False)
        return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]

    def events(self, instance: str) -> list[dict[str, Any]]:
        """The instance's events, each with ``time`` from when journald received it."""
        found = self.entries(f"MIP_INSTANCE={instance}")
        for event in found:
            event["time"] = int(event["__REALTIME_TIMESTAMP"]) / 1e6
        return found


@dataclass
class Child:
    """One program in a namespace and the lines it printed, as ``(arrival time, line)``."""

    name: str
    process: subprocess.Popen[str]
    log: IO[str]
    lines: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    journal: tuple[Journal, str] | None = None  # where its events go instead: (journal, instance)

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self.lock:
                self.lines.append((time.time(), line.rstrip("\n")))
            with contextlib.suppress(ValueError):
                self.log.write(line)
                self.log.flush()

    def snapshot(self) -> list[tuple[float, str]]:
        with self.lock:
            return list(self.lines)

    def events(self) -> list[dict[str, Any]]:
        """The events: from the journal if it logs there, else the JSON lines of mipd's stderr (each with
        ``time`` from its TIMESTAMP)."""
        if self.journal is not None:
            journal, instance = self.journal
            return journal.events(instance)
        found = []
        for _, line in self.snapshot():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if "TIMESTAMP" in event:
                event["time"] = datetime.fromisoformat(event["TIMESTAMP"]).timestamp()
            found.append(event)
        return found

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait(timeout=10)
        with contextlib.suppress(ValueError):
            self.log.close()


def start(name: str, namespace: str, command: list[str], log: Path, *, stderr_lines: bool = False,
          hide_journal: bool = False, journal: Journal | None = None) -> Child:
    """Run ``command`` in ``namespace``; its stdout (or, with ``stderr_lines``, stderr) is collected.

    The network namespace is entered first: its /run/netns handle exists in this mount namespace only.
    """
    if journal is not None:
        command = journal.enter(command)
    elif hide_journal:
        command = _hide_journal(command)
    full = [ip_path(), "netns", "exec", namespace, *command]
    out = log.open("w")
    process = subprocess.Popen(
        full, stdin=subprocess.DEVNULL, text=True, start_new_session=True,
        stdout=out if stderr_lines else subprocess.PIPE, stderr=subprocess.PIPE if stderr_lines else out)
    child = Child(name, process, out)
    stream = process.stderr if stderr_lines else process.stdout
    assert stream is not None
    threading.Thread(target=child._read, args=(stream,), daemon=True).start()
    return child


def daemon(name: str, namespace: str, profile: Path, log: Path, journal: Journal | None = None) -> Child:
    """``mipd run --profile PROFILE --instance demo-NAME`` in ``namespace``; its events on stderr, or in
    ``journal``."""
    instance = f"demo-{name}"
    command = [*mipd_command(), "run", "--profile", str(profile), "--instance", instance]
    child = start(name, namespace, command, log, stderr_lines=True, hide_journal=True, journal=journal)
    if journal is not None:
        child.journal = (journal, instance)
    return child


def helper(name: str, namespace: str, args: list[str], log: Path) -> Child:
    """``python -m mipd.demo.agents ARGS`` in ``namespace``."""
    return start(name, namespace, [sys.executable, "-m", "mipd.demo.agents", *args], log)


def mipctl(socket_path: Path, command: str) -> Any:
    """What ``mipctl --socket PATH COMMAND --json`` prints, parsed; None if the instance does not answer
    (in 15 s) or refuses. Asked in this process through mipctl's own client (mipd.control.client), not
    by starting mipctl: the tour asks several times a second, and a Python start per question slowed
    the daemons it measures (seconds each in an emulated guest kernel)."""
    try:
        response = call(socket_path, Request(command), timeout=15)
    except (Unreachable, ProtocolError):
        return None
    return response.result if response.ok else None
