"""Run a real MobileRouting inside a mobile node's network namespace for a test.

Started as ``ip netns exec NS python mobile_routing_driver.py``; reads one JSON request per line
from stdin and answers each with one JSON line on stdout::

    {"op": "start", "interface": "mn0", "home_address": "10.1.0.50", "home_network": "10.1.0.0/24"}
    {"op": "apply", "plane": {"location": "foreign-agent", "home_address": .., "home_agent": ..,
                              "agent": "10.2.0.1", "agent_link_address": "02:..", "care_of_address": null,
                              "reverse": false, "encapsulation": "ipip",
                              "mobile_networks": ["192.168.50.0/24"]}}   (mobile_networks: optional)
    (start takes "router": true for a mobile router, RFC 5177)
    {"op": "announce", "home_address": "10.1.0.50"}
    {"op": "counters"}   ->  {"ok": true, "counters": {...}}
    {"op": "close"}      ->  closes and exits after answering

Answers are {"ok": true, ...} or {"ok": false, "error": "..."}. End of input closes and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from mipd.adapters.link.mobile_routing import MobileRouting
from mipd.core.planes import AnnounceHome, MobilePlane
from mipd.core.wire.arp import mac_bytes
from mipd.core.wire.tunnel import Encapsulation


def plane(spec: dict[str, Any]) -> MobilePlane:
    def address(key: str) -> IPv4Address | None:
        value = spec.get(key)
        return None if value is None else IPv4Address(value)

    link = spec.get("agent_link_address")
    return MobilePlane(spec["location"], IPv4Address(spec["home_address"]), IPv4Address(spec["home_agent"]),
                       address("agent"), None if link is None else mac_bytes(link), address("care_of_address"),
                       bool(spec.get("reverse", False)), Encapsulation(spec.get("encapsulation", "ipip")),
                       bool(spec.get("udp_tunnel", False)),
                       tuple(IPv4Network(n) for n in spec.get("mobile_networks", ())))


class Session:
    def __init__(self) -> None:
        self.routing: MobileRouting | None = None

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "start":
            self.routing = MobileRouting(request["interface"], IPv4Address(request["home_address"]),
                                         IPv4Network(request["home_network"]), router=bool(request.get("router")))
            self.routing.start()
            return {"ok": True}
        assert self.routing is not None, "start first"
        if op == "apply":
            self.routing.apply(plane(request["plane"]))
            self.routing.settle()  # as the runtime does once the turn's datagrams are sent
        elif op == "announce":
            self.routing.announce_home(AnnounceHome(IPv4Address(request["home_address"])))
        elif op == "counters":
            return {"ok": True, "counters": self.routing.counters()}
        elif op == "close":
            self.routing.close()
        else:
            raise ValueError(f"unknown op {op!r}")
        return {"ok": True}


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    session = Session()
    try:
        while line := await reader.readline():
            request = json.loads(line)
            try:
                answer = session.handle(request)
            except Exception as exc:  # reported to the test, which fails with it
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)
            if request.get("op") == "close":
                await asyncio.sleep(0)
                return
    finally:
        if session.routing is not None:
            session.routing.close()


if __name__ == "__main__":
    asyncio.run(main())
