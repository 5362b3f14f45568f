"""The home agent engine's settings, and a node's state as read back from storage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from mipd.core.actions import ReplayState
from mipd.core.bindings import Binding
from mipd.core.security import ReverseTunneling, SecurityAssociation
from mipd.core.wire import identification as ident
from mipd.core.wire.tunnel import Encapsulation


@dataclass(frozen=True)
class HomeAgentSettings:
    """What the engine needs of a home-agent profile (mipd.config builds it)."""

    address: IPv4Address
    home_network: IPv4Network
    mobile_nodes: Mapping[int, SecurityAssociation]  # by SPI
    foreign_agents: Mapping[IPv4Address, Mapping[int, SecurityAssociation]] = field(default_factory=dict)
    max_lifetime: int = 1800
    replay_window: float = ident.DEFAULT_REPLAY_WINDOW
    max_bindings_per_node: int = 1
    reverse_tunneling: ReverseTunneling = ReverseTunneling.ALLOWED
    encapsulations: frozenset[Encapsulation] = frozenset({Encapsulation.IPIP})
    nat_traversal: Literal["allowed", "required", "off"] = "allowed"  # RFC 3519, mip.yaml(5)
    keepalive_interval: int = 110  # seconds, in every assenting UDP Tunnel Reply (RFC 3519 3.2)
    # RFC 5177 6.2.2, the Prefix Table: by home address, the Mobile Network Prefixes that node may
    # serve as a mobile router (mip.yaml(5) mobile_networks). A node not listed is no router (148).
    mobile_networks: Mapping[IPv4Address, tuple[IPv4Network, ...]] = field(default_factory=dict)
    # The encapsulations of a binding to a foreign agent's care-of address through which the data
    # plane can route a mobile router's prefixes (nested: first IP-in-IP to the router's home
    # address, RFC 5177 7): both backends every one they carry.
    mobile_network_nesting: frozenset[Encapsulation] = frozenset(Encapsulation)


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node's durable state as read back from storage; expiry times are wall-clock."""

    home_address: IPv4Address
    bindings: tuple[Binding, ...]  # ``expires`` here is wall-clock time
    replay: ReplayState
