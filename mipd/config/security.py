"""The one security-association shape of every profile (mip.yaml(5) SECURITY ASSOCIATIONS, RFC 5944 1.6 and 3.5.1).

``{spi, key | key_file, algorithm, replay}`` plus who the association is with: ``home_address``
for a mobile node, ``address`` for an agent. The mobile-node profile carries the same keys at its
top level for its MN-HA association, so the key handling is the :class:`KeySource` mixin.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from pydantic_core import PydanticCustomError

from mipd.config.types import Cidr, HexKey, Spi, parse_hex_key
from mipd.core.security import ReplayProtection, SecurityAssociation
from mipd.core.wire.auth import Algorithm

# Error types raised by KeySource; the loader reports them at the path ``...key``.
KEY_BOTH = "key_both"
KEY_MISSING = "key_missing"


class Strict(BaseModel):
    """Base of every profile model: unknown keys are errors (mip.yaml(5) VALIDATION)."""

    model_config = ConfigDict(extra="forbid")


class KeySource(Strict):
    """A secret given inline (``key``) or in a file (``key_file``), exactly one of the two.

    A key file is read by the loader (which knows the profile's directory and checks the file's
    mode), so :meth:`secret` is only usable on a profile that :func:`mipd.config.load_profile` built.
    """

    key: HexKey | None = None
    key_file: Path | None = None
    _file_secret: bytes | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _exactly_one_key(self) -> KeySource:
        if self.key is not None and self.key_file is not None:
            raise PydanticCustomError(KEY_BOTH, "give key or key_file, not both")
        if self.key is None and self.key_file is None:
            raise PydanticCustomError(KEY_MISSING, "required key is missing: give key or key_file")
        return self

    def secret(self) -> bytes:
        """The key bytes, from ``key`` or from the key file the loader read."""
        if self.key is not None:
            return parse_hex_key(self.key)
        if self._file_secret is None:
            raise RuntimeError(f"key file {self.key_file} has not been read (use mipd.config.load_profile)")
        return self._file_secret

    def set_file_secret(self, secret: bytes) -> None:
        """Called by the loader with the key read from ``key_file``."""
        self._file_secret = secret


class AssociationFields(KeySource):
    """The SPI, algorithm and replay protection of an association."""

    spi: Spi
    algorithm: Algorithm = Algorithm.HMAC_MD5
    replay: ReplayProtection = ReplayProtection.TIMESTAMP  # used by MN-HA associations (RFC 5944 5.7)


class NodeAssociation(AssociationFields):
    """An association with a mobile node, which it authorises for its one ``home_address``."""

    home_address: IPv4Address

    def to_core(self) -> SecurityAssociation:
        """The engine's view of this association."""
        return SecurityAssociation(self.spi, self.secret(), self.home_address, self.algorithm, self.replay)


class HomeNodeAssociation(NodeAssociation):
    """An entry of a home agent's ``mobile_nodes``: the association, and with ``mobile_networks``
    the Mobile Network Prefixes the node may serve as a mobile router (RFC 5177 6.2.2, the Prefix
    Table). Written as CIDRs; the rules (mipd.config.rules) refuse host bits, length 0 and overlaps."""

    mobile_networks: list[Cidr] = Field(default_factory=list)


class AgentAssociation(AssociationFields):
    """An association with a home or foreign agent at ``address``."""

    address: IPv4Address

    def to_core(self) -> SecurityAssociation:
        """The engine's view of this association."""
        return SecurityAssociation(self.spi, self.secret(), self.address, self.algorithm, self.replay)
