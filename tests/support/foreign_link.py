"""The test's end of tests/support/foreign_link_driver.py: requests, answers, and the event lines between."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.tools import tool

DRIVER = str(Path(__file__).resolve().parent / "foreign_link_driver.py")


class LinkDriver:
    """The driver subprocess in namespace ``ns``; stop it with :meth:`stop` (also on failure).
    ``script`` is another driver speaking the same protocol (tests/support/mobile_link_driver.py)."""

    def __init__(self, ns: str, script: str = DRIVER) -> None:
        self.process = subprocess.Popen(
            [tool("ip"), "netns", "exec", ns, sys.executable, script],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.events: list[dict[str, Any]] = []
        self._buffer = b""

    def _line(self, deadline: float) -> dict[str, Any] | None:
        # Read the pipe's descriptor directly: a buffered readline() could take several lines into
        # its buffer, and select() would then wait for more while they sit there.
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                errors = self.process.stderr.read() if self.process.stderr else ""
                raise AssertionError(f"the driver exited: {errors}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    def __call__(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request; event lines that come before its answer are kept in :attr:`events`."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + 10
        while (line := self._line(deadline)) is not None:
            if "event" in line:
                self.events.append(line)
                continue
            assert line["ok"], line
            return line
        raise AssertionError(f"the driver gave no answer to {op}")

    def wait_events(self, kind: str, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The events of ``kind`` once there are ``count`` of them, or all there are at ``timeout``."""
        deadline = time.monotonic() + timeout
        while len(found := [e for e in self.events if e["event"] == kind]) < count:
            line = self._line(deadline)
            if line is None:
                break
            self.events.append(line)
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
