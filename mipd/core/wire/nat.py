"""Mobile IP traversal of NAT devices (RFC 3519): its two extensions and the tunnel data message.

- UDP Tunnel Request Extension, type 144, skippable (section 3.1): a node (or foreign agent)
  offers MIP UDP tunnelling and may ask for an encapsulation.
- UDP Tunnel Reply Extension, type 44, *not* skippable (section 3.2): the home agent's answer.
- MIP Tunnel Data Message, message type 4 on UDP port 434 (section 3.3): a four-byte header in
  front of the tunnelled packet, which tells data apart from registration messages.

Reserved fields are kept as received so that every value re-encodes byte for byte; section 3.1.3
asks for Reserved 1 and 2 to be ignored, and for an extension whose Reserved 3 is not zero to be
"handled as not understood and silently skipped": the parser returns it as an
:class:`~mipd.core.wire.tlv.UnknownExtension`, as for any unrecognised skippable extension.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import ClassVar

from mipd.core.wire.errors import DecodeError
from mipd.core.wire.tlv import UnknownExtension

UDP_TUNNEL_REQUEST_TYPE = 144  # section 3.1, skippable (128-255)
UDP_TUNNEL_REPLY_TYPE = 44  # section 3.2, non-skippable (0-127)
TUNNEL_DATA_TYPE = 4  # section 3.3, a message type of UDP port 434
EXTENSION_LENGTH = 6  # sections 3.1 and 3.2: "Length 6"
SUB_TYPE = 0  # sections 3.1 and 3.2: "Sub-Type 0", the only one defined

_REQUEST = struct.Struct("!BBBBH")  # Sub-Type, Reserved 1, F|R|Reserved 2, Encapsulation, Reserved 3
_REPLY = struct.Struct("!BBHH")  # Sub-Type, Reply Code, F|Reserved, Keepalive Interval
_DATA = struct.Struct("!BBH")  # Type, Next Header, Reserved


class Encapsulation(IntEnum):
    """The Encapsulation field (3.1.4) and the Next Header field (3.3): IP protocol numbers.

    Encapsulation 0 in a request means none in particular: the M and G flags of the request decide.
    """

    UNSPECIFIED = 0  # 3.1.4: "If the value of this field is zero, it defaults to ... 'M' and 'G'"
    IP_IN_IP = 4  # IP header (IP-in-UDP tunnelling), RFC 2003
    GRE = 47  # GRE header (GRE-in-UDP tunnelling), RFC 2784
    MINIMAL = 55  # minimal IP encapsulation header, RFC 2004


class UdpTunnelRequestFlags(IntFlag):
    """The F, R and Reserved 2 bits of the UDP Tunnel Request Extension (section 3.1)."""

    F = 0x80  # 3.1.1 Force: tunnel whether or not the home agent detects a NAT
    R = 0x40  # 3.1.2 Registration through FA Required: the agent advertisement had R set


class UdpTunnelReplyFlags(IntFlag):
    """The 16-bit F/Reserved word of the UDP Tunnel Reply Extension (section 3.2)."""

    F = 0x8000  # Forced: tunnelling is forced because the request had F set


_NO_REQUEST_FLAGS = UdpTunnelRequestFlags(0)
_NO_REPLY_FLAGS = UdpTunnelReplyFlags(0)


class UdpTunnelReplyCode(IntEnum):
    """Reply Code of the UDP Tunnel Reply Extension (section 3.2.1): 0-63 assent, 64-255 decline."""

    WILL_DO_TUNNELLING = 0
    TUNNELLING_DECLINED_REASON_UNSPECIFIED = 64


def tunnelling_accepted(code: int) -> bool:
    """Values 0 .. 63 "indicate assent, i.e., that tunnelling will be done" (3.2.1)."""
    return 0 <= code <= 63


@dataclass(frozen=True, slots=True)
class UdpTunnelRequest:
    """UDP Tunnel Request Extension (RFC 3519 section 3.1): Type 144, Length 6.

    ``encapsulation`` is the requested encapsulation (:class:`Encapsulation`; 0: let M and G
    decide). ``reserved1`` and the Reserved 2 bits of ``flags`` are kept as received (3.1.3).
    """

    flags: UdpTunnelRequestFlags = _NO_REQUEST_FLAGS
    encapsulation: int = Encapsulation.UNSPECIFIED
    reserved1: int = 0
    type: ClassVar[int] = UDP_TUNNEL_REQUEST_TYPE

    def encode(self) -> bytes:
        return bytes((self.type, EXTENSION_LENGTH)) + _REQUEST.pack(
            SUB_TYPE, self.reserved1, int(self.flags), self.encapsulation, 0
        )


@dataclass(frozen=True, slots=True)
class UdpTunnelReply:
    """UDP Tunnel Reply Extension (RFC 3519 section 3.2): Type 44, Length 6, not skippable.

    ``keepalive_interval`` is in seconds; 0 means the node's configured default. The 15 reserved
    bits travel in ``flags`` next to F, as received.
    """

    code: int = UdpTunnelReplyCode.WILL_DO_TUNNELLING
    flags: UdpTunnelReplyFlags = _NO_REPLY_FLAGS
    keepalive_interval: int = 0
    type: ClassVar[int] = UDP_TUNNEL_REPLY_TYPE

    @property
    def accepted(self) -> bool:
        return tunnelling_accepted(self.code)

    def encode(self) -> bytes:
        return bytes((self.type, EXTENSION_LENGTH)) + _REPLY.pack(
            SUB_TYPE, self.code, int(self.flags), self.keepalive_interval
        )


def parse_udp_tunnel_request(data: bytes, offset: int) -> UdpTunnelRequest | UnknownExtension:
    """Data of a type-144 extension: a request, or an UnknownExtension where 3.1.3 says to skip."""
    if len(data) != EXTENSION_LENGTH:
        raise DecodeError(f"UDP tunnel request extension length {len(data)}, expected 6", offset - 1)
    sub_type, reserved1, flags, encapsulation, reserved3 = _REQUEST.unpack(data)
    if sub_type != SUB_TYPE or reserved3 != 0:
        # 3.1.3: Reserved 3 not zero -> "handled as not understood and silently skipped"; an
        # unknown Sub-Type is an extension we do not understand either (RFC 5944 1.8, 128-255).
        return UnknownExtension(UDP_TUNNEL_REQUEST_TYPE, data)
    return UdpTunnelRequest(UdpTunnelRequestFlags(flags), encapsulation, reserved1)


def parse_udp_tunnel_reply(data: bytes, offset: int) -> UdpTunnelReply:
    """Data of a type-44 extension. Non-skippable: what cannot be read raises DecodeError."""
    if len(data) != EXTENSION_LENGTH:
        raise DecodeError(f"UDP tunnel reply extension length {len(data)}, expected 6", offset - 1)
    sub_type, code, flags, keepalive = _REPLY.unpack(data)
    if sub_type != SUB_TYPE:
        raise DecodeError(f"UDP tunnel reply extension sub-type {sub_type}, expected 0", offset)
    return UdpTunnelReply(code, UdpTunnelReplyFlags(flags), keepalive)


@dataclass(frozen=True, slots=True)
class TunnelData:
    """A MIP Tunnel Data Message (RFC 3519 section 3.3): the UDP payload of a tunnelled packet.

    ``next_header`` names what ``payload`` starts with, as an IP protocol number
    (:class:`Encapsulation`: 4 an IPv4 header, 47 a GRE header, 55 a minimal encapsulation
    header). Whether it matches the tunnel mode of the binding is for the receiver to check
    (3.3); the codec keeps any value. ``reserved`` is kept as received ("ignored on reception").
    """

    next_header: int
    payload: bytes
    reserved: int = 0
    TYPE: ClassVar[int] = TUNNEL_DATA_TYPE
    HEADER_LENGTH: ClassVar[int] = _DATA.size

    def header(self) -> bytes:
        return _DATA.pack(self.TYPE, self.next_header, self.reserved)

    def encode(self) -> bytes:
        return self.header() + self.payload


def decode_tunnel_data(data: bytes) -> TunnelData:
    """Decode a MIP Tunnel Data Message from a UDP payload (port 434)."""
    if len(data) < _DATA.size:
        raise DecodeError(f"tunnel data message shorter than {_DATA.size} bytes", 0)
    msg_type, next_header, reserved = _DATA.unpack_from(data)
    if msg_type != TUNNEL_DATA_TYPE:
        raise DecodeError(f"type {msg_type} is not a tunnel data message", 0)
    return TunnelData(next_header, bytes(data[_DATA.size :]), reserved)
