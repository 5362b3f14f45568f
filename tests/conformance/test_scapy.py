"""Conformance against scapy, an independent encoder/decoder of the same formats.

scapy 2.x's ``scapy.layers.mobileip`` has ``MobileIP`` (the type byte), ``MobileIPRRQ`` (flags,
lifetime, homeaddr, haaddr, coaddr, id) and ``MobileIPRRP`` (code, lifetime, homeaddr, haaddr, id),
and ``MobileIPTunnelData`` (RFC 3519 3.3: nexthdr, res), and nothing for extensions or ICMP 9/10
bodies. Extensions and router entries are therefore
assembled by hand here, byte by byte, never with mipd's encoder; the ICMP header and checksum
come from scapy's ``ICMP`` layer.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.mobileip import MobileIP, MobileIPRRP, MobileIPRRQ, MobileIPTunnelData
from scapy.packet import Raw
from scapy.utils import checksum as scapy_checksum

from mipd.core.wire.extensions import (
    AuthenticationExtension,
    EncapsulatingDeliveryStyle,
    MobileNodeNAI,
)
from mipd.core.wire.icmp import (
    AdvertisementFlags,
    AgentAdvertisement,
    AgentSolicitation,
    MobilityAgentExtension,
    OneBytePadding,
    PrefixLengthsExtension,
    RouterAddress,
    decode_icmp,
)
from mipd.core.wire.messages import decode_message
from mipd.core.wire.nat import TunnelData
from mipd.core.wire.registration import (
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    decode_registration,
)
from mipd.core.wire.tlv import OpaqueTail, UnknownExtension

pytestmark = pytest.mark.conformance

HOME = "192.168.0.242"
AGENT = "192.168.0.30"
COA = "10.0.1.242"
IDENT = 0xE8FE6F80_12345678


# --------------------------------------------------------------------------------------------
# Hand-assembled extensions: (raw bytes, the object mipd should decode them to)
# --------------------------------------------------------------------------------------------


def tlv(ext_type: int, data: bytes) -> bytes:
    assert len(data) <= 255
    return bytes((ext_type, len(data))) + data


def raw_auth(ext_type: int, spi: int, authenticator: bytes) -> tuple[bytes, object]:
    raw = bytes((ext_type, 4 + len(authenticator))) + struct.pack("!I", spi) + authenticator
    return raw, AuthenticationExtension(ext_type, spi, authenticator)


AUTH16 = bytes(range(0xA0, 0xB0))

EXTENSIONS: dict[str, tuple[bytes, object]] = {
    "mn-ha-32": raw_auth(32, 0x100, AUTH16),
    "mn-fa-33": raw_auth(33, 0xFFFF_FFFF, bytes(16)),
    "fa-ha-34": raw_auth(34, 0, AUTH16[::-1]),
    "auth-short-authenticator": raw_auth(32, 7, b"\x01\x02\x03"),
    "auth-empty-authenticator": raw_auth(34, 9, b""),
    "delivery-style-130": (b"\x82\x00", EncapsulatingDeliveryStyle()),
    "nai-131": (tlv(131, b"mn1@example.net"), MobileNodeNAI(b"mn1@example.net")),
    "nai-131-empty": (b"\x83\x00", MobileNodeNAI(b"")),
    "unknown-200": (tlv(200, b"\xde\xad\xbe\xef"), UnknownExtension(200, b"\xde\xad\xbe\xef")),
    "unknown-255-max": (tlv(255, bytes(255)), UnknownExtension(255, bytes(255))),
}
# An unrecognised non-skippable type: it and everything after it stay one opaque tail.
OPAQUE_50 = b"\x32\x03xyz" + b"\x83\x01q"

EXTENSION_SETS: list[tuple[str, ...]] = [
    (),
    *[(name,) for name in EXTENSIONS],
    ("nai-131", "mn-ha-32"),
    ("nai-131", "delivery-style-130", "mn-ha-32", "unknown-200", "mn-fa-33"),
    ("mn-ha-32", "fa-ha-34"),
    ("unknown-200", "mn-ha-32", "unknown-255-max"),
]


def assemble(names: tuple[str, ...], opaque: bool) -> tuple[bytes, tuple[object, ...]]:
    raw = b"".join(EXTENSIONS[n][0] for n in names)
    objects: tuple[object, ...] = tuple(EXTENSIONS[n][1] for n in names)
    if opaque:
        raw += OPAQUE_50
        objects = (*objects, OpaqueTail(OPAQUE_50))
    return raw, objects


def mobile_ip_bytes(layer) -> bytes:  # type: ignore[no-untyped-def]
    """Build IP/UDP/<layer> as a real datagram would be, and take the Mobile IP part."""
    packet = IP(bytes(IP(src=COA, dst=AGENT) / UDP(sport=434, dport=434) / layer))
    return bytes(packet[MobileIP])


# --------------------------------------------------------------------------------------------
# Registration Request
# --------------------------------------------------------------------------------------------

FLAG_COMBOS = [0x00, 0x80, 0x40 | 0x20, 0x10 | 0x08, 0x02, 0x80 | 0x02 | 0x20, 0x04 | 0x01, 0xFF]
LIFETIMES = [0, 1800, 0xFFFF]


def scapy_request(flags: int, lifetime: int, extensions: bytes, ident: int = IDENT):  # type: ignore[no-untyped-def]
    layer = MobileIP(type=1) / MobileIPRRQ(
        flags=flags, lifetime=lifetime, homeaddr=HOME, haaddr=AGENT, coaddr=COA, id=ident
    )
    return layer / Raw(extensions) if extensions else layer


@pytest.mark.parametrize("flags", FLAG_COMBOS, ids=lambda f: f"flags={f:#04x}")
@pytest.mark.parametrize("lifetime", LIFETIMES)
def test_scapy_request_fixed_part(flags: int, lifetime: int) -> None:
    """scapy's RRQ decodes to the fields scapy was given, and re-encodes to scapy's bytes."""
    wire = mobile_ip_bytes(scapy_request(flags, lifetime, b""))
    assert len(wire) == 24
    message = decode_registration(wire)
    assert isinstance(message, RegistrationRequest)
    assert int(message.flags) == flags
    assert message.flags == RequestFlags(flags)
    assert message.lifetime == lifetime
    assert message.home_address == IPv4Address(HOME)
    assert message.home_agent == IPv4Address(AGENT)
    assert message.care_of_address == IPv4Address(COA)
    assert message.identification == IDENT
    assert message.extensions == ()
    assert message.encode() == wire


@pytest.mark.parametrize("opaque", [False, True], ids=["", "opaque-50"])
@pytest.mark.parametrize("names", EXTENSION_SETS, ids=lambda n: "+".join(n) or "none")
def test_scapy_request_with_extensions(names: tuple[str, ...], opaque: bool) -> None:
    """scapy's RRQ followed by hand-assembled extensions decodes to those extensions, in order,
    and decode-then-encode reproduces scapy's bytes exactly."""
    raw, expected = assemble(names, opaque)
    wire = mobile_ip_bytes(scapy_request(0x80 | 0x02, 1800, raw, ident=0x0123456789ABCDEF))
    message = decode_registration(wire)
    assert isinstance(message, RegistrationRequest)
    assert int(message.flags) == 0x82
    assert message.lifetime == 1800
    assert message.identification == 0x0123456789ABCDEF
    assert message.extensions == expected
    assert message.unrecognised_nonskippable == (50 if opaque else None)
    assert message.encode() == wire


@pytest.mark.parametrize("flags", FLAG_COMBOS, ids=lambda f: f"flags={f:#04x}")
@pytest.mark.parametrize("lifetime", LIFETIMES)
@pytest.mark.parametrize("names", [(), ("nai-131", "mn-ha-32", "mn-fa-33"), ("unknown-200",)])
def test_our_request_parsed_by_scapy(flags: int, lifetime: int, names: tuple[str, ...]) -> None:
    """Our RRQ encoding, parsed by scapy, yields the same field values in scapy's layers; the
    extensions are scapy's Raw payload, equal to the hand-assembled bytes."""
    raw, objects = assemble(names, opaque=False)
    ours = RegistrationRequest(
        RequestFlags(flags), lifetime, IPv4Address(HOME), IPv4Address(AGENT), IPv4Address(COA), IDENT, objects
    ).encode()
    parsed = MobileIP(ours)
    assert parsed.type == 1
    rrq = parsed[MobileIPRRQ]
    assert (rrq.flags, rrq.lifetime, rrq.homeaddr, rrq.haaddr, rrq.coaddr, rrq.id) == (
        flags,
        lifetime,
        HOME,
        AGENT,
        COA,
        IDENT,
    )
    if raw:
        assert parsed[Raw].load == raw
    else:
        assert Raw not in parsed
    assert bytes(parsed) == ours
    assert mobile_ip_bytes(scapy_request(flags, lifetime, raw)) == ours


# --------------------------------------------------------------------------------------------
# Registration Reply
# --------------------------------------------------------------------------------------------

REPLY_CODES = [0, 1, 8, 9, 63, 64, 69, 70, 77, 88, 127, 128, 131, 133, 136, 139, 192, 193, 194, 255]


def scapy_reply(code: int, lifetime: int, extensions: bytes, ident: int = IDENT):  # type: ignore[no-untyped-def]
    layer = MobileIP(type=3) / MobileIPRRP(code=code, lifetime=lifetime, homeaddr=HOME, haaddr=AGENT, id=ident)
    return layer / Raw(extensions) if extensions else layer


@pytest.mark.parametrize("code", REPLY_CODES)
@pytest.mark.parametrize("lifetime", LIFETIMES)
def test_scapy_reply_fixed_part(code: int, lifetime: int) -> None:
    """scapy's RRP decodes to the fields scapy was given, and re-encodes to scapy's bytes."""
    wire = mobile_ip_bytes(scapy_reply(code, lifetime, b""))
    assert len(wire) == 20
    message = decode_registration(wire)
    assert isinstance(message, RegistrationReply)
    assert message.code == code
    assert message.lifetime == lifetime
    assert message.home_address == IPv4Address(HOME)
    assert message.home_agent == IPv4Address(AGENT)
    assert message.identification == IDENT
    assert message.extensions == ()
    assert message.encode() == wire


@pytest.mark.parametrize("opaque", [False, True], ids=["", "opaque-50"])
@pytest.mark.parametrize("names", EXTENSION_SETS, ids=lambda n: "+".join(n) or "none")
def test_scapy_reply_with_extensions(names: tuple[str, ...], opaque: bool) -> None:
    """scapy's RRP followed by hand-assembled extensions decodes to those extensions, in order,
    and decode-then-encode reproduces scapy's bytes exactly."""
    raw, expected = assemble(names, opaque)
    wire = mobile_ip_bytes(scapy_reply(133, 0, raw, ident=0xFFFF_FFFF_0000_0001))
    message = decode_registration(wire)
    assert isinstance(message, RegistrationReply)
    assert message.code == 133
    assert message.lifetime == 0
    assert message.identification == 0xFFFF_FFFF_0000_0001
    assert message.extensions == expected
    assert message.encode() == wire


@pytest.mark.parametrize("code", REPLY_CODES)
@pytest.mark.parametrize("names", [(), ("mn-ha-32", "fa-ha-34")])
def test_our_reply_parsed_by_scapy(code: int, names: tuple[str, ...]) -> None:
    """Our RRP encoding, parsed by scapy, yields the same field values in scapy's layers."""
    raw, objects = assemble(names, opaque=False)
    ours = RegistrationReply(code, 0xFFFF, IPv4Address(HOME), IPv4Address(AGENT), IDENT, objects).encode()
    parsed = MobileIP(ours)
    assert parsed.type == 3
    rrp = parsed[MobileIPRRP]
    assert (rrp.code, rrp.lifetime, rrp.homeaddr, rrp.haaddr, rrp.id) == (code, 0xFFFF, HOME, AGENT, IDENT)
    if raw:
        assert parsed[Raw].load == raw
    else:
        assert Raw not in parsed
    assert bytes(parsed) == ours
    assert mobile_ip_bytes(scapy_reply(code, 0xFFFF, raw)) == ours


# --------------------------------------------------------------------------------------------
# ICMP: Agent Advertisement (type 9) and Agent Solicitation (type 10)
# --------------------------------------------------------------------------------------------


def router_entry(address: str, preference: int) -> bytes:
    return IPv4Address(address).packed + struct.pack("!i", preference)


def mobility_ext(seq: int, lifetime: int, flags: int, coas: list[str]) -> bytes:
    return tlv(16, struct.pack("!HHH", seq, lifetime, flags) + b"".join(IPv4Address(a).packed for a in coas))


ADVERTISEMENT_CASES = [
    pytest.param(
        16, 1800, [], [(mobility_ext(7, 1800, 0x9100, ["10.0.1.1"]), ("mob", 7, 1800, 0x9100, ["10.0.1.1"]))],
        id="fa-no-routers",
    ),
    pytest.param(
        0,
        0xFFFF,
        [("192.168.0.1", 0), ("192.168.0.2", -1), ("10.0.0.1", 2**31 - 1), ("10.0.0.2", -(2**31))],
        [
            (mobility_ext(0xFFFF, 0xFFFF, 0x2000, []), ("mob", 0xFFFF, 0xFFFF, 0x2000, [])),
            (tlv(19, bytes((24, 16, 32, 0))), ("prefix", (24, 16, 32, 0))),
        ],
        id="ha-routers-prefixes",
    ),
    pytest.param(
        16,
        600,
        [("192.168.0.30", 5)],
        [
            (mobility_ext(256, 300, 0xFFFF, ["10.0.1.1", "10.0.1.2", "255.255.255.255"]),
             ("mob", 256, 300, 0xFFFF, ["10.0.1.1", "10.0.1.2", "255.255.255.255"])),
            (tlv(200, b"vendor"), ("unknown", 200, b"vendor")),
            (b"\x00", ("pad",)),
        ],
        id="all-flags-unknown-200-padding",
    ),
    pytest.param(
        0,
        0,
        [("0.0.0.0", 0)],
        [
            (mobility_ext(1, 0, 0x1020, ["10.9.8.7"]), ("mob", 1, 0, 0x1020, ["10.9.8.7"])),
            (b"\x32\x02ab\x10\x06", ("opaque", b"\x32\x02ab\x10\x06")),
        ],
        id="opaque-50-tail",
    ),
    pytest.param(255, 1, [], [], id="plain-router-advertisement"),
]


def expected_extension(spec: tuple[object, ...]) -> object:
    kind = spec[0]
    if kind == "mob":
        _, seq, life, flags, coas = spec
        return MobilityAgentExtension(
            seq, life, AdvertisementFlags(flags), tuple(IPv4Address(a) for a in coas)  # type: ignore[attr-defined]
        )
    if kind == "prefix":
        return PrefixLengthsExtension(spec[1])  # type: ignore[arg-type]
    if kind == "unknown":
        return UnknownExtension(spec[1], spec[2])  # type: ignore[arg-type]
    if kind == "pad":
        return OneBytePadding()
    return OpaqueTail(spec[1])  # type: ignore[arg-type]


@pytest.mark.parametrize(("code", "lifetime", "routers", "extensions"), ADVERTISEMENT_CASES)
def test_scapy_advertisement(code: int, lifetime: int, routers: list[tuple[str, int]], extensions: list) -> None:  # type: ignore[type-arg]
    """An ICMP type 9 built by scapy (header and checksum) with hand-assembled router entries and
    extensions decodes, checksum verified, to the same fields, and re-encodes to scapy's bytes
    (so our checksum equals scapy's)."""
    body = b"".join(router_entry(a, p) for a, p in routers) + b"".join(raw for raw, _ in extensions)
    packet = ICMP(type=9, code=code, unused=(len(routers) << 24) | (2 << 16) | lifetime) / Raw(body)
    wire = bytes(packet)
    assert ICMP(wire).chksum == scapy_checksum(wire[:2] + b"\0\0" + wire[4:])
    message = decode_icmp(wire)
    assert isinstance(message, AgentAdvertisement)
    assert message.code == code
    assert message.lifetime == lifetime
    assert message.addresses == tuple(RouterAddress(IPv4Address(a), p) for a, p in routers)
    assert message.extensions == tuple(expected_extension(spec) for _, spec in extensions)
    assert message.encode() == wire


@pytest.mark.parametrize(("code", "reserved"), [(0, 0), (0, 0xFFFF_FFFF), (7, 0x01020304), (255, 0xF5FF)])
def test_scapy_solicitation(code: int, reserved: int) -> None:
    """An ICMP type 10 built by scapy decodes, checksum verified, to its code and reserved word,
    and re-encodes to scapy's bytes."""
    wire = bytes(ICMP(type=10, code=code, unused=reserved))
    assert len(wire) == 8
    message = decode_icmp(wire)
    assert message == AgentSolicitation(code, reserved)
    assert message.encode() == wire


u16 = st.integers(0, 0xFFFF)
ipv4 = st.integers(0, 0xFFFF_FFFF).map(IPv4Address)
our_advertisements = st.builds(
    AgentAdvertisement,
    u16,
    st.integers(0, 255),
    st.lists(st.builds(RouterAddress, ipv4, st.integers(-(2**31), 2**31 - 1)), max_size=6).map(tuple),
    st.lists(
        st.one_of(
            st.builds(
                MobilityAgentExtension, u16, u16, u16.map(AdvertisementFlags), st.lists(ipv4, max_size=4).map(tuple)
            ),
            st.builds(PrefixLengthsExtension, st.lists(st.integers(0, 32), max_size=6).map(tuple)),
            st.just(OneBytePadding()),
            st.builds(UnknownExtension, st.integers(128, 255), st.binary(max_size=9)),
        ),
        max_size=4,
    ).map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(our_advertisements)
def test_our_advertisement_parsed_by_scapy(message: AgentAdvertisement) -> None:
    """Our type 9 encoding, parsed by scapy, shows our header fields, and scapy computes the same
    checksum for it as we did (scapy recomputes it when the field is deleted)."""
    ours = message.encode()
    parsed = ICMP(ours)
    assert (parsed.type, parsed.code) == (9, message.code)
    assert parsed.unused == (len(message.addresses) << 24) | (2 << 16) | message.lifetime
    assert parsed.chksum == int.from_bytes(ours[2:4], "big")
    assert scapy_checksum(ours[:2] + b"\0\0" + ours[4:]) == parsed.chksum
    del parsed.chksum
    assert bytes(parsed) == ours
    if len(ours) > 8:
        assert parsed[Raw].load == ours[8:]


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 255), st.integers(0, 0xFFFF_FFFF))
def test_our_solicitation_parsed_by_scapy(code: int, reserved: int) -> None:
    """Our type 10 encoding, parsed by scapy, has our code and reserved word, and scapy's
    recomputed checksum equals ours."""
    ours = AgentSolicitation(code, reserved).encode()
    parsed = ICMP(ours)
    assert (parsed.type, parsed.code, parsed.unused) == (10, code, reserved)
    del parsed.chksum
    assert bytes(parsed) == ours


# --------------------------------------------------------------------------------------------
# MIP Tunnel Data (RFC 3519 section 3.3)
# --------------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=60))
def test_scapy_tunnel_data_both_ways(next_header: int, reserved: int, payload: bytes) -> None:
    """scapy builds Type 4, Next Header, Reserved, then the payload; mipd decodes it to the same
    fields, and mipd's encoding of those fields is what scapy built and parses back."""
    wire = bytes(MobileIP(type=4) / MobileIPTunnelData(nexthdr=next_header, res=reserved) / Raw(payload))
    message = decode_message(wire)
    assert message == TunnelData(next_header, payload, reserved)
    assert message.encode() == wire
    parsed = MobileIP(message.encode())
    layer = parsed[MobileIPTunnelData]
    assert (parsed.type, layer.nexthdr, layer.res) == (4, next_header, reserved)


def test_scapy_reads_the_inner_datagram_of_ip_in_udp() -> None:
    """Next Header 4: scapy binds the payload to IP, and finds the inner datagram mipd carried."""
    inner = bytes(IP(src="10.1.0.10", dst="10.3.0.1") / UDP(sport=5000, dport=5001) / Raw(b"hello"))
    frame = IP(bytes(IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=434, dport=434)
                     / Raw(TunnelData(4, inner).encode())))
    tunnelled = frame[MobileIPTunnelData][IP]
    assert (tunnelled.src, tunnelled.dst, bytes(tunnelled[Raw])) == ("10.1.0.10", "10.3.0.1", b"hello")
