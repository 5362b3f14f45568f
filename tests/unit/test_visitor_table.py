"""VisitorTable, the userspace FA data plane's per-packet decisions, without I/O (RFC 5944 4.2.2, RFC 3024)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from mipd.adapters.tunnel.visitor_userspace import VisitorTable
from mipd.core.planes import Delivery, VisitorPlane
from mipd.core.wire.ipv4 import Flags, IPv4Header, Protocol
from mipd.core.wire.tunnel import Encapsulation, decapsulate, encapsulate

HA, COA, CN = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"), IPv4Address("10.9.0.10")
HOME, OTHER = IPv4Address("10.1.0.50"), IPv4Address("10.1.0.99")
MAC = bytes.fromhex("020000000050")


def datagram(source: IPv4Address, destination: IPv4Address) -> bytes:
    payload = b"\x08\x00\xf7\xff\x00\x00\x00\x00"
    header = IPv4Header(tos=0, total_length=20 + len(payload), identification=1, flags=Flags(0), fragment_offset=0,
                        ttl=64, protocol=Protocol.ICMP, source=source, destination=destination)
    return header.encode() + payload


def table(reverse: bool = True, encapsulation: Encapsulation = Encapsulation.IPIP) -> VisitorTable:
    t = VisitorTable(COA)
    t.set(VisitorPlane(HOME, Delivery(HOME, MAC, HA, COA, encapsulation, reverse)))
    return t


@pytest.mark.parametrize("encapsulation", list(Encapsulation))
def test_a_visitors_tunnelled_datagram_is_delivered(encapsulation: Encapsulation) -> None:
    t = table()
    inner = datagram(CN, HOME)
    assert t.deliver(encapsulate(inner, HA, COA, encapsulation, 7)) == inner
    assert t.counts["decapsulated"] == 1


@pytest.mark.parametrize(("source", "destination", "tunnel_to", "counter"), [
    (HA, OTHER, COA, "dropped_not_visitor"),
    (IPv4Address("10.0.0.99"), HOME, COA, "dropped_not_home_agent"),
    (HA, HOME, IPv4Address("10.0.0.3"), "ignored_other_destination"),
])
def test_everything_else_is_dropped_and_counted(source: IPv4Address, destination: IPv4Address,
                                                tunnel_to: IPv4Address, counter: str) -> None:
    t = table()
    assert t.deliver(encapsulate(datagram(CN, destination), source, tunnel_to, Encapsulation.IPIP, 7)) is None
    assert t.counts[counter] == 1 and t.counts["decapsulated"] == 0


@pytest.mark.parametrize("encapsulation", list(Encapsulation))
def test_reverse_tunnel_goes_from_the_care_of_address_to_the_home_agent(encapsulation: Encapsulation) -> None:
    inner = datagram(HOME, CN)
    out = table(encapsulation=encapsulation).reverse(inner)
    assert out is not None and out[1] == HA
    taken = decapsulate(out[0])
    assert (taken.source, taken.destination, taken.encapsulation, taken.inner) == (COA, HA, encapsulation, inner)


def test_no_reverse_tunnel_without_t_or_for_strangers_or_ipv6() -> None:
    t = table(reverse=False)
    assert t.reverse(datagram(HOME, CN)) is None and t.reverse(datagram(OTHER, CN)) is None
    assert t.counts["dropped_not_reverse"] == 2
    assert t.reverse(b"\x60" + bytes(39)) is None and t.counts["ignored_not_ipv4"] == 1


def test_delivery_none_forgets_the_visitor() -> None:
    t = table()
    t.set(VisitorPlane(HOME, None))
    assert t.deliver(encapsulate(datagram(CN, HOME), HA, COA, Encapsulation.IPIP, 7)) is None
    assert t.counts["dropped_not_visitor"] == 1
