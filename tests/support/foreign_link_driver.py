"""Run a real VisitedLink and/or RelaySocket inside a network namespace for a test.

Started as ``ip netns exec NS python foreign_link_driver.py``; reads one JSON request per line from
stdin and answers each with one JSON line ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``.
What the adapters deliver is printed as it comes, as event lines (``{"event": ...}``)::

    {"op": "visited", "interface": "fa0", "accepted": ["10.2.0.1"]}       -> {"ok": true}
        then {"event": "request", "payload": HEX, "source", "source_port", "destination",
              "link_address": HEX, "ttl"} per delivered NodeRequest
    {"op": "send_to_node", "payload": HEX, "source", "source_port", "destination",
     "destination_port", "link_address": HEX}
    {"op": "relay", "care_of_address": "10.2.0.1"}                          -> {"ok": true, "port": N}
        then {"event": "reply", "payload": HEX, "source", "source_port", "destination",
              "destination_port"} and {"event": "icmp", "payload": HEX, "type", "code"}
    {"op": "send", "payload": HEX, "destination", "destination_port"}
    {"op": "counters"}  -> {"ok": true, "visited": {...}, "relay": {...}}
    {"op": "close"}     -> closes both and exits after answering; end of input does the same
"""

from __future__ import annotations

import asyncio
import json
import sys
from ipaddress import IPv4Address
from typing import Any

from mipd.adapters.link.visited import VisitedLink
from mipd.adapters.relay import RelaySocket
from mipd.core.actions import Datagram, SendDatagram, SendToNode
from mipd.core.foreign_agent import RELAY_PORT, NodeRequest


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def on_requests(batch: list[NodeRequest]) -> None:
    for r in batch:
        emit({"event": "request", "payload": r.payload.hex(), "source": str(r.source), "source_port": r.source_port,
              "destination": str(r.destination), "link_address": r.link_address.hex(), "ttl": r.ttl})


def on_replies(batch: list[Datagram]) -> None:
    for d in batch:
        emit({"event": "reply", "payload": d.payload.hex(), "source": str(d.source), "source_port": d.source_port,
              "destination": str(d.destination), "destination_port": d.destination_port})


def on_error(payload: bytes, icmp_type: int, icmp_code: int) -> None:
    emit({"event": "icmp", "payload": payload.hex(), "type": icmp_type, "code": icmp_code})


class Driver:
    def __init__(self) -> None:
        self.visited: VisitedLink | None = None
        self.relay: RelaySocket | None = None

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "visited":
            self.visited = VisitedLink(request["interface"], int(request.get("port", 434)),
                                       frozenset(IPv4Address(a) for a in request["accepted"]))
            self.visited.start(on_requests)
        elif op == "send_to_node":
            assert self.visited is not None
            self.visited.send(SendToNode(bytes.fromhex(request["payload"]), IPv4Address(request["source"]),
                                         request["source_port"], IPv4Address(request["destination"]),
                                         request["destination_port"], bytes.fromhex(request["link_address"])))
        elif op == "relay":
            self.relay = RelaySocket(IPv4Address(request["care_of_address"]))
            self.relay.start(on_replies, on_error)
            return {"ok": True, "port": self.relay.port}
        elif op == "send":
            assert self.relay is not None
            self.relay.send(SendDatagram(bytes.fromhex(request["payload"]), self.relay.care_of_address, RELAY_PORT,
                                         IPv4Address(request["destination"]), request["destination_port"]))
        elif op == "counters":
            return {"ok": True, "visited": self.visited.counters() if self.visited else {},
                    "relay": self.relay.counters() if self.relay else {}}
        elif op != "close":
            raise ValueError(f"unknown op {op!r}")
        return {"ok": True}

    def close(self) -> None:
        for adapter in (self.visited, self.relay):
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
