"""A foreign agent's R bit (registration required, RFC 5944 3.3) and a node that prefers co-location.

With ``care_of: colocated`` and a co-located address, a node registers directly (D set) where the
agents on the link leave R clear, and through the foreign agent (its care-of address, no D) where
one sets R; ``care_of: auto`` uses the agent either way.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

from mipd.core.wire.icmp import AdvertisementFlags
from tests.support.scenario import FA1, MN, Network, advertisement, build

COLOCATED = IPv4Interface("10.9.0.5/24")
WITH_R = AdvertisementFlags.F | AdvertisementFlags.T | AdvertisementFlags.R
WITHOUT_R = AdvertisementFlags.F | AdvertisementFlags.T


def tour(care_of: str, flags: AdvertisementFlags) -> Network:
    world, node, fas, ha = build(care_of=care_of, colocated=COLOCATED)
    net = Network(world, node, fas, ha)
    net.deliver(node.start(world.now), node)
    net.run_until(3.0, advertisers={FA1: advertisement(FA1, flags=flags)})
    return net


def binding(net: Network) -> tuple[IPv4Address, int]:
    (found,) = net.ha.bindings.of(MN)
    return found.care_of_address, found.flags


def test_colocated_node_registers_directly_where_r_is_clear() -> None:
    net = tour("colocated", WITHOUT_R)
    care_of, flags = binding(net)
    assert care_of == COLOCATED.ip and flags & 0x20  # D: decapsulated by the node
    assert net.node.location == "colocated" and net.fas[FA1].visitors.active(MN) is None


def test_colocated_node_registers_through_the_agent_that_sets_r() -> None:
    net = tour("colocated", WITH_R)
    care_of, flags = binding(net)
    assert care_of == FA1 and not flags & 0x20
    assert net.node.location == "foreign-agent" and net.fas[FA1].visitors.active(MN) is not None


def test_auto_uses_the_agent_with_or_without_r() -> None:
    for flags in (WITH_R, WITHOUT_R):
        assert binding(tour("auto", flags))[0] == FA1
