"""The codec against Wireshark's dissectors, which nobody on this project wrote.

Every message and extension type mipd encodes is written into a capture and decoded by
``tshark``; each field tshark reports must equal, field by field and under tshark's own field
names, the value the message was built from. tshark must also find no malformed frame.
Field names as ``tshark -G fields`` lists them for the mip and icmp dissectors (tshark 4.0, Debian 12).
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from mipd.core.wire import identification
from mipd.core.wire.auth import Algorithm, append_authentication
from mipd.core.wire.codes import ReplyCode
from mipd.core.wire.extensions import (
    AuthenticationExtension,
    EncapsulatingDeliveryStyle,
    ExtensionType,
    MobileNodeNAI,
    RevocationSupport,
    RevocationSupportFlags,
)
from mipd.core.wire.icmp import (
    AdvertisementFlags,
    AgentAdvertisement,
    AgentSolicitation,
    MobilityAgentExtension,
    OneBytePadding,
    PrefixLengthsExtension,
    RouterAddress,
)
from mipd.core.wire.mobile_network import (
    MobileNetworkAcknowledgement,
    MobileNetworkAcknowledgementCode,
    MobileNetworkRequest,
    MobileNetworkSubType,
)
from mipd.core.wire.nat import (
    Encapsulation,
    TunnelData,
    UdpTunnelReply,
    UdpTunnelReplyCode,
    UdpTunnelReplyFlags,
    UdpTunnelRequest,
    UdpTunnelRequestFlags,
)
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest, RequestFlags
from mipd.core.wire.revocation import (
    RegistrationRevocation,
    RevocationAckFlags,
    RevocationAcknowledgement,
    RevocationFlags,
)
from mipd.core.wire.tlv import UnknownExtension
from tests.support import pcap
from tests.support.tools import tool

pytestmark = pytest.mark.conformance

Message = (RegistrationRequest | RegistrationReply | AgentAdvertisement | AgentSolicitation | TunnelData
           | RegistrationRevocation | RevocationAcknowledgement)
Fields = dict[str, list[str]]

REQUEST_BITS = {"s": 0x80, "b": 0x40, "d": 0x20, "m": 0x10, "g": 0x08, "v": 0x04, "t": 0x02, "x": 0x01}
ADVERT_BITS = {
    "r": 0x8000, "b": 0x4000, "h": 0x2000, "f": 0x1000, "m": 0x0800,
    "g": 0x0400, "v": 0x0200, "rt": 0x0100, "u": 0x0080, "x": 0x0040,
}
# Skippable types (128-255) that Wireshark 4.0 has no dissector of its own for, so it shows
# them generically (type, length, raw bytes), as mipd keeps them.
UNKNOWN_SKIPPABLE = (200, 201, 222, 250)
KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
NOW = 1_790_000_000.25  # a fixed wall clock in 2026, for timestamp Identifications


# --- what tshark must report for each message, derived from the values it was built from ---

def _bits(prefix: str, table: dict[str, int], value: int) -> Fields:
    return {f"{prefix}.{name}": ["1" if value & bit else "0"] for name, bit in table.items()}


def _registration_extension_fields(extensions: tuple[Any, ...]) -> Fields:
    fields: Fields = {"mip.ext.type": [], "mip.ext.len": []}
    for ext in extensions:
        fields["mip.ext.type"].append(str(ext.type))
        fields["mip.ext.len"].append(str(len(ext.encode()) - 2))
        if isinstance(ext, AuthenticationExtension):
            fields.setdefault("mip.auth.spi", []).append(f"0x{ext.spi:08x}")
            fields.setdefault("mip.auth.auth", []).append(ext.authenticator.hex())
        elif isinstance(ext, MobileNodeNAI):
            fields.setdefault("mip.nai", []).append(ext.nai.decode("ascii"))
        elif isinstance(ext, UdpTunnelRequest):  # RFC 3519 3.1
            _add(fields, "mip.ext.utrq", subtype="0", reserved1=f"0x{ext.reserved1:02x}",
                 flags=f"0x{int(ext.flags):02x}", f=_bit(ext.flags, 0x80), r=_bit(ext.flags, 0x40),
                 reserved2=f"0x{int(ext.flags) & 0x3F:02x}", encaptype=str(ext.encapsulation), reserved3="0x0000")
        elif isinstance(ext, UdpTunnelReply):  # RFC 3519 3.2
            _add(fields, "mip.ext.utrp", subtype="0", code=str(ext.code), flags=f"0x{int(ext.flags):04x}",
                 f=_bit(ext.flags, 0x8000), reserved=f"0x{int(ext.flags) & 0x7FFF:04x}",
                 keepalive=str(ext.keepalive_interval))
        elif isinstance(ext, MobileNetworkRequest):  # RFC 5177 4.1
            _add(fields, "mip.ext.mne", subtype="0", prefix_length=str(ext.prefix_length), prefix=str(ext.prefix))
        elif isinstance(ext, MobileNetworkAcknowledgement):  # RFC 5177 4.2
            _add(fields, "mip.ext.mne", subtype=str(ext.sub_type), code=str(ext.code),
                 prefix_length=str(ext.prefix_length), reserved=f"0x{ext.reserved:02x}", prefix=str(ext.prefix))
        elif isinstance(ext, RevocationSupport):  # RFC 3543 3.2
            _add(fields, "mip.ext.rev", flags=f"0x{int(ext.flags):04x}", i=_bit(ext.flags, 0x8000),
                 reserved=f"0x{int(ext.flags) & 0x7FFF:04x}", tstamp=str(ext.timestamp))
    return {k: v for k, v in fields.items() if v}


def _bit(value: int, bit: int) -> str:
    return "1" if int(value) & bit else "0"


def _add(fields: Fields, group: str, /, **values: str) -> None:
    for name, value in values.items():
        fields.setdefault(f"{group}.{name}", []).append(value)


def expected_request(m: RegistrationRequest) -> Fields:
    return {
        "mip.type": ["1"],
        "mip.flags": [f"0x{int(m.flags):02x}"],
        **_bits("mip", REQUEST_BITS, int(m.flags)),
        "mip.life": [str(m.lifetime)],
        "mip.homeaddr": [str(m.home_address)],
        "mip.haaddr": [str(m.home_agent)],
        "mip.coa": [str(m.care_of_address)],
        "mip.ident_raw": [f"{m.identification:016x}"],
        **_registration_extension_fields(m.extensions),
    }


def expected_reply(m: RegistrationReply) -> Fields:
    return {
        "mip.type": ["3"],
        "mip.code": [str(m.code)],
        "mip.life": [str(m.lifetime)],
        "mip.homeaddr": [str(m.home_address)],
        "mip.haaddr": [str(m.home_agent)],
        "mip.ident_raw": [f"{m.identification:016x}"],
        **_registration_extension_fields(m.extensions),
    }


def expected_revocation(m: RegistrationRevocation) -> Fields:
    """RFC 3543 3.3; Wireshark calls the 16-bit A/I/Reserved word mip.flags2."""
    return {
        "mip.type": ["7"],
        "mip.rev.reserved": [f"0x{m.reserved:02x}"],
        "mip.flags2": [f"0x{int(m.flags):04x}"],
        "mip.rev.a": [_bit(m.flags, 0x8000)],
        "mip.rev.i": [_bit(m.flags, 0x4000)],
        "mip.rev.reserved2": [f"0x{int(m.flags) & 0x3FFF:04x}"],
        "mip.homeaddr": [str(m.home_address)],
        "mip.rev.hda": [str(m.home_domain_address)],
        "mip.rev.fda": [str(m.foreign_domain_address)],
        "mip.revid": [str(m.revocation_identifier)],
        **_registration_extension_fields(m.extensions),
    }


def expected_acknowledgement(m: RevocationAcknowledgement) -> Fields:
    """RFC 3543 3.4."""
    return {
        "mip.type": ["15"],
        "mip.ack.reserved": [f"0x{m.reserved:02x}"],
        "mip.flags2": [f"0x{int(m.flags):04x}"],
        "mip.ack.i": [_bit(m.flags, 0x8000)],
        "mip.ack.reserved2": [f"0x{int(m.flags) & 0x7FFF:04x}"],
        "mip.homeaddr": [str(m.home_address)],
        "mip.revid": [str(m.revocation_identifier)],
        **_registration_extension_fields(m.extensions),
    }


def expected_tunnel_data(m: TunnelData) -> Fields:
    """RFC 3519 3.3: the header, then Wireshark reads the payload as the inner IPv4 datagram."""
    inner_source, inner_destination = IPv4Address(m.payload[12:16]), IPv4Address(m.payload[16:20])
    return {
        "mip.type": ["4"],
        "mip.nattt.nexthdr": [str(m.next_header)],
        "mip.nattt.reserved": [f"0x{m.reserved:04x}"],
        "ip.src": [TUNNEL_SOURCE, str(inner_source)],
        "ip.dst": [TUNNEL_DESTINATION, str(inner_destination)],
        "ip.len": [str(20 + 8 + len(m.encode())), str(len(m.payload))],
    }


def expected_advertisement(m: AgentAdvertisement) -> Fields:
    fields: Fields = {
        "icmp.type": ["9"],
        "icmp.code": [str(m.code)],
        "icmp.checksum.status": ["1"],
        "icmp.num_addrs": [str(len(m.addresses))],
        "icmp.addr_entry_size": ["2"],
        "icmp.lifetime": [str(m.lifetime)],
        "icmp.router_address": [str(a.address) for a in m.addresses],
        "icmp.pref_level": [str(a.preference) for a in m.addresses],
        "icmp.mip.type": [str(e.type) for e in m.extensions],
        "icmp.mip.length": [str(len(e.encode()) - 2) for e in m.extensions if not isinstance(e, OneBytePadding)],
    }
    mobility = m.mobility
    if mobility is not None:
        fields |= {
            "icmp.mip.seq": [str(mobility.sequence)],
            "icmp.mip.life": [str(mobility.registration_lifetime)],
            "icmp.mip.flags": [f"0x{int(mobility.flags):04x}"],
            # WIRESHARK.md: the I bit and the five reserved bits show only here.
            "icmp.mip.reserved": [f"0x{int(mobility.flags) & 0x3F:04x}"],
            "icmp.mip.coa": [str(a) for a in mobility.care_of_addresses],
            **_bits("icmp.mip", ADVERT_BITS, int(mobility.flags)),
        }
    if m.prefix_lengths is not None:
        fields["icmp.mip.prefixlength"] = [str(p) for p in m.prefix_lengths.prefix_lengths]
    return {k: v for k, v in fields.items() if v}


def expected_solicitation(m: AgentSolicitation) -> Fields:
    return {"icmp.type": ["10"], "icmp.code": [str(m.code)], "icmp.checksum.status": ["1"]}


EXPECTED: dict[type, Callable[[Any], Fields]] = {
    RegistrationRequest: expected_request,
    RegistrationReply: expected_reply,
    AgentAdvertisement: expected_advertisement,
    AgentSolicitation: expected_solicitation,
    RegistrationRevocation: expected_revocation,
    RevocationAcknowledgement: expected_acknowledgement,
    TunnelData: expected_tunnel_data,
}


# --- the messages: named cases for every type, then many seeded random ones ---

def _addr(rng: random.Random) -> IPv4Address:
    return IPv4Address(rng.getrandbits(32))


def _ident(rng: random.Random) -> int:
    if rng.random() < 0.5:
        return identification.timestamp(NOW + rng.uniform(-100, 100), rng.getrandbits(32))
    return rng.getrandbits(64)


def _nai(rng: random.Random) -> MobileNodeNAI:
    user = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789.-_") for _ in range(rng.randint(1, 40)))
    return MobileNodeNAI(f"{user}@example.org".encode())


def _sign(m: Any, ext_type: int, rng: random.Random) -> Any:
    algorithm = rng.choice(list(Algorithm))
    return append_authentication(m, ext_type, rng.randint(256, 0xFFFFFFFF), KEY, algorithm)


def random_request(rng: random.Random) -> RegistrationRequest:
    m = RegistrationRequest(
        RequestFlags(rng.getrandbits(8)),
        rng.choice((0, 1, 600, 1800, 0xFFFF, rng.getrandbits(16))),
        _addr(rng), _addr(rng), _addr(rng), _ident(rng),
    )
    before: list[Any] = []
    if rng.random() < 0.4:
        before.append(_nai(rng))
    if rng.random() < 0.3:
        before.append(EncapsulatingDeliveryStyle())
    if rng.random() < 0.3:
        before.append(UnknownExtension(rng.choice(UNKNOWN_SKIPPABLE), rng.randbytes(rng.randint(0, 30))))
    if rng.random() < 0.4:
        before.append(_udp_tunnel_request(rng))
    for _ in range(rng.choice((0, 0, 1, 2))):
        before.append(MobileNetworkRequest(rng.randint(0, 32), _addr(rng)))
    if rng.random() < 0.3:
        before.append(_revocation_support(rng))
    rng.shuffle(before)
    m = RegistrationRequest(m.flags, m.lifetime, m.home_address, m.home_agent, m.care_of_address,
                            m.identification, tuple(before))
    m = _sign(m, ExtensionType.MOBILE_HOME_AUTHENTICATION, rng)
    if rng.random() < 0.4:
        m = _sign(m, ExtensionType.MOBILE_FOREIGN_AUTHENTICATION, rng)
    if rng.random() < 0.4:
        m = _sign(m, ExtensionType.FOREIGN_HOME_AUTHENTICATION, rng)
    return m


def _udp_tunnel_request(rng: random.Random) -> UdpTunnelRequest:
    return UdpTunnelRequest(UdpTunnelRequestFlags(rng.getrandbits(8)), rng.choice([*Encapsulation, rng.getrandbits(8)]),
                            rng.choice((0, rng.getrandbits(8))))


def _revocation_support(rng: random.Random) -> RevocationSupport:
    return RevocationSupport(RevocationSupportFlags(rng.getrandbits(16)), rng.getrandbits(32))


def _mobile_network_ack(rng: random.Random) -> MobileNetworkAcknowledgement:
    return MobileNetworkAcknowledgement(
        rng.choice((1, 2)), rng.choice([*MobileNetworkAcknowledgementCode, rng.getrandbits(8)]),
        rng.randint(0, 32), _addr(rng), rng.choice((0, rng.getrandbits(8))))


def random_reply(rng: random.Random) -> RegistrationReply:
    code = rng.choice([*ReplyCode, rng.getrandbits(8)])
    m = RegistrationReply(int(code), rng.choice((0, 300, 1800, 0xFFFF)), _addr(rng), _addr(rng), _ident(rng))
    before: list[Any] = []
    if rng.random() < 0.3:
        before.append(_nai(rng))
    if rng.random() < 0.4:
        before.append(UdpTunnelReply(rng.choice([*UdpTunnelReplyCode, rng.getrandbits(8)]),
                                     UdpTunnelReplyFlags(rng.getrandbits(16)), rng.getrandbits(16)))
    for _ in range(rng.choice((0, 0, 1, 2))):
        before.append(_mobile_network_ack(rng))
    if rng.random() < 0.3:
        before.append(_revocation_support(rng))
    rng.shuffle(before)
    if before:
        m = RegistrationReply(m.code, m.lifetime, m.home_address, m.home_agent, m.identification, tuple(before))
    m = _sign(m, ExtensionType.MOBILE_HOME_AUTHENTICATION, rng)
    if rng.random() < 0.5:
        m = _sign(m, ExtensionType.FOREIGN_HOME_AUTHENTICATION, rng)
    return m


def random_revocation(rng: random.Random) -> RegistrationRevocation:
    extensions: tuple[Any, ...] = (_revocation_support(rng),) if rng.random() < 0.5 else ()
    m = RegistrationRevocation(RevocationFlags(rng.getrandbits(16)), _addr(rng), _addr(rng), _addr(rng),
                               rng.getrandbits(32), extensions, rng.choice((0, rng.getrandbits(8))))
    return _sign(m, rng.choice((ExtensionType.FOREIGN_HOME_AUTHENTICATION, ExtensionType.MOBILE_HOME_AUTHENTICATION)),
                 rng)


def random_acknowledgement(rng: random.Random) -> RevocationAcknowledgement:
    m = RevocationAcknowledgement(RevocationAckFlags(rng.getrandbits(16)), _addr(rng), rng.getrandbits(32),
                                  reserved=rng.choice((0, rng.getrandbits(8))))
    return _sign(m, ExtensionType.FOREIGN_HOME_AUTHENTICATION, rng)


TUNNEL_SOURCE, TUNNEL_DESTINATION = "10.0.0.2", "10.0.0.1"


def random_tunnel_data(rng: random.Random) -> TunnelData:
    """IP in UDP (RFC 3519 3.3, Next Header 4): Wireshark 4.0 reads any MIP tunnel data payload as
    IPv4, whatever Next Header says, so only IP-in-UDP can be checked against it. The inner
    datagram carries IP protocol 253 (experimental), which Wireshark shows as plain data."""
    inner = pcap.ipv4(253, str(_addr(rng)), str(_addr(rng)), rng.randbytes(rng.randint(0, 60)))
    return TunnelData(Encapsulation.IP_IN_IP, inner, rng.choice((0, rng.getrandbits(16))))


def random_advertisement(rng: random.Random) -> AgentAdvertisement:
    addresses = tuple(RouterAddress(_addr(rng), rng.randint(-(2**31), 2**31 - 1)) for _ in range(rng.randint(0, 3)))
    mobility = MobilityAgentExtension(
        rng.getrandbits(16), rng.getrandbits(16), AdvertisementFlags(rng.getrandbits(16)),
        tuple(_addr(rng) for _ in range(rng.randint(0, 4))),
    )
    extensions: list[Any] = [mobility]
    if rng.random() < 0.6:
        extensions.append(PrefixLengthsExtension(tuple(rng.randint(0, 32) for _ in addresses)))
        if len(addresses) % 2:  # 2.1.3: padding makes the ICMP length even
            extensions.append(OneBytePadding())
    return AgentAdvertisement(rng.getrandbits(16), rng.choice((0, 16)), addresses, tuple(extensions))


NAMED: list[tuple[str, Message]] = [
    ("request, WIRESHARK.md vector", append_authentication(
        RegistrationRequest(RequestFlags.D, 1800, IPv4Address("192.168.0.242"), IPv4Address("192.168.0.30"),
                            IPv4Address("10.0.1.242"), 0xE8FE6F8012345678),
        ExtensionType.MOBILE_HOME_AUTHENTICATION, 256, KEY, Algorithm.HMAC_MD5)),
    ("reply, WIRESHARK.md vector", append_authentication(
        RegistrationReply(0, 1800, IPv4Address("192.168.0.242"), IPv4Address("192.168.0.30"), 0xE8FE6F8012345678),
        ExtensionType.MOBILE_HOME_AUTHENTICATION, 256, KEY, Algorithm.HMAC_MD5)),
    ("deregistration, all flags, every extension type", RegistrationRequest(
        RequestFlags(0xFF), 0, IPv4Address("10.1.0.10"), IPv4Address("10.1.0.1"), IPv4Address("10.1.0.10"),
        identification.timestamp(NOW, 0xABC),
        (MobileNodeNAI(b"mn1@example.org"), EncapsulatingDeliveryStyle(), UnknownExtension(200, b"\x01\x02"),
         AuthenticationExtension(32, 256, bytes(range(16))), AuthenticationExtension(33, 257, bytes(16)),
         AuthenticationExtension(34, 0xFFFFFFFF, b"\xff" * 20)))),
    ("reply 133 with nonce", RegistrationReply(
        ReplyCode.HA_REGISTRATION_IDENTIFICATION_MISMATCH, 0, IPv4Address("10.1.0.10"), IPv4Address("10.1.0.1"),
        identification.nonce_reply(0x1111111122222222, 0x33333333),
        (AuthenticationExtension(32, 300, bytes(16)),))),
    ("foreign agent advertisement", AgentAdvertisement(
        3, 16, (RouterAddress(IPv4Address("10.2.0.1"), 0),),
        (MobilityAgentExtension(0, 600, AdvertisementFlags.F | AdvertisementFlags.T | AdvertisementFlags.R,
                                (IPv4Address("10.2.0.1"),)),
         PrefixLengthsExtension((24,)), OneBytePadding()))),
    ("home agent advertisement, no router addresses", AgentAdvertisement(
        3, 0, (), (MobilityAgentExtension(0xFFFF, 1800, AdvertisementFlags.H),))),
    ("advertisement with the I bit", AgentAdvertisement(
        9, 16, (RouterAddress(IPv4Address("10.3.0.1"), -1), RouterAddress(IPv4Address("10.3.0.2"), 7)),
        (MobilityAgentExtension(256, 0xFFFF, AdvertisementFlags.F | AdvertisementFlags.I | AdvertisementFlags.G,
                                (IPv4Address("10.3.0.1"), IPv4Address("10.3.0.9"))),
         PrefixLengthsExtension((16, 32))))),
    ("agent solicitation", AgentSolicitation()),
    ("request: UDP tunnel request F GRE, two mobile networks, revocation support (RFC 3519, 5177, 3543)",
     append_authentication(RegistrationRequest(
         RequestFlags.D | RequestFlags.T, 1800, IPv4Address("10.1.0.10"), IPv4Address("10.1.0.1"),
         IPv4Address("192.168.1.5"), identification.timestamp(NOW, 7),
         (UdpTunnelRequest(UdpTunnelRequestFlags.F, Encapsulation.GRE),
          MobileNetworkRequest(24, IPv4Address("10.5.0.0")), MobileNetworkRequest(28, IPv4Address("10.5.1.0")),
          RevocationSupport(RevocationSupportFlags.I, 123456),
          MobileNodeNAI(b"router1@example.org"))),
         ExtensionType.MOBILE_HOME_AUTHENTICATION, 256, KEY, Algorithm.HMAC_MD5)),
    ("reply 147: UDP tunnel reply, explicit and implicit acknowledgements", append_authentication(RegistrationReply(
        ReplyCode.HA_MOBNET_ERROR, 0, IPv4Address("10.1.0.10"), IPv4Address("10.1.0.1"),
        identification.timestamp(NOW, 8),
        (UdpTunnelReply(UdpTunnelReplyCode.WILL_DO_TUNNELLING, UdpTunnelReplyFlags.F, 25),
         MobileNetworkAcknowledgement(MobileNetworkSubType.EXPLICIT_MODE_ACKNOWLEDGEMENT,
                                      MobileNetworkAcknowledgementCode.MOBNET_INVALID_PREFIX_LEN, 33,
                                      IPv4Address("10.5.0.0")),
         MobileNetworkAcknowledgement(MobileNetworkSubType.IMPLICIT_MODE_ACKNOWLEDGEMENT,
                                      MobileNetworkAcknowledgementCode.SUCCESS, 16, IPv4Address("10.6.0.0")))),
        ExtensionType.MOBILE_HOME_AUTHENTICATION, 256, KEY, Algorithm.HMAC_MD5)),
    ("registration revocation from the home agent (RFC 3543 3.3)", append_authentication(RegistrationRevocation(
        RevocationFlags.A | RevocationFlags.I, IPv4Address("10.1.0.10"), IPv4Address("10.1.0.1"),
        IPv4Address("10.2.0.1"), 3_790_000_000, (RevocationSupport(RevocationSupportFlags.I, 3_790_000_000),)),
        ExtensionType.FOREIGN_HOME_AUTHENTICATION, 500, KEY, Algorithm.HMAC_MD5)),
    ("revocation acknowledgement (RFC 3543 3.4)", append_authentication(RevocationAcknowledgement(
        RevocationAckFlags.I, IPv4Address("10.1.0.10"), 3_790_000_000),
        ExtensionType.FOREIGN_HOME_AUTHENTICATION, 500, KEY, Algorithm.HMAC_MD5)),
    ("tunnel data, IP in UDP (RFC 3519 3.3)", TunnelData(
        Encapsulation.IP_IN_IP, pcap.ipv4(253, "10.1.0.10", "10.3.0.1", b"tunnelled"))),
]


def all_cases() -> list[tuple[str, Message]]:
    rng = random.Random(5944)
    cases = list(NAMED)
    for i in range(60):
        cases.append((f"random request {i}", random_request(rng)))
        cases.append((f"random reply {i}", random_reply(rng)))
        cases.append((f"random advertisement {i}", random_advertisement(rng)))
    for i in range(30):
        cases.append((f"random revocation {i}", random_revocation(rng)))
        cases.append((f"random revocation acknowledgement {i}", random_acknowledgement(rng)))
        cases.append((f"random tunnel data {i}", random_tunnel_data(rng)))
    return cases


# --- running tshark ---

def _frame(message: Message) -> bytes:
    if isinstance(message, RegistrationRequest):
        return pcap.udp("10.0.0.2", "10.0.0.1", 40000, 434, message.encode())
    if isinstance(message, RegistrationReply):
        return pcap.udp("10.0.0.1", "10.0.0.2", 434, 40000, message.encode())
    if isinstance(message, TunnelData | RegistrationRevocation | RevocationAcknowledgement):
        return pcap.udp(TUNNEL_SOURCE, TUNNEL_DESTINATION, 40001, 434, message.encode())
    return pcap.icmp("10.0.0.1", "224.0.0.1", message.encode())


def _tshark(capture: Path, *args: str) -> Any:
    out = subprocess.run(
        [tool("tshark"), "-n", "-r", str(capture), "-o", "udp.check_checksum:TRUE", *args],
        check=True, capture_output=True, text=True, timeout=120,
    )
    return json.loads(out.stdout) if out.stdout.strip() else []


def _walk(node: Any, key: str) -> Iterator[Any]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _walk(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, key)


FIELD_NAMES = sorted(
    {"mip.type", "mip.flags", "mip.life", "mip.homeaddr", "mip.haaddr", "mip.coa", "mip.ident", "mip.code",
     "mip.ext.type", "mip.ext.len", "mip.auth.spi", "mip.auth.auth", "mip.nai",
     *(f"mip.{b}" for b in REQUEST_BITS),
     "icmp.type", "icmp.code", "icmp.checksum.status", "icmp.num_addrs", "icmp.addr_entry_size", "icmp.lifetime",
     "icmp.router_address", "icmp.pref_level", "icmp.mip.type", "icmp.mip.length", "icmp.mip.seq",
     "icmp.mip.life", "icmp.mip.flags", "icmp.mip.reserved", "icmp.mip.coa", "icmp.mip.prefixlength",
     *(f"icmp.mip.{b}" for b in ADVERT_BITS), "udp.checksum.status",
     # RFC 3519
     *(f"mip.ext.utrq.{f}" for f in ("subtype", "reserved1", "flags", "f", "r", "reserved2", "encaptype",
                                     "reserved3")),
     *(f"mip.ext.utrp.{f}" for f in ("subtype", "code", "flags", "f", "reserved", "keepalive")),
     "mip.nattt.nexthdr", "mip.nattt.reserved", "ip.src", "ip.dst", "ip.len",
     # RFC 5177
     *(f"mip.ext.mne.{f}" for f in ("subtype", "code", "prefix_length", "reserved", "prefix")),
     # RFC 3543
     *(f"mip.ext.rev.{f}" for f in ("flags", "i", "reserved", "tstamp")),
     "mip.rev.reserved", "mip.flags2", "mip.rev.a", "mip.rev.i", "mip.rev.reserved2", "mip.rev.hda", "mip.rev.fda",
     "mip.revid", "mip.ack.reserved", "mip.ack.i", "mip.ack.reserved2"}
)


@pytest.fixture(scope="module")
def decoded(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Message, Fields]]:
    """Every case, tshark's field values for its frame (plus mip.ident's raw hex)."""
    cases = all_cases()
    capture = tmp_path_factory.mktemp("tshark") / "mip.pcap"
    pcap.write_pcap(capture, (_frame(m) for _, m in cases))
    shown = _tshark(capture, "-T", "json", "--no-duplicate-keys", *(a for f in FIELD_NAMES for a in ("-e", f)))
    raw = _tshark(capture, "-T", "jsonraw", "--no-duplicate-keys")
    assert len(shown) == len(raw) == len(cases), "tshark did not decode one frame per message"
    out = []
    for (name, message), frame, raw_frame in zip(cases, shown, raw, strict=True):
        fields: Fields = frame["_source"]["layers"]
        idents = [v for v in _walk(raw_frame, "mip.ident_raw")]
        if idents:
            fields["mip.ident_raw"] = [v[0] for v in idents]
        out.append((name, message, fields))
    return out


def _ntp_display(ident: int) -> str:
    """How Wireshark shows an NTP timestamp: 'Nov 14, 2023 22:13:20.071111110 UTC'."""
    seconds = identification.high32(ident) - identification.NTP_UNIX_OFFSET
    nanos = (identification.low32(ident) * 1_000_000_000) >> 32
    stamp = datetime.fromtimestamp(seconds, UTC)
    return f"{stamp:%b} {stamp.day:2d}, {stamp:%Y %H:%M:%S}.{nanos:09d} UTC"


def test_covers_every_message_and_extension_type(decoded: list[tuple[str, Message, Fields]]) -> None:
    """The sample holds each message type and each extension type the codec knows."""
    seen: set[str] = set()
    for _, message, _ in decoded:
        seen.add(type(message).__name__)
        for ext in getattr(message, "extensions", ()):
            seen.add(f"{type(ext).__name__}:{ext.type}")
    assert {"RegistrationRequest", "RegistrationReply", "AgentAdvertisement", "AgentSolicitation",
            "AuthenticationExtension:32", "AuthenticationExtension:33", "AuthenticationExtension:34",
            "MobileNodeNAI:131", "EncapsulatingDeliveryStyle:130", "MobilityAgentExtension:16",
            "PrefixLengthsExtension:19", "OneBytePadding:0",
            "TunnelData", "RegistrationRevocation", "RevocationAcknowledgement", "UdpTunnelRequest:144",
            "UdpTunnelReply:44", "MobileNetworkRequest:148", "MobileNetworkAcknowledgement:148",
            "RevocationSupport:137"} <= seen
    assert any(name.startswith("UnknownExtension:") for name in seen)


def test_every_field_matches(decoded: list[tuple[str, Message, Fields]]) -> None:
    """Field by field, under tshark's names, tshark reads what the message was built from."""
    mismatches = []
    for name, message, fields in decoded:
        want = EXPECTED[type(message)](message)
        for field, value in want.items():
            if fields.get(field) != value:
                mismatches.append(f"{name}: {field}: tshark {fields.get(field)!r}, built {value!r}")
        if isinstance(message, RegistrationRequest | RegistrationReply):
            assert fields.get("udp.checksum.status") == ["1"], name
    assert not mismatches, "\n".join(mismatches[:40])


def test_timestamps_render_as_the_same_instant(decoded: list[tuple[str, Message, Fields]]) -> None:
    """identification.timestamp() makes NTP times that Wireshark reads back as the same instant."""
    checked = 0
    for name, message, fields in decoded:
        ident = getattr(message, "identification", None)
        if ident is None or abs(identification.to_unix(ident) - NOW) > 1000:
            continue
        assert fields["mip.ident"] == [_ntp_display(ident)], name
        checked += 1
    assert checked >= 20


def test_no_frame_is_malformed(decoded: list[tuple[str, Message, Fields]], tmp_path: Path) -> None:
    """tshark -Y _ws.malformed matches no frame (the filter builds the full tree)."""
    capture = tmp_path / "all.pcap"
    pcap.write_pcap(capture, (_frame(m) for _, m, _ in decoded))
    out = subprocess.run(
        [tool("tshark"), "-n", "-r", str(capture), "-Y", "_ws.malformed || _ws.expert.severity >= error"],
        check=True, capture_output=True, text=True, timeout=120,
    )
    assert out.stdout.strip() == ""


def test_malformed_detection_works(tmp_path: Path) -> None:
    """The malformed check above can fail: a truncated authentication extension is flagged."""
    good = dict(NAMED)["request, WIRESHARK.md vector"].encode()
    capture = tmp_path / "bad.pcap"
    pcap.write_pcap(capture, [pcap.udp("10.0.0.2", "10.0.0.1", 40000, 434, good[:-10])])
    out = subprocess.run(
        [tool("tshark"), "-n", "-r", str(capture), "-Y", "_ws.malformed"],
        check=True, capture_output=True, text=True, timeout=120,
    )
    assert out.stdout.strip() != ""


def test_malformed_detection_works_for_the_new_messages(tmp_path: Path) -> None:
    """The same check flags a revocation cut inside its authenticator and a UDP Tunnel Reply
    (RFC 3519 3.2) cut after four of its six bytes: tshark reads these types, not just names them."""
    revocation = dict(NAMED)["registration revocation from the home agent (RFC 3543 3.3)"].encode()
    reply = dict(NAMED)["reply 147: UDP tunnel reply, explicit and implicit acknowledgements"]
    assert isinstance(reply, RegistrationReply)
    cut_reply = reply.fixed_part() + reply.extensions[0].encode()[:6]
    capture = tmp_path / "bad.pcap"
    pcap.write_pcap(capture, [pcap.udp(TUNNEL_SOURCE, TUNNEL_DESTINATION, 434, 434, revocation[:-6]),
                              pcap.udp("10.0.0.1", "10.0.0.2", 434, 40000, cut_reply)])
    out = subprocess.run(
        [tool("tshark"), "-n", "-r", str(capture), "-Y", "_ws.malformed"],
        check=True, capture_output=True, text=True, timeout=120,
    )
    assert len(out.stdout.strip().splitlines()) == 2
