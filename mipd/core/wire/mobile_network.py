"""Mobile Network extensions of Network Mobility for IPv4 (RFC 5177 section 4).

One extension type, 148, skippable, with a Sub-Type (section 11, Table 2):

- 0, Mobile Network Request (4.1), in a Registration Request: Length 6, Sub-Type, Prefix Length,
  Prefix;
- 1 and 2, Explicit and Implicit Mode Acknowledgement (4.2), in a Registration Reply: Length 8,
  Sub-Type, Code, Prefix Length, Reserved, Prefix.

The Prefix Length is any 8-bit value here: a home agent must be able to read a bad one to answer
it with MOBNET_INVALID_PREFIX_LEN. A Sub-Type this module does not know leaves the extension
unrecognised, and so skipped (RFC 5944 section 1.8): it is kept as an UnknownExtension.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address
from typing import ClassVar

from mipd.core.wire.errors import DecodeError
from mipd.core.wire.tlv import UnknownExtension

MOBILE_NETWORK_TYPE = 148  # RFC 5177 section 11, Table 1; skippable (128-255)
REQUEST_LENGTH = 6  # 4.1: "Decimal 6"
ACKNOWLEDGEMENT_LENGTH = 8  # 4.2: "Decimal 8"

_REQUEST = struct.Struct("!BB4s")  # Sub-Type, Prefix Length, Prefix
_ACKNOWLEDGEMENT = struct.Struct("!BBBB4s")  # Sub-Type, Code, Prefix Length, Reserved, Prefix


class MobileNetworkSubType(IntEnum):
    """Sub-Type of the Mobile Network Extension (RFC 5177 section 11, Table 2)."""

    MOBILE_NETWORK_REQUEST = 0
    EXPLICIT_MODE_ACKNOWLEDGEMENT = 1
    IMPLICIT_MODE_ACKNOWLEDGEMENT = 2


class MobileNetworkAcknowledgementCode(IntEnum):
    """Code of a Mobile Network Acknowledgement (RFC 5177 section 4.2; section 11, Table 4)."""

    SUCCESS = 0
    MOBNET_INVALID_PREFIX_LEN = 1
    MOBNET_UNAUTHORIZED = 2  # "Mobile Router is not authorized for prefix"
    MOBNET_FWDING_SETUP_FAILED = 3


ACKNOWLEDGEMENT_SUB_TYPES = frozenset(
    (MobileNetworkSubType.EXPLICIT_MODE_ACKNOWLEDGEMENT, MobileNetworkSubType.IMPLICIT_MODE_ACKNOWLEDGEMENT)
)


@dataclass(frozen=True, slots=True)
class MobileNetworkRequest:
    """Mobile Network Request Extension (RFC 5177 section 4.1): one Mobile Network Prefix, as
    the ``prefix_length`` leftmost bits of ``prefix``. A request carries one per prefix."""

    prefix_length: int
    prefix: IPv4Address
    type: ClassVar[int] = MOBILE_NETWORK_TYPE
    sub_type: ClassVar[int] = MobileNetworkSubType.MOBILE_NETWORK_REQUEST

    def encode(self) -> bytes:
        return bytes((self.type, REQUEST_LENGTH)) + _REQUEST.pack(self.sub_type, self.prefix_length,
                                                                  self.prefix.packed)


@dataclass(frozen=True, slots=True)
class MobileNetworkAcknowledgement:
    """Mobile Network Acknowledgement Extension (RFC 5177 section 4.2), Explicit (Sub-Type 1) or
    Implicit (2) Mode. ``code`` is a :class:`MobileNetworkAcknowledgementCode`; ``reserved`` is
    kept as received ("ignored on reception")."""

    sub_type: int
    code: int
    prefix_length: int
    prefix: IPv4Address
    reserved: int = 0
    type: ClassVar[int] = MOBILE_NETWORK_TYPE

    def __post_init__(self) -> None:
        if self.sub_type not in ACKNOWLEDGEMENT_SUB_TYPES:
            raise ValueError(f"sub-type {self.sub_type} is not an acknowledgement (1 or 2)")

    @property
    def explicit(self) -> bool:
        return self.sub_type == MobileNetworkSubType.EXPLICIT_MODE_ACKNOWLEDGEMENT

    def encode(self) -> bytes:
        return bytes((self.type, ACKNOWLEDGEMENT_LENGTH)) + _ACKNOWLEDGEMENT.pack(
            self.sub_type, self.code, self.prefix_length, self.reserved, self.prefix.packed
        )


MobileNetworkExtension = MobileNetworkRequest | MobileNetworkAcknowledgement


def parse_mobile_network(data: bytes, offset: int) -> MobileNetworkExtension | UnknownExtension:
    """Data of a type-148 extension, by its Sub-Type; a wrong Length for a known one raises."""
    if not data:
        raise DecodeError("mobile network extension without a sub-type", offset)
    sub_type = data[0]
    if sub_type == MobileNetworkSubType.MOBILE_NETWORK_REQUEST:
        if len(data) != REQUEST_LENGTH:
            raise DecodeError(f"mobile network request extension length {len(data)}, expected 6", offset - 1)
        _, prefix_length, prefix = _REQUEST.unpack(data)
        return MobileNetworkRequest(prefix_length, IPv4Address(prefix))
    if sub_type in ACKNOWLEDGEMENT_SUB_TYPES:
        if len(data) != ACKNOWLEDGEMENT_LENGTH:
            raise DecodeError(
                f"mobile network acknowledgement extension length {len(data)}, expected 8", offset - 1)
        _, code, prefix_length, reserved, prefix = _ACKNOWLEDGEMENT.unpack(data)
        return MobileNetworkAcknowledgement(sub_type, code, prefix_length, IPv4Address(prefix), reserved)
    return UnknownExtension(MOBILE_NETWORK_TYPE, data)
