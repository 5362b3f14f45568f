"""Run a real foreign-agent visitor backend inside a network namespace for a test.

Started as ``ip netns exec NS python visitor_driver.py [userspace|kernel]``; reads one JSON request
per line from stdin and answers each with one JSON line on stdout::

    {"op": "sysctl", "path": "net/ipv4/ip_forward", "value": "1"}
    {"op": "start", "care_of_address": "10.0.0.2", "interface": "visit0"}
    {"op": "apply", "home": "10.1.0.50", "delivery": {"link_address": "02:..", "home_agent": ..,
                    "care_of_address": .., "encapsulation": "ipip", "reverse": true}}   (or null)
    {"op": "reconcile", "desired": [{"home": ..., "delivery": {...}}]}
    {"op": "counters"}   ->  {"ok": true, "counters": {...}}
    {"op": "close"}      ->  closes the backend and exits after answering

Answers are {"ok": true, ...} or {"ok": false, "error": "..."}. End of input closes and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from mipd.adapters.tunnel.backend import VisitorBackend
from mipd.adapters.tunnel.visitor_kernel import VisitorKernelBackend
from mipd.adapters.tunnel.visitor_userspace import VisitorUserspaceBackend
from mipd.core.planes import Delivery, VisitorPlane
from mipd.core.wire.tunnel import Encapsulation


def plane(spec: dict[str, Any]) -> VisitorPlane:
    home = IPv4Address(spec["home"])
    d = spec.get("delivery")
    if d is None:
        return VisitorPlane(home, None)
    return VisitorPlane(home, Delivery(home, bytes.fromhex(d["link_address"].replace(":", "")),
                                       IPv4Address(d["home_agent"]), IPv4Address(d["care_of_address"]),
                                       Encapsulation(d.get("encapsulation", "ipip")), bool(d.get("reverse", False))))


def handle(backend: VisitorBackend, request: dict[str, Any]) -> dict[str, Any]:
    op = request["op"]
    if op == "sysctl":
        Path("/proc/sys", request["path"]).write_text(request["value"])
    elif op == "start":
        backend.start(IPv4Address(request["care_of_address"]), request["interface"])
    elif op == "apply":
        backend.apply(plane(request))
    elif op == "reconcile":
        backend.reconcile([plane(spec) for spec in request["desired"]])
    elif op == "counters":
        return {"ok": True, "counters": backend.counters()}
    elif op == "close":
        backend.close()
    else:
        raise ValueError(f"unknown op {op!r}")
    return {"ok": True}


async def main(kind: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    backend: VisitorBackend = VisitorKernelBackend() if kind == "kernel" else VisitorUserspaceBackend()
    try:
        while line := await reader.readline():
            request = json.loads(line)
            try:
                answer = handle(backend, request)
            except Exception as exc:  # reported to the test, which fails with it
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)
            if request.get("op") == "close":
                return
    finally:
        backend.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "userspace"))
