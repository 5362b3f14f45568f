"""Extensions of the messages on UDP port 434 (RFC 5944 section 3.5, RFC 2794, RFC 3024, RFC 3543;
RFC 3519 in :mod:`mipd.core.wire.nat`, RFC 5177 in :mod:`mipd.core.wire.mobile_network`).

Each recognised type is a small frozen dataclass with ``encode()``; :data:`PARSERS` maps the
type to its parser. Anything else is kept raw by :mod:`mipd.core.wire.tlv` under the section 1.8 rule.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import ClassVar

from mipd.core.wire import mobile_network, nat
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.mobile_network import MobileNetworkAcknowledgement, MobileNetworkRequest
from mipd.core.wire.nat import UdpTunnelReply, UdpTunnelRequest
from mipd.core.wire.tlv import ExtensionParser, OpaqueTail, UnknownExtension


class ExtensionType(IntEnum):
    """Registration extension types, named as their RFCs name them."""

    MOBILE_HOME_AUTHENTICATION = 32  # RFC 5944 section 3.5.2
    MOBILE_FOREIGN_AUTHENTICATION = 33  # RFC 5944 section 3.5.3
    FOREIGN_HOME_AUTHENTICATION = 34  # RFC 5944 section 3.5.4
    UDP_TUNNEL_REPLY = nat.UDP_TUNNEL_REPLY_TYPE  # 44, RFC 3519 section 3.2 (not skippable)
    ENCAPSULATING_DELIVERY_STYLE = 130  # RFC 3024 section 3.3
    MOBILE_NODE_NAI = 131  # RFC 2794 section 2
    REVOCATION_SUPPORT = 137  # RFC 3543 section 3.2
    UDP_TUNNEL_REQUEST = nat.UDP_TUNNEL_REQUEST_TYPE  # 144, RFC 3519 section 3.1
    MOBILE_NETWORK = mobile_network.MOBILE_NETWORK_TYPE  # 148, RFC 5177 section 4


AUTHENTICATION_TYPES = frozenset(
    (
        ExtensionType.MOBILE_HOME_AUTHENTICATION,
        ExtensionType.MOBILE_FOREIGN_AUTHENTICATION,
        ExtensionType.FOREIGN_HOME_AUTHENTICATION,
    )
)

SPI_LENGTH = 4

# Non-skippable types the codec decodes but no engine acts on yet: a message carrying one is still
# discarded, as RFC 5944 section 1.8 requires of an implementation that does not support it
# (``unrecognised_nonskippable`` reports it). None now: the UDP Tunnel Reply (44) is read by the
# mobile node and the foreign agent (RFC 3519).
NOT_YET_SUPPORTED_NONSKIPPABLE: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class AuthenticationExtension:
    """Mobile-Home (32), Mobile-Foreign (33) or Foreign-Home (34) Authentication Extension.

    Layout (RFC 5944 sections 3.5.2-3.5.4): Type, Length = 4 + len(Authenticator), a 32-bit
    SPI, then the Authenticator (16 bytes for HMAC-MD5).
    """

    type: int
    spi: int
    authenticator: bytes

    def encode(self) -> bytes:
        return (
            bytes((self.type, SPI_LENGTH + len(self.authenticator)))
            + self.spi.to_bytes(4, "big")
            + self.authenticator
        )

    def header(self) -> bytes:
        """Type, Length and SPI: the part of this extension its own authenticator covers."""
        return bytes((self.type, SPI_LENGTH + len(self.authenticator))) + self.spi.to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class MobileNodeNAI:
    """Mobile Node NAI Extension (RFC 2794 section 2): the node's Network Access Identifier.

    Kept as bytes so that any received value re-encodes exactly; :attr:`text` decodes it.
    """

    nai: bytes
    type: ClassVar[int] = ExtensionType.MOBILE_NODE_NAI

    @property
    def text(self) -> str:
        return self.nai.decode("utf-8", errors="replace")

    def encode(self) -> bytes:
        return bytes((self.type, len(self.nai))) + self.nai


@dataclass(frozen=True, slots=True)
class EncapsulatingDeliveryStyle:
    """Encapsulating Delivery Style Extension (RFC 3024 section 3.3): Type 130, Length 0.

    A mobile node asks its foreign agent to reverse-tunnel by encapsulating its packets.
    """

    type: ClassVar[int] = ExtensionType.ENCAPSULATING_DELIVERY_STYLE

    def encode(self) -> bytes:
        return bytes((self.type, 0))


class RevocationSupportFlags(IntFlag):
    """The 16-bit I/Reserved word of the Revocation Support Extension (RFC 3543 section 3.2)."""

    I = 0x8000  # the agent supports the 'I' (inform) bit in revocation messages  # noqa: E741


_NO_REVOCATION_FLAGS = RevocationSupportFlags(0)
REVOCATION_SUPPORT_LENGTH = 6  # 3.2: "Length (in bytes, currently 6)"
_REVOCATION_SUPPORT = struct.Struct("!HI")


@dataclass(frozen=True, slots=True)
class RevocationSupport:
    """Revocation Support Extension (RFC 3543 section 3.2): Type 137, skippable.

    ``timestamp`` is the sender's current 32-bit timestamp; the 15 reserved bits travel in
    ``flags`` next to I, as received. Section 3.2 keeps the Length open ("currently 6") "should
    more bits be required in the future": bytes past the sixth are kept in ``future``.
    """

    flags: RevocationSupportFlags = _NO_REVOCATION_FLAGS
    timestamp: int = 0
    future: bytes = b""
    type: ClassVar[int] = ExtensionType.REVOCATION_SUPPORT

    def encode(self) -> bytes:
        body = _REVOCATION_SUPPORT.pack(int(self.flags), self.timestamp) + self.future
        return bytes((self.type, len(body))) + body


RegistrationExtension = (
    AuthenticationExtension | MobileNodeNAI | EncapsulatingDeliveryStyle | RevocationSupport
    | UdpTunnelRequest | UdpTunnelReply | MobileNetworkRequest | MobileNetworkAcknowledgement
    | UnknownExtension | OpaqueTail
)


def _auth_parser(ext_type: int) -> ExtensionParser:
    def parse(data: bytes, offset: int) -> AuthenticationExtension:
        if len(data) < SPI_LENGTH:
            raise DecodeError(f"authentication extension {ext_type} shorter than its SPI", offset)
        return AuthenticationExtension(ext_type, int.from_bytes(data[:4], "big"), data[4:])

    return parse


def _parse_nai(data: bytes, offset: int) -> MobileNodeNAI:
    return MobileNodeNAI(data)


def _parse_delivery_style(data: bytes, offset: int) -> EncapsulatingDeliveryStyle:
    if data:
        raise DecodeError("encapsulating delivery style extension must have length 0", offset)
    return EncapsulatingDeliveryStyle()


def _parse_revocation_support(data: bytes, offset: int) -> RevocationSupport:
    if len(data) < REVOCATION_SUPPORT_LENGTH:
        raise DecodeError(f"revocation support extension length {len(data)}, need 6", offset - 1)
    flags, timestamp = _REVOCATION_SUPPORT.unpack_from(data)
    return RevocationSupport(RevocationSupportFlags(flags), timestamp, data[REVOCATION_SUPPORT_LENGTH:])


PARSERS: dict[int, ExtensionParser] = {
    **{t: _auth_parser(t) for t in AUTHENTICATION_TYPES},
    ExtensionType.MOBILE_NODE_NAI: _parse_nai,
    ExtensionType.ENCAPSULATING_DELIVERY_STYLE: _parse_delivery_style,
    ExtensionType.REVOCATION_SUPPORT: _parse_revocation_support,
    ExtensionType.UDP_TUNNEL_REQUEST: nat.parse_udp_tunnel_request,
    ExtensionType.UDP_TUNNEL_REPLY: nat.parse_udp_tunnel_reply,
    ExtensionType.MOBILE_NETWORK: mobile_network.parse_mobile_network,
}
"""The registry of the extension types of UDP port 434, type -> parser of the extension's Data."""
