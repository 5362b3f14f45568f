"""Rules between keys of a validated profile, reported at the YAML path they concern.

Each rule yields ``(path, message)``; the loader turns them into problems with line numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address, IPv4Network

from mipd.config.models import ForeignAgentProfile, HomeAgentProfile, MobileNodeProfile, Tunnel
from mipd.config.security import AgentAssociation, NodeAssociation
from mipd.core.wire.tunnel import Encapsulation

Path = tuple[str | int, ...]
Finding = tuple[Path, str]
AnyProfile = HomeAgentProfile | ForeignAgentProfile | MobileNodeProfile


def check(profile: AnyProfile) -> list[Finding]:
    """Every rule between keys that ``profile`` breaks."""
    findings = list(_tunnel(profile.tunnel))
    findings += _spis_unique(profile)
    if isinstance(profile, HomeAgentProfile | ForeignAgentProfile):
        findings += _advertisement_timing(profile)
    if isinstance(profile, HomeAgentProfile):
        findings += _home_agent(profile)
    elif isinstance(profile, MobileNodeProfile):
        findings += _mobile_node(profile)
    return findings


def host_in(address: IPv4Address, network: IPv4Network) -> str | None:
    """Why ``address`` cannot be a host of ``network``, or None if it can."""
    if address not in network:
        return f"{address} is not inside home_network {network}"
    if network.prefixlen < 31 and address in (network.network_address, network.broadcast_address):
        return f"{address} is the network or broadcast address of {network}"
    return None


def associations(profile: AnyProfile) -> Iterator[tuple[Path, NodeAssociation | AgentAssociation]]:
    """Every association listed in the profile, with its YAML path."""
    lists: dict[str, Sequence[NodeAssociation | AgentAssociation]] = {}
    if isinstance(profile, HomeAgentProfile):
        lists = {"mobile_nodes": profile.mobile_nodes, "foreign_agents": profile.foreign_agents}
    elif isinstance(profile, ForeignAgentProfile):
        lists = {"home_agents": profile.home_agents, "mobile_nodes": profile.mobile_nodes}
    else:
        lists = {"foreign_agents": profile.foreign_agents}
    for name, items in lists.items():
        for index, sa in enumerate(items):
            yield (name, index), sa


def _tunnel(tunnel: Tunnel) -> Iterator[Finding]:
    encapsulations = tunnel.encapsulations
    if Encapsulation.IPIP not in encapsulations:
        yield ("tunnel", "encapsulations"), "must include ipip: IP-in-IP is always offered (RFC 5944 4.1)"
    for index, name in enumerate(encapsulations):
        if name in encapsulations[:index]:
            yield ("tunnel", "encapsulations", index), f"{name} is listed twice"
    if Encapsulation.MINIMAL in encapsulations and tunnel.backend == "kernel":
        yield (("tunnel", "encapsulations", encapsulations.index(Encapsulation.MINIMAL)),
               "minimal encapsulation needs the userspace backend (Linux has none); use backend auto or userspace")


def _spis_unique(profile: AnyProfile) -> Iterator[Finding]:
    # SPIs are unique within a profile (mip.yaml(5) VALIDATION), since the SPI selects the SA (RFC 5944 3.5.1).
    first: dict[int, str] = {}
    if isinstance(profile, MobileNodeProfile):
        first[profile.spi] = "spi"
    for path, sa in associations(profile):
        where = ".".join(map(str, path))
        if sa.spi in first:
            yield (*path, "spi"), f"SPI {sa.spi} is already used by {first[sa.spi]}"
        else:
            first[sa.spi] = where


def _advertisement_timing(profile: HomeAgentProfile | ForeignAgentProfile) -> Iterator[Finding]:
    # RFC 1256 4.1 (agent advertisements are router advertisements, RFC 5944 2.1): the lifetime is
    # at least the interval, by default 3 times it. mipd requires the 3 times, so that one lost
    # advertisement never makes a mobile node believe its agent is gone (RFC 5944 2.4.2).
    interval, lifetime = profile.advertisement_interval, profile.advertisement_lifetime
    if interval * 3 > lifetime:
        yield (("advertisement_interval",),
               f"{interval:g} s is more than a third of advertisement_lifetime ({lifetime} s): "
               "a single lost advertisement would make mobile nodes lose this agent")


def _home_agent(profile: HomeAgentProfile) -> Iterator[Finding]:
    network = profile.home_network
    if (why := host_in(profile.address, network)) is not None:
        yield ("address",), why
    homes: dict[IPv4Address, str] = {}
    for index, sa in enumerate(profile.mobile_nodes):
        path = ("mobile_nodes", index, "home_address")
        if (why := host_in(sa.home_address, network)) is not None:
            yield path, why
        elif sa.home_address == profile.address:
            yield path, f"{sa.home_address} is the home agent's own address"
        elif sa.home_address in homes:
            yield path, f"home address {sa.home_address} is already given to {homes[sa.home_address]}"
        homes.setdefault(sa.home_address, f"mobile_nodes.{index}")
    yield from _served_networks(profile)


def _served_networks(profile: HomeAgentProfile) -> Iterator[Finding]:
    """``mobile_nodes[i].mobile_networks`` (RFC 5177 6.2.2, the Prefix Table): network addresses
    (no host bits), length 1 to 32 (6.6: length 0 is MOBNET_INVALID_PREFIX_LEN), outside the home
    network (its addresses are the home link's) and no prefix given to two nodes."""
    home = profile.home_network
    owners: list[tuple[IPv4Network, int]] = []
    for index, sa in enumerate(profile.mobile_nodes):
        mine: list[IPv4Network] = []
        for position, cidr in enumerate(sa.mobile_networks):
            path = ("mobile_nodes", index, "mobile_networks", position)
            network = cidr.network
            if network.prefixlen == 0:
                yield path, f"{cidr} has prefix length 0; a mobile network is 1 to 32 bits long (RFC 5177 6.6)"
                continue
            if cidr.ip != network.network_address:
                yield path, f"{cidr} has host bits set; the network is {network}"
                continue
            if network.overlaps(home):
                yield path, f"{network} overlaps home_network {home}"
                continue
            if network in mine:
                yield path, f"{network} is listed twice"
                continue
            other = next((i for n, i in owners if n.overlaps(network)), None)
            if other is not None:
                yield path, f"{network} overlaps a mobile network of mobile_nodes.{other}"
                continue
            mine.append(network)
        owners += [(network, index) for network in mine]


def _mobile_node(profile: MobileNodeProfile) -> Iterator[Finding]:
    if (why := host_in(profile.home_address, profile.home_network)) is not None:
        yield ("home_address",), why
    if profile.home_agent == profile.home_address:
        yield ("home_agent",), "the home agent cannot be the mobile node's own home address"
    colocated = profile.colocated_address
    if colocated is not None and colocated.ip in profile.home_network:
        yield ("colocated_address",), f"a co-located care-of address must be outside {profile.home_network}"
    if colocated is not None and profile.care_of == "foreign-agent":
        yield ("colocated_address",), "is not used with care_of: foreign-agent"
    yield from _router_networks(profile)


def _router_networks(profile: MobileNodeProfile) -> Iterator[Finding]:
    """RFC 5177: each prefix a network address of length 1-32 (4.1; a length of 0 is invalid,
    6.6), none overlapping another, the home network or the home address; and the reverse tunnel
    a mobile router SHOULD ask for (section 5) not switched off."""
    seen: list[tuple[int, IPv4Network]] = []
    for index, entry in enumerate(profile.mobile_networks):
        path = ("mobile_networks", index)
        network = entry.network
        if entry.ip != network.network_address:
            yield path, f"{entry} has host bits set: give the network address, {network}"
            continue
        if network.prefixlen == 0:
            yield path, "a prefix of length 0 is not a mobile network (RFC 5177 6.6)"
            continue
        if network.overlaps(profile.home_network):
            yield path, f"{network} overlaps home_network {profile.home_network}"
        elif profile.home_address in network:
            yield path, f"{network} contains the home address {profile.home_address}"
        for other_index, other in seen:
            if network.overlaps(other):
                yield path, f"{network} overlaps mobile_networks.{other_index} ({other})"
                break
        seen.append((index, network))
    if profile.mobile_networks and "reverse_tunneling" in profile.model_fields_set and not profile.reverse_tunneling:
        yield (("reverse_tunneling",),
               "a mobile router (mobile_networks) always reverse-tunnels (RFC 5177 section 5: without it "
               "the LAN's packets meet ingress filtering); remove reverse_tunneling: false")
