"""A real foreign agent behind a real Linux NAT (nftables masquerade) with a real home agent: the
RFC 3519 foreign-agent case end to end. Skipped until the home agent does RFC 3519 UDP tunnelling.

    home 10.1.0.2 --- 10.1.0.1 [ha] 10.4.0.1 --- 10.4.0.2 [nat] 10.6.0.1 --- 10.6.0.2 [fa] 10.2.0.1 --- [mn]

The foreign agent's care-of address 10.2.0.1 is private; its relayed request reaches the home agent
from the NAT's 10.4.0.2, which is how the home agent sees the NAT (RFC 3519 4.6). The foreign agent
has no FA-HA association: the home agent would know it by the NAT's address, not its own.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

import pytest

from mipd.core.wire import identification
from mipd.core.wire.auth import append_authentication
from mipd.core.wire.extensions import ExtensionType
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest, RequestFlags, decode_registration
from tests.integration.test_foreign_agent_daemon import ip, ping
from tests.support import journal as journal_support
from tests.support.daemon import HomeAgentDaemon
from tests.support.journal import Journald
from tests.support.netns import Topology, netns_socket, set_sysctl, topology
from tests.support.tools import tool

journald = journal_support.journald
HA, HA_WAN, NAT_OUT, NAT_IN, FA_WAN, COA = "10.1.0.1", "10.4.0.1", "10.4.0.2", "10.6.0.1", "10.6.0.2", "10.2.0.1"
PEER, MN1 = "10.1.0.2", "10.1.0.10"
K1 = bytes(range(1, 17))


def build(topo: Topology) -> None:
    topo.link("home", "eth0", f"{PEER}/24", "ha", "home0", f"{HA}/24")
    topo.link("ha", "wan0", f"{HA_WAN}/24", "nat", "out0", f"{NAT_OUT}/24")
    topo.link("nat", "in0", f"{NAT_IN}/24", "fa", "wan0", f"{FA_WAN}/24")
    topo.link("fa", "visit0", f"{COA}/24", "mn", "eth0", f"{MN1}/32")
    home, nat, fa, mn = (topo.ns(n) for n in ("home", "nat", "fa", "mn"))
    ip("-n", home, "route", "add", "default", "via", HA)
    ip("-n", nat, "route", "add", "10.1.0.0/24", "via", HA_WAN)
    ip("-n", nat, "route", "add", "10.2.0.0/24", "via", FA_WAN)
    ip("-n", fa, "route", "add", "default", "via", NAT_IN)
    ip("-n", mn, "route", "add", "10.2.0.0/24", "dev", "eth0")
    ip("-n", mn, "route", "add", "default", "via", COA)
    set_sysctl(nat, "ip_forward", "1")
    rules = ("table ip mipt_fa_nat {\n  chain post {\n    type nat hook postrouting priority 100;\n"
             "    oifname \"out0\" masquerade\n  }\n}\n")
    subprocess.run([tool("ip"), "netns", "exec", nat, tool("nft"), "-f", "-"], input=rules, text=True, check=True,
                   capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def agents(journald: Journald, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Topology]]:
    with topology() as topo:
        build(topo)
        ha = HomeAgentDaemon(journald, topo, tmp_path_factory.mktemp("ha"), "ha-fanat", namespace="ha")
        fa = HomeAgentDaemon(journald, topo, tmp_path_factory.mktemp("fa"), "fa-fanat", namespace="fa")
        ha.write_profile(f"""\
role: home-agent
interface: home0
address: {HA}
home_network: 10.1.0.0/24
advertise: false
keepalive_interval: 10
mobile_nodes:
  - {{home_address: {MN1}, spi: 256, key: "{K1.hex()}"}}
tunnel: {{backend: userspace}}
state_directory: {ha.state}
control_socket: {ha.socket}
""")
        fa.write_profile(f"""\
role: foreign-agent
interface: visit0
care_of_address: {COA}
state_directory: {fa.state}
control_socket: {fa.socket}
advertisement_interval: 0.5
reverse_tunneling: required
tunnel: {{backend: userspace}}
""")
        ha.start()
        fa.start()
        try:
            yield ha, fa, topo
        finally:
            fa.close()
            ha.close()


def register(topo: Topology) -> RegistrationReply:
    request = RegistrationRequest(RequestFlags.T, 300, IPv4Address(MN1), IPv4Address(HA), IPv4Address(COA),
                                  identification.timestamp(time.time(), 0x4321))
    request = append_authentication(request, ExtensionType.MOBILE_HOME_AUTHENTICATION, 256, K1, "hmac-md5")
    node = netns_socket(topo.ns("mn"), socket.SOCK_DGRAM, 0, ("0.0.0.0", 0))
    try:
        node.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
        node.sendto(request.encode(), (COA, 434))
        node.settimeout(6)
        payload, _ = node.recvfrom(65535)
    finally:
        node.close()
    reply = decode_registration(payload)
    assert isinstance(reply, RegistrationReply)
    return reply


def test_a_visitor_of_a_foreign_agent_behind_a_nat_is_reachable(agents: Any) -> None:
    ha, fa, topo = agents
    reply = register(topo)
    assert reply.code == 0, reply
    (visitor,) = [v for v in fa.json("visitors")["visitors"] if v["home_address"] == MN1 and v["state"] == "active"]
    assert visitor["udp_tunnel"] is True
    (binding,) = [b for b in ha.json("bindings")["bindings"] if b["home_address"] == MN1]
    assert binding["udp_tunnel"] is True and binding["outer_address"] == NAT_OUT, binding
    result = ping(topo.ns("home"), MN1)
    assert result.returncode == 0, result.stdout + result.stderr
    plane = fa.json("stats")["counters"]["data_plane"]
    assert plane["udp_decapsulated"] >= 3 and plane["udp_reverse_tunnelled"] >= 3, plane
    time.sleep(12)  # idle beyond the home agent's keepalive interval: a keepalive, answered
    plane = fa.json("stats")["counters"]["data_plane"]
    assert plane["udp_keepalives_sent"] >= 1 and plane["udp_keepalives_answered"] >= 1, plane
