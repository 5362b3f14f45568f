"""Mobility security associations as the engines see them (RFC 5944 sections 1.6, 3.5.1, 5.1).

Profiles (mipd.config) are turned into these plain values; the engines never see YAML. An SA
is selected by its SPI ("the SPI selects the algorithm, mode and secret", 3.5.1) and, for an
association with an agent, by that agent's address too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address

from mipd.core.wire.auth import Algorithm

MIN_SPI = 256  # SPIs 0-255 are reserved (RFC 5944 section 1.6)


class ReplayProtection(StrEnum):
    """How an MN-HA association protects against replay (section 5.7)."""

    TIMESTAMP = "timestamp"
    NONCE = "nonce"


class ReverseTunneling(StrEnum):
    """An agent's reverse tunneling policy (RFC 3024)."""

    ALLOWED = "allowed"
    REQUIRED = "required"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class SecurityAssociation:
    """A shared secret with one peer, used under one SPI.

    ``peer`` is the mobile node's home address for an MN-HA or MN-FA association, and the
    agent's address for an FA-HA association.
    """

    spi: int
    key: bytes = field(repr=False)
    peer: IPv4Address
    algorithm: Algorithm = Algorithm.HMAC_MD5
    replay: ReplayProtection = ReplayProtection.TIMESTAMP
