"""Pydantic v2 models of the three profile roles (mip.yaml(5)), discriminated on ``role``.

These models check each key's type and range. Rules between keys (addresses inside the home
network, unique SPIs, advertisement timing, what a tunnel backend can do) are in
:mod:`mipd.config.rules`, which reports them at the exact YAML path; key files and the
mobile-nodes file are read by :mod:`mipd.config.loader`. Build profiles with
:func:`mipd.config.load_profile`, which runs all three.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, TypeAdapter

from mipd.config.security import AgentAssociation, AssociationFields, HomeNodeAssociation, NodeAssociation, Strict
from mipd.config.types import (
    Cidr,
    Count,
    Durability,
    Flag,
    ForeignNatTraversal,
    HomeNatTraversal,
    InterfaceName,
    KeepaliveInterval,
    Lifetime,
    ListenAddress,
    LogLevel,
    NodeNatTraversal,
    ReverseTunnelingPolicy,
    Seconds,
    TunnelBackend,
)
from mipd.core.security import ReverseTunneling, SecurityAssociation
from mipd.core.wire.tunnel import Encapsulation

# RFC 1256 4.1 (agent advertisements are ICMP router advertisements, RFC 5944 2.1):
# AdvertisementLifetime is at most 9000 seconds.
AdvertisementLifetime = Annotated[int, Field(strict=True, ge=1, le=9000)]


class Tunnel(Strict):
    """``tunnel:``. IP-in-IP must be listed: every agent offers it (RFC 5944 4.1)."""

    backend: TunnelBackend = "auto"
    encapsulations: list[Encapsulation] = Field(default_factory=lambda: [Encapsulation.IPIP])


class Metrics(Strict):
    """``metrics:``: serve Prometheus metrics at ``http://<listen>/metrics`` (mipd(8) METRICS)."""

    listen: ListenAddress


class Common(Strict):
    """Keys of every profile. ``control_socket`` left out becomes ``/run/mip/<instance>.sock`` at load."""

    log_level: LogLevel = "info"
    state_directory: Path = Path("/var/lib/mip")
    durability: Durability = "power-loss"
    control_socket: Path | None = None
    metrics: Metrics | None = None
    _instance: str = PrivateAttr(default="")
    _source: Path | None = PrivateAttr(default=None)

    @property
    def instance(self) -> str:
        """The instance name the profile was loaded for."""
        return self._instance

    @property
    def source(self) -> Path | None:
        """The profile file it was loaded from."""
        return self._source

    def set_origin(self, source: Path, instance: str) -> None:
        """Called by the loader: where the profile came from and which instance it is for."""
        self._source, self._instance = source, instance



class HomeAgentProfile(Common):
    """A home agent (RFC 5944 3.8)."""

    role: Literal["home-agent"]
    interface: InterfaceName
    address: IPv4Address
    home_network: IPv4Network
    max_lifetime: Lifetime = 1800
    replay_window: Seconds = 7.0  # RFC 5944 5.7.1: "a default value of 7 seconds MAY be used"
    max_bindings_per_node: Count = 1
    reverse_tunneling: ReverseTunnelingPolicy = ReverseTunneling.ALLOWED
    nat_traversal: HomeNatTraversal = "allowed"  # RFC 3519
    keepalive_interval: KeepaliveInterval = 110  # RFC 3519 3.2, the UDP Tunnel Reply's interval
    advertise: Flag = True
    advertisement_interval: Seconds = 1.0
    advertisement_lifetime: AdvertisementLifetime = 3
    mobile_nodes: list[HomeNodeAssociation] = Field(default_factory=list)
    mobile_nodes_file: Path | None = None
    foreign_agents: list[AgentAssociation] = Field(default_factory=list)
    tunnel: Tunnel = Field(default_factory=Tunnel)
    # (line, association) of each node read from mobile_nodes_file, by the loader
    _file_nodes: list[tuple[int, SecurityAssociation]] = PrivateAttr(default_factory=list)

    @property
    def file_nodes(self) -> list[tuple[int, SecurityAssociation]]:
        """The nodes read from ``mobile_nodes_file``, each with its line number."""
        return self._file_nodes

    def set_file_nodes(self, nodes: list[tuple[int, SecurityAssociation]]) -> None:
        """Called by the loader with the nodes of ``mobile_nodes_file``."""
        self._file_nodes = nodes


class ForeignAgentProfile(Common):
    """A foreign agent (RFC 5944 3.7)."""

    role: Literal["foreign-agent"]
    interface: InterfaceName
    care_of_address: IPv4Address
    advertisement_interval: Seconds = 1.0
    advertisement_lifetime: AdvertisementLifetime = 3
    advertisement_address: Literal["224.0.0.1", "255.255.255.255"] = "224.0.0.1"  # RFC 5944 2.3
    max_lifetime: Lifetime = 600
    registration_required: Flag = False
    reverse_tunneling: ReverseTunnelingPolicy = ReverseTunneling.ALLOWED
    max_visitors: Count = 10000
    max_pending_per_node: Count = 5
    pending_timeout: Seconds = 7.0  # RFC 5944 3.7: pending requests time out
    nat_traversal: ForeignNatTraversal = "allowed"  # RFC 3519 4.5: offer UDP tunnelling to home agents
    home_agents: list[AgentAssociation] = Field(default_factory=list)
    mobile_nodes: list[NodeAssociation] = Field(default_factory=list)
    tunnel: Tunnel = Field(default_factory=Tunnel)


class MobileNodeProfile(Common, AssociationFields):
    """A mobile node (RFC 5944 3.6); its MN-HA association's keys are at the top level."""

    role: Literal["mobile-node"]
    interface: InterfaceName
    home_address: IPv4Address
    home_network: IPv4Network
    home_agent: IPv4Address
    lifetime: Lifetime = 1800
    care_of: Literal["auto", "foreign-agent", "colocated"] = "auto"
    colocated_address: Cidr | None = None
    reverse_tunneling: Flag = False
    nat_traversal: NodeNatTraversal = "auto"  # RFC 3519
    # RFC 5177: the LAN prefixes behind this node, a mobile router (network addresses; checked in
    # mipd.config.rules), and whether it lists them in its requests (explicit) or not (implicit).
    mobile_networks: list[Cidr] = Field(default_factory=list)
    mobile_network_mode: Literal["explicit", "implicit"] = "explicit"
    deregister_on_stop: Flag = True
    foreign_agents: list[AgentAssociation] = Field(default_factory=list)
    tunnel: Tunnel = Field(default_factory=Tunnel)

    def home_agent_association(self) -> SecurityAssociation:
        """The MN-HA association, for the mobile-node engine."""
        return SecurityAssociation(self.spi, self.secret(), self.home_address, self.algorithm, self.replay)


Profile = Annotated[HomeAgentProfile | ForeignAgentProfile | MobileNodeProfile, Field(discriminator="role")]
PROFILE_ADAPTER: TypeAdapter[HomeAgentProfile | ForeignAgentProfile | MobileNodeProfile] = TypeAdapter(Profile)
ROLES: dict[str, type[HomeAgentProfile | ForeignAgentProfile | MobileNodeProfile]] = {
    "home-agent": HomeAgentProfile,
    "foreign-agent": ForeignAgentProfile,
    "mobile-node": MobileNodeProfile,
}


def json_schema() -> dict[str, object]:
    """The JSON Schema of a profile, for editors and CI linting (``mipd schema``)."""
    schema = PROFILE_ADAPTER.json_schema()
    schema["title"] = "mipd profile"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
