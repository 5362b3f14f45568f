"""Tunnel codec rules (RFC 2003, RFC 2784, RFC 2004), the IPv4 header parser, and the userspace
backend's and broadcast forwarder's per-packet decisions (no sockets)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from mipd.adapters.tunnel.broadcast import BroadcastForwarder
from mipd.adapters.tunnel.userspace import COUNTERS, TunnelTable, ipv4_only
from mipd.core.planes import DataPlane, Endpoint
from mipd.core.wire import ipv4
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.icmp import checksum
from mipd.core.wire.ipv4 import Flags, IPv4Header
from mipd.core.wire.tunnel import DropReason, Encapsulation, TunnelRefused, decapsulate, encapsulate

A = IPv4Address
HA, COA, HOME, CN = A("10.1.0.1"), A("10.2.0.20"), A("10.1.0.50"), A("10.3.0.10")
IPIP, GRE, MINIMAL = Encapsulation.IPIP, Encapsulation.GRE, Encapsulation.MINIMAL
NO_FLAGS = Flags(0)


def datagram(*, src: IPv4Address = CN, dst: IPv4Address = HOME, ttl: int = 63, tos: int = 0x28,
             flags: Flags = Flags.DF, offset: int = 0, options: bytes = b"", payload: bytes = b"\x08\0hello!",
             protocol: int = 1) -> bytes:
    total = 20 + len(options) + len(payload)
    return IPv4Header(tos, total, 0x1234, flags, offset, ttl, protocol, src, dst, options).encode() + payload


@pytest.mark.parametrize(("encapsulation", "protocol", "shim"), [(IPIP, 4, b""), (GRE, 47, b"\0\0\x08\0")])
def test_outer_header_rules_rfc2003(encapsulation: Encapsulation, protocol: int, shim: bytes) -> None:
    inner = datagram(options=b"\x01\x01\x01\0")  # NOPs and an End of Options list
    packet = encapsulate(inner, HA, COA, encapsulation, 0x10001)
    outer, body = ipv4.parse(packet)
    assert (outer.protocol, outer.source, outer.destination) == (protocol, HA, COA)
    assert outer.tos == 0x28  # copied from the inner header
    assert outer.flags == Flags.DF  # inner DF -> outer DF
    assert outer.ttl == 64 and outer.identification == 1
    assert outer.options == b""  # options are not copied
    assert body == shim + inner  # the inner datagram untouched, TTL included
    assert decapsulate(packet) == (HA, COA, encapsulation, inner)


def test_outer_df_clear_when_inner_clear_and_ttl_chosen() -> None:
    outer, _ = ipv4.parse(encapsulate(datagram(flags=Flags(0)), HA, COA, IPIP, 7, ttl=9))
    assert (outer.flags, outer.ttl) == (Flags(0), 9)


@pytest.mark.parametrize(("source", "size"), [(HA, 12), (CN, 8)])
def test_minimal_encapsulation_rfc2004(source: IPv4Address, size: int) -> None:
    inner = datagram(options=b"\x01\x01\x01\0")
    packet = encapsulate(inner, source, COA, MINIMAL, 99)
    header, body = ipv4.parse(packet)
    original, payload = ipv4.parse(inner)
    assert (header.protocol, header.source, header.destination) == (55, source, COA)
    assert header.total_length == original.total_length + size
    assert (header.ttl, header.tos, header.identification, header.flags, header.options) == (
        original.ttl, original.tos, original.identification, original.flags, original.options)
    forwarding = body[:size]
    assert forwarding[0] == 1 and forwarding[1] == (0x80 if size == 12 else 0)
    assert forwarding[4:8] == HOME.packed
    assert forwarding[8:size] == (CN.packed if size == 12 else b"")
    assert checksum(forwarding) == 0 and body[size:] == payload
    assert decapsulate(packet) == (source, COA, MINIMAL, inner)


@pytest.mark.parametrize(("inner", "encapsulation", "reason"), [
    (datagram(ttl=0), IPIP, DropReason.TTL_ZERO),
    (datagram(ttl=0), MINIMAL, DropReason.TTL_ZERO),
    (datagram(src=COA), GRE, DropReason.LOOP),
    (datagram(src=HA), IPIP, DropReason.SOURCE_IS_LOCAL),
    (datagram(flags=Flags.MF), MINIMAL, DropReason.FRAGMENTED_MINIMAL),
    (datagram(flags=Flags(0), offset=3), MINIMAL, DropReason.FRAGMENTED_MINIMAL),
    (datagram(payload=bytes(65535 - 20)), IPIP, DropReason.TOO_BIG),
    (datagram(payload=bytes(65535 - 20)), MINIMAL, DropReason.TOO_BIG),
])
def test_refusals_carry_their_reason(inner: bytes, encapsulation: Encapsulation, reason: DropReason) -> None:
    with pytest.raises(TunnelRefused) as refused:
        encapsulate(inner, HA, COA, encapsulation, 1, local_addresses=(HA,))
    assert refused.value.reason is reason


def test_fragments_still_travel_in_ip_in_ip() -> None:
    assert decapsulate(encapsulate(datagram(flags=Flags.MF), HA, COA, IPIP, 1)).inner == datagram(flags=Flags.MF)


def outer(protocol: int, body: bytes, *, flags: Flags = NO_FLAGS) -> bytes:
    return IPv4Header(0, 20 + len(body), 1, flags, 0, 64, protocol, COA, HA).encode() + body


@pytest.mark.parametrize(("packet", "match"), [
    (outer(47, b"\x80\0\x08\0\0\0\0\0" + datagram()), "checksum present"),
    (outer(47, b"\x40\0\x08\0" + datagram()), "Reserved0"),
    (outer(47, b"\0\x01\x08\0" + datagram()), "version 1"),
    (outer(47, b"\0\0"), "GRE header"),
    (outer(17, datagram()), "not a tunnel"),
    (outer(4, datagram(), flags=Flags.MF), "fragment"),
    (outer(4, datagram()[:-1]), "inner datagram"),
    (outer(55, b"\x01\0\0\0" + HOME.packed + b"x"), "checksum"),
    (outer(55, b"\x01\x80\0\0" + HOME.packed), "need 12"),
    (b"\x45" + bytes(18), "shorter"),
])
def test_decapsulate_rejects_malformed(packet: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decapsulate(packet)


IPV6_ECHO = bytes.fromhex("6000000000083a40") + bytes(15) + b"\x01" + bytes(15) + b"\x02" + b"\x80\0\0\0\0\0\0\0"


@pytest.mark.parametrize("protocol_type", [b"\x86\xdd", b"\x65\x58", b"\x08\x06"])  # IPv6, Ethernet, ARP
def test_gre_with_another_protocol_than_ipv4_is_unsupported_not_malformed(protocol_type: bytes) -> None:
    with pytest.raises(TunnelRefused, match="not IPv4") as refused:
        decapsulate(outer(47, b"\0\0" + protocol_type + IPV6_ECHO))
    assert refused.value.reason is DropReason.UNSUPPORTED_PROTOCOL
    assert refused.value.reason == "unsupported_protocol"


def test_gre_reserved_bits_6_to_12_are_ignored_rfc2784() -> None:
    assert decapsulate(outer(47, b"\x03\xf8\x08\0" + datagram())).inner == datagram()


def test_decapsulator_discards_inner_ttl_zero() -> None:
    with pytest.raises(TunnelRefused) as refused:
        decapsulate(outer(4, datagram(ttl=0)))
    assert refused.value.reason is DropReason.TTL_ZERO


@pytest.mark.parametrize(("data", "match"), [
    (b"\x65" + bytes(19), "version 6"),
    (b"\x44" + bytes(19), "IHL 4"),
    (b"\x46" + bytes(19), "exceeds"),
    (b"\x45\0\0\x30" + bytes(16), "total length"),
    (datagram()[:10] + b"\0\0" + datagram()[12:], "checksum"),
])
def test_ipv4_parse_rejects(data: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        ipv4.parse(data)


def test_ipv4_parse_drops_link_padding() -> None:
    header, payload = ipv4.parse(datagram() + b"\0\0")
    assert payload == b"\x08\0hello!" and header.total_length == 28


# --- the userspace backend's decisions -------------------------------------------------------------

def endpoint(coa: IPv4Address = COA, encapsulation: Encapsulation = IPIP, **flags: bool) -> Endpoint:
    return Endpoint(coa, HA, encapsulation, **flags)


def test_forward_one_packet_per_endpoint_and_counts_drops() -> None:
    table = TunnelTable(HA)
    table.set(DataPlane(HOME, (endpoint(), endpoint(A("10.2.0.30"), MINIMAL))))
    sent = table.forward(datagram())
    assert [(decapsulate(p).encapsulation, to) for p, to in sent] == [(IPIP, COA), (MINIMAL, A("10.2.0.30"))]
    assert table.forward(datagram(dst=A("10.1.0.51"))) == []
    assert table.forward(datagram(ttl=0)) == []
    assert table.forward(datagram(src=HA)) == []
    assert table.forward(b"junk") == []
    table.set(DataPlane(HOME, ()))
    assert table.forward(datagram()) == []
    assert {k: v for k, v in table.counts.items() if v} == {
        "dropped_no_binding": 2, "dropped_ttl_zero": 2, "dropped_source_is_local": 2, "dropped_malformed": 1}
    assert set(table.counts) <= set(COUNTERS)


def test_reverse_accepts_only_registered_care_of_addresses_with_t() -> None:
    table = TunnelTable(HA)
    table.set(DataPlane(HOME, (endpoint(reverse=True), endpoint(A("10.2.0.30")))))
    reply = datagram(src=HOME, dst=CN)

    def tunnelled(source: IPv4Address, destination: IPv4Address = HA) -> bytes:
        return encapsulate(reply, source, destination, GRE, 1)

    assert table.reverse(tunnelled(COA)) == reply
    assert table.reverse(tunnelled(A("10.2.0.30"))) is None  # registered without T
    assert table.reverse(tunnelled(A("10.2.0.99"))) is None  # not a care-of address of HOME
    assert table.reverse(tunnelled(COA, A("10.1.0.2"))) is None  # another address of this host
    assert table.reverse(outer(47, b"\x80\0\x08\0" + reply)) is None  # GRE with C=1
    assert table.reverse(outer(47, b"\0\0\x86\xdd" + IPV6_ECHO)) is None  # IPv6 in GRE: well-formed
    assert {k: v for k, v in table.counts.items() if v} == {
        "decapsulated": 1, "dropped_not_reverse": 1, "dropped_not_registered": 1,
        "ignored_other_destination": 1, "dropped_malformed": 1, "dropped_unsupported_protocol": 1}
    assert set(table.counts) <= set(COUNTERS)


# --- broadcast forwarding (RFC 5944 4.3) -----------------------------------------------------------

def test_broadcasts_go_to_b_endpoints_direct_or_nested() -> None:
    forwarder = BroadcastForwarder()
    forwarder.broadcast_addresses = frozenset({A("255.255.255.255"), IPv4Network("10.1.0.0/24").broadcast_address})
    forwarder.update(DataPlane(HOME, (endpoint(broadcast=True, decapsulates=True),)))
    forwarder.update(DataPlane(A("10.1.0.51"), (endpoint(A("10.2.0.30"), GRE, broadcast=True),)))
    forwarder.update(DataPlane(A("10.1.0.52"), (endpoint(A("10.2.0.40")),)))  # no B: nothing
    broadcast = datagram(src=A("10.1.0.10"), dst=A("10.1.0.255"), protocol=17, flags=Flags(0))
    (direct, to_direct), (nested, to_nested) = forwarder.packets(broadcast)
    assert to_direct == COA and decapsulate(direct).inner == broadcast
    middle = decapsulate(nested)
    assert (to_nested, middle.encapsulation) == (A("10.2.0.30"), GRE)
    assert decapsulate(middle.inner) == (HA, A("10.1.0.51"), IPIP, broadcast)
    assert forwarder.packets(datagram()) == []  # unicast: not forwarded
    forwarder.update(DataPlane(HOME, ()))
    assert len(forwarder.packets(broadcast)) == 1


def test_header_encode_refuses_bad_options() -> None:
    with pytest.raises(ValueError, match="options"):
        IPv4Header(0, 23, 0, Flags(0), 0, 1, 1, HA, COA, b"\x01\x01\x01").encode()
    assert struct.unpack("!H", IPv4Header(0, 20, 0, Flags(0), 0, 1, 1, HA, COA).encode()[10:12])[0] != 0


def test_ipv4_only_turns_ipv6_off_on_the_device_where_the_kernel_has_ipv6(tmp_path: Path) -> None:
    """A tunnel device without IPv6: the kernel's own router solicitations never come out of it."""
    proc = tmp_path / "ipv4"
    switch = tmp_path / "ipv6" / "conf" / "mipu0" / "disable_ipv6"
    switch.parent.mkdir(parents=True)
    switch.write_text("0")
    ipv4_only(proc, "mipu0")
    assert switch.read_text() == "1"
    ipv4_only(proc, "mip0")  # no such switch (a kernel without IPv6): nothing to do, nothing made
    assert not (tmp_path / "ipv6" / "conf" / "mip0").exists()


# --- mobile networks (RFC 5177) ---------------------------------------------------------------------

LAN = IPv4Network("192.168.50.0/24")
LAN_HOST = A("192.168.50.7")
FA_COA = A("10.2.0.1")


def test_a_prefix_goes_straight_to_a_co_located_care_of_address() -> None:
    table = TunnelTable(HA)
    table.set(DataPlane(HOME, (endpoint(decapsulates=True),), (LAN,)))
    (packet, to), = table.forward(datagram(dst=LAN_HOST))
    taken = decapsulate(packet)
    assert to == COA and taken.source == HA and taken.inner == datagram(dst=LAN_HOST)


def test_a_prefix_is_nested_to_the_home_address_through_a_foreign_agent() -> None:
    table = TunnelTable(HA)
    table.set(DataPlane(HOME, (endpoint(FA_COA, GRE),), (LAN,)))
    (packet, to), = table.forward(datagram(dst=LAN_HOST))
    outer_layer = decapsulate(packet)  # GRE from HA to the foreign agent
    assert (to, outer_layer.encapsulation, outer_layer.source) == (FA_COA, GRE, HA)
    inner_layer = decapsulate(outer_layer.inner)  # then IP-in-IP from HA to the router's home address
    assert inner_layer.encapsulation == IPIP and outer_layer.inner[16:20] == HOME.packed
    assert inner_layer.inner == datagram(dst=LAN_HOST)
    assert table.forward(datagram(dst=A("192.168.51.1"))) == []  # outside every prefix


def test_a_longer_prefix_of_another_router_wins() -> None:
    table = TunnelTable(HA)
    other = A("10.1.0.60")
    table.set(DataPlane(HOME, (endpoint(decapsulates=True),), (IPv4Network("192.168.0.0/16"),)))
    table.set(DataPlane(other, (endpoint(A("10.2.0.30"), decapsulates=True),), (LAN,)))
    assert [to for _, to in table.forward(datagram(dst=LAN_HOST))] == [A("10.2.0.30")]
    assert [to for _, to in table.forward(datagram(dst=A("192.168.9.9")))] == [COA]


def test_dropped_prefixes_are_reported_and_no_longer_forwarded() -> None:
    table = TunnelTable(HA)
    assert table.set(DataPlane(HOME, (endpoint(decapsulates=True),), (LAN, IPv4Network("192.168.60.0/24")))) == ()
    assert table.set(DataPlane(HOME, (endpoint(decapsulates=True),), (IPv4Network("192.168.60.0/24"),))) == (LAN,)
    assert table.forward(datagram(dst=LAN_HOST)) == []
    assert table.set(DataPlane(HOME, ())) == (IPv4Network("192.168.60.0/24"),)


def test_reverse_accepts_a_prefix_source_from_the_routers_care_of_address_only() -> None:
    table = TunnelTable(HA)
    table.set(DataPlane(HOME, (endpoint(reverse=True, decapsulates=True),), (LAN,)))
    from_lan = datagram(src=LAN_HOST, dst=CN)
    assert table.reverse(encapsulate(from_lan, COA, HA, IPIP, 1)) == from_lan
    assert table.reverse(encapsulate(from_lan, A("10.2.0.99"), HA, IPIP, 2)) is None  # not its care-of address
    outsider = datagram(src=A("192.168.51.7"), dst=CN)
    assert table.reverse(encapsulate(outsider, COA, HA, IPIP, 3)) is None  # outside the accepted prefixes
    assert table.counts["decapsulated"] == 1 and table.counts["dropped_not_registered"] == 2


def test_reverse_takes_a_nested_lan_datagram_through_a_foreign_agent() -> None:
    table = TunnelTable(HA)
    table.set(DataPlane(HOME, (endpoint(FA_COA, reverse=True),), (LAN,)))
    from_lan = datagram(src=LAN_HOST, dst=CN)
    nested = encapsulate(from_lan, HOME, HA, IPIP, 1)  # the router: IP-in-IP from its home address to us
    assert table.reverse(encapsulate(nested, FA_COA, HA, IPIP, 2)) == from_lan  # the FA's reverse tunnel
    spoofed = encapsulate(datagram(src=A("172.16.0.9"), dst=CN), HOME, HA, IPIP, 3)
    assert table.reverse(encapsulate(spoofed, FA_COA, HA, IPIP, 4)) is None
    assert table.counts["dropped_foreign_source"] == 1 and table.counts["decapsulated"] == 1
    assert set(table.counts) <= set(COUNTERS)
