"""The mobile node's routing and ARP, for real, in network namespaces (RFC 5944 4.6, 4.1; RFC 3024).

    node (mn0: 10.1.0.50/24 at home) --link0-- agent (10.2.0.1/24 foreign agent / visited router;
                                                       10.1.0.1/24 home router stand-in)
                                                  |up0 10.0.0.2
                                                 ha (10.0.0.1 home agent; 10.9.0.10 on lo: a correspondent)

MobileRouting runs in ``node`` (tests/support/mobile_routing_driver.py). The agent holds a static
neighbour entry for the home address, as a foreign agent does (4.2.2), and routes 10.1.0.50
back to the node. Frames are watched with AF_PACKET sockets in ``agent`` (every frame on link0)
and ``ha``; the test plays the home agent with a raw socket there (IP-in-IP built with scapy).
The node's ``all.rp_filter`` is 2 (loose, the systemd default) to show the co-located design holds.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, GRE, Ether
from scapy.packet import Packet, Raw
from scapy.utils import checksum as scapy_checksum

from tests.integration.test_userspace_backend import inner_of, rewrite
from tests.support.mobile_routing import Driver, capture, collect, mac_of, show
from tests.support.netns import Topology, ip, netns_socket, set_sysctl, sysctl, topology
from tests.support.tools import tool

HOME, HOME_NET, HOME_ROUTER = "10.1.0.50", "10.1.0.0/24", "10.1.0.1"
AGENT, COA, HA, CN = "10.2.0.1", "10.2.0.50", "10.0.0.1", "10.9.0.10"
ETH_P_ALL, ETH_P_IP = 0x0003, 0x0800


@pytest.fixture(scope="module")
def net() -> Iterator[Topology]:
    with topology() as topo:
        topo.link("node", "mn0", f"{HOME}/24", "agent", "link0", f"{AGENT}/24")
        topo.link("agent", "up0", "10.0.0.2/24", "ha", "up0", f"{HA}/24")
        node, agent, ha = topo.ns("node"), topo.ns("agent"), topo.ns("ha")
        ip("-n", node, "route", "add", "default", "via", HOME_ROUTER)
        set_sysctl(node, "conf/all/rp_filter", "2")
        ip("-n", agent, "addr", "add", f"{HOME_ROUTER}/24", "dev", "link0")
        ip("-n", agent, "route", "add", "default", "via", HA)
        ip("-n", agent, "neigh", "replace", HOME, "lladdr", mac_of(node, "mn0"), "dev", "link0", "nud", "permanent")
        set_sysctl(agent, "ip_forward", "1")
        ip("-n", ha, "addr", "add", f"{CN}/32", "dev", "lo")
        for prefix in (HOME_NET, "10.2.0.0/24"):
            ip("-n", ha, "route", "add", prefix, "via", "10.0.0.2")
        yield topo


@pytest.fixture
def driver(net: Topology) -> Iterator[Node]:
    drv = Node(net.ns("node"))
    try:
        drv("start", interface="mn0", home_address=HOME, home_network=HOME_NET)
        yield drv
        drv("close")
        assert drv.process.wait(timeout=10) == 0
    finally:
        drv.stop()


@pytest.fixture
def taps(net: Topology) -> Iterator[dict[str, socket.socket]]:
    """Every frame on link0 (seen from the agent), IPv4 frames at the HA, raw senders in both."""
    sockets = {"link": netns_socket(net.ns("agent"), socket.SOCK_RAW, ETH_P_ALL, ("link0", 0), socket.AF_PACKET),
               "ha": netns_socket(net.ns("ha"), socket.SOCK_RAW, ETH_P_IP, ("up0", 0), socket.AF_PACKET),
               "ha_send": netns_socket(net.ns("ha"), socket.SOCK_RAW, socket.IPPROTO_RAW)}
    yield sockets
    for sock in sockets.values():
        sock.close()


@pytest.fixture
def visiting(net: Topology) -> Iterator[None]:
    """The runtime's part of a co-located care-of address: 10.2.0.50/24 on mn0, default via 10.2.0.1."""
    node = net.ns("node")
    ip("-n", node, "addr", "add", f"{COA}/24", "dev", "mn0")
    ip("-n", node, "route", "replace", "default", "via", AGENT, "dev", "mn0")
    yield
    ip("-n", node, "addr", "del", f"{COA}/24", "dev", "mn0")
    subprocess.run([tool("ip"), "-n", node, "route", "replace", "default", "via", HOME_ROUTER], check=False,
                   capture_output=True, timeout=10)


class Node(Driver):
    """The driver, with this topology's home address and home agent filled in."""

    def apply(self, location: str, **fields: Any) -> None:
        self.plane(location, HOME, HA, **fields)


def arp_request(agent_mac: str, target: str) -> bytes:
    return bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=agent_mac) / ARP(op=1, hwsrc=agent_mac, psrc=AGENT, pdst=target))


def node_arps(frames: list[Ether], node_mac: str) -> list[Packet]:
    return [f for f in frames if ARP in f and f.src == node_mac]


def ping(ns: str, destination: str, count: int = 3) -> int:
    return subprocess.run([tool("ip"), "netns", "exec", ns, tool("ping"), "-c", str(count), "-i", "0.2", "-W", "2",
                           destination], capture_output=True, timeout=30, check=False).returncode


def node_state(ns: str) -> dict[str, Any]:
    """What MobileRouting may change in the node: flags, addresses, rules, routes, static neighbours, links, sysctls."""
    return {
        "flags": sorted(show(ns, "link", "show", "mn0")[0]["flags"]),
        "addresses": sorted(f"{i['ifname']} {a['local']}/{a['prefixlen']} {a.get('broadcast', '')}"
                            for i in show(ns, "-4", "addr", "show") for a in i["addr_info"]),
        "rules": sorted(json.dumps(r, sort_keys=True) for r in show(ns, "rule")),
        "routes": sorted(json.dumps(r, sort_keys=True) for r in show(ns, "route", "show", "table", "all")
                         if r.get("table") != "local"),
        "neighbours": sorted(f"{n['dst']} {n.get('lladdr', '')} {n.get('protocol', '')}"
                             for n in show(ns, "neigh", "show", "nud", "permanent")),
        "links": sorted(i["ifname"] for i in show(ns, "link", "show")),
        "sysctls": [sysctl(ns, f"conf/mn0/{name}") for name in ("arp_ignore", "arp_announce")],
    }


def mipd_owned(ns: str) -> dict[str, list[str]]:
    """The node's objects that carry mipd's marks: rules 7600-7699, proto 77 routes and neighbours, mip* links."""
    return {
        "rules": [f"{r['priority']}" for r in show(ns, "rule") if 7600 <= r["priority"] < 7700],
        "routes": [r["dst"] for r in show(ns, "route", "show", "table", "all") if r.get("protocol") == "77"],
        "neighbours": [n["dst"] for n in show(ns, "neigh", "show", "nud", "permanent") if n.get("protocol") == "77"],
        "links": [i["ifname"] for i in show(ns, "link", "show") if i["ifname"].startswith("mip")],
    }


def home_forms(ns: str) -> list[str]:
    return sorted(f"{i['ifname']} {a['prefixlen']}" for i in show(ns, "-4", "addr", "show") for a in i["addr_info"]
                  if a["local"] == HOME)


# --- foreign agent --------------------------------------------------------------------------------

def test_with_a_foreign_agent_the_node_sends_via_the_agent_and_never_arps(
        net: Topology, driver: Node, taps: dict[str, socket.socket]) -> None:
    node, agent = net.ns("node"), net.ns("agent")
    node_mac, agent_mac = mac_of(node, "mn0"), mac_of(agent, "link0")
    # Control, at home: the capture does see the node's ARP (its answer to a broadcast request).
    driver.apply("home")
    taps["link"].setblocking(False)
    capture(taps["link"], 0)
    taps["link"].send(arp_request(agent_mac, HOME))
    assert node_arps(collect(taps["link"], 2, lambda f: ARP in f and f.src == node_mac), node_mac), \
        "the capture saw no ARP from the node at home"

    driver.apply("foreign-agent", agent=AGENT, agent_link_address=agent_mac)
    driver.apply("foreign-agent", agent=AGENT, agent_link_address=agent_mac)  # idempotent
    assert "NOARP" in show(node, "link", "show", "mn0")[0]["flags"]
    assert home_forms(node) == ["mn0 32"]
    assert mipd_owned(node)["neighbours"] == [AGENT]
    capture(taps["link"], 0)
    for target in (HOME, AGENT):  # broadcast requests the node must not answer while away (4.6)
        taps["link"].send(arp_request(agent_mac, target))
    assert ping(node, CN) == 0, "the correspondent's replies did not reach the node via the agent"
    frames = collect(taps["link"], 1.5)
    assert node_arps(frames, node_mac) == [], "the node sent ARP while away (RFC 5944 4.6)"
    sent = [f[IP] for f in frames if IP in f and f.src == node_mac and ICMP in f and f[ICMP].type == 8]
    assert len(sent) == 3
    assert all(p.src == HOME and p.dst == CN for p in sent)
    assert all(f.dst == agent_mac for f in frames if IP in f and f.src == node_mac)


def test_from_one_agent_to_another_ends_as_a_fresh_start_there(net: Topology, driver: Node) -> None:
    """Moving between foreign agents changes only the agent's parts (mobile_routing's docstring); what
    the node then has is exactly what a node that came straight from home to the second agent has, and
    it reaches the correspondent through that agent."""
    node, agent = net.ns("node"), net.ns("agent")
    agent_mac, second = mac_of(agent, "link0"), "10.2.0.2"
    ip("-n", agent, "addr", "add", f"{second}/24", "dev", "link0")
    try:
        driver.apply("home")
        driver.apply("foreign-agent", agent=second, agent_link_address=agent_mac)
        fresh = node_state(node)
        driver.apply("home")
        driver.apply("foreign-agent", agent=AGENT, agent_link_address=agent_mac)
        driver.apply("foreign-agent", agent=second, agent_link_address=agent_mac)
        assert node_state(node) == fresh
        assert mipd_owned(node)["neighbours"] == [second]
        assert ping(node, CN) == 0, "the correspondent's replies did not reach the node via the second agent"
        driver.apply("foreign-agent", agent=second, agent_link_address=agent_mac)  # the same plane again
        assert node_state(node) == fresh
    finally:
        ip("-n", agent, "addr", "del", f"{second}/24", "dev", "link0")


@pytest.mark.usefixtures("visiting")
def test_from_colocated_to_an_agent_the_tunnel_goes_and_the_agent_is_used(net: Topology, driver: Node) -> None:
    """Leaving a co-located care-of address for an agent: mipm0 goes (after the turn, MobileRouting.settle),
    and the node ends as one that came from home to that agent."""
    node, agent_mac = net.ns("node"), mac_of(net.ns("agent"), "link0")
    driver.apply("home")
    driver.apply("foreign-agent", agent=AGENT, agent_link_address=agent_mac)
    fresh = node_state(node)
    driver.apply("home")
    driver.apply("colocated", care_of_address=COA)
    assert "mipm0" in mipd_owned(node)["links"]
    driver.apply("foreign-agent", agent=AGENT, agent_link_address=agent_mac)
    assert node_state(node) == fresh
    assert mipd_owned(node)["links"] == []
    assert ping(node, CN) == 0, "the correspondent's replies did not reach the node via the agent"


def test_unknown_location_keeps_arp_off_and_no_mipd_routes(net: Topology, driver: Node) -> None:
    node = net.ns("node")
    driver.apply("foreign-agent", agent=AGENT, agent_link_address=mac_of(net.ns("agent"), "link0"))
    driver.apply("unknown")
    assert "NOARP" in show(node, "link", "show", "mn0")[0]["flags"]
    assert home_forms(node) == ["mn0 32"]
    assert mipd_owned(node) == {"rules": [], "routes": [], "neighbours": [], "links": []}


# --- back home ------------------------------------------------------------------------------------

def test_back_home_arp_and_home_prefix_return_and_gratuitous_arps_are_sent(
        net: Topology, driver: Node, taps: dict[str, socket.socket]) -> None:
    node, node_mac = net.ns("node"), mac_of(net.ns("node"), "mn0")
    driver.apply("foreign-agent", agent=AGENT, agent_link_address=mac_of(net.ns("agent"), "link0"))
    capture(taps["link"], 0)
    driver("announce", home_address=HOME)  # refused: away, no broadcast ARP (4.6)
    assert node_arps(collect(taps["link"], 1.2), node_mac) == []
    assert driver.counters()["announce_refused_away"] == 1

    driver.apply("home")
    assert "NOARP" not in show(node, "link", "show", "mn0")[0]["flags"]
    assert home_forms(node) == ["mn0 24"]
    assert mipd_owned(node) == {"rules": [], "routes": [], "neighbours": [], "links": []}
    assert show(node, "route", "show", "default")[0]["gateway"] == HOME_ROUTER
    capture(taps["link"], 0)
    driver("announce", home_address=HOME)
    arps = [f for f in node_arps(collect(taps["link"], 2.5), node_mac) if f[ARP].psrc == HOME]
    assert len(arps) == 3, [f.summary() for f in arps]
    for frame in arps:
        assert (frame.dst, frame[ARP].hwsrc, frame[ARP].psrc, frame[ARP].pdst) == (
            "ff:ff:ff:ff:ff:ff", node_mac, HOME, HOME)
    assert driver.counters()["gratuitous_arps_sent"] == 3


# --- co-located care-of address --------------------------------------------------------------------

def tunnelled_echo(seq: int, source: str = HA, inner_destination: str = HOME, encapsulation: str = "ipip") -> bytes:
    """An echo request from the correspondent tunnelled from ``source`` to the care-of address, built
    without mipd (scapy; RFC 2004 3.1 by hand)."""
    inner = IP(src=CN, dst=inner_destination, ttl=64) / ICMP(type=8, id=0x4D4E, seq=seq) / Raw(b"mipd mobile")
    if encapsulation == "ipip":
        return bytes(IP(src=source, dst=COA, proto=4) / inner)
    if encapsulation == "gre":
        return bytes(IP(src=source, dst=COA) / GRE(proto=0x0800) / inner)
    raw = bytes(inner)
    forwarding = struct.pack("!BBH4s4s", raw[9], 0x80, 0, raw[16:20], raw[12:16])
    forwarding = forwarding[:2] + struct.pack("!H", scapy_checksum(forwarding)) + forwarding[4:]
    header = bytearray(raw[:20])
    header[9], header[12:16], header[16:20] = 55, socket.inet_aton(source), socket.inet_aton(COA)
    return rewrite(header, len(raw) + 12) + forwarding + raw[20:]


def ha_frames(sock: socket.socket, wanted: Callable[[IP], bool], seconds: float = 3.0) -> list[IP]:
    found = collect(sock, seconds, lambda f: IP in f and wanted(f[IP]))
    return [f[IP] for f in found if IP in f and wanted(f[IP])]


@pytest.mark.usefixtures("visiting")
@pytest.mark.parametrize(("encapsulation", "proto"), [("ipip", 4), ("gre", 47), ("minimal", 55)])
def test_colocated_with_reverse_tunnelling(net: Topology, driver: Node, taps: dict[str, socket.socket],
                                           encapsulation: str, proto: int) -> None:
    node, agent_mac = net.ns("node"), mac_of(net.ns("agent"), "link0")
    driver.apply("colocated", care_of_address=COA, reverse=True, encapsulation=encapsulation)
    assert home_forms(node) == ["mipm0 32"]
    assert "NOARP" not in show(node, "link", "show", "mn0")[0]["flags"]
    capture(taps["ha"], 0)
    taps["ha_send"].sendto(tunnelled_echo(proto, encapsulation=encapsulation), (COA, 0))
    back = ha_frames(taps["ha"], lambda p: p.src == COA and p.dst == HA and p.proto == proto)
    assert back, "no reverse-tunnelled echo reply reached the home agent"
    inner = inner_of(back[0], encapsulation)
    assert (inner.src, inner.dst, inner[ICMP].type, inner[ICMP].seq) == (HOME, CN, 0, proto)
    # ARP for the home address is not answered on the visited link; for the care-of address it is.
    capture(taps["link"], 0)
    for target in (HOME, COA):
        taps["link"].send(arp_request(agent_mac, target))
    arps = node_arps(collect(taps["link"], 1.5), mac_of(node, "mn0"))
    assert [f[ARP].psrc for f in arps if f[ARP].op == 2] == [COA]
    assert all(f[ARP].psrc != HOME for f in arps)
    counters = driver.counters()
    assert (counters["decapsulated"], counters["reverse_tunnelled"]) == (1, 1)


@pytest.mark.usefixtures("visiting")
def test_colocated_without_reverse_the_reply_leaves_plainly(
        net: Topology, driver: Node, taps: dict[str, socket.socket]) -> None:
    driver.apply("colocated", care_of_address=COA, reverse=True)
    driver.apply("colocated", care_of_address=COA, reverse=False)
    assert mipd_owned(net.ns("node"))["rules"] == []
    capture(taps["ha"], 0)
    taps["ha_send"].sendto(tunnelled_echo(2), (COA, 0))
    back = ha_frames(taps["ha"], lambda p: p.src == HOME and p.dst == CN and ICMP in p)
    assert back, "the node's reply did not leave via the visited router"
    assert (back[0].proto, back[0][ICMP].type, back[0][ICMP].seq) == (1, 0, 2)
    assert driver.counters()["reverse_tunnelled"] == 0


@pytest.mark.usefixtures("visiting")
def test_colocated_drops_tunnels_from_others_and_for_other_addresses(
        net: Topology, driver: Node, taps: dict[str, socket.socket]) -> None:
    driver.apply("colocated", care_of_address=COA, reverse=True)
    capture(taps["ha"], 0)
    taps["ha_send"].sendto(tunnelled_echo(3, source="10.0.0.99"), (COA, 0))  # not our home agent
    taps["ha_send"].sendto(tunnelled_echo(4, inner_destination="10.1.0.51"), (COA, 0))  # not our home address
    assert ha_frames(taps["ha"], lambda p: p.src in (COA, HOME), seconds=1.5) == []
    counters = driver.counters()
    assert (counters["dropped_not_home_agent"], counters["dropped_not_home_address"]) == (1, 1)
    assert counters["decapsulated"] == 0


# --- close --------------------------------------------------------------------------------------

@pytest.mark.usefixtures("visiting")
def test_close_restores_what_start_found(net: Topology) -> None:
    node, agent_mac = net.ns("node"), mac_of(net.ns("agent"), "link0")
    before = node_state(node)
    drv = Node(node)
    try:
        drv("start", interface="mn0", home_address=HOME, home_network=HOME_NET)
        drv.apply("foreign-agent", agent=AGENT, agent_link_address=agent_mac)
        drv.apply("colocated", care_of_address=COA, reverse=True)
        drv.apply("unknown")
        drv.apply("colocated", care_of_address=COA, reverse=True)
        drv.apply("foreign-agent", agent=AGENT, agent_link_address=agent_mac)
        assert node_state(node) != before
        drv("close")
        assert drv.process.wait(timeout=10) == 0
    finally:
        drv.stop()
    assert node_state(node) == before
