"""Extensions of Registration Requests and Replies (RFC 5944 section 3.5, RFC 2794, RFC 3024).

Each recognised type is a small frozen dataclass with ``encode()``; :data:`PARSERS` maps the
type to its parser. Anything else is kept raw by :mod:`mipd.core.wire.tlv` under the section 1.8 rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from mipd.core.wire.errors import DecodeError
from mipd.core.wire.tlv import ExtensionParser, OpaqueTail, UnknownExtension


class ExtensionType(IntEnum):
    """Registration extension types, named as their RFCs name them."""

    MOBILE_HOME_AUTHENTICATION = 32  # RFC 5944 section 3.5.2
    MOBILE_FOREIGN_AUTHENTICATION = 33  # RFC 5944 section 3.5.3
    FOREIGN_HOME_AUTHENTICATION = 34  # RFC 5944 section 3.5.4
    ENCAPSULATING_DELIVERY_STYLE = 130  # RFC 3024 section 3.3
    MOBILE_NODE_NAI = 131  # RFC 2794 section 2


AUTHENTICATION_TYPES = frozenset(
    (
        ExtensionType.MOBILE_HOME_AUTHENTICATION,
        ExtensionType.MOBILE_FOREIGN_AUTHENTICATION,
        ExtensionType.FOREIGN_HOME_AUTHENTICATION,
    )
)

SPI_LENGTH = 4


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


RegistrationExtension = (
    AuthenticationExtension | MobileNodeNAI | EncapsulatingDeliveryStyle | UnknownExtension | OpaqueTail
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


PARSERS: dict[int, ExtensionParser] = {
    **{t: _auth_parser(t) for t in AUTHENTICATION_TYPES},
    ExtensionType.MOBILE_NODE_NAI: _parse_nai,
    ExtensionType.ENCAPSULATING_DELIVERY_STYLE: _parse_delivery_style,
}
