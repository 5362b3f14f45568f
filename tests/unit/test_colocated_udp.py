"""The co-located node's UDP tunnel decisions (RFC 3519 3.3), without I/O: what the registration
socket's tunnel data may put into ``mipm0``, what goes back, and which Echo Replies are reported."""

from __future__ import annotations

import struct
from collections import Counter
from ipaddress import IPv4Address

import pytest

from mipd.adapters.tunnel.colocated import COUNTERS, TUN_MTU, ColocatedTable, Colocation
from mipd.core.wire.icmp import checksum
from mipd.core.wire.ipv4 import Flags, IPv4Header
from mipd.core.wire.nat import TunnelData, decode_tunnel_data

HOME = IPv4Address("10.10.0.50")
HA = IPv4Address("10.10.0.1")
CARE_OF = IPv4Address("192.168.77.2")
CORRESPONDENT = IPv4Address("172.16.0.9")


def udp_colocation(**changes: object) -> Colocation:
    fields: dict[str, object] = {"home_address": HOME, "home_agent": HA, "care_of_address": CARE_OF,
                                 "udp_tunnel": True}
    fields.update(changes)
    return Colocation(**fields)  # type: ignore[arg-type]


def packet(source: IPv4Address, destination: IPv4Address, protocol: int = 17, body: bytes = b"x" * 12) -> bytes:
    return IPv4Header(0, 20 + len(body), 1, Flags(0), 0, 64, protocol, source, destination).encode() + body


def echo(kind: int, identifier: int, sequence: int) -> bytes:
    icmp = struct.pack("!BBHHH", kind, 0, 0, identifier, sequence) + b"keepalive"
    return icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]


def table(colocation: Colocation | None) -> ColocatedTable:
    t = ColocatedTable(Counter())
    t.colocation = colocation
    return t


def test_tunnel_data_from_the_home_agent_for_the_home_address_is_delivered() -> None:
    t = table(udp_colocation())
    inner = packet(CORRESPONDENT, HOME)
    assert t.deliver_udp(TunnelData(4, inner).encode(), HA, 434) == inner
    assert t.counts["udp_decapsulated"] == 1


@pytest.mark.parametrize(("payload", "source", "port", "colocation", "counter"), [
    (TunnelData(4, packet(CORRESPONDENT, HOME)).encode(), HA, 434, udp_colocation(udp_tunnel=False),
     "dropped_not_udp_tunnel"),
    (TunnelData(4, packet(CORRESPONDENT, HOME)).encode(), HA, 434, None, "dropped_not_udp_tunnel"),
    (TunnelData(4, packet(CORRESPONDENT, HOME)).encode(), CORRESPONDENT, 434, udp_colocation(),
     "dropped_not_home_agent"),
    (TunnelData(4, packet(CORRESPONDENT, HOME)).encode(), HA, 4434, udp_colocation(), "dropped_not_home_agent"),
    (TunnelData(47, packet(CORRESPONDENT, HOME)).encode(), HA, 434, udp_colocation(), "dropped_udp_next_header"),
    (TunnelData(4, packet(CORRESPONDENT, CORRESPONDENT)).encode(), HA, 434, udp_colocation(),
     "dropped_not_home_address"),
    (b"\x04\x04", HA, 434, udp_colocation(), "dropped_malformed"),
    (TunnelData(4, b"\x45" + b"\0" * 5).encode(), HA, 434, udp_colocation(), "dropped_malformed"),
])
def test_tunnel_data_refused_is_counted(payload: bytes, source: IPv4Address, port: int,
                                        colocation: Colocation | None, counter: str) -> None:
    t = table(colocation)
    assert t.deliver_udp(payload, source, port) is None
    assert t.counts[counter] == 1
    assert counter in COUNTERS


def test_reverse_is_tunnel_data_even_without_t() -> None:
    t = table(udp_colocation(reverse=False))
    own = packet(HOME, CORRESPONDENT)
    payload = t.reverse(own)
    assert payload is not None
    data = decode_tunnel_data(payload)
    assert (data.next_header, data.payload) == (4, own)
    assert t.reverse(packet(CARE_OF, CORRESPONDENT)) is None  # not from the home address
    assert t.counts["dropped_not_home_source"] == 1


def test_ip_in_ip_reverse_still_needs_t() -> None:
    t = table(udp_colocation(udp_tunnel=False, reverse=False))
    assert t.reverse(packet(HOME, CORRESPONDENT)) is None


def test_echo_replies_from_the_home_agent_are_reported() -> None:
    t = table(udp_colocation())
    reply = packet(HA, HOME, protocol=1, body=echo(0, 0x1234, 7))
    assert t.echo_reply(reply) == (0x1234, 7)
    assert t.echo_reply(packet(HA, HOME, protocol=1, body=echo(8, 0x1234, 7))) is None  # a request
    assert t.echo_reply(packet(CORRESPONDENT, HOME, protocol=1, body=echo(0, 1, 1))) is None
    assert t.echo_reply(packet(HA, HOME, protocol=17, body=echo(0, 1, 1))) is None
    assert t.counts["echo_replies_from_home_agent"] == 1


def test_the_device_leaves_room_for_the_udp_tunnel() -> None:
    assert TUN_MTU + 20 + 8 + 4 == 1500
