"""Authenticators of the registration authentication extensions (RFC 5944 sections 3.5.1, 5.1).

RFC 3543 (3.3, 3.4) protects Registration Revocations and their Acknowledgements with the same
authenticators "as specified in [RFC 3344]", so every function here takes those messages too.

Section 3.5.1: the authenticator protects "the UDP payload (that is, the Registration Request or
Registration Reply data)", "all prior Extensions in their entirety", and "the Type, Length, and
SPI of this Extension"; not the Authenticator field itself, nor the UDP header.

Two algorithms, selected per security association by its SPI:

- ``hmac-md5``: HMAC (RFC 2104) with MD5, the default every implementation MUST support (5.1).
- ``keyed-md5``: the RFC 2002 section 3.5.1 "prefix+suffix" mode, MD5 over the secret, the
  protected bytes, and the secret again. RFC 5944 section 5.1 calls it vulnerable and keeps it
  only for talking to old implementations.

Verification compares in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from enum import StrEnum
from typing import TypeVar

from mipd.core.wire.extensions import AuthenticationExtension
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest
from mipd.core.wire.revocation import RegistrationRevocation, RevocationAcknowledgement

AUTHENTICATOR_LENGTH = 16  # 128-bit MD5 digest, both algorithms
_ZERO_AUTHENTICATOR = bytes(AUTHENTICATOR_LENGTH)

M = TypeVar("M", RegistrationRequest, RegistrationReply, RegistrationRevocation, RevocationAcknowledgement)
Authenticated = RegistrationRequest | RegistrationReply | RegistrationRevocation | RevocationAcknowledgement


class Algorithm(StrEnum):
    """Authentication algorithm of a mobility security association (profile ``algorithm:``)."""

    HMAC_MD5 = "hmac-md5"
    KEYED_MD5 = "keyed-md5"


def compute(algorithm: Algorithm, key: bytes, data: bytes) -> bytes:
    """The 16-byte authenticator of ``data`` under ``key``."""
    if algorithm == Algorithm.HMAC_MD5:
        return hmac.digest(key, data, "md5")
    if algorithm == Algorithm.KEYED_MD5:
        return hashlib.md5(key + data + key, usedforsecurity=True).digest()
    raise ValueError(f"unknown algorithm {algorithm!r}")


def protected_bytes(message: Authenticated, index: int) -> bytes:
    """What the authentication extension at ``message.extensions[index]`` covers (3.5.1)."""
    ext = message.extensions[index]
    if not isinstance(ext, AuthenticationExtension):
        raise TypeError(f"extension {index} is not an authentication extension")
    return message.encode_through(index) + ext.header()


def append_authentication(message: M, ext_type: int, spi: int, key: bytes, algorithm: Algorithm) -> M:
    """``message`` with an authentication extension of ``ext_type`` appended and computed.

    What it covers is what :func:`protected_bytes` gives for the new last extension: the message
    as it is (fixed part and prior extensions), then the new extension's type, length and SPI;
    built directly (no placeholder message), as this runs for every reply."""
    header = AuthenticationExtension(ext_type, spi, _ZERO_AUTHENTICATOR).header()
    value = compute(algorithm, key, message.encode() + header)
    return replace(message, extensions=(*message.extensions, AuthenticationExtension(ext_type, spi, value)))


def verify(message: Authenticated, index: int, key: bytes, algorithm: Algorithm) -> bool:
    """Whether the authenticator at ``message.extensions[index]`` is right for ``key``."""
    ext = message.extensions[index]
    if not isinstance(ext, AuthenticationExtension):
        raise TypeError(f"extension {index} is not an authentication extension")
    expected = compute(algorithm, key, protected_bytes(message, index))
    return hmac.compare_digest(expected, ext.authenticator)
