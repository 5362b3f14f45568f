"""The mobile node's settings and the records its engine keeps (RFC 5944 3.6)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from mipd.core.discovery import Agent
from mipd.core.names import CareOfMode, MobileNetworkMode, NodeNatTraversal
from mipd.core.security import SecurityAssociation
from mipd.core.wire.registration import RegistrationRequest, RequestFlags
from mipd.core.wire.tunnel import Encapsulation

MIN_RETRANSMISSION = 1.0  # 3.6.3: "MUST NOT be less than 1 second"
MIN_REGISTRATION_GAP = 1.0  # 2.4.2: "MUST NOT register more frequently than once per second on average"
DENIED_RETRY = 30.0  # after a denial that retrying cannot fix at once
TTL_TO_FOREIGN_AGENT = 255  # RFC 3024: so the agent can tell the node is on its link (code 76)


@dataclass(frozen=True)
class MobileNodeSettings:
    """What the engine needs of a mobile-node profile."""

    home_address: IPv4Address
    home_network: IPv4Network
    home_agent: IPv4Address
    sa: SecurityAssociation  # with the home agent
    lifetime: int = 1800
    care_of: CareOfMode = CareOfMode.AUTO
    colocated_address: IPv4Interface | None = None
    reverse_tunneling: bool = False
    deregister_on_stop: bool = True
    foreign_agents: Mapping[IPv4Address, SecurityAssociation] = field(default_factory=dict)  # MN-FA by agent
    # tunnel.encapsulations, in order of preference: the first the node may ask for is requested
    # (G for gre, M for minimal; ipip is asked for by setting neither).
    encapsulations: tuple[Encapsulation, ...] = (Encapsulation.IPIP,)
    nat_traversal: NodeNatTraversal = NodeNatTraversal.AUTO  # RFC 3519: ask for UDP tunnelling
    # RFC 5177: a mobile router's LAN prefixes (empty: a host) and how it registers them.
    mobile_networks: tuple[IPv4Network, ...] = ()
    mobile_network_mode: MobileNetworkMode = MobileNetworkMode.EXPLICIT


@dataclass(frozen=True, slots=True)
class Attempt:
    """A registration request in flight."""

    request: RegistrationRequest
    destination: IPv4Address
    source: IPv4Address
    ttl: int | None
    agent: Agent | None
    sent_at: float
    interval: float

    @property
    def deregistration(self) -> bool:
        return self.request.lifetime == 0


@dataclass(frozen=True, slots=True)
class Registration:
    """The registration in force."""

    care_of_address: IPv4Address
    agent: Agent | None  # the foreign agent, or None when co-located
    lifetime: int
    expires: float  # monotonic; inf for an infinite lifetime
    renew_at: float
    identification: int
    flags: RequestFlags
    # RFC 3519: the home agent tunnels over UDP; the keepalive interval it gave (s), else None.
    udp_keepalive: int | None = None
    # RFC 5177: the Mobile Network Prefixes the home agent acknowledged with success (routed to us).
    mobile_networks: tuple[IPv4Network, ...] = ()
