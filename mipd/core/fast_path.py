"""The wire half of the home agent's registration fast path (RFC 5944 sections 3.3, 3.4, 3.5.2).

The common request at a home agent is a renewal: a fixed part (24 bytes, 3.3) followed by
nothing but the Mobile-Home Authentication Extension (type 32, length 20: a 4-byte SPI and a
16-byte HMAC-MD5 or keyed-MD5 authenticator, 3.5.2). :func:`parse_renewal` reads exactly that
shape with one ``struct`` unpack and gives up (None) on anything else, so that the full codec
and engine decide it; :func:`authentic` checks the authenticator over the received bytes
(3.5.1: it covers the fixed part and the extension's Type, Length and SPI); :func:`signed_reply`
builds a Registration Reply (3.4) with its Mobile-Home Authentication Extension directly.

The decisions (which binding, which Identification is acceptable, what state changes) are the
engine's: :meth:`mipd.core.home_agent.HomeAgent.receive` tries them first.
"""

from __future__ import annotations

import hmac
import struct
from typing import NamedTuple

from mipd.core.wire.auth import AUTHENTICATOR_LENGTH, Algorithm, compute
from mipd.core.wire.extensions import SPI_LENGTH, ExtensionType
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest

# Type, flags, lifetime, home address, home agent, care-of address, Identification (3.3), then
# the MN-HA extension's Type, Length and SPI (3.5.2); the authenticator follows.
_RENEWAL = struct.Struct("!BBHIIIQBBI")
_PROTECTED = _RENEWAL.size  # 30 bytes: what the authenticator covers
RENEWAL_LENGTH = _PROTECTED + AUTHENTICATOR_LENGTH  # 46
_MN_HA = ExtensionType.MOBILE_HOME_AUTHENTICATION
_MN_HA_LENGTH = SPI_LENGTH + AUTHENTICATOR_LENGTH
_REPLY = struct.Struct("!BBHIIQBBI")  # reply fixed part (3.4) and the MN-HA Type, Length, SPI


class Renewal(NamedTuple):
    """The fields of a request of the fast path's shape (addresses as integers)."""

    flags: int
    lifetime: int
    home_address: int
    home_agent: int
    care_of_address: int
    identification: int
    spi: int


def parse_renewal(payload: bytes) -> Renewal | None:
    """The request in ``payload`` if it is a Registration Request with the Mobile-Home
    Authentication Extension (16-byte authenticator) as its only extension, else None."""
    if len(payload) != RENEWAL_LENGTH:
        return None
    kind, flags, lifetime, home, agent, coa, identification, ext_type, ext_length, spi = _RENEWAL.unpack_from(payload)
    if kind != RegistrationRequest.TYPE or ext_type != _MN_HA or ext_length != _MN_HA_LENGTH:
        return None
    return Renewal(flags, lifetime, home, agent, coa, identification, spi)


def authentic(payload: bytes, key: bytes, algorithm: Algorithm) -> bool:
    """Whether the authenticator of a :func:`parse_renewal`-shaped ``payload`` is right for ``key``
    (compared in constant time, as :func:`mipd.core.wire.auth.verify` does)."""
    return hmac.compare_digest(compute(algorithm, key, payload[:_PROTECTED]), payload[_PROTECTED:])


def signed_reply(code: int, lifetime: int, home_address: int, home_agent: int, identification: int, *,
                 spi: int, key: bytes, algorithm: Algorithm) -> bytes:
    """A Registration Reply with no extension but its Mobile-Home authenticator under ``key``:
    the bytes ``append_authentication(RegistrationReply(...), 32, ...).encode()`` gives."""
    protected = _REPLY.pack(RegistrationReply.TYPE, code, lifetime, home_address, home_agent, identification,
                            _MN_HA, _MN_HA_LENGTH, spi)
    return protected + compute(algorithm, key, protected)
