"""The mobile router's data plane, for real, in network namespaces (RFC 5177 sections 7 and 10).

    lanhost (lan0 192.168.50.10/24) --- node (lan0 192.168.50.1/24: the mobile network;
                                               mn0 10.1.0.50/24 at home) --link0-- agent (10.2.0.1/24 foreign
                                               agent / visited router; 10.1.0.1/24 home router stand-in)
                                                                                      |up0 10.0.0.2
                                                                                     ha (10.0.0.1; 10.9.0.10 on lo)

MobileRouting runs as a router (``router=True``) in ``node`` (tests/support/mobile_routing_driver.py).
The test plays the home agent in ``ha`` with raw sockets: it watches what arrives there and sends
IP-in-IP built with scapy. Through the foreign agent, the agent namespace stands for what a legacy
agent does with the home agent's double encapsulation: it delivers the inner tunnel packet (home agent
-> home address) to the node on the link (routed there with its static neighbour entry, 4.2.2).
The node's ``all.rp_filter`` is 2 (loose, the systemd default).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from tests.support.mobile_routing import Driver, capture, collect, mac_of, show
from tests.support.netns import Topology, ip, netns_socket, set_sysctl, sysctl, topology
from tests.support.tools import tool

HOME, HOME_NET, HOME_ROUTER = "10.1.0.50", "10.1.0.0/24", "10.1.0.1"
AGENT, COA, HA, CN = "10.2.0.1", "10.2.0.50", "10.0.0.1", "10.9.0.10"
LAN, LAN_ROUTER, LAN_HOST, STRANGER = "192.168.50.0/24", "192.168.50.1", "192.168.50.10", "192.168.77.5"
ETH_P_IP = 0x0800


@pytest.fixture(scope="module")
def net() -> Iterator[Topology]:
    with topology() as topo:
        topo.link("lanhost", "lan0", f"{LAN_HOST}/24", "node", "lan0", f"{LAN_ROUTER}/24")
        topo.link("node", "mn0", f"{HOME}/24", "agent", "link0", f"{AGENT}/24")
        topo.link("agent", "up0", "10.0.0.2/24", "ha", "up0", f"{HA}/24")
        lanhost, node, agent, ha = topo.ns("lanhost"), topo.ns("node"), topo.ns("agent"), topo.ns("ha")
        ip("-n", lanhost, "route", "add", "default", "via", LAN_ROUTER)
        ip("-n", lanhost, "addr", "add", f"{STRANGER}/32", "dev", "lan0")  # a source outside the mobile network
        ip("-n", node, "route", "add", "default", "via", HOME_ROUTER)
        set_sysctl(node, "conf/all/rp_filter", "2")
        ip("-n", agent, "addr", "add", f"{HOME_ROUTER}/24", "dev", "link0")
        ip("-n", agent, "route", "add", "default", "via", HA)
        ip("-n", agent, "route", "add", LAN, "via", HOME, "dev", "link0")  # the operator's route, for home
        ip("-n", agent, "neigh", "replace", HOME, "lladdr", mac_of(node, "mn0"), "dev", "link0", "nud", "permanent")
        set_sysctl(agent, "ip_forward", "1")
        ip("-n", ha, "addr", "add", f"{CN}/32", "dev", "lo")
        for prefix in (HOME_NET, "10.2.0.0/24", LAN):
            ip("-n", ha, "route", "add", prefix, "via", "10.0.0.2")
        yield topo


class Router(Driver):
    def apply(self, location: str, **fields: Any) -> None:
        self.plane(location, HOME, HA, **fields)


@pytest.fixture
def router(net: Topology) -> Iterator[Router]:
    node = net.ns("node")
    assert sysctl(node, "ip_forward") == "0"
    drv = Router(node)
    try:
        drv("start", interface="mn0", home_address=HOME, home_network=HOME_NET, router=True)
        assert sysctl(node, "ip_forward") == "1"  # a router forwards (mip.yaml(5) mobile_networks)
        yield drv
        drv("close")
        assert drv.process.wait(timeout=10) == 0
        assert sysctl(node, "ip_forward") == "0"  # put back as found
        assert owned(node) == [], "mipd's rules, routes or links were left behind"
    finally:
        drv.stop()


@pytest.fixture
def visiting(net: Topology) -> Iterator[None]:
    """The runtime's part of a co-located care-of address: 10.2.0.50/24 on mn0, default via 10.2.0.1
    (asked for before ``router``, so that it is undone after the router has put the home address back)."""
    node = net.ns("node")
    ip("-n", node, "addr", "add", f"{COA}/24", "dev", "mn0")
    ip("-n", node, "route", "replace", "default", "via", AGENT, "dev", "mn0")
    yield
    ip("-n", node, "addr", "del", f"{COA}/24", "dev", "mn0")
    subprocess.run([tool("ip"), "-n", node, "route", "replace", "default", "via", HOME_ROUTER], check=False,
                   capture_output=True, timeout=10)


@pytest.fixture
def at_ha(net: Topology) -> Iterator[tuple[socket.socket, socket.socket]]:
    """IPv4 frames arriving at the home agent, and a raw sender there."""
    watch = netns_socket(net.ns("ha"), socket.SOCK_RAW, ETH_P_IP, ("up0", 0), socket.AF_PACKET)
    send = netns_socket(net.ns("ha"), socket.SOCK_RAW, socket.IPPROTO_RAW)
    yield watch, send
    watch.close()
    send.close()


def owned(ns: str) -> list[str]:
    """The node's objects that carry mipd's marks: rules 7600-7699, proto 77 routes, mip* links."""
    return ([f"rule {r['priority']}" for r in show(ns, "rule") if 7600 <= r["priority"] < 7700]
            + [f"route {r['dst']}" for r in show(ns, "route", "show", "table", "all") if r.get("protocol") == "77"]
            + [f"link {i['ifname']}" for i in show(ns, "link", "show") if i["ifname"].startswith("mip")])


def ping(ns: str, destination: str, *, source: str | None = None, count: int = 3) -> int:
    extra = ["-I", source] if source else []
    return subprocess.run([tool("ip"), "netns", "exec", ns, tool("ping"), "-c", str(count), "-i", "0.2", "-W", "1",
                           *extra, destination], capture_output=True, timeout=30, check=False).returncode


def tunnelled(frames: list[Ether], outer_source: str) -> list[IP]:
    """The inner datagrams of IP-in-IP packets from ``outer_source`` to the home agent."""
    return [IP(bytes(f[IP].payload)) for f in frames
            if IP in f and f[IP].proto == 4 and f[IP].src == outer_source and f[IP].dst == HA]


def echo_requests(frames: list[Ether], source: str) -> list[IP]:
    return [IP(bytes(f[IP])) for f in frames if IP in f and ICMP in f and f[IP].src == source]


def lan_echo(ident: int) -> IP:
    """An Echo Request from the correspondent to the LAN host, as the home agent tunnels it."""
    return IP(src=CN, dst=LAN_HOST, ttl=64) / ICMP(type=8, id=ident, seq=1) / b"mobile network"


def test_co_located_lan_traffic_goes_through_the_tunnel_both_ways(
        net: Topology, visiting: None, router: Router, at_ha: tuple[socket.socket, socket.socket]) -> None:
    """RFC 5177 section 7 (co-located, one encapsulation, 6.5): the LAN host's packets reach the home agent
    tunnelled from the care-of address with the LAN host's own source; the home agent's tunnelled
    packets for the prefix reach the LAN host, and its answer goes back through the tunnel."""
    watch, send = at_ha
    router.apply("colocated", care_of_address=COA, reverse=True, mobile_networks=[LAN])
    capture(watch, 0)
    ping(net.ns("lanhost"), CN, count=2)  # answered or not: the home agent here only watches
    inner = tunnelled(collect(watch, 1.0), COA)
    requests = [p for p in inner if ICMP in p and p[ICMP].type == 8]
    assert len(requests) == 2, "the LAN host's pings did not arrive reverse-tunnelled"
    assert all(p.src == LAN_HOST and p.dst == CN for p in requests)  # the source is preserved

    capture(watch, 0)
    send.sendto(bytes(IP(src=HA, dst=COA, proto=4) / lan_echo(0x5177)), (COA, 0))
    replies = [p for p in tunnelled(collect(watch, 1.5), COA) if ICMP in p and p[ICMP].type == 0]
    assert replies and replies[0].src == LAN_HOST and replies[0].dst == CN and replies[0][ICMP].id == 0x5177, \
        "the tunnelled ping did not reach the LAN host (or its answer did not come back through the tunnel)"
    counts = router.counters()
    assert counts["mobile_network_delivered"] >= 1 and counts["mobile_network_reverse_tunnelled"] >= 3


def test_a_lan_source_outside_the_mobile_network_is_dropped_while_away(
        net: Topology, visiting: None, router: Router, at_ha: tuple[socket.socket, socket.socket]) -> None:
    """RFC 5177 section 10: the router "MUST drop any packets that do not have a source address belonging
    to the Mobile Network" -- neither tunnelled nor sent around the tunnel."""
    watch, _ = at_ha
    router.apply("colocated", care_of_address=COA, reverse=True, mobile_networks=[LAN])
    capture(watch, 0)
    ping(net.ns("lanhost"), CN, source=STRANGER, count=2)
    frames = collect(watch, 1.0)
    assert echo_requests(frames, STRANGER) == []
    assert [p for p in tunnelled(frames, COA) if p.src == STRANGER] == []
    # the control: from the mobile network the same ping does arrive
    capture(watch, 0)
    ping(net.ns("lanhost"), CN, count=1)
    assert [p for p in tunnelled(collect(watch, 1.0), COA) if p.src == LAN_HOST]


def test_through_a_foreign_agent_lan_traffic_is_nested_in_a_tunnel_to_the_home_address(
        net: Topology, router: Router, at_ha: tuple[socket.socket, socket.socket]) -> None:
    """RFC 5177 section 7 (foreign agent care-of address): the router encapsulates the LAN host's packets
    from its home address to the home agent and sends them via the agent like its own traffic; the
    inner tunnel (home agent -> home address) the agent delivers is decapsulated to the LAN host."""
    watch, send = at_ha
    agent_mac = mac_of(net.ns("agent"), "link0")
    router.apply("foreign-agent", agent=AGENT, agent_link_address=agent_mac, reverse=True, mobile_networks=[LAN])
    assert "mipm0" in [i["ifname"] for i in show(net.ns("node"), "link", "show")]
    capture(watch, 0)
    ping(net.ns("lanhost"), CN, count=2)
    requests = [p for p in tunnelled(collect(watch, 1.0), HOME) if ICMP in p and p[ICMP].type == 8]
    assert len(requests) == 2 and all(p.src == LAN_HOST and p.dst == CN for p in requests)

    capture(watch, 0)
    send.sendto(bytes(IP(src=HA, dst=HOME, proto=4) / lan_echo(0x4FA)), (HOME, 0))
    replies = [p for p in tunnelled(collect(watch, 1.5), HOME) if ICMP in p and p[ICMP].type == 0]
    assert replies and replies[0].src == LAN_HOST and replies[0][ICMP].id == 0x4FA, \
        "the nested tunnel's ping did not reach the LAN host (or its answer did not come back nested)"
    # the node's own traffic still works through the agent
    assert ping(net.ns("node"), CN, count=1) == 0
    # no served prefix (between registrations): the nested tunnel goes
    router.apply("foreign-agent", agent=AGENT, agent_link_address=agent_mac, reverse=True)
    assert "mipm0" not in [i["ifname"] for i in show(net.ns("node"), "link", "show")]


def test_at_home_the_lan_is_routed_plainly(net: Topology, router: Router,
                                           at_ha: tuple[socket.socket, socket.socket]) -> None:
    """At home no mipd rule or route serves the LAN: the operator's route via the home address does (here
    on the home router), and the LAN host's packets leave untunnelled with their own source (the home
    agent's kernel, which cannot decapsulate, answers them)."""
    watch, _ = at_ha
    router.apply("foreign-agent", agent=AGENT, agent_link_address=mac_of(net.ns("agent"), "link0"), reverse=True,
                 mobile_networks=[LAN])
    router.apply("home")
    assert owned(net.ns("node")) == []
    capture(watch, 0)
    assert ping(net.ns("lanhost"), CN, count=2) == 0, "the LAN host did not reach the correspondent from home"
    frames = collect(watch, 0.5)
    assert len(echo_requests(frames, LAN_HOST)) == 2 and tunnelled(frames, HOME) == []
