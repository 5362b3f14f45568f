"""Registration Revocation (type 7) and Revocation Acknowledgement (type 15), RFC 3543 3.3 and 3.4.

Both are UDP port 434 messages of a fixed part then extensions, the last of them an authenticator:
"a valid authenticator as specified in [RFC 3344]", Foreign-Home between agents or Mobile-Home
towards a 'direct' co-located mobile node (3.3, 3.4). It is computed as for registration messages
(RFC 5944 section 3.5.1): over the fixed part, every prior extension, and the Type, Length and SPI
of the authentication extension itself, so :mod:`mipd.core.wire.auth` signs and verifies these
messages as it does requests and replies. The Revocation Support Extension (3.2) that announces
support in registration messages is :class:`mipd.core.wire.extensions.RevocationSupport`.

Reserved fields are kept as received ("ignored when received") so that a message re-encodes
byte for byte; encoders write whatever the value holds (0 unless set).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntFlag
from ipaddress import IPv4Address
from typing import ClassVar

from mipd.core.wire.errors import DecodeError
from mipd.core.wire.extensions import PARSERS, RegistrationExtension
from mipd.core.wire.reader import Reader
from mipd.core.wire.registration import _ExtensionAccess
from mipd.core.wire.tlv import decode_extensions

# Type, Reserved, A|I|Reserved, Home Address, Home Domain Address, Foreign Domain Address,
# Revocation Identifier: 20 bytes (3.3).
_REVOCATION = struct.Struct("!BBHIIII")
# Type, Reserved, I|Reserved, Home Address, Revocation Identifier: 12 bytes (3.4).
_ACKNOWLEDGEMENT = struct.Struct("!BBHII")


class RevocationFlags(IntFlag):
    """The 16-bit A/I/Reserved word of a Registration Revocation (RFC 3543 section 3.3)."""

    A = 0x8000  # Agent ('direction') bit: 1 if the revoking agent serves the binding as home agent
    I = 0x4000  # Inform bit: whether the mobile node is (to be) told  # noqa: E741


class RevocationAckFlags(IntFlag):
    """The 16-bit I/Reserved word of a Revocation Acknowledgement (RFC 3543 section 3.4)."""

    I = 0x8000  # Inform bit  # noqa: E741


@dataclass(frozen=True, slots=True)
class RegistrationRevocation(_ExtensionAccess):
    """A Registration Revocation message (RFC 3543 section 3.3).

    ``home_domain_address`` is the home agent's address and ``foreign_domain_address`` the
    foreign agent's or the co-located care-of address, together naming the revoked binding.
    ``revocation_identifier`` is the revoking agent's 32-bit timestamp (3.5, replay protection).
    The 15 reserved bits travel in ``flags`` next to A and I; ``reserved`` is the second byte.
    """

    flags: RevocationFlags
    home_address: IPv4Address
    home_domain_address: IPv4Address
    foreign_domain_address: IPv4Address
    revocation_identifier: int
    extensions: tuple[RegistrationExtension, ...] = field(default=())
    reserved: int = 0
    TYPE: ClassVar[int] = 7
    FIXED_LENGTH: ClassVar[int] = _REVOCATION.size

    @property
    def from_home_agent(self) -> bool:
        """The A bit: the revoking agent is the binding's home agent (else its foreign agent)."""
        return RevocationFlags.A in self.flags

    def fixed_part(self) -> bytes:
        return _REVOCATION.pack(
            self.TYPE,
            self.reserved,
            int(self.flags),
            int(self.home_address),
            int(self.home_domain_address),
            int(self.foreign_domain_address),
            self.revocation_identifier,
        )


@dataclass(frozen=True, slots=True)
class RevocationAcknowledgement(_ExtensionAccess):
    """A Registration Revocation Acknowledgement message (RFC 3543 section 3.4).

    ``home_address`` and ``revocation_identifier`` are copied from the revocation it answers
    (3.5). The 15 reserved bits travel in ``flags`` next to I; ``reserved`` is the second byte.
    """

    flags: RevocationAckFlags
    home_address: IPv4Address
    revocation_identifier: int
    extensions: tuple[RegistrationExtension, ...] = field(default=())
    reserved: int = 0
    TYPE: ClassVar[int] = 15
    FIXED_LENGTH: ClassVar[int] = _ACKNOWLEDGEMENT.size

    def acknowledges(self, revocation: RegistrationRevocation) -> bool:
        """Home Address and Revocation Identifier match ``revocation``'s (3.5)."""
        return (self.home_address, self.revocation_identifier) == (
            revocation.home_address, revocation.revocation_identifier)

    def fixed_part(self) -> bytes:
        return _ACKNOWLEDGEMENT.pack(
            self.TYPE, self.reserved, int(self.flags), int(self.home_address), self.revocation_identifier
        )


RevocationMessage = RegistrationRevocation | RevocationAcknowledgement


def decode_revocation(data: bytes) -> RegistrationRevocation:
    """Decode a Registration Revocation from a UDP payload."""
    if len(data) < _REVOCATION.size:
        raise DecodeError(f"registration revocation shorter than {_REVOCATION.size} bytes", 0)
    msg_type, reserved, flags, home, home_domain, foreign_domain, identifier = _REVOCATION.unpack_from(data)
    if msg_type != RegistrationRevocation.TYPE:
        raise DecodeError(f"type {msg_type} is not a registration revocation", 0)
    return RegistrationRevocation(
        RevocationFlags(flags), IPv4Address(home), IPv4Address(home_domain), IPv4Address(foreign_domain),
        identifier, decode_extensions(Reader(data, _REVOCATION.size), PARSERS), reserved,
    )


def decode_revocation_acknowledgement(data: bytes) -> RevocationAcknowledgement:
    """Decode a Registration Revocation Acknowledgement from a UDP payload."""
    if len(data) < _ACKNOWLEDGEMENT.size:
        raise DecodeError(f"revocation acknowledgement shorter than {_ACKNOWLEDGEMENT.size} bytes", 0)
    msg_type, reserved, flags, home, identifier = _ACKNOWLEDGEMENT.unpack_from(data)
    if msg_type != RevocationAcknowledgement.TYPE:
        raise DecodeError(f"type {msg_type} is not a revocation acknowledgement", 0)
    return RevocationAcknowledgement(
        RevocationAckFlags(flags), IPv4Address(home), identifier,
        decode_extensions(Reader(data, _ACKNOWLEDGEMENT.size), PARSERS), reserved,
    )
