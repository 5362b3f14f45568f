"""The foreign agent's side of RFC 3519 with a real foreign-agent daemon: a scripted home agent
(tests.support.scripted_home_agent) answers its relayed request with a UDP Tunnel Reply, then both
sides exchange MIP Tunnel Data messages on UDP port 434 and the FA's relay socket.

Namespaces: ``ha`` (the scripted home agent, 10.4.0.1), ``fa`` (a real ``mipd run`` foreign agent on
the userspace backend, 10.4.0.2 towards the home agent, care-of address 10.2.0.1 on the visited
link) and ``mn`` (the visitor: a real kernel holding 10.1.0.10/32, default route to the agent).
No NAT here: the scripted home agent assents anyway; the end-to-end test through nftables
masquerade with a real home agent reuses the same scripted parts.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from mipd.core.wire import identification, ipv4
from mipd.core.wire.auth import append_authentication
from mipd.core.wire.extensions import ExtensionType
from mipd.core.wire.icmp import AdvertisementFlags, AgentAdvertisement, checksum, decode_icmp
from mipd.core.wire.nat import UdpTunnelReply, UdpTunnelRequest
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest, RequestFlags, decode_registration
from tests.integration.test_foreign_agent_daemon import ip, ip_json
from tests.support import journal as journal_support
from tests.support.daemon import HomeAgentDaemon
from tests.support.journal import Journald
from tests.support.netns import Topology, netns_socket, topology
from tests.support.scripted_home_agent import ScriptedHomeAgent, udp_datagram

journald = journal_support.journald
HA, FA_WAN, COA, MN1, PEER = "10.4.0.1", "10.4.0.2", "10.2.0.1", "10.1.0.10", "10.1.0.2"
K1 = bytes(range(1, 17))
KFH = bytes(range(90, 106))
KEEPALIVE = 2  # seconds, the scripted home agent's K


def build(topo: Topology) -> None:
    topo.link("ha", "wan0", f"{HA}/24", "fa", "wan0", f"{FA_WAN}/24")
    topo.link("fa", "visit0", f"{COA}/24", "mn", "eth0", f"{MN1}/32")
    ha, fa, mn = (topo.ns(n) for n in ("ha", "fa", "mn"))
    ip("-n", ha, "route", "add", "10.2.0.0/24", "via", FA_WAN)
    ip("-n", fa, "route", "add", "default", "via", HA)
    ip("-n", mn, "route", "add", "10.2.0.0/24", "dev", "eth0")
    ip("-n", mn, "route", "add", "default", "via", COA)


def fa_profile(workdir: Path) -> str:
    return f"""\
role: foreign-agent
interface: visit0
care_of_address: {COA}
state_directory: {workdir / "state"}
control_socket: {workdir / "fa-nat.sock"}
advertisement_interval: 0.5
pending_timeout: 3
home_agents:
  - {{address: {HA}, spi: 500, key: "{KFH.hex()}"}}
tunnel: {{backend: userspace}}
"""


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    with topology() as t:
        build(t)
        yield t


@pytest.fixture(scope="module")
def fa(journald: Journald, topo: Topology, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HomeAgentDaemon]:
    workdir = tmp_path_factory.mktemp("fa")
    daemon = HomeAgentDaemon(journald, topo, workdir, "fa-nat", namespace="fa")
    daemon.write_profile(fa_profile(workdir))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.close()


@pytest.fixture
def home_agent(topo: Topology) -> Iterator[ScriptedHomeAgent]:
    scripted = ScriptedHomeAgent(topo.ns("ha"), HA, {MN1: (256, K1)}, (500, KFH))
    try:
        yield scripted
    finally:
        scripted.close()


@pytest.fixture
def visitor(topo: Topology) -> Iterator[socket.socket]:
    sock = netns_socket(topo.ns("mn"), socket.SOCK_DGRAM, 0, (MN1, 9999))
    try:
        yield sock
    finally:
        sock.close()


def register(topo: Topology, home_agent: ScriptedHomeAgent) -> tuple[RegistrationRequest, RegistrationReply]:
    """The visitor registers through the FA (with T); the scripted home agent assents to UDP tunnelling."""
    request = RegistrationRequest(RequestFlags.T, 300, IPv4Address(MN1), IPv4Address(HA), IPv4Address(COA),
                                  identification.timestamp(time.time(), 0x1234))
    request = append_authentication(request, ExtensionType.MOBILE_HOME_AUTHENTICATION, 256, K1, "hmac-md5")
    node = netns_socket(topo.ns("mn"), socket.SOCK_DGRAM, 0, ("0.0.0.0", 0))
    try:
        node.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
        node.sendto(request.encode(), (COA, 434))
        got = home_agent.receive(5, want="request")
        assert got is not None and got.request is not None, "the foreign agent relayed nothing"
        home_agent.answer(got.request, got.source, udp=UdpTunnelReply(0, keepalive_interval=KEEPALIVE))
        node.settimeout(5)
        payload, _ = node.recvfrom(65535)
    finally:
        node.close()
    reply = decode_registration(payload)
    assert isinstance(reply, RegistrationReply)
    return got.request, reply


def next_data(home_agent: ScriptedHomeAgent, protocol: int, timeout: float = 8.0) -> tuple[ipv4.IPv4Header, bytes]:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        got = home_agent.receive(left, want="data")
        if got is None or got.data is None:
            break
        header, body = ipv4.parse(got.data.payload)
        assert got.data.next_header == 4 and got.source == home_agent.peer  # the relay socket's port
        if header.protocol == protocol:
            return header, body
    raise AssertionError(f"no UDP-tunnelled protocol {protocol} datagram reached the home agent")


def test_udp_tunnel_through_the_relay_socket(fa: Any, topo: Topology, home_agent: ScriptedHomeAgent,
                                             visitor: socket.socket) -> None:
    relayed, reply = register(topo, home_agent)
    # RFC 3519 4.5: after MN-HA, before FA-HA, from the care-of address; IP-in-UDP asked for.
    assert [e.type for e in relayed.extensions] == [32, 144, 34]
    ext = relayed.extensions[1]
    assert isinstance(ext, UdpTunnelRequest) and int(ext.flags) == 0 and ext.encapsulation == 4
    assert home_agent.peer is not None and home_agent.peer[0] == COA
    # The node gets the reply without the FA's UDP Tunnel Reply (RFC 5944 3.7.3.2).
    assert reply.code == 0 and [e.type for e in reply.extensions] == [32]
    (entry,) = [v for v in fa.json("visitors")["visitors"] if v["home_address"] == MN1 and v["state"] == "active"]
    assert entry["udp_tunnel"] is True
    # RFC 3519 4.8: fragment before encapsulating: the reverse route's MTU leaves room for 32 bytes.
    routes = ip_json("-n", topo.ns("fa"), "route", "show", "table", "all", "dev", "mipv0")
    assert [r.get("metrics") for r in routes if r["dst"] == "default"] == [[{"mtu": 1468}]], routes

    # Forward: type-4 from the home agent's 434 to the relay socket reaches the visitor.
    home_agent.send_data(udp_datagram(PEER, MN1, 5555, 9999, b"through the UDP tunnel"), home_agent.peer)
    visitor.settimeout(5)
    data, source = visitor.recvfrom(65535)
    assert (data, source) == (b"through the UDP tunnel", (PEER, 5555))

    # Reverse: the visitor's datagram reaches the home agent as type-4 from the relay socket.
    visitor.sendto(b"and back", (PEER, 5555))
    header, body = next_data(home_agent, ipv4.Protocol.UDP)
    assert (str(header.source), str(header.destination), body[8:]) == (MN1, PEER, b"and back")

    # Keepalive: idle for K seconds, then a UDP-tunnelled Echo Request to the home agent (4.9).
    header, icmp = next_data(home_agent, ipv4.Protocol.ICMP, timeout=3 * KEEPALIVE + 3)
    assert (str(header.source), str(header.destination), icmp[0]) == (MN1, HA, 8)
    answer = bytearray(icmp)
    answer[0], answer[2:4] = 0, b"\0\0"
    answer[2:4] = struct.pack("!H", checksum(bytes(answer)))
    echo_reply = ipv4.IPv4Header(0, 20 + len(answer), 9, ipv4.Flags(0), 0, 64, ipv4.Protocol.ICMP,
                                 IPv4Address(HA), IPv4Address(MN1)).encode() + bytes(answer)
    home_agent.send_data(echo_reply, home_agent.peer)

    # Mismatches are counted drops: another source port, another next header.
    other = netns_socket(topo.ns("ha"), socket.SOCK_DGRAM, 0, (HA, 0))
    try:
        other.sendto(b"\x04\x04\0\0" + udp_datagram(PEER, MN1, 5555, 9999, b"spoofed"), home_agent.peer)
    finally:
        other.close()
    home_agent.send_data(udp_datagram(PEER, MN1, 5555, 9999, b"gre?"), home_agent.peer, next_header=47)
    time.sleep(0.5)
    plane = fa.json("stats")["counters"]["data_plane"]
    assert plane["udp_decapsulated"] >= 1 and plane["udp_reverse_tunnelled"] >= 1, plane
    assert plane["udp_keepalives_sent"] >= 1 and plane["udp_keepalives_answered"] >= 1, plane
    assert plane["dropped_udp_not_home_agent"] >= 1 and plane["dropped_udp_next_header"] >= 1, plane
    visitor.settimeout(0.5)
    with pytest.raises(TimeoutError):  # neither the answer to the keepalive nor a mismatch reached it
        visitor.recvfrom(65535)


def test_u_is_advertised_once_a_home_agent_assented(fa: Any, topo: Topology, home_agent: ScriptedHomeAgent) -> None:
    register(topo, home_agent)
    raw = netns_socket(topo.ns("mn"), socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        raw.settimeout(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            packet = raw.recv(65535)
            message = decode_icmp(packet[(packet[0] & 0x0F) * 4:])
            if isinstance(message, AgentAdvertisement):
                assert message.mobility is not None and message.mobility.flags & AdvertisementFlags.U
                assert message.mobility.flags & AdvertisementFlags.F
                return
        raise AssertionError("no agent advertisement on the visited link")
    finally:
        raw.close()
