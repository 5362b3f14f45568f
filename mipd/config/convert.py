"""Profiles to the settings the sans-I/O engines take (config -> core is the allowed direction)."""

from __future__ import annotations

from ipaddress import IPv4Address

from mipd.config.models import ForeignAgentProfile, HomeAgentProfile, MobileNodeProfile
from mipd.config.security import AgentAssociation, NodeAssociation
from mipd.core.foreign_agent import ForeignAgentSettings
from mipd.core.home_agent import HomeAgentSettings
from mipd.core.mobile_types import MobileNodeSettings
from mipd.core.names import CareOfMode, MobileNetworkMode, NodeNatTraversal
from mipd.core.security import SecurityAssociation


class ConversionError(ValueError):
    """The profile holds two nodes with one SPI or one home address (load_profile reports these first)."""


def home_agent_settings(profile: HomeAgentProfile) -> HomeAgentSettings:
    """The home-agent engine's settings: ``mobile_nodes`` and ``mobile_nodes_file`` merged by SPI.

    ``foreign_agents`` are grouped by agent address, then SPI (RFC 5944 3.8.2.1 c: the FA-HA
    association is found from the sending agent's address and the extension's SPI).
    """
    nodes: dict[int, SecurityAssociation] = {}
    homes: set[IPv4Address] = set()
    for sa in [n.to_core() for n in profile.mobile_nodes] + [sa for _, sa in profile.file_nodes]:
        if sa.spi in nodes or sa.peer in homes:
            raise ConversionError(f"two mobile nodes share SPI {sa.spi} or home address {sa.peer}")
        nodes[sa.spi] = sa
        homes.add(sa.peer)
    # RFC 5177 6.2.2, the Prefix Table. mobile_nodes_file lines carry no prefixes (mip.yaml(5)).
    prefixes = {n.home_address: tuple(dict.fromkeys(c.network for c in n.mobile_networks))
                for n in profile.mobile_nodes if n.mobile_networks}
    agents: dict[IPv4Address, dict[int, SecurityAssociation]] = {}
    for agent in profile.foreign_agents:
        agents.setdefault(agent.address, {})[agent.spi] = agent.to_core()
    return HomeAgentSettings(
        address=profile.address,
        home_network=profile.home_network,
        mobile_nodes=nodes,
        foreign_agents=agents,
        max_lifetime=profile.max_lifetime,
        replay_window=profile.replay_window,
        max_bindings_per_node=profile.max_bindings_per_node,
        reverse_tunneling=profile.reverse_tunneling,
        nat_traversal=profile.nat_traversal,
        keepalive_interval=profile.keepalive_interval,
        encapsulations=frozenset(profile.tunnel.encapsulations),
        mobile_networks=prefixes,
    )


def _by_peer(associations: list[AgentAssociation] | list[NodeAssociation]
             ) -> dict[IPv4Address, dict[int, SecurityAssociation]]:
    grouped: dict[IPv4Address, dict[int, SecurityAssociation]] = {}
    for association in associations:
        sa = association.to_core()
        grouped.setdefault(sa.peer, {})[sa.spi] = sa
    return grouped


def foreign_agent_settings(profile: ForeignAgentProfile, addresses: frozenset[IPv4Address] = frozenset()
                           ) -> ForeignAgentSettings:
    """The foreign-agent engine's settings. ``home_agents`` are found by the home agent's
    address (RFC 5944 3.5.4: on a reply, from its Home Agent field), ``mobile_nodes`` by home
    address, each then by SPI. ``addresses`` are the agent's other addresses (code 194)."""
    return ForeignAgentSettings(
        care_of_address=profile.care_of_address,
        addresses=frozenset({profile.care_of_address}) | addresses,
        home_agents=_by_peer(profile.home_agents),
        mobile_nodes=_by_peer(profile.mobile_nodes),
        max_lifetime=profile.max_lifetime,
        reverse_tunneling=profile.reverse_tunneling,
        encapsulations=frozenset(profile.tunnel.encapsulations),
        max_visitors=profile.max_visitors,
        max_pending_per_node=profile.max_pending_per_node,
        pending_timeout=profile.pending_timeout,
        nat_traversal=profile.nat_traversal == "allowed",
    )


def mobile_node_settings(profile: MobileNodeProfile) -> MobileNodeSettings:
    """The mobile-node engine's settings: its MN-HA association (the profile's top-level spi,
    key, algorithm, replay) and its MN-FA associations by foreign agent address."""
    return MobileNodeSettings(
        home_address=profile.home_address,
        home_network=profile.home_network,
        home_agent=profile.home_agent,
        sa=profile.home_agent_association(),
        lifetime=profile.lifetime,
        care_of=CareOfMode(profile.care_of),
        colocated_address=profile.colocated_address,
        # RFC 5177 section 5: a mobile router SHOULD set T in every request; mipd always does
        # (mipd.config.rules refuses an explicit reverse_tunneling: false with mobile_networks).
        reverse_tunneling=profile.reverse_tunneling or bool(profile.mobile_networks),
        deregister_on_stop=profile.deregister_on_stop,
        foreign_agents={a.address: a.to_core() for a in profile.foreign_agents},
        encapsulations=tuple(profile.tunnel.encapsulations),
        nat_traversal=NodeNatTraversal(profile.nat_traversal),
        mobile_networks=tuple(entry.network for entry in profile.mobile_networks),
        mobile_network_mode=MobileNetworkMode(profile.mobile_network_mode),
    )
