"""Real ``mipd run`` mobile nodes behind a real Linux NAT (nftables masquerade), UDP-tunnelled to a real
home agent (RFC 3519), with a correspondent on the home link.

    cn 10.1.0.2 --- br-home --- home0 10.1.0.1 [ha] wan3 10.7.0.1 --- 10.7.0.2 [nat] 10.8.0.1 --- br-nat
    mn1 (home 10.1.0.10, leased 10.8.0.50) and mn2 (home 10.1.0.11, leased 10.8.0.51): start on br-home,
    then their links move to br-nat, where they get an address and a default route via the NAT

The NAT (tests/support/nat.py) draws a random public port for every new mapping and forgets a UDP
mapping after :data:`UDP_TIMEOUT` seconds without traffic; the home agent asks for keepalives every
:data:`KEEPALIVE` seconds (the least RFC 3519 3.6 allows), so the keepalives are what keeps each
node's mapping. The nodes run with ``nat_traversal: auto`` (the default): they ask for UDP tunnelling
in every co-located registration and the home agent, seeing the request come from the NAT's
address, grants it. Proven: the registration and the tunnel's outer endpoint at both ends, pings
and a TCP connection from the correspondent; keepalives holding a short-lived mapping through a
quiet spell; two nodes behind the one NAT at once; and a NAT reboot (conntrack flushed) mid-TCP
connection: the keepalives go unanswered, the node registers again from the new mapping, and the
connection carries on.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.support import journal as journal_support
from tests.support import waiting
from tests.support.daemon import HomeAgentDaemon
from tests.support.journal import Journald
from tests.support.nat import NAT_INSIDE, NAT_OUTSIDE, Nat, nat
from tests.support.netns import Topology, netns_socket, topology
from tests.support.roaming import ip, lines, port
from tests.support.tools import tool

journald = journal_support.journald
wait_for = partial(waiting.wait_for, timeout=20.0, every=0.2)

HA, CN = "10.1.0.1", "10.1.0.2"
KEEPALIVE = 10  # the home agent's keepalive_interval: RFC 3519 3.6's minimum
UDP_TIMEOUT = 16  # the NAT forgets a quiet UDP mapping after this many seconds
TCP_PORTS = itertools.count(5001)  # one per connection: the last one's may linger in TIME_WAIT
INSTANCE = "mnnat"


@dataclass(frozen=True)
class Node:
    name: str  # its namespace
    home: str  # home address
    leased: str  # the address the visited network's DHCP would give it
    spi: int
    key: str


NODES = (Node("mn1", "10.1.0.10", "10.8.0.50", 256, bytes(range(1, 17)).hex()),
         Node("mn2", "10.1.0.11", "10.8.0.51", 257, bytes(range(101, 117)).hex()))
FIRST, SECOND = NODES


def home_agent_profile() -> str:
    nodes = [f'{{home_address: {n.home}, spi: {n.spi}, key: "{n.key}"}}' for n in NODES]
    return (f"role: home-agent\ninterface: home0\naddress: {HA}\nhome_network: 10.1.0.0/24\n"
            + lines({"mobile_nodes": nodes, "keepalive_interval": KEEPALIVE, "tunnel": "{backend: userspace}"}))


def mobile_node_profile(node: Node) -> str:
    # A long lifetime: no re-registration refreshes the mapping during the tests, only keepalives do.
    return (f"role: mobile-node\ninterface: eth0\nhome_address: {node.home}\nhome_network: 10.1.0.0/24\n"
            f'home_agent: {HA}\nspi: {node.spi}\nkey: "{node.key}"\nlifetime: 600\nnat_traversal: auto\n')


@dataclass
class World:
    topo: Topology
    nat: Nat
    ha: HomeAgentDaemon
    nodes: dict[str, HomeAgentDaemon]


def start(journal: Journald, topo: Topology, name: str, text: str, folder: Path,
          daemons: list[HomeAgentDaemon]) -> HomeAgentDaemon:
    daemon = HomeAgentDaemon(journal, topo, folder, f"{INSTANCE}-{name}", namespace=name)
    daemons.append(daemon)
    daemon.write_profile(text + f"state_directory: {folder / 'state'}\ncontrol_socket: {daemon.socket}\n")
    daemon.start()
    return daemon


def at_home(daemon: HomeAgentDaemon) -> bool:
    return bool(daemon.json("status")["location"] == "home")


@pytest.fixture(scope="module")
def world(journald: Journald, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with topology() as topo:
        sw = topo.ns("sw")
        ip("-n", sw, "link", "add", "br-home", "type", "bridge")
        ip("-n", sw, "link", "set", "br-home", "up")
        port(topo, "cn", "eth0", f"{CN}/24", "br-home")
        port(topo, "ha", "home0", f"{HA}/24", "br-home")
        ip("-n", topo.ns("cn"), "route", "add", "default", "via", HA)
        for node in NODES:  # at home first, as a node starts
            port(topo, node.name, "eth0", f"{node.home}/24", "br-home", sw_name=f"{node.name}p")
            ip("-n", topo.ns(node.name), "route", "add", "default", "via", HA)
        with nat(topo, peer="ha", peer_interface="wan3", udp_timeout=UDP_TIMEOUT, randomize_ports=True) as box:
            daemons: list[HomeAgentDaemon] = []
            try:
                ha = start(journald, topo, "ha", home_agent_profile(), tmp_path_factory.mktemp("ha"), daemons)
                nodes = {n.name: start(journald, topo, n.name, mobile_node_profile(n),
                                       tmp_path_factory.mktemp(n.name), daemons) for n in NODES}
                for daemon in nodes.values():
                    wait_for(partial(at_home, daemon), what=f"{daemon.instance} to know it is home")
                for node in NODES:  # onto the NATed visited network; DHCP's lease and default route
                    ip("-n", sw, "link", "set", f"{node.name}p", "down")
                    ip("-n", sw, "link", "set", f"{node.name}p", "master", box.bridge)
                    ip("-n", sw, "link", "set", f"{node.name}p", "up")
                    ns = topo.ns(node.name)
                    ip("-n", ns, "addr", "add", f"{node.leased}/24", "dev", "eth0")
                    ip("-n", ns, "route", "replace", "default", "via", NAT_INSIDE, "dev", "eth0")
                yield World(topo, box, ha, nodes)
            finally:
                for daemon in reversed(daemons):
                    daemon.close()


def status(world: World, node: Node) -> dict[str, Any]:
    return world.nodes[node.name].json("status")  # type: ignore[no-any-return]


def binding(world: World, node: Node) -> dict[str, Any] | None:
    found = [b for b in world.ha.json("bindings")["bindings"] if b["home_address"] == node.home]
    return found[0] if found else None


def tunnel_counters(world: World, node: Node) -> dict[str, int]:
    """The node's co-located data plane counters (``mipctl stats``: counters.routing)."""
    return world.nodes[node.name].json("stats")["counters"]["routing"]  # type: ignore[no-any-return]


def registered(world: World, node: Node) -> dict[str, Any]:
    """Wait until ``node`` is registered UDP-tunnelled with its leased care-of address and the home agent's
    binding shows the NAT's outer endpoint; that binding."""
    wait_for(lambda: (s := status(world, node))["registered"] and s["udp_tunnel"]
             and s["care_of_address"] == node.leased, what=f"{node.name}'s UDP-tunnelled registration")
    return wait_for(lambda: (b := binding(world, node)) is not None and b["udp_tunnel"] and b,  # type: ignore[no-any-return]
                    what=f"the home agent's UDP binding of {node.name}")


def public_port(world: World, node: Node) -> int | None:
    """The public port of the NAT's mapping from ``node`` to the home agent's port 434."""
    found = [m for m in world.nat.mappings() if str(m.inside[0]) == node.leased and m.remote[1] == 434]
    return found[0].public[1] if len(found) == 1 else None


def ping(world: World, target: str, count: int = 3) -> subprocess.Popen[str]:
    return subprocess.Popen([tool("ip"), "netns", "exec", world.topo.ns("cn"), tool("ping"), "-n", "-c", str(count),
                             "-i", "0.2", "-W", "2", target], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def answered(world: World, target: str, count: int = 3) -> bool:
    child = ping(world, target, count)
    child.communicate(timeout=60)
    return child.returncode == 0


@dataclass
class Connection:
    """One TCP connection from the correspondent to a node's home address."""

    client: socket.socket  # in cn
    server: socket.socket  # accepted, in the node's namespace
    sent: int = 0
    received: int = 0

    def delivers(self, size: int = 4096, timeout: float = 10.0) -> bool:
        """Send ``size`` more bytes; True when everything sent so far has arrived within ``timeout``."""
        self.client.sendall(bytes(size))
        self.sent += size
        return self.arrived(timeout)

    def arrived(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.received < self.sent and (left := deadline - time.monotonic()) > 0:
            self.server.settimeout(left)
            try:
                data = self.server.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            self.received += len(data)
        return self.received == self.sent


@pytest.fixture
def connection(world: World) -> Iterator[Connection]:
    registered(world, FIRST)
    tcp_port = next(TCP_PORTS)
    listener = netns_socket(world.topo.ns(FIRST.name), socket.SOCK_STREAM, bind=(FIRST.home, tcp_port))
    client = netns_socket(world.topo.ns("cn"), socket.SOCK_STREAM)
    try:
        listener.listen(1)
        client.settimeout(10)
        client.connect((FIRST.home, tcp_port))
        listener.settimeout(10)
        server, _ = listener.accept()
        with server:
            yield Connection(client, server)
    finally:
        client.close()
        listener.close()


def test_registers_udp_tunnelled_through_the_nat(world: World, journald: Journald, connection: Connection) -> None:
    entry = registered(world, FIRST)
    assert status(world, FIRST)["udp_tunnel"] is True
    assert entry["care_of_address"] == FIRST.leased and entry["outer_address"] == NAT_OUTSIDE
    assert entry["outer_port"] == public_port(world, FIRST) is not None
    assert entry["outer_port"] != 434  # the NAT's own draw, not the node's port
    detected = journald.entries(MIP_EVENT="nat.detected", MIP_INSTANCE=f"{INSTANCE}-{FIRST.name}")
    assert detected, "no nat.detected from the node"
    assert (detected[-1]["MIP_REASON"], detected[-1]["MIP_KEEPALIVE_INTERVAL"]) == ("nat", str(KEEPALIVE))
    added = [e for e in journald.entries(MIP_INSTANCE=f"{INSTANCE}-ha", MIP_HOME_ADDRESS=FIRST.home)
             if e.get("MIP_EVENT", "").startswith("binding.") and "MIP_OUTER_ADDRESS" in e]
    assert added, "no binding event with MIP_OUTER_ADDRESS"
    assert (added[-1]["MIP_OUTER_ADDRESS"], added[-1]["MIP_OUTER_PORT"]) == (NAT_OUTSIDE, str(entry["outer_port"]))
    assert answered(world, FIRST.home)
    for _ in range(5):
        assert connection.delivers()
        time.sleep(0.2)
    counters = world.ha.json("stats")["counters"]["data_plane"]
    assert counters["udp_encapsulated"] > 0 and counters["udp_decapsulated"] > 0


def ipv6_off(world: World, namespace: str, device: str) -> bool:
    switch = subprocess.run([tool("ip"), "netns", "exec", world.topo.ns(namespace), tool("cat"),
                             f"/proc/sys/net/ipv6/conf/{device}/disable_ipv6"], capture_output=True, text=True,
                            timeout=30, check=True)
    return switch.stdout.strip() == "1"


def test_the_tunnel_devices_carry_no_ipv6(world: World) -> None:
    """The kernel's IPv6 router solicitations never come out of a TUN device: the home agent would count
    them as malformed tunnel traffic and log a drop for each."""
    registered(world, FIRST)
    assert ipv6_off(world, "ha", "mip0") and ipv6_off(world, "ha", "mipu0")
    assert all(ipv6_off(world, node.name, "mipm0") for node in NODES)
    time.sleep(1.5)  # past the first solicitation's delay (rtr_solicit_delay, 1 s) on the newest device
    counters = world.ha.json("stats")["counters"]["data_plane"]
    assert (counters["dropped_malformed"], counters["dropped_udp_malformed"]) == (0, 0)


def test_keepalives_hold_a_short_lived_mapping_through_a_quiet_spell(world: World, journald: Journald) -> None:
    before = registered(world, FIRST)
    mapping = public_port(world, FIRST)
    assert mapping == before["outer_port"]
    assert world.nat.sysctl("nf_conntrack_udp_timeout_stream") == str(UDP_TIMEOUT)
    replies = tunnel_counters(world, FIRST)["echo_replies_from_home_agent"]
    sent = len(journald.entries(count=0, timeout=0, MIP_EVENT="registration.sent",
                                MIP_INSTANCE=f"{INSTANCE}-{FIRST.name}"))
    quiet = 2.5 * UDP_TIMEOUT  # nothing but the keepalives, for well over the NAT's timeout
    time.sleep(quiet)
    assert answered(world, FIRST.home), "the correspondent's ping is lost: the NAT forgot the mapping"
    # The same mapping all along (a new one would have another random port), kept by keepalives alone:
    # no registration went out and the answers kept coming.
    assert public_port(world, FIRST) == mapping
    assert tunnel_counters(world, FIRST)["echo_replies_from_home_agent"] >= replies + int(quiet // KEEPALIVE) - 1
    assert len(journald.entries(count=0, timeout=0, MIP_EVENT="registration.sent",
                                MIP_INSTANCE=f"{INSTANCE}-{FIRST.name}")) == sent
    after = binding(world, FIRST)
    assert after is not None and after["outer_port"] == mapping


def test_two_nodes_behind_the_one_nat(world: World) -> None:
    first, second = registered(world, FIRST), registered(world, SECOND)
    assert first["outer_address"] == second["outer_address"] == NAT_OUTSIDE
    assert first["outer_port"] != second["outer_port"]
    assert (first["outer_port"], second["outer_port"]) == (public_port(world, FIRST), public_port(world, SECOND))
    pings = [ping(world, node.home, count=5) for node in NODES]  # at the same time
    outputs = [child.communicate(timeout=60)[0] for child in pings]
    assert [child.returncode for child in pings] == [0, 0], outputs


def test_a_nat_reboot_mid_connection(world: World, journald: Journald, connection: Connection) -> None:
    before = registered(world, FIRST)
    assert connection.delivers()
    node_instance = f"{INSTANCE}-{FIRST.name}"
    lost = len(journald.entries(count=0, timeout=0, MIP_EVENT="keepalive.lost", MIP_INSTANCE=node_instance))
    dropped = world.ha.json("stats")["counters"]["data_plane"]["dropped_udp_not_registered"]
    world.nat.flush()
    rebooted = time.monotonic()
    connection.client.sendall(bytes(4096))  # on its way while the tunnel is broken
    connection.sent += 4096
    # Within the keepalive interval and the retries (1 + 2 + 4 s): unanswered, so the node registers again.
    assert len(journald.entries(count=lost + 1, timeout=KEEPALIVE + 15, MIP_EVENT="keepalive.lost",
                                MIP_INSTANCE=node_instance)) > lost
    after = wait_for(lambda: (b := binding(world, FIRST)) is not None and b["outer_port"] != before["outer_port"]
                     and b, what="the binding's new outer port")
    assert after["udp_tunnel"] and after["outer_address"] == NAT_OUTSIDE
    assert after["outer_port"] == public_port(world, FIRST)
    events = [e for e in journald.entries(MIP_INSTANCE=f"{INSTANCE}-ha", MIP_HOME_ADDRESS=FIRST.home)
              if e.get("MIP_EVENT", "").startswith("binding.") and "MIP_OUTER_PORT" in e]
    assert events[-1]["MIP_OUTER_PORT"] == str(after["outer_port"])  # the journal follows the new mapping
    # What came from the new port before the new registration was dropped by the home agent.
    assert world.ha.json("stats")["counters"]["data_plane"]["dropped_udp_not_registered"] > dropped
    assert wait_for(lambda: answered(world, FIRST.home, count=2), what="pings after the reboot")
    # The same connection: TCP retransmits what was lost, and goes on.
    assert connection.arrived(timeout=45), f"nothing delivered {time.monotonic() - rebooted:.0f} s after the reboot"
    assert connection.delivers()



