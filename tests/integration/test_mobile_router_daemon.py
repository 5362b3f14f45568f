"""A real ``mipd run`` mobile router (RFC 5177) with a LAN behind it, co-located on a visited link,
registering with a scripted home agent that acknowledges its prefix (the home agent's side of RFC 5177
is built elsewhere; here the test is the home agent, so that it sees exactly what arrives).

    lanhost (lan0 192.168.50.10/24) --- mn (lan0 192.168.50.1/24; eth0 10.2.0.50/24, co-located,
                                           default via 10.2.0.1) --- rt --- ha (up0 10.0.0.1; 10.1.0.1
                                           the home agent and 10.9.0.10 a correspondent, on lo)

Proven: the request carries the prefix (explicit mode) and T; the accepted registration shows the
served prefix in ``mipctl status`` (JSON and text) and in the journal (``MIP_MOBILE_NETWORKS``); the
LAN host's pings reach the home agent reverse-tunnelled from the care-of address with the LAN host's
source; a packet the home agent tunnels for the prefix reaches the LAN host (its answer comes back in the
tunnel); the deregistration carries no prefix; and stopping leaves no mipd rule and ``ip_forward`` as it was.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from functools import partial
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP

from mipd.core.wire.auth import append_authentication
from mipd.core.wire.extensions import ExtensionType
from mipd.core.wire.mobile_network import MobileNetworkAcknowledgement, MobileNetworkRequest
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest, RequestFlags
from tests.support import journal as journal_support
from tests.support import waiting
from tests.support.daemon import HomeAgentDaemon
from tests.support.journal import Journald
from tests.support.mobile_routing import collect, show
from tests.support.netns import Topology, netns_socket, set_sysctl, sysctl, topology
from tests.support.roaming import ip
from tests.support.scripted_home_agent import ScriptedHomeAgent
from tests.support.tools import tool

journald = journal_support.journald
wait_for = partial(waiting.wait_for, timeout=15.0, every=0.2)

HA, CN, HOME, COA = "10.1.0.1", "10.9.0.10", "10.1.0.50", "10.2.0.50"
LAN, LAN_ROUTER, LAN_HOST = "192.168.50.0/24", "192.168.50.1", "192.168.50.10"
KEY = bytes(range(1, 17))
INSTANCE = "mrouter"
ETH_P_IP = 0x0800


def profile() -> str:
    return (f"role: mobile-node\ninterface: eth0\nhome_address: {HOME}\nhome_network: 10.1.0.0/24\n"
            f'home_agent: {HA}\nspi: 256\nkey: "{KEY.hex()}"\nlifetime: 600\ncare_of: colocated\n'
            f"nat_traversal: off\nmobile_networks:\n  - {LAN}\n")


def prefixes(request: RegistrationRequest) -> list[str]:
    return [f"{e.prefix}/{e.prefix_length}" for e in request.extensions if isinstance(e, MobileNetworkRequest)]


def acknowledge(ha: ScriptedHomeAgent, request: RegistrationRequest, to: tuple[str, int]) -> None:
    """Accept ``request``, each asked-for prefix acknowledged with success (RFC 5177 4.2), before MN-HA."""
    acks = tuple(MobileNetworkAcknowledgement(1, 0, IPv4Network(p).prefixlen, IPv4Network(p).network_address)
                 for p in prefixes(request))
    reply = RegistrationReply(0, request.lifetime, request.home_address, IPv4Address(HA), request.identification,
                              acks)
    reply = append_authentication(reply, ExtensionType.MOBILE_HOME_AUTHENTICATION, 256, KEY, "hmac-md5")
    ha.sock.sendto(reply.encode(), to)


@pytest.fixture(scope="module")
def world(journald: Journald, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with topology() as topo:
        topo.link("lanhost", "lan0", f"{LAN_HOST}/24", "mn", "lan0", f"{LAN_ROUTER}/24")
        topo.link("mn", "eth0", f"{COA}/24", "rt", "eth0", "10.2.0.1/24")
        topo.link("rt", "up0", "10.0.0.2/24", "ha", "up0", "10.0.0.1/24")
        lanhost, mn, rt, ha_ns = (topo.ns(n) for n in ("lanhost", "mn", "rt", "ha"))
        ip("-n", lanhost, "route", "add", "default", "via", LAN_ROUTER)
        ip("-n", mn, "route", "add", "default", "via", "10.2.0.1")
        set_sysctl(rt, "ip_forward", "1")
        ip("-n", rt, "route", "add", "default", "via", "10.0.0.1")
        for address in (HA, CN):
            ip("-n", ha_ns, "addr", "add", f"{address}/32", "dev", "lo")
        ip("-n", ha_ns, "route", "add", "default", "via", "10.0.0.2")
        ha = ScriptedHomeAgent(ha_ns, HA, {HOME: (256, KEY)})
        folder: Path = tmp_path_factory.mktemp("mn")
        daemon = HomeAgentDaemon(journald, topo, folder, f"{INSTANCE}-mn", namespace="mn")
        try:
            daemon.write_profile(profile() + f"state_directory: {folder / 'state'}\ncontrol_socket: {daemon.socket}\n")
            daemon.start()
            yield {"topo": topo, "ha": ha, "mn": daemon}
        finally:
            daemon.close()
            ha.close()


@pytest.fixture(scope="module")
def registered(world: dict[str, Any]) -> RegistrationRequest:
    ha: ScriptedHomeAgent = world["ha"]
    got = ha.receive(10, want="request")
    assert got is not None and got.request is not None, "no registration request reached the home agent"
    acknowledge(ha, got.request, got.source)
    return got.request


def test_the_request_names_the_prefix_and_sets_t(registered: RegistrationRequest) -> None:
    # RFC 5177 4.1 (explicit mode, before the MN-HA authenticator) and 5 (T).
    assert prefixes(registered) == [LAN]
    assert registered.flags & RequestFlags.T and registered.flags & RequestFlags.D
    types = [e.type for e in registered.extensions]
    assert types.index(148) < types.index(ExtensionType.MOBILE_HOME_AUTHENTICATION)


def test_status_and_journal_show_the_served_prefix(world: dict[str, Any], registered: RegistrationRequest,
                                                   journald: Journald) -> None:
    daemon: HomeAgentDaemon = world["mn"]
    state = wait_for(lambda: (s := daemon.json("status"))["registered"] and s, what="the registration")
    assert state["mobile_networks"] == [LAN] and state["care_of_address"] == COA
    text = daemon.mipctl("status").stdout
    assert any(line.split() == ["mobile_networks:", LAN] for line in text.splitlines()), text
    (entry,) = journald.entries(MIP_EVENT="registration.accepted", MIP_INSTANCE=f"{INSTANCE}-mn")
    assert entry["MIP_MOBILE_NETWORKS"] == LAN


def test_lan_traffic_goes_through_the_tunnel_both_ways(world: dict[str, Any], registered: RegistrationRequest) -> None:
    topo: Topology = world["topo"]
    wait_for(lambda: world["mn"].json("status")["mobile_networks"] == [LAN], what="the served prefix")
    watch = netns_socket(topo.ns("ha"), socket.SOCK_RAW, ETH_P_IP, ("up0", 0), socket.AF_PACKET)
    send = netns_socket(topo.ns("ha"), socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        subprocess.run([tool("ip"), "netns", "exec", topo.ns("lanhost"), tool("ping"), "-c", "2", "-i", "0.2", "-W",
                        "1", CN], capture_output=True, timeout=30, check=False)
        inner = [IP(bytes(f[IP].payload)) for f in collect(watch, 1.0)
                 if IP in f and f[IP].proto == 4 and f[IP].src == COA and f[IP].dst == HA]
        assert [(p.src, p.dst) for p in inner if ICMP in p and p[ICMP].type == 8] == [(LAN_HOST, CN)] * 2
        probe = IP(src=CN, dst=LAN_HOST) / ICMP(type=8, id=0x5177, seq=1) / b"to the vehicle"
        send.sendto(bytes(IP(src=HA, dst=COA, proto=4) / probe), (COA, 0))
        back = [IP(bytes(f[IP].payload)) for f in collect(watch, 1.5, lambda f: IP in f and f[IP].proto == 4)
                if IP in f and f[IP].proto == 4 and f[IP].src == COA]
        assert any(ICMP in p and p[ICMP].type == 0 and p.src == LAN_HOST and p[ICMP].id == 0x5177 for p in back), \
            "the tunnelled ping did not reach the LAN host"
    finally:
        watch.close()
        send.close()


def test_stop_deregisters_without_prefixes_and_leaves_nothing(world: dict[str, Any],
                                                              registered: RegistrationRequest) -> None:
    topo: Topology = world["topo"]
    mn = topo.ns("mn")
    assert sysctl(mn, "ip_forward") == "1"
    world["mn"].signal(signal.SIGTERM)
    ha: ScriptedHomeAgent = world["ha"]
    got = ha.receive(5, want="request")
    while got is not None and got.request is not None and got.request.lifetime != 0:
        got = ha.receive(5, want="request")  # a retransmission of the registration, if any
    assert got is not None and got.request is not None, "no deregistration"
    assert prefixes(got.request) == []  # RFC 5177 5
    acknowledge(ha, got.request, got.source)
    assert world["mn"].wait() == 0
    assert sysctl(mn, "ip_forward") == "0"
    assert [r for r in show(mn, "rule") if 7600 <= r["priority"] < 7700] == []
    assert [i["ifname"] for i in show(mn, "link", "show") if i["ifname"].startswith("mip")] == []
