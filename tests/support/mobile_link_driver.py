"""Run a real MobileLink and/or LinkMonitor inside a network namespace for a test.

Started as ``ip netns exec NS python mobile_link_driver.py`` (through tests.support.foreign_link's
LinkDriver, which speaks this protocol); one JSON request per line on stdin, one JSON answer line
each (``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``), and event lines as things happen::

    {"op": "mobile_link", "interface": "mn0", "source": "10.1.0.10"}       -> {"ok": true}
        then {"event": "advertisement", "source", "destination", "link_address": HEX, "ttl",
              "lifetime", "sequence", "flags", "care_of_addresses": [...]} per HeardAdvertisement
    {"op": "solicit", "payload": HEX, "destination", "ttl", "source": optional}
    {"op": "monitor", "interface": "mn0"}      -> {"ok": true, "up": bool, "addresses": ["a/p", ...]}
        then {"event": "link", "up": bool} and {"event": "addresses", "addresses": [...]}
    {"op": "counters"}  -> {"ok": true, "mobile_link": {...}}
    {"op": "close"}     -> closes both and exits after answering; end of input does the same
"""

from __future__ import annotations

import asyncio
import json
import sys
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from mipd.adapters.link.mobile import HeardAdvertisement, MobileLink
from mipd.adapters.netlink.monitor import LinkMonitor
from mipd.core.actions import SendIcmp


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def on_advertisements(batch: list[HeardAdvertisement]) -> None:
    for heard in batch:
        mobility = heard.advertisement.mobility
        assert mobility is not None  # MobileLink delivers Agent Advertisements only
        emit({"event": "advertisement", "source": str(heard.source), "destination": str(heard.destination),
              "link_address": heard.link_address.hex(), "ttl": heard.ttl, "lifetime": heard.advertisement.lifetime,
              "sequence": mobility.sequence, "flags": int(mobility.flags),
              "care_of_addresses": [str(a) for a in mobility.care_of_addresses]})


def on_link(up: bool) -> None:
    emit({"event": "link", "up": up})


def on_addresses(addresses: list[IPv4Interface]) -> None:
    emit({"event": "addresses", "addresses": [str(a) for a in addresses]})


class Driver:
    def __init__(self) -> None:
        self.link: MobileLink | None = None
        self.monitor: LinkMonitor | None = None

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "mobile_link":
            self.link = MobileLink(request["interface"], IPv4Address(request.get("source", "0.0.0.0")))
            self.link.start(on_advertisements)
        elif op == "solicit":
            assert self.link is not None
            source = request.get("source")
            self.link.solicit(SendIcmp(bytes.fromhex(request["payload"]), IPv4Address(request["destination"]),
                                       int(request.get("ttl", 1))),
                              None if source is None else IPv4Address(source))
        elif op == "monitor":
            self.monitor = LinkMonitor(request["interface"])
            self.monitor.start(on_link, on_addresses)
            up, addresses = self.monitor.snapshot()
            return {"ok": True, "up": up, "addresses": [str(a) for a in addresses]}
        elif op == "counters":
            return {"ok": True, "mobile_link": self.link.counters() if self.link else {}}
        elif op != "close":
            raise ValueError(f"unknown op {op!r}")
        return {"ok": True}

    def close(self) -> None:
        for adapter in (self.link, self.monitor):
            if adapter is not None:
                adapter.close()


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    driver = Driver()
    try:
        while line := await reader.readline():
            request = json.loads(line)
            try:
                answer = driver.handle(request)
            except Exception as exc:  # reported to the test, which fails with it
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            emit(answer)
            if request.get("op") == "close":
                return
    finally:
        driver.close()


if __name__ == "__main__":
    asyncio.run(main())
