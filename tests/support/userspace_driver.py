"""Run a real UserspaceBackend (and BroadcastForwarder) inside a network namespace for a test.

Started as ``ip netns exec NS python userspace_driver.py [DEVICE]``; reads one JSON request per
line from stdin and answers each with one JSON line on stdout::

    {"op": "sysctl", "path": "net/ipv4/ip_forward", "value": "1"}
    {"op": "start", "local": "10.1.0.1", "broadcast": {"interface": "home0", "network": "10.1.0.0/24"}}
    {"op": "apply", "home": "10.1.0.50", "endpoints": [{"care_of_address": ..., "source": ..., ...}]}
    {"op": "reconcile", "desired": [{"home": ..., "endpoints": [...]}]}
    {"op": "counters"}   ->  {"ok": true, "backend": {...}, "broadcast": {...}}
    {"op": "close"}      ->  closes everything and exits after answering

Answers are {"ok": true, ...} or {"ok": false, "error": "..."}. End of input closes and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from mipd.adapters.tunnel.broadcast import BroadcastForwarder
from mipd.adapters.tunnel.userspace import UserspaceBackend
from mipd.core.planes import DataPlane, Endpoint
from mipd.core.wire.tunnel import Encapsulation


def endpoint(spec: dict[str, Any]) -> Endpoint:
    return Endpoint(
        IPv4Address(spec["care_of_address"]), IPv4Address(spec["source"]),
        Encapsulation(spec.get("encapsulation", "ipip")), bool(spec.get("reverse", False)),
        bool(spec.get("broadcast", False)), bool(spec.get("decapsulates", False)),
    )


def dataplane(spec: dict[str, Any]) -> DataPlane:
    return DataPlane(IPv4Address(spec["home"]), tuple(endpoint(e) for e in spec.get("endpoints", ())))


class Driver:
    def __init__(self, device: str) -> None:
        self.backend = UserspaceBackend(device)
        self.broadcast = BroadcastForwarder()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "sysctl":
            Path("/proc/sys", request["path"]).write_text(request["value"])
        elif op == "start":
            self.backend.start(IPv4Address(request["local"]))
            if "broadcast" in request:
                spec = request["broadcast"]
                self.broadcast.start(spec["interface"], IPv4Network(spec["network"]))
        elif op == "apply":
            change = dataplane(request)
            self.backend.apply(change)
            self.broadcast.update(change)
        elif op == "reconcile":
            changes = [dataplane(spec) for spec in request["desired"]]
            self.backend.reconcile(changes)
            for change in changes:
                self.broadcast.update(change)
        elif op == "counters":
            return {"ok": True, "backend": self.backend.counters(), "broadcast": self.broadcast.counters()}
        elif op == "close":
            self.close()
        else:
            raise ValueError(f"unknown op {op!r}")
        return {"ok": True}

    def close(self) -> None:
        self.broadcast.close()
        self.backend.close()


async def main(device: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    driver = Driver(device)
    try:
        while line := await reader.readline():
            request = json.loads(line)
            try:
                answer = driver.handle(request)
            except Exception as exc:  # reported to the test, which fails with it
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)
            if request.get("op") == "close":
                return
    finally:
        driver.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "mip0"))
