"""A real ``mipd run`` home agent forwarding traffic: userspace backend, in network namespaces.

Correspondents on the home link and beyond the home agent ``ping`` an away node's home address.
The node is played by the test at its co-located care-of address with raw sockets: it receives
the tunnelled echo requests (IP-in-IP, GRE, minimal encapsulation), checks them with scapy, and
answers through the reverse tunnel; the correspondents' pings must succeed. Proxy ARP and the
gratuitous ARPs are observed on the home link; deregistration restores local delivery.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import GRE, ICMP, IP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Ether

from tests.integration.test_home_agent_daemon import D, parse_reply, rrq
from tests.support import journal as journal_support
from tests.support.daemon import COLOCATED, FAR, HA, HOME_PEER, NODES, HomeAgentDaemon, Peer, build_topology
from tests.support.journal import Journald
from tests.support.netns import Topology, netns_socket, topology
from tests.support.tools import tool

journald = journal_support.journald
H = next(iter(NODES))  # the away node's home address
KEY = NODES[H][1]
T, G, M = 0x02, 0x08, 0x10
PROTOCOLS = {"ipip": 4, "gre": 47, "minimal": 55}


def minimal_encapsulate(inner: bytes, source: str, destination: str) -> bytes:
    """RFC 2004, written out here independently: the original header modified, then the
    forwarding header (protocol, S bit, checksum, original destination and source)."""
    original = IP(inner)
    forward = bytes([original.proto, 0x80, 0, 0]) + socket.inet_aton(original.dst) + socket.inet_aton(original.src)
    checksum = _checksum(forward)
    forward = forward[:2] + checksum.to_bytes(2, "big") + forward[4:]
    header = IP(src=source, dst=destination, proto=55, ttl=original.ttl, tos=original.tos, id=original.id,
                flags=original.flags)
    return bytes(header / (forward + bytes(original.payload)))


def _checksum(data: bytes) -> int:
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def minimal_decapsulate(packet: bytes) -> IP:
    outer = IP(packet)
    body = bytes(outer.payload)
    proto, s_bit = body[0], body[1] & 0x80
    original_dst = socket.inet_ntoa(body[4:8])
    original_src = socket.inet_ntoa(body[8:12]) if s_bit else outer.src
    rest = body[12:] if s_bit else body[8:]
    return IP(bytes(IP(src=original_src, dst=original_dst, proto=proto, ttl=outer.ttl, tos=outer.tos) / rest))


class AwayNode:
    """The node at its care-of address: receives tunnelled packets, answers echo requests back
    through the reverse tunnel, and records what it saw."""

    def __init__(self, ns: str, encapsulation: str) -> None:
        self.encapsulation = encapsulation
        self.receiver = netns_socket(ns, socket.SOCK_RAW, PROTOCOLS[encapsulation])
        self.sender = netns_socket(ns, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.seen: list[tuple[IP, IP]] = []  # (outer, inner)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.receiver.settimeout(0.2)
        while not self._stop.is_set():
            try:
                packet = self.receiver.recv(65535)
            except TimeoutError:
                continue
            outer = IP(packet)
            if outer.dst != COLOCATED:
                continue
            inner = self._decapsulate(packet, outer)
            self.seen.append((outer, inner))
            if inner.haslayer(ICMP) and inner[ICMP].type == 8 and inner.dst == H:
                reply = IP(src=H, dst=inner.src, ttl=64) / ICMP(type=0, id=inner[ICMP].id, seq=inner[ICMP].seq) / \
                    bytes(inner[ICMP].payload)
                self.sender.sendto(self._encapsulate(bytes(reply)), (HA, 0))

    def _decapsulate(self, packet: bytes, outer: IP) -> IP:
        if self.encapsulation == "ipip":
            return IP(bytes(outer.payload))
        if self.encapsulation == "gre":
            return IP(bytes(outer[GRE].payload))
        return minimal_decapsulate(packet)

    def _encapsulate(self, inner: bytes) -> bytes:
        if self.encapsulation == "ipip":
            return bytes(IP(src=COLOCATED, dst=HA, proto=4) / inner)
        if self.encapsulation == "gre":
            return bytes(IP(src=COLOCATED, dst=HA) / GRE(proto=0x0800) / inner)
        return minimal_encapsulate(inner, COLOCATED, HA)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.receiver.close()
        self.sender.close()


def ping(ns: str, address: str, count: int = 3) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("ip"), "netns", "exec", ns, tool("ping"), "-n", "-c", str(count), "-i", "0.2",
                           "-W", "2", address], capture_output=True, text=True, timeout=60, check=False)


def ip_json(*args: str) -> Any:
    out = subprocess.run([tool("ip"), "-j", *args], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(out.stdout or "[]")


class ArpWatch:
    """ARP frames seen on an interface of a namespace, decoded by scapy."""

    def __init__(self, ns: str, interface: str) -> None:
        self.sock = netns_socket(ns, socket.SOCK_RAW, 0x0806, (interface, 0), family=socket.AF_PACKET)
        self.sock.settimeout(0.1)

    def gratuitous(self, address: str, seconds: float = 2.5) -> list[str]:
        """Sender MACs of gratuitous ARPs for ``address`` seen within ``seconds``."""
        macs, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                frame = Ether(self.sock.recv(2048))
            except TimeoutError:
                continue
            if frame.haslayer(ARP) and frame[ARP].psrc == address == frame[ARP].pdst:
                macs.append(frame[ARP].hwsrc)
        return macs

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    with topology() as t:
        build_topology(t)
        yield t


@pytest.fixture(scope="module")
def home_agent(journald: Journald, topo: Topology, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[HomeAgentDaemon]:
    daemon = HomeAgentDaemon(journald, topo, tmp_path_factory.mktemp("dp"), "ha-dp")
    daemon.write_profile(tunnel="{backend: userspace, encapsulations: [ipip, gre, minimal]}",
                         reverse_tunneling="allowed")
    daemon.start()
    yield daemon
    daemon.close()


def register(topo: Topology, flags: int, lifetime: int = 600) -> dict[str, Any]:
    peer = Peer(topo.ns("visited"), COLOCATED)
    try:
        answer = peer.ask(rrq(H, flags=flags, lifetime=lifetime)[0])
    finally:
        peer.close()
    assert answer is not None
    return parse_reply(answer[0], KEY)


def home_link_mac(topo: Topology) -> str:
    (link,) = ip_json("-n", topo.ns("ha"), "link", "show", "home0")
    return str(link["address"])


def test_daemon_chose_the_userspace_backend(home_agent: HomeAgentDaemon, journald: Journald) -> None:
    started = journald.entries(MIP_EVENT="daemon.started", MIP_INSTANCE="ha-dp")[0]
    assert started["MIP_REASON"].startswith("backend userspace: tunnel.backend is userspace")
    assert "ip_forward=1" in started["MIP_REASON"]
    assert home_agent.json("status")["backend"] == "userspace"


@pytest.mark.parametrize(("encapsulation", "flags"), [("ipip", D | T), ("gre", D | T | G), ("minimal", D | T | M)])
def test_pings_follow_the_node_through_the_tunnel(home_agent: HomeAgentDaemon, topo: Topology,
                                                  encapsulation: str, flags: int) -> None:
    node = AwayNode(topo.ns("visited"), encapsulation)
    try:
        assert register(topo, flags)["code"] == 0
        for ns, source in (("home", HOME_PEER), ("far", FAR)):
            result = ping(topo.ns(ns), H)
            assert result.returncode == 0, f"{encapsulation} from {ns}: {result.stdout}{result.stderr}"
            requests = [(o, i) for o, i in node.seen if i.src == source and i.haslayer(ICMP)]
            assert len(requests) >= 3
            outer, inner = requests[0]
            assert (outer.src, outer.dst, inner.dst) == (HA, COLOCATED, H)  # outer source: the Home Agent field
            assert outer.tos == inner.tos  # RFC 2003 3.1: TOS copied (minimal: the header itself is kept)
    finally:
        node.close()
    counters = home_agent.json("stats")["counters"]["data_plane"]
    assert counters.get("encapsulated", 0) >= 6 and counters.get("decapsulated", 0) >= 6


def test_proxy_and_gratuitous_arp_on_the_home_link(home_agent: HomeAgentDaemon, topo: Topology) -> None:
    home, ha = topo.ns("home"), topo.ns("ha")
    # The node is at home first: the home agent learns its link-layer address.
    subprocess.run([tool("ip"), "-n", home, "addr", "add", f"{H}/32", "dev", "eth0"], check=True)
    assert register(topo, D, lifetime=0)["code"] == 0  # make sure no binding is left from other tests
    assert ping(ha, H, count=1).returncode == 0
    (node_link,) = ip_json("-n", home, "link", "show", "eth0")
    subprocess.run([tool("ip"), "-n", home, "addr", "del", f"{H}/32", "dev", "eth0"], check=True)
    watch = ArpWatch(home, "eth0")
    try:
        assert register(topo, D | T)["code"] == 0
        ours = home_link_mac(topo)
        assert watch.gratuitous(H).count(ours) >= 2  # announced, and repeated (4.6)
        proxies = ip_json("-n", ha, "neigh", "show", "proxy")
        assert any(entry.get("dst") == H and entry.get("dev") == "home0" for entry in proxies)
        subprocess.run([tool("ip"), "-n", home, "neigh", "flush", "all"], check=True)
        ping(home, H, count=1)  # resolves H: the home agent answers for it
        resolved = ip_json("-n", home, "neigh", "show", H)
        assert resolved and resolved[0].get("lladdr") == ours
        # Back home: proxying stops and the node's own address is announced.
        assert register(topo, D, lifetime=0)["code"] == 0
        assert node_link["address"] in watch.gratuitous(H)
        assert not any(entry.get("dst") == H for entry in ip_json("-n", ha, "neigh", "show", "proxy"))
        # Local delivery is back: the node on the home link answers a correspondent beyond the HA.
        subprocess.run([tool("ip"), "-n", home, "addr", "add", f"{H}/32", "dev", "eth0"], check=True)
        assert ping(topo.ns("far"), H, count=2).returncode == 0
        assert not any(route.get("dst") == H for route in ip_json("-n", ha, "route", "show", "proto", "77"))
    finally:
        watch.close()
        subprocess.run([tool("ip"), "-n", home, "addr", "del", f"{H}/32", "dev", "eth0"], check=False,
                       capture_output=True)


def test_unregistered_reverse_tunnel_is_dropped_and_counted(home_agent: HomeAgentDaemon, topo: Topology) -> None:
    before = home_agent.json("stats")["counters"]["data_plane"]
    sender = netns_socket(topo.ns("visited"), socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        spoofed = IP(src="10.1.0.99", dst=FAR) / ICMP(type=8)
        sender.sendto(bytes(IP(src=COLOCATED, dst=HA, proto=4) / bytes(spoofed)), (HA, 0))
        time.sleep(0.5)
    finally:
        sender.close()
    after = home_agent.json("stats")["counters"]["data_plane"]
    dropped = {k: v for k, v in after.items() if k.startswith("dropped")}
    assert sum(dropped.values()) > sum(v for k, v in before.items() if k.startswith("dropped"))


def test_ipv6_in_gre_shows_as_unsupported_protocol_in_mipctl_stats(home_agent: HomeAgentDaemon,
                                                                    topo: Topology, journald: Journald) -> None:
    """IPv6 in GRE from the registered care-of address is well-formed: ``mipctl stats`` counts it
    under data_plane ``dropped_unsupported_protocol``, not ``dropped_malformed``, and the journal
    says so in a ``packet.dropped`` with that reason."""
    assert register(topo, D | T | G)["code"] == 0
    before = home_agent.json("stats")["counters"]["data_plane"]
    sender = netns_socket(topo.ns("visited"), socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        ipv6 = IPv6(src="2001:db8::10", dst="2001:db8::2") / ICMPv6EchoRequest()
        sender.sendto(bytes(IP(src=COLOCATED, dst=HA) / GRE(proto=0x86DD) / ipv6), (HA, 0))
        deadline = time.monotonic() + 3
        while (after := home_agent.json("stats")["counters"]["data_plane"])["dropped_unsupported_protocol"] == \
                before["dropped_unsupported_protocol"] and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sender.close()
    assert after["dropped_unsupported_protocol"] == before["dropped_unsupported_protocol"] + 1
    assert after["dropped_malformed"] == before["dropped_malformed"]
    assert after["decapsulated"] == before["decapsulated"]
    logged = journald.entries(MIP_EVENT="packet.dropped", MIP_INSTANCE="ha-dp", MIP_REASON="unsupported-protocol",
                              timeout=5)
    assert logged[0]["PRIORITY"] == "5" and logged[0]["MIP_COUNT"] == "1", logged
    assert "unsupported-protocol" in logged[0]["MESSAGE"]


def test_expiry_removes_route_and_proxy(home_agent: HomeAgentDaemon, topo: Topology, journald: Journald) -> None:
    ha = topo.ns("ha")
    assert register(topo, D | T, lifetime=1)["lifetime"] == 1
    assert H in {r["dst"] for r in ip_json("-n", ha, "route", "show", "proto", "77")}
    journald.entries(MIP_EVENT="binding.expired", MIP_INSTANCE="ha-dp", MIP_HOME_ADDRESS=H, timeout=5)
    deadline = time.monotonic() + 3
    while H in {r["dst"] for r in ip_json("-n", ha, "route", "show", "proto", "77")}:
        assert time.monotonic() < deadline, "route still there after the binding expired"
        time.sleep(0.05)
    assert not any(entry.get("dst") == H for entry in ip_json("-n", ha, "neigh", "show", "proxy"))


def test_restart_reinstalls_and_stop_removes_the_data_plane(home_agent: HomeAgentDaemon, topo: Topology,
                                                            tmp_path: Path) -> None:
    ha = topo.ns("ha")
    assert register(topo, D | T)["code"] == 0
    home_agent.kill9()
    # The TUN device dies with the process, and its routes with it; proxy entries stay behind.
    # Add a stale one, as if a node had come home while mipd was down.
    assert not any(link["ifname"] == "mip0" for link in ip_json("-n", ha, "link", "show"))
    assert any(entry.get("dst") == H for entry in ip_json("-n", ha, "neigh", "show", "proxy"))
    subprocess.run([tool("ip"), "-n", ha, "neigh", "add", "proxy", "10.1.0.77", "dev", "home0"], check=True)
    home_agent.start()
    routes = {r["dst"] for r in ip_json("-n", ha, "route", "show", "proto", "77")}
    assert routes == {H}
    proxied = {entry.get("dst") for entry in ip_json("-n", ha, "neigh", "show", "proxy")}
    assert H in proxied and "10.1.0.77" not in proxied
    node = AwayNode(topo.ns("visited"), "ipip")
    try:
        assert ping(topo.ns("far"), H).returncode == 0
    finally:
        node.close()
    home_agent.close()
    assert not ip_json("-n", ha, "route", "show", "proto", "77")
    assert not any(link["ifname"].startswith("mip") for link in ip_json("-n", ha, "link", "show"))
    assert not ip_json("-n", ha, "neigh", "show", "proxy")
    home_agent.start()  # the module's daemon runs on for the tests after this one
