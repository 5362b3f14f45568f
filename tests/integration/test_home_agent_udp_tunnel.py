"""A real ``mipd run`` home agent tunnelling over UDP to a node behind a NAT (RFC 3519), in namespaces.

The "mobile node" is the test: a UDP socket in the visited namespace at 10.2.0.50 sends a
Registration Request whose care-of address is a private 172.16.5.5 (the address the node would
have behind a NAT), with the UDP Tunnel Request before MN-HA: to the home agent, the request's
source is not its care-of address, which is how a NAT looks. The home agent must answer with a UDP
Tunnel Reply covered by the MN-HA authenticator, show the outer endpoint in ``mipctl bindings``
and the journal, answer a UDP-tunnelled ICMP echo (the keepalive) through the tunnel, carry a
correspondent's ping to the home address UDP-encapsulated to the outer address and port, follow a
new mapping, and keep the UDP binding over a restart. With both backends where the kernel has
ipip (the UDP plane is userspace either way); the kernel backend's case also runs under the
real-kernel runner (tests/support/kernel_daemon_checks.py).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP

from tests.integration.test_home_agent_daemon import D, parse_reply, rrq
from tests.support import journal as journal_support
from tests.support import pcap
from tests.support.daemon import COLOCATED, FAR, HA, NODES, HomeAgentDaemon, Peer, build_topology
from tests.support.journal import Journald
from tests.support.netns import Topology, entered, topology
from tests.support.tools import tool

journald = journal_support.journald
H = next(iter(NODES))
KEY = NODES[H][1]
T = 0x02
PRIVATE = "172.16.5.5"  # the care-of address behind the NAT
BEHIND = "192.168.77.2"  # a node behind the real NAT of behind_nat
NAT_ADDRESS = "10.2.0.60"  # that NAT's address on the visited network
UDP_TUNNEL_REQUEST = bytes((144, 6, 0, 0, 0, 4, 0, 0))  # sub-type 0, no flags, IP-in-IP inside UDP
KEEPALIVE = 30


def tunnel_data(inner: bytes) -> bytes:
    return bytes((4, 4, 0, 0)) + inner


def register(peer: Peer, *, lifetime: int = 600, tunnel: bytes = UDP_TUNNEL_REQUEST,
             coa: str = PRIVATE) -> tuple[dict[str, object], bytes]:
    message = rrq(H, coa=coa, flags=D | T, lifetime=lifetime, before=tunnel)[0]
    answer = peer.ask(message)
    assert answer is not None, "no registration reply"
    return parse_reply(answer[0], KEY), answer[0]


def receive_tunnel_data(peer: Peer, wanted: object, timeout: float = 4.0) -> IP:
    """The inner packet of the first Tunnel Data message at ``peer`` for which ``wanted(inner)``."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        peer.sock.settimeout(left)
        try:
            data, (source, port) = peer.sock.recvfrom(65535)
        except TimeoutError:
            break
        if (source, port) != (HA, 434) or data[:2] != b"\x04\x04":
            continue
        inner = IP(data[4:])
        if callable(wanted) and wanted(inner):
            return inner
    raise AssertionError("no matching tunnel data message arrived")


def echo(peer: Peer, ident: int) -> IP:
    """A UDP-tunnelled ICMP Echo Request from the home address to the home agent (the keepalive), and its answer."""
    request = IP(src=H, dst=HA, ttl=64) / ICMP(type=8, id=ident, seq=1) / b"keepalive"
    peer.sock.sendto(tunnel_data(bytes(request)), (HA, 434))
    return receive_tunnel_data(peer, lambda i: i.haslayer(ICMP) and i[ICMP].type == 0 and i[ICMP].id == ident)


def correspondent_ping(topo: Topology, peer: Peer) -> None:
    """A correspondent's ping to the home address arrives UDP-encapsulated at ``peer`` (the outer
    endpoint); the node answers through the tunnel and the ping succeeds."""
    ping = subprocess.Popen([tool("ip"), "netns", "exec", topo.ns("far"), tool("ping"), "-n", "-c", "2", "-i",
                             "0.3", "-W", "2", H], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(2):
            request = receive_tunnel_data(peer, lambda i: i.haslayer(ICMP) and i[ICMP].type == 8 and i.src == FAR)
            assert request.dst == H
            response = IP(src=H, dst=FAR, ttl=64) / ICMP(type=0, id=request[ICMP].id, seq=request[ICMP].seq) / \
                bytes(request[ICMP].payload)
            peer.sock.sendto(tunnel_data(bytes(response)), (HA, 434))
        output, _ = ping.communicate(timeout=20)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait()
    assert ping.returncode == 0, output


def binding_of(daemon: HomeAgentDaemon) -> dict[str, object]:
    (entry,) = [b for b in daemon.json("bindings")["bindings"] if b["home_address"] == H]
    return dict(entry)


def kernel_tunnels(topo: Topology) -> bool:
    probe = subprocess.run([tool("ip"), "netns", "exec", topo.ns("ha"), sys.executable, "-c",
                            "from mipd.adapters.netlink import calls; print(calls.kernel_tunnels_available()[0])"],
                           capture_output=True, text=True, timeout=60, check=False)
    return probe.stdout.strip() == "True"


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    with topology() as t:
        build_topology(t)
        yield t


def _backends() -> list[str]:
    """The userspace backend always; the kernel one too where the host kernel has ipip (elsewhere
    tests/support/kernel_daemon_checks.py covers it under the real-kernel runner): never a skip."""
    return ["userspace", "kernel"] if Path("/sys/module/ipip").exists() else ["userspace"]


@pytest.fixture(scope="module", params=_backends())
def home_agent(request: pytest.FixtureRequest, journald: Journald, topo: Topology,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[HomeAgentDaemon]:
    backend = str(request.param)
    assert backend == "userspace" or kernel_tunnels(topo), "ipip is loaded but cannot be used in the namespace"
    workdir: Path = tmp_path_factory.mktemp(f"nat-{backend}")
    daemon = HomeAgentDaemon(journald, topo, workdir, f"ha-nat-{backend}")
    daemon.write_profile(tunnel=f"{{backend: {backend}}}", keepalive_interval=KEEPALIVE)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.close()


@pytest.fixture(scope="module")
def behind_nat(topo: Topology) -> str:
    """A namespace ``mn`` (192.168.77.2/24) behind the visited namespace, which source-NATs what it
    forwards out of eth0 to its own 10.2.0.60 with nftables: a real Linux NAT, ports as conntrack
    picks them. (Not the primary 10.2.0.2: that is the foreign agent the profile has an SA with.)
    Removed with the topology."""
    visited, mn = topo.ns("visited"), topo.ns("mn")
    topo.link("visited", "eth1", "192.168.77.1/24", "mn", "eth0", f"{BEHIND}/24")
    subprocess.run([tool("ip"), "-n", mn, "route", "add", "default", "via", "192.168.77.1"], check=True)
    with entered(visited):
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
    subprocess.run([tool("ip"), "-n", visited, "addr", "add", f"{NAT_ADDRESS}/24", "dev", "eth0"], check=True)
    rules = "table ip mipnat {\n  chain post {\n    type nat hook postrouting priority 100;\n" \
            f"    ip saddr 192.168.77.0/24 oifname \"eth0\" snat ip to {NAT_ADDRESS}\n  }}\n}}\n"
    subprocess.run([tool("ip"), "netns", "exec", visited, tool("nft"), "-f", "-"], input=rules, text=True,
                   check=True, timeout=30)
    return mn


@pytest.fixture
def peer(topo: Topology) -> Iterator[Peer]:
    p = Peer(topo.ns("visited"), COLOCATED)
    try:
        yield p
    finally:
        p.close()


def test_udp_tunnel_through_a_nat_end_to_end(home_agent: HomeAgentDaemon, topo: Topology, journald: Journald,
                                             peer: Peer) -> None:
    started = journald.entries(MIP_EVENT="daemon.started", MIP_INSTANCE=home_agent.instance)[-1]
    assert "UDP tunnels (RFC 3519) use the userspace data plane" in started["MESSAGE"]

    reply, raw = register(peer)
    assert reply["code"] == 0 and reply["ext_types"] == [44, 32] and reply["auth_ok"] == {32: True}
    sub_type, code, flags, keepalive = struct.unpack("!BBHH", raw[22:28])
    assert (sub_type, code, flags, keepalive) == (0, 0, 0, KEEPALIVE)

    entry = binding_of(home_agent)
    assert (entry["udp_tunnel"], entry["outer_address"], entry["outer_port"]) == (True, COLOCATED, peer.port)
    assert entry["care_of_address"] == PRIVATE and entry["foreign_agent"] is None
    added = journald.entries(MIP_EVENT="binding.added", MIP_INSTANCE=home_agent.instance, MIP_HOME_ADDRESS=H)[-1]
    assert (added["MIP_OUTER_ADDRESS"], added["MIP_OUTER_PORT"]) == (COLOCATED, str(peer.port))

    answer = echo(peer, 0x4242)  # the keepalive is answered by the kernel, back through the UDP tunnel
    assert (answer.src, answer.dst, bytes(answer[ICMP].payload)) == (HA, H, b"keepalive")

    correspondent_ping(topo, peer)
    counters = home_agent.json("stats")["counters"]["data_plane"]
    assert counters["udp_encapsulated"] >= 3 and counters["udp_decapsulated"] >= 3


def test_through_a_real_nftables_masquerade(home_agent: HomeAgentDaemon, topo: Topology, behind_nat: str) -> None:
    """The node at 192.168.77.2 registers that address as its care-of address; the NAT rewrites the
    source, the home agent sees the difference and tunnels to the NAT's mapping, and conntrack
    brings the Tunnel Data back to the node."""
    node = Peer(behind_nat, BEHIND)
    try:
        reply, _ = register(node, coa=BEHIND)
        assert reply["code"] == 0 and reply["ext_types"] == [44, 32]
        entry = binding_of(home_agent)
        assert entry["care_of_address"] == BEHIND and entry["udp_tunnel"] is True
        assert entry["outer_address"] == NAT_ADDRESS  # the NAT's address on the visited network
        assert echo(node, 0x6161).dst == H
        correspondent_ping(topo, node)
    finally:
        node.close()


def test_tshark_reads_the_live_reply_and_tunnel_data_without_a_malformed_flag(
        home_agent: HomeAgentDaemon, peer: Peer, tmp_path: Path) -> None:
    """The reply the daemon sent and a Tunnel Data message it sent, decoded by tshark (mip.ext.utrp.*)."""
    _, raw = register(peer)
    peer.sock.sendto(tunnel_data(bytes(IP(src=H, dst=HA) / ICMP(type=8, id=0x5151) / b"ka")), (HA, 434))
    peer.sock.settimeout(4.0)
    data, _ = peer.sock.recvfrom(65535)
    capture = tmp_path / "nat.pcap"
    pcap.write_pcap(capture, [pcap.udp(HA, COLOCATED, 434, peer.port, raw),
                              pcap.udp(HA, COLOCATED, 434, peer.port, data)])
    fields = subprocess.run([tool("tshark"), "-n", "-r", str(capture), "-T", "fields", "-E", "separator=,",
                             "-e", "mip.ext.utrp.code", "-e", "mip.ext.utrp.keepalive", "-e", "mip.nattt.nexthdr"],
                            capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    assert fields[0] == f"0,{KEEPALIVE}," and fields[1] == ",,4"
    malformed = subprocess.run([tool("tshark"), "-n", "-r", str(capture), "-Y",
                                "_ws.malformed || _ws.expert.severity >= error"],
                               capture_output=True, text=True, timeout=120, check=True)
    assert malformed.stdout.strip() == ""


def test_a_new_mapping_moves_the_tunnel_and_the_old_one_is_refused(home_agent: HomeAgentDaemon, topo: Topology,
                                                                   peer: Peer) -> None:
    register(peer)
    moved = Peer(topo.ns("visited"), COLOCATED)  # the NAT gave the node another port
    try:
        reply, _ = register(moved)
        assert reply["code"] == 0 and reply["ext_types"] == [44, 32]
        assert binding_of(home_agent)["outer_port"] == moved.port
        before = home_agent.json("stats")["counters"]["data_plane"]["dropped_udp_not_registered"]
        stale = IP(src=H, dst=HA) / ICMP(type=8, id=7) / b"stale"
        peer.sock.sendto(tunnel_data(bytes(stale)), (HA, 434))
        assert echo(moved, 0x77).dst == H
        after = home_agent.json("stats")["counters"]["data_plane"]["dropped_udp_not_registered"]
        assert after == before + 1
    finally:
        moved.close()


def test_malformed_and_wrong_next_header_are_counted_drops(home_agent: HomeAgentDaemon, peer: Peer) -> None:
    register(peer)
    before = home_agent.json("stats")["counters"]["data_plane"]
    peer.sock.sendto(b"\x04\x04\x00\x00garbage", (HA, 434))
    peer.sock.sendto(b"\x04\x2f\x00\x00" + bytes(IP(src=H, dst=HA) / ICMP()), (HA, 434))
    peer.sock.sendto(b"\x04", (HA, 434))
    assert echo(peer, 0x99).dst == H  # still serving after them
    after = home_agent.json("stats")["counters"]["data_plane"]
    assert after["dropped_udp_malformed"] == before["dropped_udp_malformed"] + 2
    assert after["dropped_udp_next_header"] == before["dropped_udp_next_header"] + 1
    assert home_agent.json("stats")["counters"]["requests_received"] >= 1  # never taken for registrations


def test_a_restart_keeps_the_udp_binding(home_agent: HomeAgentDaemon, peer: Peer) -> None:
    register(peer)
    home_agent.close()
    home_agent.start()
    entry = binding_of(home_agent)
    assert (entry["udp_tunnel"], entry["outer_address"], entry["outer_port"]) == (True, COLOCATED, peer.port)
    assert echo(peer, 0x55).src == HA


def test_deregistration_removes_the_udp_route(home_agent: HomeAgentDaemon, topo: Topology, peer: Peer) -> None:
    register(peer)
    routes = subprocess.run([tool("ip"), "-n", topo.ns("ha"), "route", "show", f"{H}/32"], capture_output=True,
                            text=True, timeout=30, check=True).stdout
    assert "dev mipu0" in routes
    reply, _ = register(peer, lifetime=0)
    assert reply["code"] == 0 and 44 not in reply["ext_types"]  # nothing to say about tunnelling when leaving
    routes = subprocess.run([tool("ip"), "-n", topo.ns("ha"), "route", "show", f"{H}/32"], capture_output=True,
                            text=True, timeout=30, check=True).stdout
    assert routes.strip() == ""
    assert not [b for b in home_agent.json("bindings")["bindings"] if b["home_address"] == H]
