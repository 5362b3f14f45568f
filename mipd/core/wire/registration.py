"""Registration Request (type 1) and Registration Reply (type 3), RFC 5944 sections 3.3 and 3.4.

Messages are frozen values. ``encode()`` gives the UDP payload; :func:`decode_registration`
turns a UDP payload back into a message or raises :class:`DecodeError`. Decoding then encoding
gives back the same bytes, unknown extensions included.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntFlag
from ipaddress import IPv4Address
from typing import ClassVar

from mipd.core.wire.errors import DecodeError
from mipd.core.wire.extensions import (
    NOT_YET_SUPPORTED_NONSKIPPABLE,
    PARSERS,
    AuthenticationExtension,
    ExtensionType,
    RegistrationExtension,
)
from mipd.core.wire.reader import Reader
from mipd.core.wire.tlv import OpaqueTail, decode_extensions

REGISTRATION_PORT = 434  # RFC 5944 section 1.8 / 3.1

_REQUEST = struct.Struct("!BBHIIIQ")  # 24 bytes, section 3.3
_REPLY = struct.Struct("!BBHIIQ")  # 20 bytes, section 3.4
INFINITE_LIFETIME = 0xFFFF  # sections 3.3 and 3.4: "A value of 0xffff indicates infinity"


class RequestFlags(IntFlag):
    """The flag byte of a Registration Request, most significant bit first (section 3.3)."""

    S = 0x80  # simultaneous bindings
    B = 0x40  # broadcast datagrams
    D = 0x20  # decapsulation by the mobile node (co-located care-of address)
    M = 0x10  # minimal encapsulation (RFC 2004)
    G = 0x08  # GRE encapsulation (RFC 2784)
    r = 0x04  # reserved: sent as zero, ignored on reception
    T = 0x02  # reverse tunneling requested (RFC 3024)
    x = 0x01  # reserved: sent as zero, ignored on reception

    def letters(self) -> str:
        """The set flags as RFC letters in RFC order, e.g. ``"SDT"`` (reserved bits left out)."""
        return "".join(f.name or "" for f in _LETTER_ORDER if f in self)


_LETTER_ORDER = (RequestFlags.S, RequestFlags.B, RequestFlags.D, RequestFlags.M, RequestFlags.G, RequestFlags.T)


def _encode_extensions(extensions: tuple[RegistrationExtension, ...]) -> bytes:
    return b"".join(ext.encode() for ext in extensions)


class _ExtensionAccess:
    """Encoding and queries over ``self.extensions`` shared by requests and replies."""

    __slots__ = ()
    extensions: tuple[RegistrationExtension, ...]

    def fixed_part(self) -> bytes:
        raise NotImplementedError

    def encode_through(self, count: int) -> bytes:
        """The fixed part followed by the first ``count`` extensions."""
        return self.fixed_part() + _encode_extensions(self.extensions[:count])

    def encode(self) -> bytes:
        return self.fixed_part() + _encode_extensions(self.extensions)


    def authentications(self, ext_type: int) -> list[tuple[int, AuthenticationExtension]]:
        """(index, extension) for every authentication extension of ``ext_type``, in order."""
        return [
            (i, ext)
            for i, ext in enumerate(self.extensions)
            if isinstance(ext, AuthenticationExtension) and ext.type == ext_type
        ]

    @property
    def mobile_home_auth(self) -> AuthenticationExtension | None:
        """The first Mobile-Home Authentication Extension, if any."""
        found = self.authentications(ExtensionType.MOBILE_HOME_AUTHENTICATION)
        return found[0][1] if found else None

    @property
    def unrecognised_nonskippable(self) -> int | None:
        """Type of an unrecognised extension numbered 0-127, if the message carries one.

        Such a message MUST be silently discarded (RFC 5944 section 1.8). A type the codec
        decodes but no engine supports yet (:data:`NOT_YET_SUPPORTED_NONSKIPPABLE`) counts too.
        """
        for ext in self.extensions:
            if isinstance(ext, OpaqueTail) or ext.type in NOT_YET_SUPPORTED_NONSKIPPABLE:
                return ext.type
        return None


@dataclass(frozen=True, slots=True)
class RegistrationRequest(_ExtensionAccess):
    """A Registration Request (RFC 5944 section 3.3)."""

    flags: RequestFlags
    lifetime: int
    home_address: IPv4Address
    home_agent: IPv4Address
    care_of_address: IPv4Address
    identification: int
    extensions: tuple[RegistrationExtension, ...] = field(default=())
    TYPE: ClassVar[int] = 1
    FIXED_LENGTH: ClassVar[int] = _REQUEST.size

    def fixed_part(self) -> bytes:
        return _REQUEST.pack(
            self.TYPE,
            int(self.flags),
            self.lifetime,
            int(self.home_address),
            int(self.home_agent),
            int(self.care_of_address),
            self.identification,
        )


@dataclass(frozen=True, slots=True)
class RegistrationReply(_ExtensionAccess):
    """A Registration Reply (RFC 5944 section 3.4). It has no care-of address field."""

    code: int
    lifetime: int
    home_address: IPv4Address
    home_agent: IPv4Address
    identification: int
    extensions: tuple[RegistrationExtension, ...] = field(default=())
    TYPE: ClassVar[int] = 3
    FIXED_LENGTH: ClassVar[int] = _REPLY.size

    def fixed_part(self) -> bytes:
        return _REPLY.pack(
            self.TYPE,
            self.code,
            self.lifetime,
            int(self.home_address),
            int(self.home_agent),
            self.identification,
        )


RegistrationMessage = RegistrationRequest | RegistrationReply


def _extensions(data: bytes, start: int) -> tuple[RegistrationExtension, ...]:
    return decode_extensions(Reader(data, start), PARSERS)


def decode_request(data: bytes) -> RegistrationRequest:
    """Decode a Registration Request from a UDP payload."""
    if len(data) < _REQUEST.size:
        raise DecodeError(f"registration request shorter than {_REQUEST.size} bytes", 0)
    msg_type, flags, lifetime, home, agent, coa, ident = _REQUEST.unpack_from(data)
    if msg_type != RegistrationRequest.TYPE:
        raise DecodeError(f"type {msg_type} is not a registration request", 0)
    return RegistrationRequest(
        RequestFlags(flags),
        lifetime,
        IPv4Address(home),
        IPv4Address(agent),
        IPv4Address(coa),
        ident,
        _extensions(data, _REQUEST.size),
    )


def decode_reply(data: bytes) -> RegistrationReply:
    """Decode a Registration Reply from a UDP payload."""
    if len(data) < _REPLY.size:
        raise DecodeError(f"registration reply shorter than {_REPLY.size} bytes", 0)
    msg_type, code, lifetime, home, agent, ident = _REPLY.unpack_from(data)
    if msg_type != RegistrationReply.TYPE:
        raise DecodeError(f"type {msg_type} is not a registration reply", 0)
    return RegistrationReply(
        code, lifetime, IPv4Address(home), IPv4Address(agent), ident, _extensions(data, _REPLY.size)
    )


def decode_registration(data: bytes) -> RegistrationMessage:
    """Decode whichever registration message a UDP payload to or from port 434 holds."""
    if not data:
        raise DecodeError("empty datagram", 0)
    if data[0] == RegistrationRequest.TYPE:
        return decode_request(data)
    if data[0] == RegistrationReply.TYPE:
        return decode_reply(data)
    raise DecodeError(f"unknown registration message type {data[0]}", 0)
