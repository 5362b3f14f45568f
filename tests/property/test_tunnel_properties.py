"""Properties of the tunnel codec (RFC 2003, RFC 2784, RFC 2004).

Invariants:
- encapsulate then decapsulate gives back the inner datagram byte for byte, with the outer
  addresses and the kind, for all three encapsulations (for minimal: the original datagram);
- decapsulate, given any bytes, returns or raises DecodeError; TunnelRefused only ever means
  "well-formed, but the inner TTL is 0".
"""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from mipd.core.wire import ipv4
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.ipv4 import Flags, IPv4Header
from mipd.core.wire.tunnel import DropReason, Encapsulation, TunnelRefused, decapsulate, encapsulate

addresses = st.integers(0, 2**32 - 1).map(IPv4Address)


@st.composite
def datagrams(draw: st.DrawFn, *, fragments: bool = True) -> bytes:
    options = draw(st.integers(0, 10)) * 4
    payload = draw(st.binary(max_size=300))
    flags = Flags(draw(st.integers(0, 7 if fragments else 6)) & (7 if fragments else 6))
    offset = draw(st.integers(0, 0x1FFF)) if fragments else 0
    header = IPv4Header(
        draw(st.integers(0, 255)), 20 + options + len(payload), draw(st.integers(0, 0xFFFF)), flags, offset,
        draw(st.integers(1, 255)), draw(st.integers(0, 255)), draw(addresses), draw(addresses),
        draw(st.binary(min_size=options, max_size=options)),
    )
    return header.encode() + payload


@settings(max_examples=300)
@given(datagrams(), addresses, addresses, st.sampled_from([Encapsulation.IPIP, Encapsulation.GRE]),
       st.integers(0, 0xFFFF))
def test_ipip_and_gre_round_trip(inner: bytes, source: IPv4Address, destination: IPv4Address,
                                 encapsulation: Encapsulation, identification: int) -> None:
    try:
        packet = encapsulate(inner, source, destination, encapsulation, identification)
    except TunnelRefused as refused:
        assert refused.reason is DropReason.LOOP
        assert ipv4.parse(inner)[0].source == destination
        return
    assert decapsulate(packet) == (source, destination, encapsulation, inner)


@settings(max_examples=300)
@given(datagrams(fragments=False), addresses, addresses)
def test_minimal_round_trips_to_the_original(inner: bytes, source: IPv4Address, destination: IPv4Address) -> None:
    original = ipv4.parse(inner)[0]
    if original.source == destination:
        return
    # half the time the encapsulator is the original source (S clear, 8 octets)
    for encapsulator in (source, original.source):
        packet = encapsulate(inner, encapsulator, destination, Encapsulation.MINIMAL, 0)
        assert len(packet) == len(inner) + (8 if encapsulator == original.source else 12)
        assert decapsulate(packet) == (encapsulator, destination, Encapsulation.MINIMAL, inner)


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=200),
                 st.builds(lambda b: b"\x45" + b, st.binary(min_size=19, max_size=120))))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        decapsulate(data)
    except DecodeError:
        pass
    except TunnelRefused as refused:
        assert refused.reason is DropReason.TTL_ZERO


@settings(max_examples=300)
@given(datagrams(fragments=False), st.sampled_from(list(Encapsulation)), st.data())
def test_corrupted_tunnel_packets_decode_or_raise_decode_error(inner: bytes, encapsulation: Encapsulation,
                                                                data: st.DataObject) -> None:
    packet = bytearray(encapsulate(inner, IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"), encapsulation, 1)
                       if ipv4.parse(inner)[0].source != IPv4Address("10.0.0.2") else inner)
    for _ in range(data.draw(st.integers(1, 4))):
        packet[data.draw(st.integers(0, len(packet) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(packet)))
    try:
        decapsulate(bytes(packet[:cut]))
    except DecodeError:
        pass
    except TunnelRefused as refused:
        assert refused.reason is DropReason.TTL_ZERO
