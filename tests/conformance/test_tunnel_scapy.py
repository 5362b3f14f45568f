"""The tunnel codec against scapy, an independent encoder/decoder (RFC 2003, RFC 2784, RFC 2004).

scapy decodes our IP-in-IP and GRE packets with its ``IP`` and ``GRE`` layers, and we decapsulate
packets scapy built. scapy has no layer for minimal encapsulation: its forwarding header is read
here byte by byte per RFC 2004 3.1, and the header checksums are checked by letting scapy recompute
them (``del chksum``) and comparing. The outer-header rules (TOS copied, DF carried over, outer TTL,
minimal's unmodified TTL) are checked explicitly.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP, IPOption_NOP
from scapy.layers.l2 import GRE
from scapy.packet import Raw
from scapy.utils import checksum as scapy_checksum

from mipd.core.wire.errors import DecodeError
from mipd.core.wire.tunnel import Encapsulation, decapsulate, encapsulate

pytestmark = pytest.mark.conformance

HA, COA, HOME, CN = "10.1.0.1", "10.2.0.20", "10.1.0.50", "10.3.0.10"


def scapy_checksum_ok(packet: IP) -> bool:
    """Whether ``packet``'s IP header checksum is the one scapy computes itself."""
    again = IP(bytes(packet))
    received = again.chksum
    del again.chksum
    return IP(bytes(again)).chksum == received


tos = st.integers(0, 255)
ttl = st.integers(1, 255)
df = st.booleans()
payloads = st.binary(max_size=64)


def scapy_inner(tos_: int, ttl_: int, df_: bool, payload: bytes, options: bool = False) -> IP:
    return IP(src=CN, dst=HOME, tos=tos_, ttl=ttl_, flags="DF" if df_ else 0, id=0x4242,
              options=[IPOption_NOP()] * 4 if options else []) / UDP(sport=7, dport=9) / Raw(payload)


@settings(max_examples=100)
@given(tos, ttl, df, payloads, st.booleans())
def test_scapy_decodes_our_ip_in_ip(tos_: int, ttl_: int, df_: bool, payload: bytes, options: bool) -> None:
    inner = bytes(scapy_inner(tos_, ttl_, df_, payload, options))
    outer = IP(encapsulate(inner, IPv4Address(HA), IPv4Address(COA), Encapsulation.IPIP, 77))
    assert (outer.version, outer.ihl, outer.proto, outer.src, outer.dst, outer.id) == (4, 5, 4, HA, COA, 77)
    assert outer.len == 20 + len(inner) and scapy_checksum_ok(outer)
    assert outer.tos == tos_ and bool(outer.flags.DF) == df_ and outer.ttl == 64 and outer.frag == 0
    assert bytes(outer.payload) == inner  # inner TTL and options untouched


@settings(max_examples=100)
@given(tos, ttl, df, payloads)
def test_scapy_decodes_our_gre(tos_: int, ttl_: int, df_: bool, payload: bytes) -> None:
    inner = bytes(scapy_inner(tos_, ttl_, df_, payload))
    outer = IP(encapsulate(inner, IPv4Address(HA), IPv4Address(COA), Encapsulation.GRE, 5))
    assert (outer.proto, outer.len, outer.tos, bool(outer.flags.DF), outer.ttl) == (47, 24 + len(inner), tos_, df_, 64)
    assert scapy_checksum_ok(outer)
    gre = outer[GRE]
    assert (gre.chksum_present, gre.routing_present, gre.key_present, gre.seqnum_present, gre.version,
            gre.proto) == (0, 0, 0, 0, 0, 0x0800)
    assert bytes(gre.payload) == inner


@settings(max_examples=100)
@given(tos, ttl, df, payloads, st.booleans())
def test_minimal_forwarding_header_by_hand(tos_: int, ttl_: int, df_: bool, payload: bytes, from_source: bool
                                           ) -> None:
    inner = scapy_inner(tos_, ttl_, df_, payload)
    encapsulator = CN if from_source else HA
    packet = IP(encapsulate(bytes(inner), IPv4Address(encapsulator), IPv4Address(COA), Encapsulation.MINIMAL, 0))
    size = 8 if from_source else 12
    assert (packet.proto, packet.src, packet.dst) == (55, encapsulator, COA)
    assert (packet.len, packet.ttl, packet.tos, packet.id, packet.flags) == (
        len(bytes(inner)) + size, ttl_, tos_, 0x4242, inner.flags)  # TTL not modified (RFC 2004 3)
    assert scapy_checksum_ok(packet)
    forwarding = bytes(packet.payload)[:size]
    protocol, s_and_reserved, _ = struct.unpack("!BBH", forwarding[:4])
    assert protocol == 17 and s_and_reserved == (0 if from_source else 0x80)
    assert scapy_checksum(forwarding) == 0
    assert forwarding[4:8] == bytes(map(int, HOME.split(".")))
    if not from_source:
        assert forwarding[8:12] == bytes(map(int, CN.split(".")))
    assert bytes(packet.payload)[size:] == bytes(inner[UDP])


@settings(max_examples=100)
@given(tos, ttl, df, payloads)
def test_we_decapsulate_what_scapy_builds(tos_: int, ttl_: int, df_: bool, payload: bytes) -> None:
    inner = IP(src=HOME, dst=CN, tos=tos_, ttl=ttl_, flags="DF" if df_ else 0) / ICMP(type=0) / Raw(payload)
    raw = bytes(inner)
    ipip = bytes(IP(src=COA, dst=HA, proto=4, ttl=30) / inner)
    gre = bytes(IP(src=COA, dst=HA, ttl=30) / GRE(proto=0x0800) / inner)
    assert decapsulate(ipip) == (IPv4Address(COA), IPv4Address(HA), Encapsulation.IPIP, raw)
    assert decapsulate(gre) == (IPv4Address(COA), IPv4Address(HA), Encapsulation.GRE, raw)
    # minimal, as the node's own encapsulation would look (RFC 2004 3.1, S set), checksums by scapy
    forwarding = struct.pack("!BBH4s4s", 1, 0x80, 0, bytes(IP(dst=CN))[16:20], bytes(IP(src=HOME))[12:16])
    forwarding = forwarding[:2] + struct.pack("!H", scapy_checksum(forwarding)) + forwarding[4:]
    minimal = IP(src=COA, dst=HA, proto=55, tos=tos_, ttl=ttl_, flags="DF" if df_ else 0) / Raw(
        forwarding + bytes(inner[ICMP]))
    assert decapsulate(bytes(minimal)) == (IPv4Address(COA), IPv4Address(HA), Encapsulation.MINIMAL,
                                           _restored(minimal, inner))


def _restored(minimal: IP, inner: IP) -> bytes:
    """The original datagram a decapsulator must rebuild: scapy's own header with the forwarding
    header's protocol, addresses and the shorter length, checksum recomputed by scapy."""
    original = IP(src=HOME, dst=CN, tos=minimal.tos, ttl=minimal.ttl, flags=minimal.flags, id=minimal.id,
                  proto=1) / Raw(bytes(inner[ICMP]))
    return bytes(original)


def test_scapy_gre_with_checksum_is_refused() -> None:
    packet = bytes(IP(src=COA, dst=HA) / GRE(chksum_present=1, proto=0x0800) / IP(src=HOME, dst=CN))
    with pytest.raises(DecodeError, match="checksum present"):
        decapsulate(packet)
