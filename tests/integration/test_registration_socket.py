"""The home agent's port-434 sockets under overload (mipd/adapters/udp.py; mipd(8) "Overload
protection"): a large receive buffer, so that a burst queues rather than drops a legitimate request,
the shed predicate that drops an over-budget source's registrations as they are read, and the
socket filter that drops a repeat offender's in the kernel."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv4Address

import pytest

from mipd.adapters.udp import (
    MAX_FILTERED,
    RECEIVE_BUFFER,
    Listen,
    RegistrationEndpoints,
    attach_filter,
    offender_filter,
)


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


def test_a_dropped_source_is_filtered_in_the_kernel_until_its_time_and_counted() -> None:
    """drop_until (the engine's DropSource): the kernel drops that source's datagrams before they
    are queued, others still arrive, SO_MEMINFO counts the drops, and when the time is up the filter
    is detached and the source's datagrams arrive again."""
    offender, other = "127.0.0.2", "127.0.0.3"  # loopback answers for all of 127/8: two real sources

    async def run() -> dict[str, object]:
        delivered: list[tuple[str, bytes]] = []
        endpoints = RegistrationEndpoints(port=0)
        senders = {}
        try:
            endpoints.open([Listen(IPv4Address("127.0.0.1"))],
                           lambda batch: delivered.extend((str(d.source), d.payload) for d in batch))
            [sock] = endpoints._sockets.values()
            for address in (offender, other):
                senders[address] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                senders[address].bind((address, 0))
            loop = asyncio.get_running_loop()
            endpoints.drop_until(IPv4Address(offender), loop.time() + 0.3)
            await asyncio.sleep(0.01)  # the filter is attached within the turn
            filtered = [str(s) for s in endpoints.filtered_sources()]
            for i in range(20):
                for sender in senders.values():
                    sender.sendto(b"\x01 during %d" % i, sock.getsockname())
            await asyncio.sleep(0.1)
            during = list(delivered)
            drops = endpoints.kernel_drops()
            await asyncio.sleep(0.3)  # past the time given: the filter is gone
            senders[offender].sendto(b"\x01 after", sock.getsockname())
            await asyncio.sleep(0.1)
            return {"filtered": filtered, "during": during, "drops": drops, "after": delivered[len(during):],
                    "left": endpoints.filtered_sources()}
        finally:
            for sender in senders.values():
                sender.close()
            endpoints.close()

    result = asyncio.run(run())
    assert result["filtered"] == [offender]
    during = result["during"]
    assert isinstance(during, list)
    assert {source for source, _ in during} == {other} and len(during) == 20, result
    assert result["drops"] == 20, result
    assert result["after"] == [(offender, b"\x01 after")] and result["left"] == [], result


def test_the_offender_filter_is_a_valid_program_for_many_sources() -> None:
    sources = [IPv4Address(0xC6120000 + i) for i in range(MAX_FILTERED)]
    program = offender_filter(sources)
    assert len(program) == 8 * (MAX_FILTERED + 3)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        attach_filter(sock, program)  # the kernel's verifier refuses a malformed program (EINVAL)
    finally:
        sock.close()
    with pytest.raises(ValueError, match="255"):
        offender_filter([IPv4Address(1)] * 256)


def test_under_a_flood_the_filter_admits_known_sources_and_a_sample_of_others() -> None:
    """admit (the engine's AdmitSources): every datagram of a known source arrives, about the given
    share of the others' does, and fraction 1.0 detaches the filter."""
    known, stranger = "127.0.0.4", "127.0.0.5"

    async def run() -> dict[str, int]:
        delivered: list[str] = []
        endpoints = RegistrationEndpoints(port=0)
        senders = {}
        try:
            endpoints.open([Listen(IPv4Address("127.0.0.1"))], lambda batch: delivered.extend(str(d.source)
                                                                                          for d in batch))
            [sock] = endpoints._sockets.values()
            for address in (known, stranger):
                senders[address] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                senders[address].bind((address, 0))
            endpoints.admit((IPv4Address(known),), 0.25)
            await asyncio.sleep(0.01)
            for _ in range(400):
                for sender in senders.values():
                    sender.sendto(b"\x01 flood", sock.getsockname())
                await asyncio.sleep(0)
            await asyncio.sleep(0.1)
            counts = {"known": delivered.count(known), "stranger": delivered.count(stranger)}
            endpoints.admit((), 1.0)
            await asyncio.sleep(0.01)
            for _ in range(50):
                senders[stranger].sendto(b"\x01 after", sock.getsockname())
            await asyncio.sleep(0.1)
            counts["after"] = delivered.count(stranger) - counts["stranger"]
            return counts
        finally:
            for sender in senders.values():
                sender.close()
            endpoints.close()

    counts = asyncio.run(run())
    assert counts["known"] == 400, counts
    assert 40 <= counts["stranger"] <= 160, counts  # 100 expected; a binomial(400, 0.25) stays well inside
    assert counts["after"] == 50, counts
