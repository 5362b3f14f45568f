"""Agent Advertisement and Agent Solicitation (RFC 5944 sections 2.1 and 2.2; RFC 1256 section 3).

An Agent Advertisement is an ICMP Router Advertisement (type 9) followed by extensions from the
ICMP Router Discovery number space: the Mobility Agent Advertisement Extension (16), the
Prefix-Lengths Extension (19) and One-byte Padding (0). An Agent Solicitation is an ICMP Router
Solicitation (type 10). Both are decoded from and encoded to the ICMP message (the IP payload);
encoding fills in the ICMP checksum and decoding checks it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from ipaddress import IPv4Address
from typing import ClassVar, TypeVar

from mipd.core.wire.errors import DecodeError
from mipd.core.wire.reader import Reader
from mipd.core.wire.tlv import ExtensionParser, OpaqueTail, UnknownExtension, decode_extensions

ALL_SYSTEMS = IPv4Address("224.0.0.1")
ALL_MOBILITY_AGENTS = IPv4Address("224.0.0.11")  # section 2.3: solicitations MAY go here
ADVERTISEMENT_TTL = 1  # 2.1: "The TTL for all Agent Advertisements MUST be set to 1"
SOLICITATION_TTL = 1  # 2.2: "the IP TTL Field MUST be set to 1"
SEQUENCE_WRAP_TO = 256  # 2.3.2: "the sequence number 0xffff MUST be followed by sequence number 256"

_ICMP_HEADER = struct.Struct("!BBHBBH")
_ROUTER_ENTRY = struct.Struct("!Ii")
ADDRESS_ENTRY_WORDS = 2  # RFC 1256: Router Address and Preference Level


class IcmpType(IntEnum):
    ROUTER_ADVERTISEMENT = 9  # an Agent Advertisement when it carries extension 16
    ROUTER_SOLICITATION = 10  # an Agent Solicitation


class AdvertisementCode(IntEnum):
    """Code of an Agent Advertisement (section 2.1)."""

    ROUTES_COMMON_TRAFFIC = 0
    MOBILITY_AGENT_ONLY = 16  # "does not route common traffic"


class IcmpExtensionType(IntEnum):
    ONE_BYTE_PADDING = 0  # 2.1.3
    MOBILITY_AGENT_ADVERTISEMENT = 16  # 2.1.1
    PREFIX_LENGTHS = 19  # 2.1.2


class AdvertisementFlags(IntFlag):
    """Flags of the Mobility Agent Advertisement Extension as one 16-bit word (2.1.1)."""

    R = 0x8000  # registration required
    B = 0x4000  # busy
    H = 0x2000  # home agent
    F = 0x1000  # foreign agent
    M = 0x0800  # minimal encapsulation
    G = 0x0400  # GRE encapsulation
    r = 0x0200  # reserved, sent as zero
    T = 0x0100  # reverse tunneling supported (RFC 3024)
    U = 0x0080  # UDP tunnelling (RFC 3519)
    X = 0x0040  # registration revocation (RFC 3543)
    I = 0x0020  # regional registration (RFC 4857)  # noqa: E741


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``: one's complement of the one's-complement
    sum of its 16-bit words, an odd last byte padded with zero."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass(frozen=True, slots=True)
class RouterAddress:
    """One (Router Address, Preference Level) entry of RFC 1256; the level is signed."""

    address: IPv4Address
    preference: int = 0


@dataclass(frozen=True, slots=True)
class MobilityAgentExtension:
    """Mobility Agent Advertisement Extension, type 16 (section 2.1.1).

    ``registration_lifetime`` is the longest registration lifetime the agent accepts (0xffff:
    infinity); it is unrelated to the ICMP Lifetime of the advertisement itself.
    """

    sequence: int
    registration_lifetime: int
    flags: AdvertisementFlags
    care_of_addresses: tuple[IPv4Address, ...] = ()
    type: ClassVar[int] = IcmpExtensionType.MOBILITY_AGENT_ADVERTISEMENT

    def encode(self) -> bytes:
        coas = b"".join(a.packed for a in self.care_of_addresses)
        return struct.pack(
            "!BBHHH", self.type, 6 + len(coas), self.sequence, self.registration_lifetime, int(self.flags)
        ) + coas


@dataclass(frozen=True, slots=True)
class PrefixLengthsExtension:
    """Prefix-Lengths Extension, type 19 (2.1.2): one prefix length per router address."""

    prefix_lengths: tuple[int, ...]
    type: ClassVar[int] = IcmpExtensionType.PREFIX_LENGTHS

    def encode(self) -> bytes:
        return bytes((self.type, len(self.prefix_lengths), *self.prefix_lengths))


@dataclass(frozen=True, slots=True)
class OneBytePadding:
    """One-byte Padding, type 0 (2.1.3): a lone Type byte that makes the ICMP length even."""

    type: ClassVar[int] = IcmpExtensionType.ONE_BYTE_PADDING

    def encode(self) -> bytes:
        return b"\0"


IcmpExtension = MobilityAgentExtension | PrefixLengthsExtension | OneBytePadding | UnknownExtension | OpaqueTail
_E = TypeVar("_E", MobilityAgentExtension, PrefixLengthsExtension, OpaqueTail)


def _parse_mobility(data: bytes, offset: int) -> MobilityAgentExtension:
    if len(data) < 6 or (len(data) - 6) % 4:
        raise DecodeError(f"mobility agent extension length {len(data)} is not 6 + 4N", offset)
    sequence, lifetime, flags = struct.unpack_from("!HHH", data)
    coas = tuple(IPv4Address(data[i : i + 4]) for i in range(6, len(data), 4))
    return MobilityAgentExtension(sequence, lifetime, AdvertisementFlags(flags), coas)


def _parse_prefix_lengths(data: bytes, offset: int) -> PrefixLengthsExtension:
    for i, length in enumerate(data):
        if length > 32:
            raise DecodeError(f"prefix length {length} exceeds 32", offset + i)
    return PrefixLengthsExtension(tuple(data))


_PARSERS: dict[int, ExtensionParser] = {
    IcmpExtensionType.MOBILITY_AGENT_ADVERTISEMENT: _parse_mobility,
    IcmpExtensionType.PREFIX_LENGTHS: _parse_prefix_lengths,
}
_ONE_BYTE: dict[int, OneBytePadding] = {IcmpExtensionType.ONE_BYTE_PADDING: OneBytePadding()}


def _with_checksum(message: bytes) -> bytes:
    value = checksum(message)
    return message[:2] + value.to_bytes(2, "big") + message[4:]


@dataclass(frozen=True, slots=True)
class AgentAdvertisement:
    """An ICMP Router Advertisement with Mobile IP extensions (section 2.1).

    ``lifetime`` is the ICMP Lifetime: how long, in seconds, the advertisement stays valid.
    """

    lifetime: int
    code: int = AdvertisementCode.ROUTES_COMMON_TRAFFIC
    addresses: tuple[RouterAddress, ...] = ()
    extensions: tuple[IcmpExtension, ...] = field(default=())
    TYPE: ClassVar[int] = IcmpType.ROUTER_ADVERTISEMENT

    def _first(self, kind: type[_E]) -> _E | None:
        return next((ext for ext in self.extensions if isinstance(ext, kind)), None)

    @property
    def mobility(self) -> MobilityAgentExtension | None:
        """The Mobility Agent Advertisement Extension; without one this is no Agent Advertisement."""
        return self._first(MobilityAgentExtension)

    @property
    def prefix_lengths(self) -> PrefixLengthsExtension | None:
        return self._first(PrefixLengthsExtension)

    @property
    def unrecognised_nonskippable(self) -> int | None:
        """Type of an unrecognised extension numbered 0-127: discard the message (1.8)."""
        tail = self._first(OpaqueTail)
        return None if tail is None else tail.type

    def encode(self) -> bytes:
        body = b"".join(_ROUTER_ENTRY.pack(int(e.address), e.preference) for e in self.addresses)
        header = _ICMP_HEADER.pack(
            self.TYPE, self.code, 0, len(self.addresses), ADDRESS_ENTRY_WORDS, self.lifetime
        )
        return _with_checksum(header + body + b"".join(e.encode() for e in self.extensions))


@dataclass(frozen=True, slots=True)
class AgentSolicitation:
    """An ICMP Router Solicitation used as an Agent Solicitation (section 2.2)."""

    code: int = 0
    reserved: int = 0
    TYPE: ClassVar[int] = IcmpType.ROUTER_SOLICITATION

    def encode(self) -> bytes:
        return _with_checksum(struct.pack("!BBHI", self.TYPE, self.code, 0, self.reserved))


def _decode_advertisement(data: bytes) -> AgentAdvertisement:
    reader = Reader(data)
    _type, code, _sum, num_addrs, entry_words, lifetime = (
        reader.u8(),
        reader.u8(),
        reader.u16(),
        reader.u8("number of addresses"),
        reader.u8("address entry size"),
        reader.u16("lifetime"),
    )
    if entry_words != ADDRESS_ENTRY_WORDS:
        raise DecodeError(f"address entry size {entry_words} words, expected {ADDRESS_ENTRY_WORDS}", 5)
    addresses = tuple(
        RouterAddress(reader.ipv4("router address"), reader.i32("preference level")) for _ in range(num_addrs)
    )
    extensions = decode_extensions(reader, _PARSERS, _ONE_BYTE)
    return AgentAdvertisement(lifetime, code, addresses, extensions)


def decode_icmp(data: bytes, *, verify_checksum: bool = True) -> AgentAdvertisement | AgentSolicitation:
    """Decode an ICMP message (the IP payload) that is a Router Advertisement or Solicitation."""
    if len(data) < 8:
        raise DecodeError("ICMP message shorter than 8 bytes", 0)
    if verify_checksum and checksum(data) != 0:
        raise DecodeError("bad ICMP checksum", 2)
    if data[0] == IcmpType.ROUTER_ADVERTISEMENT:
        return _decode_advertisement(data)
    if data[0] == IcmpType.ROUTER_SOLICITATION:
        if len(data) != 8:
            raise DecodeError(f"router solicitation of {len(data)} bytes, expected 8", 8)
        return AgentSolicitation(data[1], int.from_bytes(data[4:8], "big"))
    raise DecodeError(f"ICMP type {data[0]} is neither router advertisement nor solicitation", 0)


def next_sequence(sequence: int) -> int:
    """The sequence number after ``sequence`` (2.3.2): +1, but 0xffff is followed by 256, so
    that 0-255 only ever follow a reboot and a node can tell the two apart (2.4.4)."""
    return SEQUENCE_WRAP_TO if sequence >= 0xFFFF else sequence + 1
