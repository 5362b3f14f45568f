"""The port-434 sockets ask for a large receive buffer, so that a flood queues rather than drops a
legitimate request (mipd/adapters/udp.py; mipd(8) "Overload protection")."""

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
