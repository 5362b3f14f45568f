"""A real ControlServer on a background asyncio loop, and a handler built from real core objects."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address
from pathlib import Path

from mipd.control.handler import ControlError
from mipd.control.protocol import JSONObject
from mipd.control.server import ControlServer
from mipd.control.shapes import bindings_json, flush_json, stats_json, status_json, visitor_json, visitors_json
from mipd.core.bindings import Binding, BindingTable
from mipd.core.home_agent import Counters
from mipd.core.wire.registration import RequestFlags

NOW = 1000.0  # the handler's engine clock


def sample_bindings() -> list[Binding]:
    return [
        Binding(
            home_address=IPv4Address("10.1.0.10"),
            care_of_address=IPv4Address("10.2.0.1"),
            lifetime_granted=600,
            expires=NOW + 411.2,
            identification=0xE8FE6F8012345678,
            flags=RequestFlags.T,
            spi=256,
            foreign_agent=IPv4Address("10.2.0.1"),
        ),
        Binding(
            home_address=IPv4Address("10.1.0.9"),
            care_of_address=IPv4Address("192.168.77.200"),
            lifetime_granted=0xFFFF,
            expires=math.inf,
            identification=0x1F,
            flags=RequestFlags.S | RequestFlags.D | RequestFlags.G | RequestFlags.x,
            spi=4096,
        ),
    ]


class FakeInstance:
    """Implements ControlHandler over a real BindingTable and real Counters."""

    def __init__(self) -> None:
        self.table = BindingTable()
        for binding in sample_bindings():
            self.table.put(binding)
        self.counters = Counters(
            requests_received=10,
            accepted=7,
            denied=Counter({133: 1, 131: 1}),
            dropped=Counter({"no-sa": 2, "not-a-request": 1}),
        )
        self.levels: list[str] = []
        self.reloads = 0
        self.delay = 0.0  # seconds each command takes
        self.broken = False  # commands raise an unexpected exception

    async def _enter(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.broken:
            raise RuntimeError("simulated bug")

    async def status(self) -> JSONObject:
        await self._enter()
        return status_json(
            role="home-agent", instance="home-agent", uptime=3600.9, backend="kernel", bindings=len(self.table)
        )

    async def bindings(self) -> JSONObject:
        await self._enter()
        return bindings_json(self.table, NOW)

    async def visitors(self) -> JSONObject:
        await self._enter()
        return visitors_json(
            [
                visitor_json(
                    home_address=IPv4Address("10.1.0.10"),
                    home_agent=IPv4Address("10.1.0.1"),
                    care_of_address=IPv4Address("10.2.0.1"),
                    link_address="02:00:00:00:00:0A",
                    state="active",
                    lifetime_granted=600,
                    lifetime_remaining=598,
                    flags=RequestFlags.T,
                ),
                visitor_json(
                    home_address=IPv4Address("10.1.0.2"),
                    home_agent=IPv4Address("10.1.0.1"),
                    care_of_address=IPv4Address("10.2.0.1"),
                    link_address="02:00:00:00:00:02",
                    state="pending",
                    lifetime_granted=300,
                    lifetime_remaining=7,
                    flags=RequestFlags(0),
                ),
            ]
        )

    async def stats(self) -> JSONObject:
        await self._enter()
        return stats_json(self.counters)

    async def flush(self, home_address: IPv4Address) -> JSONObject:
        await self._enter()
        removed = self.table.remove_all(home_address)
        if not removed:
            raise ControlError(f"no binding for {home_address}")
        return flush_json(home_address, len(removed))

    async def reload(self) -> JSONObject:
        await self._enter()
        self.reloads += 1
        return {"reloaded": True}

    async def log_level(self, level: str) -> JSONObject:
        await self._enter()
        self.levels.append(level)
        return {"log_level": level}


@contextmanager
def serving(
    path: Path, handler: FakeInstance, *, read_timeout: float = 5.0, max_connections: int = 64
) -> Iterator[ControlServer]:
    """Run ``ControlServer(path, handler)`` on an event loop in a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="control-server", daemon=True)
    thread.start()
    server = ControlServer(path, handler, read_timeout=read_timeout, max_connections=max_connections)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def exchange(path: Path, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes (then end the stream) and return everything the server sends back."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return receive_all(sock)


def receive_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def dead_socket(path: Path) -> None:
    """Leave a socket file at ``path`` that nobody listens on (a daemon that died)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()
