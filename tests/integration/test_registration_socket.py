"""The home agent's port-434 sockets under overload (mipd/adapters/udp.py; mipd(8) "Overload
protection"): a large receive buffer, so that a burst queues rather than drops a legitimate request,
and the shed predicate that drops an over-budget source's registrations as they are read."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv4Address

from mipd.adapters.udp import RECEIVE_BUFFER, Listen, RegistrationEndpoints


def test_each_registration_socket_gets_the_large_receive_buffer() -> None:
    async def opened() -> list[int]:
        endpoints = RegistrationEndpoints(port=0)
        try:
            endpoints.open([Listen(IPv4Address("127.0.0.1"))], lambda _batch: None)
            return [s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) for s in endpoints._sockets.values()]
        finally:
            endpoints.close()

    sizes = asyncio.run(opened())
    assert sizes and all(size >= RECEIVE_BUFFER for size in sizes), sizes  # the kernel doubles what is set


def test_the_shed_predicate_drops_registrations_unread_but_never_tunnel_data() -> None:
    """A home agent's over-budget source (mipd/core/budget.py): its registrations are dropped as
    they are read and counted once per batch; its RFC 3519 Tunnel Data (type 4) still goes on."""
    async def run() -> tuple[list[bytes], list[int], list[str]]:
        delivered: list[bytes] = []
        counted: list[int] = []
        asked: list[str] = []
        endpoints = RegistrationEndpoints(port=0)

        def shed(source: str, _now: float) -> bool:
            asked.append(source)
            return True

        endpoints.shed, endpoints.on_shed = shed, counted.append
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            endpoints.open([Listen(IPv4Address("127.0.0.1"))], lambda batch: delivered.extend(d.payload for d in batch))
            [sock] = endpoints._sockets.values()
            for payload in (b"\x01request", b"\x04tunnel data", b"\x01again"):
                sender.sendto(payload, sock.getsockname())
            for _ in range(100):
                await asyncio.sleep(0.01)
                if delivered and counted:
                    break
            return delivered, counted, asked
        finally:
            sender.close()
            endpoints.close()

    delivered, counted, asked = asyncio.run(run())
    assert delivered == [b"\x04tunnel data"]
    assert sum(counted) == 2 and set(asked) == {"127.0.0.1"}
