"""The test's end of tests/support/mobile_routing_driver.py, and frame capture helpers."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scapy.layers.l2 import Ether

from tests.support.tools import tool

DRIVER = str(Path(__file__).resolve().parent / "mobile_routing_driver.py")


class Driver:
    """The driver subprocess in the node's namespace: one JSON request, one JSON answer."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.process = subprocess.Popen([tool("ip"), "netns", "exec", ns, sys.executable, DRIVER],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)

    def __call__(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], 15)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stop()
            errors = self.process.stderr.read() if self.process.stderr else ""
            raise AssertionError(f"driver gave no answer to {op}: {errors}")
        answer: dict[str, Any] = json.loads(line)
        assert answer["ok"], answer
        return answer

    def plane(self, location: str, home_address: str, home_agent: str, **fields: Any) -> None:
        self("apply", plane={"location": location, "home_address": home_address, "home_agent": home_agent,
                             **fields})

    def counters(self) -> dict[str, int]:
        found: dict[str, int] = self("counters")["counters"]
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def show(ns: str, *args: str) -> list[dict[str, Any]]:
    """``ip -n NS -j ARGS``, parsed."""
    out = subprocess.run([tool("ip"), "-n", ns, "-j", *args], capture_output=True, text=True, timeout=10, check=True)
    found: list[dict[str, Any]] = json.loads(out.stdout or "[]")
    return found


def mac_of(ns: str, device: str) -> str:
    address: str = show(ns, "link", "show", device)[0]["address"]
    return address


def capture(sock: socket.socket, seconds: float) -> list[Ether]:
    """Every frame ``sock`` receives during ``seconds`` (after dropping what was queued before)."""
    sock.setblocking(False)
    try:
        while True:
            sock.recv(65535)
    except BlockingIOError:
        pass
    return collect(sock, seconds)


def collect(sock: socket.socket, seconds: float, until: Callable[[Ether], bool] | None = None) -> list[Ether]:
    frames: list[Ether] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            break
        frame = Ether(sock.recv(65535))
        frames.append(frame)
        if until is not None and until(frame):
            break
    return frames
