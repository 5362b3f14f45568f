"""The mobile router's per-packet decisions in the node's tunnel (RFC 5177 sections 7 and 10), without
I/O: co-located, UDP-tunnelled (RFC 3519) and nested through a foreign agent."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address, IPv4Network

from mipd.adapters.tunnel.colocated import ColocatedTable, Colocation
from mipd.core.wire.ipv4 import Flags, IPv4Header
from mipd.core.wire.nat import TunnelData, decode_tunnel_data
from mipd.core.wire.tunnel import Encapsulation, encapsulate

HOME = IPv4Address("10.10.0.50")
HA = IPv4Address("10.10.0.1")
CARE_OF = IPv4Address("192.168.77.2")
CN = IPv4Address("172.16.0.9")
LAN = IPv4Network("192.168.50.0/24")
LAN_HOST = IPv4Address("192.168.50.10")
OTHER_HOST = IPv4Address("192.168.51.10")


def packet(source: IPv4Address, destination: IPv4Address) -> bytes:
    return IPv4Header(0, 32, 1, Flags(0), 0, 64, 17, source, destination).encode() + b"x" * 12


def table(**fields: object) -> ColocatedTable:
    t = ColocatedTable(Counter())
    t.colocation = Colocation(HOME, HA, CARE_OF, mobile_networks=(LAN,), lan=((LAN, "lan0"),),  # type: ignore[arg-type]
                              **fields)
    return t


def test_udp_tunnel_data_for_a_served_prefix_is_delivered_and_lan_traffic_goes_back_inside_udp() -> None:
    # RFC 5177 7 with RFC 3519 3.3: behind a NAT the prefixes travel in the UDP tunnel like the home address.
    t = table(udp_tunnel=True)
    inner = packet(CN, LAN_HOST)
    assert t.deliver_udp(TunnelData(4, inner).encode(), HA, 434) == inner
    assert t.deliver_udp(TunnelData(4, packet(CN, OTHER_HOST)).encode(), HA, 434) is None
    back = t.reverse(packet(LAN_HOST, CN))
    assert back is not None and decode_tunnel_data(back).payload == packet(LAN_HOST, CN)
    assert t.counts["mobile_network_delivered"] == 1 and t.counts["mobile_network_reverse_tunnelled"] == 1


def test_co_located_lan_traffic_is_encapsulated_from_the_care_of_address_with_its_source_kept() -> None:
    # RFC 5177 6.5: the home agent accepts outer source = care-of address, inner source in a prefix.
    t = table(reverse=True)
    back = t.reverse(packet(LAN_HOST, CN))
    assert back is not None and back[12:16] == CARE_OF.packed and back[16:20] == HA.packed and back[9] == 4
    assert back[20 + 12:20 + 16] == LAN_HOST.packed
    assert t.reverse(packet(OTHER_HOST, CN)) is None  # section 10: only the mobile network's sources


def test_nested_only_prefix_traffic_passes_and_the_outer_source_is_the_home_address() -> None:
    # RFC 5177 7: through a foreign agent the inner tunnel is between the home agent and the home address.
    t = ColocatedTable(Counter())
    t.colocation = Colocation(HOME, HA, HOME, Encapsulation.IPIP, True, False, (LAN,), ((LAN, "lan0"),), nested=True)
    tunnelled = encapsulate(packet(CN, LAN_HOST), HA, HOME, Encapsulation.IPIP, 7)
    assert t.deliver(tunnelled) == packet(CN, LAN_HOST)
    assert t.deliver(encapsulate(packet(CN, HOME), HA, HOME, Encapsulation.IPIP, 8)) is None  # not nested traffic
    assert t.deliver(encapsulate(packet(CN, LAN_HOST), CN, HOME, Encapsulation.IPIP, 9)) is None  # not our HA
    back = t.reverse(packet(LAN_HOST, CN))
    assert back is not None and back[12:16] == HOME.packed and back[16:20] == HA.packed and back[9] == 4
    assert t.reverse(packet(HOME, CN)) is None  # the node's own traffic goes via the agent, not in here


def test_the_lan_rules_come_before_the_foreign_agents_default_route() -> None:
    # mipd.adapters.tunnel.colocated: 7604-7606 per LAN interface, ahead of 7610 (the agent's default route).
    rules = table(reverse=True).colocation.lan_rules()  # type: ignore[union-attr]
    assert [(r.priority, r.source, r.iif, r.blackhole) for r in rules] == [
        (7604, None, "lan0", False), (7605, LAN, "lan0", False), (7606, None, "lan0", True)]
