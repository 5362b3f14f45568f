"""The IPv4 header (RFC 791 section 3.1): just enough to tunnel datagrams.

:func:`parse` validates a header and splits a datagram into header and payload; every malformed
input raises :class:`~mipd.core.wire.errors.DecodeError`. :meth:`IPv4Header.encode` always writes a
fresh header checksum, so a header is never sent with a stale one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from ipaddress import IPv4Address

from mipd.core.wire.errors import DecodeError
from mipd.core.wire.icmp import checksum

_FIXED = struct.Struct("!BBHHHBBH4s4s")
MIN_HEADER = 20  # RFC 791: IHL is at least 5 words
VERSION = 4


class Protocol(IntEnum):
    """IP protocol numbers a tunnel carries or is carried in (IANA "Assigned Internet Protocol Numbers")."""

    ICMP = 1
    IPIP = 4  # RFC 2003: IP in IP
    UDP = 17
    GRE = 47  # RFC 2784
    MINIMAL = 55  # RFC 2004: "Minimal Encapsulation within IP" (MOBILE)


class Flags(IntFlag):
    """The three flag bits of RFC 791, as they sit in the top of the 16-bit flags/offset word."""

    RESERVED = 0x4  # "Bit 0: reserved, must be zero"
    DF = 0x2  # Don't Fragment
    MF = 0x1  # More Fragments


@dataclass(frozen=True, slots=True)
class IPv4Header:
    """A parsed IPv4 header; ``checksum`` is the value as received (ignored by :meth:`encode`)."""

    tos: int
    total_length: int
    identification: int
    flags: Flags
    fragment_offset: int  # in 8-octet units
    ttl: int
    protocol: int
    source: IPv4Address
    destination: IPv4Address
    options: bytes = b""
    checksum: int = 0

    @property
    def header_length(self) -> int:
        """IHL in bytes."""
        return MIN_HEADER + len(self.options)

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags & Flags.DF)

    @property
    def fragmented(self) -> bool:
        """A fragment of a larger datagram: MF set or a non-zero offset (RFC 791 3.2)."""
        return bool(self.flags & Flags.MF) or self.fragment_offset != 0

    def encode(self) -> bytes:
        """The header's bytes with a freshly computed header checksum."""
        if len(self.options) % 4 or len(self.options) > 40:
            raise ValueError(f"IPv4 options of {len(self.options)} bytes are not 0-40 in whole words")
        ihl = self.header_length // 4
        word = (int(self.flags) << 13) | self.fragment_offset
        header = _FIXED.pack(
            (VERSION << 4) | ihl, self.tos, self.total_length, self.identification, word, self.ttl,
            self.protocol, 0, self.source.packed, self.destination.packed,
        ) + self.options
        value = checksum(header)
        return header[:10] + value.to_bytes(2, "big") + header[12:]


def parse(data: bytes, *, verify_checksum: bool = True) -> tuple[IPv4Header, bytes]:
    """The header of the IPv4 datagram ``data`` and its payload (``total_length`` bounds it;
    bytes beyond, such as link-layer padding, are dropped). Raises DecodeError."""
    if len(data) < MIN_HEADER:
        raise DecodeError(f"IPv4 datagram of {len(data)} bytes is shorter than a header", 0)
    version_ihl, tos, total, ident, word, ttl, proto, csum, src, dst = _FIXED.unpack_from(data)
    if version_ihl >> 4 != VERSION:
        raise DecodeError(f"IP version {version_ihl >> 4}, expected 4", 0)
    header_length = (version_ihl & 0xF) * 4
    if header_length < MIN_HEADER:
        raise DecodeError(f"IHL {header_length // 4} is below 5", 0)
    if header_length > len(data):
        raise DecodeError(f"IHL {header_length} bytes exceeds the {len(data)} received", 0)
    if not header_length <= total <= len(data):
        raise DecodeError(f"total length {total} outside {header_length}..{len(data)}", 2)
    if verify_checksum and checksum(data[:header_length]) != 0:
        raise DecodeError("bad IPv4 header checksum", 10)
    header = IPv4Header(
        tos, total, ident, Flags(word >> 13), word & 0x1FFF, ttl, proto, IPv4Address(src), IPv4Address(dst),
        bytes(data[MIN_HEADER:header_length]), csum,
    )
    return header, bytes(data[header_length:total])
