"""A real ``mipd run`` home agent serving a mobile router (RFC 5177), userspace backend, in namespaces.

The router is played by the test: a scripted requester signs its registrations (with Mobile
Network Request extensions, or none for implicit mode), and raw sockets at its care-of address
receive what the home agent tunnels for the router's prefix and answer a correspondent's pings
through the reverse tunnel with the LAN host's address: co-located (one IP-in-IP header), and
through the foreign agent's care-of address (two: to the care-of address, inside it to the
router's home address). The routes through ``mip0`` are checked with ``ip route``; a refused
prefix gets code 2 and no route; deregistration, expiry and a restart do what they must.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP

from tests.integration import test_home_agent_udp_tunnel as udp
from tests.integration.test_home_agent_daemon import D, parse_reply, rrq
from tests.support import journal as journal_support
from tests.support.daemon import COLOCATED, FA, HA, HomeAgentDaemon, Peer, build_topology
from tests.support.journal import Journald
from tests.support.netns import Topology, netns_socket, topology
from tests.support.tools import tool

journald = journal_support.journald
T = 0x02
ROUTER, ROUTER_SPI, ROUTER_KEY = "10.1.0.40", 540, bytes(range(60, 76))
LAN, LAN_HOST = "192.168.50.0/24", "192.168.50.7"
OTHER = "172.16.9.0/24"  # never configured for the router
ROUTER_NODE = (f"  - {{home_address: {ROUTER}, spi: {ROUTER_SPI}, key: \"{ROUTER_KEY.hex()}\","
               f" mobile_networks: [{LAN}]}}\n")


def network_request(cidr: str) -> bytes:
    """A Mobile Network Request extension (RFC 5177 4.1), written out here: 148, 6, sub-type 0, length, prefix."""
    address, length = cidr.split("/")
    return bytes((148, 6, 0, int(length))) + socket.inet_aton(address)


def acknowledgements(data: bytes) -> list[tuple[int, int, str]]:
    """(sub-type, code, prefix/length) of each Mobile Network Acknowledgement in a reply (RFC 5177 4.2)."""
    found, offset = [], 20
    while offset + 2 <= len(data):
        kind, length = data[offset], data[offset + 1]
        if kind == 148 and length == 8:
            sub_type, code, prefix_length, _ = struct.unpack_from("!BBBB", data, offset + 2)
            found.append((sub_type, code, f"{socket.inet_ntoa(data[offset + 6:offset + 10])}/{prefix_length}"))
        offset += 2 + length
    return found


def register(topo: Topology, *prefixes: str, flags: int = D | T, lifetime: int = 600, via_fa: bool = False
             ) -> tuple[dict[str, Any], list[tuple[int, int, str]]]:
    """The router's registration from its co-located address, or relayed through the foreign agent."""
    coa = FA if via_fa else COLOCATED
    before = b"".join(network_request(p) for p in prefixes)
    message, _ = rrq(ROUTER, coa=coa, flags=flags, lifetime=lifetime, key=ROUTER_KEY, spi=ROUTER_SPI, before=before,
                     fa_ha=via_fa and lifetime != 0)
    peer = Peer(topo.ns("visited"), coa)
    try:
        answer = peer.ask(message)
    finally:
        peer.close()
    assert answer is not None, "no reply"
    return parse_reply(answer[0], ROUTER_KEY), acknowledgements(answer[0])


class Router:
    """The mobile router at its care-of address: takes what is tunnelled to ``care_of`` for the LAN
    host (one IP-in-IP header, or two through a foreign agent) and answers echo requests as that
    host, back through the reverse tunnel in the same way."""

    def __init__(self, ns: str, care_of: str, nested: bool, source: str = LAN_HOST) -> None:
        self.care_of, self.nested, self.source = care_of, nested, source
        self.receiver = netns_socket(ns, socket.SOCK_RAW, 4)
        self.sender = netns_socket(ns, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.seen: list[IP] = []  # the outer headers, as received
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
            if outer.dst != self.care_of:
                continue
            self.seen.append(outer)
            inner = IP(bytes(outer.payload))
            if self.nested:
                if (inner.src, inner.dst, inner.proto) != (HA, ROUTER, 4):
                    continue
                inner = IP(bytes(inner.payload))
            if inner.haslayer(ICMP) and inner[ICMP].type == 8 and inner.dst == LAN_HOST:
                reply = bytes(IP(src=self.source, dst=inner.src, ttl=64)
                              / ICMP(type=0, id=inner[ICMP].id, seq=inner[ICMP].seq) / bytes(inner[ICMP].payload))
                if self.nested:
                    reply = bytes(IP(src=ROUTER, dst=HA, proto=4) / reply)
                self.sender.sendto(bytes(IP(src=self.care_of, dst=HA, proto=4) / reply), (HA, 0))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.receiver.close()
        self.sender.close()


def ping(ns: str, address: str, count: int = 3) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("ip"), "netns", "exec", ns, tool("ping"), "-n", "-c", str(count), "-i", "0.2",
                           "-W", "2", address], capture_output=True, text=True, timeout=60, check=False)


def mipd_routes(topo: Topology) -> dict[str, str]:
    out = subprocess.run([tool("ip"), "-j", "-n", topo.ns("ha"), "route", "show", "proto", "77"],
                         capture_output=True, text=True, timeout=30, check=True)
    return {r["dst"]: r.get("dev", "") for r in json.loads(out.stdout or "[]")}


def wait_for(condition: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    with topology() as t:
        build_topology(t)
        yield t


@pytest.fixture(scope="module")
def home_agent(journald: Journald, topo: Topology, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[HomeAgentDaemon]:
    daemon = HomeAgentDaemon(journald, topo, tmp_path_factory.mktemp("mr"), "ha-mr")
    daemon.write_profile(tunnel="{backend: userspace}", extra_nodes=ROUTER_NODE)
    daemon.start()
    yield daemon
    daemon.close()


@pytest.fixture
def deregistered(home_agent: HomeAgentDaemon, topo: Topology) -> Iterator[None]:
    yield
    message, _ = rrq(ROUTER, coa=ROUTER, flags=D, lifetime=0, key=ROUTER_KEY, spi=ROUTER_SPI)  # all its bindings
    peer = Peer(topo.ns("visited"), COLOCATED)
    try:
        assert peer.ask(message) is not None
    finally:
        peer.close()


def test_an_accepted_prefix_is_routed_through_the_tunnel_to_the_colocated_router(
        home_agent: HomeAgentDaemon, topo: Topology, journald: Journald, deregistered: None) -> None:
    reply, acks = register(topo, LAN)
    assert reply["code"] == 0 and reply["auth_ok"] == {32: True}
    assert acks == [(1, 0, LAN)]  # explicit mode, success
    assert mipd_routes(topo).get(LAN) == "mip0"
    (binding,) = [b for b in home_agent.json("bindings")["bindings"] if b["home_address"] == ROUTER]
    assert binding["mobile_networks"] == [LAN]
    added = journald.entries(MIP_EVENT="binding.added", MIP_INSTANCE="ha-mr", MIP_HOME_ADDRESS=ROUTER, timeout=5)
    assert added[-1]["MIP_MOBILE_NETWORKS"] == LAN
    assert "MOBILE NETWORKS" in home_agent.mipctl("bindings").stdout
    router = Router(topo.ns("visited"), COLOCATED, nested=False)
    try:
        result = ping(topo.ns("far"), LAN_HOST)
        assert result.returncode == 0, result.stdout + result.stderr
        outer = router.seen[0]
        assert (outer.src, outer.dst, outer.proto) == (HA, COLOCATED, 4)
        assert IP(bytes(outer.payload)).dst == LAN_HOST  # one header: straight to the co-located router
    finally:
        router.close()


def test_a_prefix_through_a_foreign_agent_care_of_address_is_nested(
        home_agent: HomeAgentDaemon, topo: Topology, deregistered: None) -> None:
    reply, acks = register(topo, LAN, flags=T, via_fa=True)
    assert reply["code"] == 0 and acks == [(1, 0, LAN)]
    router = Router(topo.ns("visited"), FA, nested=True)
    try:
        result = ping(topo.ns("far"), LAN_HOST)
        assert result.returncode == 0, result.stdout + result.stderr
        outer = router.seen[0]
        middle = IP(bytes(outer.payload))
        assert (outer.src, outer.dst, middle.src, middle.dst, middle.proto) == (HA, FA, HA, ROUTER, 4)
        assert IP(bytes(middle.payload)).dst == LAN_HOST
    finally:
        router.close()


def test_a_refused_prefix_gets_code_2_and_no_route(home_agent: HomeAgentDaemon, topo: Topology,
                                                   deregistered: None) -> None:
    reply, acks = register(topo, LAN, OTHER)
    assert reply["code"] == 0 and acks == [(1, 0, LAN), (1, 2, OTHER)]
    routes = mipd_routes(topo)
    assert LAN in routes and OTHER not in routes
    reply, acks = register(topo, OTHER)  # nothing acceptable: 147, and the routes of the binding stay
    assert reply["code"] == 147 and acks == [(1, 2, OTHER)]
    assert OTHER not in mipd_routes(topo)


def test_a_reverse_tunnelled_datagram_from_outside_the_prefix_is_dropped_and_counted(
        home_agent: HomeAgentDaemon, topo: Topology, deregistered: None) -> None:
    assert register(topo)[0]["code"] == 0  # implicit mode
    before = home_agent.json("stats")["counters"]["data_plane"]
    router = Router(topo.ns("visited"), COLOCATED, nested=False, source="192.168.51.7")  # not its prefix
    try:
        assert ping(topo.ns("far"), LAN_HOST, count=2).returncode != 0
    finally:
        router.close()
    after = home_agent.json("stats")["counters"]["data_plane"]
    assert after["dropped_not_registered"] >= before["dropped_not_registered"] + 2
    assert after["decapsulated"] == before["decapsulated"]


def test_implicit_mode_and_re_registration_without_the_prefix(home_agent: HomeAgentDaemon, topo: Topology,
                                                              deregistered: None) -> None:
    reply, acks = register(topo)
    assert reply["code"] == 0 and acks == [(2, 0, LAN)]  # implicit acknowledgement
    assert mipd_routes(topo).get(LAN) == "mip0"
    reply, acks = register(topo, "192.168.50.0/25")  # explicit now: only the /25
    assert acks == [(1, 0, "192.168.50.0/25")]
    assert wait_for(lambda: LAN not in mipd_routes(topo) and "192.168.50.0/25" in mipd_routes(topo))


def test_deregistration_removes_the_prefix_routes(home_agent: HomeAgentDaemon, topo: Topology) -> None:
    assert register(topo, LAN)[0]["code"] == 0
    assert LAN in mipd_routes(topo)
    reply, acks = register(topo, LAN, lifetime=0, flags=D)  # 6.7: its extensions are ignored
    assert reply["code"] == 0 and acks == []
    assert wait_for(lambda: LAN not in mipd_routes(topo) and ROUTER not in mipd_routes(topo))


def test_expiry_removes_the_prefix_routes(home_agent: HomeAgentDaemon, topo: Topology, journald: Journald) -> None:
    assert register(topo, LAN, lifetime=1)[0]["lifetime"] == 1
    assert LAN in mipd_routes(topo)
    expired = journald.entries(MIP_EVENT="binding.expired", MIP_INSTANCE="ha-mr", MIP_HOME_ADDRESS=ROUTER,
                               timeout=5)
    assert expired[-1]["MIP_MOBILE_NETWORKS"] == LAN
    assert wait_for(lambda: LAN not in mipd_routes(topo))


def test_a_node_that_is_no_router_gets_148(home_agent: HomeAgentDaemon, topo: Topology) -> None:
    message, _ = rrq("10.1.0.10", before=network_request(LAN))
    peer = Peer(topo.ns("visited"), COLOCATED)
    try:
        answer = peer.ask(message)
    finally:
        peer.close()
    assert answer is not None
    assert parse_reply(answer[0], bytes([1]) * 16)["code"] == 148
    assert LAN not in mipd_routes(topo)


def test_a_restart_restores_the_prefix_routes(home_agent: HomeAgentDaemon, topo: Topology, tmp_path: Path,
                                              deregistered: None) -> None:
    assert register(topo, LAN)[0]["code"] == 0
    home_agent.kill9()
    assert LAN not in mipd_routes(topo)  # mip0 died with the process, and its routes with it
    home_agent.start()
    assert wait_for(lambda: mipd_routes(topo).get(LAN) == "mip0")
    router = Router(topo.ns("visited"), COLOCATED, nested=False)
    try:
        result = ping(topo.ns("far"), LAN_HOST)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        router.close()
    (binding,) = [b for b in home_agent.json("bindings")["bindings"] if b["home_address"] == ROUTER]
    assert binding["mobile_networks"] == [LAN]


def test_a_prefix_travels_through_the_udp_tunnel_of_a_router_behind_a_nat(
        home_agent: HomeAgentDaemon, topo: Topology, deregistered: None) -> None:
    """RFC 3519 with RFC 5177: the request comes from 10.2.0.50 for the care-of address 172.16.5.5
    (a NAT, to the home agent); the prefix goes into Tunnel Data to that address and port, and the
    LAN host's answers come back the same way."""
    peer = Peer(topo.ns("visited"), COLOCATED)
    try:
        message, _ = rrq(ROUTER, coa=udp.PRIVATE, flags=D | T, key=ROUTER_KEY, spi=ROUTER_SPI,
                         before=udp.UDP_TUNNEL_REQUEST + network_request(LAN))
        answer = peer.ask(message)
        assert answer is not None
        assert parse_reply(answer[0], ROUTER_KEY)["code"] == 0 and acknowledgements(answer[0]) == [(1, 0, LAN)]
        assert mipd_routes(topo).get(LAN) == "mipu0"
        ping = subprocess.Popen([tool("ip"), "netns", "exec", topo.ns("far"), tool("ping"), "-n", "-c", "2", "-i",
                                 "0.3", "-W", "2", LAN_HOST], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        try:
            for _ in range(2):
                request = udp.receive_tunnel_data(peer, lambda i: i.haslayer(ICMP) and i[ICMP].type == 8)
                assert request.dst == LAN_HOST
                response = IP(src=LAN_HOST, dst=request.src, ttl=64) / ICMP(
                    type=0, id=request[ICMP].id, seq=request[ICMP].seq) / bytes(request[ICMP].payload)
                peer.sock.sendto(udp.tunnel_data(bytes(response)), (HA, 434))
            output, _ = ping.communicate(timeout=20)
        finally:
            if ping.poll() is None:
                ping.kill()
                ping.wait()
        assert ping.returncode == 0, output
    finally:
        peer.close()


def test_the_operators_route_for_the_router_at_home_coexists_and_is_never_touched(
        home_agent: HomeAgentDaemon, topo: Topology) -> None:
    """mip.yaml(5): at home the router is served by the operator's own route via its home address,
    with a higher metric; mipd's route (metric 0) wins while the router is away, and removing it
    leaves the operator's route in place."""
    ha = topo.ns("ha")
    subprocess.run([tool("ip"), "-n", ha, "route", "add", LAN, "via", ROUTER, "metric", "100"], check=True)
    try:
        def routes() -> list[tuple[str, int, str]]:
            out = subprocess.run([tool("ip"), "-j", "-n", ha, "route", "show", LAN], capture_output=True, text=True,
                                 timeout=30, check=True)
            return sorted((r.get("dev", ""), int(r.get("metric", 0)), str(r.get("protocol", ""))) for r in
                          json.loads(out.stdout or "[]"))
        assert register(topo, LAN)[0]["code"] == 0
        assert routes() == [("home0", 100, ""), ("mip0", 0, "77")]
        assert register(topo, lifetime=0, flags=D)[0]["code"] == 0
        assert wait_for(lambda: routes() == [("home0", 100, "")])
    finally:
        subprocess.run([tool("ip"), "-n", ha, "route", "del", LAN, "via", ROUTER, "metric", "100"], check=False,
                       capture_output=True)
