"""Mobile IP on three machines: a real foreign agent, a real home agent, a mobile node.

Namespaces: ``home`` (a correspondent on the home link, 10.1.0.2), ``ha`` (the home agent,
10.1.0.1 on the home link, 10.4.0.1 towards the foreign agent; it also plays the routers that
answer with ICMP errors), ``fa`` (the foreign agent, care-of address 10.2.0.1 on the visited link,
10.4.0.2 towards the home agent) and ``mn`` (the mobile node on the visited link: a real kernel
holding its home address 10.1.0.10/32, default route to the foreign agent). Requests are built with
scapy plus hmac-signed extensions and sent from the node's namespace; replies are parsed with scapy.
Both agents are real ``mipd run`` processes on the userspace backend.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.mobileip import MobileIP, MobileIPRRP, MobileIPRRQ

from tests.integration.test_home_agent_daemon import auth_ext, ntp_now, parse_reply
from tests.support import journal as journal_support
from tests.support.daemon import HomeAgentDaemon
from tests.support.journal import Journald
from tests.support.netns import Topology, netns_socket, set_sysctl, topology
from tests.support.tools import tool

journald = journal_support.journald
HA, FA_WAN, COA, HOME_PEER = "10.1.0.1", "10.4.0.2", "10.2.0.1", "10.1.0.2"
MN1, MN2 = "10.1.0.10", "10.1.0.11"
K1, K2 = bytes(range(1, 17)), bytes(range(2, 18))
KFH = bytes(range(90, 106))  # the FA-HA association
KMF = bytes(range(120, 136))  # MN2's association with the foreign agent
FAKE_HA = "10.4.0.3"  # an address of the ha namespace with no mipd on port 434
SPARE = [f"10.1.0.{100 + i}" for i in range(30)]  # home addresses for denials (one per case: rate limit)
T, D, M, G, X = 0x02, 0x20, 0x10, 0x08, 0x01


def ip(*args: str) -> None:
    subprocess.run([tool("ip"), *args], check=True, capture_output=True, timeout=30)


def ip_json(*args: str) -> Any:
    out = subprocess.run([tool("ip"), "-j", *args], check=True, capture_output=True, text=True, timeout=30)
    return json.loads(out.stdout or "[]")


def build(topo: Topology) -> None:
    topo.link("home", "eth0", f"{HOME_PEER}/24", "ha", "home0", f"{HA}/24")
    topo.link("ha", "wan0", "10.4.0.1/24", "fa", "wan0", f"{FA_WAN}/24")
    topo.link("fa", "visit0", f"{COA}/24", "mn", "eth0", f"{MN1}/32")
    home, ha, fa, mn = (topo.ns(n) for n in ("home", "ha", "fa", "mn"))
    ip("-n", home, "route", "add", "default", "via", HA)
    ip("-n", ha, "route", "add", "10.2.0.0/24", "via", FA_WAN)
    ip("-n", ha, "addr", "add", "10.4.0.3/24", "dev", "wan0")  # an address with nothing on port 434
    ip("-n", ha, "route", "add", "unreachable", "10.8.0.0/24")  # answered with host unreachable
    ip("-n", ha, "route", "add", "prohibit", "10.9.0.0/24")  # answered with administratively prohibited
    ip("-n", ha, "route", "add", "blackhole", "10.5.0.0/24")  # silently dropped
    set_sysctl(ha, "icmp_ratelimit", "0")  # this router answers every probe (tests send them in bursts)
    ip("-n", fa, "route", "add", "default", "via", "10.4.0.1")
    ip("-n", mn, "route", "add", "10.2.0.0/24", "dev", "eth0")
    ip("-n", mn, "route", "add", "default", "via", COA)
    for extra in [*SPARE, MN2]:
        ip("-n", mn, "addr", "add", f"{extra}/32", "dev", "eth0")


HA_PROFILE = f"""\
role: home-agent
interface: home0
address: {HA}
home_network: 10.1.0.0/24
advertise: false
max_lifetime: 900
mobile_nodes:
  - {{home_address: {MN1}, spi: 256, key: "{K1.hex()}"}}
  - {{home_address: {MN2}, spi: 257, key: "{K2.hex()}"}}
foreign_agents:
  - {{address: {COA}, spi: 500, key: "{KFH.hex()}"}}
tunnel: {{backend: userspace, encapsulations: [ipip, gre]}}
"""


def fa_profile(workdir: Path, reverse: str = "allowed", fa_ha_key: bytes = KFH, fake_home_agent: bool = False,
               max_visitors: int = 10000) -> str:
    fake = f"  - {{address: {FAKE_HA}, spi: 502, key: \"{KFH.hex()}\"}}\n" if fake_home_agent else ""
    return f"""\
role: foreign-agent
interface: visit0
care_of_address: {COA}
state_directory: {workdir / "state"}
control_socket: {workdir / "fa-e2e.sock"}
advertisement_interval: 0.5
advertisement_lifetime: 3
max_lifetime: 600
pending_timeout: 2
max_pending_per_node: 1
max_visitors: {max_visitors}
reverse_tunneling: {reverse}
home_agents:
  - {{address: {HA}, spi: 500, key: "{fa_ha_key.hex()}"}}
{fake}mobile_nodes:
  - {{home_address: {MN2}, spi: 600, key: "{KMF.hex()}"}}
tunnel: {{backend: userspace, encapsulations: [ipip, gre]}}
"""


def request(home: str, key: bytes, spi: int, *, flags: int = T, lifetime: int = 300, ha: str = HA,
            coa: str = COA, mn_fa: bytes | None = None, before: bytes = b"") -> tuple[bytes, int]:
    """A scapy-built request, MN-HA signed (and MN-FA when ``mn_fa`` is MN2's FA key)."""
    ident = ntp_now()
    message = bytes(MobileIP(type=1) / MobileIPRRQ(flags=flags, lifetime=lifetime, homeaddr=home, haaddr=ha,
                                                   coaddr=coa, id=ident)) + before
    message += auth_ext(32, spi, key, message)
    if mn_fa is not None:
        message += auth_ext(33, 600, mn_fa, message)
    return message, ident


class Node:
    """The mobile node's UDP socket (any of its addresses), talking to the foreign agent."""

    def __init__(self, ns: str) -> None:
        self.sock = netns_socket(ns, socket.SOCK_DGRAM, 0, ("0.0.0.0", 0))

    def ask(self, payload: bytes, *, ttl: int = 255, timeout: float = 4.0, to: str = COA
            ) -> tuple[bytes, tuple[str, int]] | None:
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        self.sock.sendto(payload, (to, 434))
        self.sock.settimeout(timeout)
        try:
            return self.sock.recvfrom(65535)
        except TimeoutError:
            return None

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    with topology() as t:
        build(t)
        yield t


@pytest.fixture(scope="module")
def agents(journald: Journald, topo: Topology, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[HomeAgentDaemon, HomeAgentDaemon]]:
    ha = HomeAgentDaemon(journald, topo, tmp_path_factory.mktemp("ha"), "ha-e2e", namespace="ha")
    workdir = tmp_path_factory.mktemp("fa")
    fa = HomeAgentDaemon(journald, topo, workdir, "fa-e2e", namespace="fa")
    ha.write_profile(HA_PROFILE + f"state_directory: {ha.state}\ncontrol_socket: {ha.socket}\n")
    fa.write_profile(fa_profile(workdir))
    ha.start()
    fa.start()
    try:
        yield ha, fa
    finally:
        fa.close()
        ha.close()


@pytest.fixture
def node(topo: Topology) -> Iterator[Node]:
    peer = Node(topo.ns("mn"))
    yield peer
    peer.close()


def ping(ns: str, target: str, count: int = 3) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("ip"), "netns", "exec", ns, tool("ping"), "-n", "-c", str(count), "-i", "0.2",
                           "-W", "2", target], capture_output=True, text=True, timeout=60, check=False)


def register_mn1(node: Node, **kwargs: Any) -> dict[str, Any]:
    message, ident = request(MN1, K1, 256, **kwargs)
    answer = node.ask(message)
    assert answer is not None, "no reply through the foreign agent"
    reply = parse_reply(answer[0], K1)
    assert answer[1] == (COA, 434) and reply["ident"] == ident
    return reply


def test_foreign_agent_advertises_on_the_visited_link(agents: Any, topo: Topology, tmp_path: Path) -> None:
    capture = tmp_path / "adv.pcap"
    tshark = subprocess.Popen([tool("ip"), "netns", "exec", topo.ns("mn"), tool("tshark"), "-i", "eth0", "-f",
                               "icmp", "-a", "duration:2", "-F", "pcap", "-w", str(capture)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert tshark.wait(timeout=30) == 0
    out = subprocess.run([tool("tshark"), "-n", "-r", str(capture), "-Y", "icmp.type == 9", "-T", "fields",
                          "-E", "occurrence=a", "-e", "ip.ttl", "-e", "ip.dst", "-e", "icmp.code", "-e", "icmp.mip.f",
                          "-e", "icmp.mip.h", "-e", "icmp.mip.coa", "-e", "icmp.mip.rt", "-e", "icmp.mip.life",
                          "-e", "icmp.router_address", "-e", "icmp.mip.prefixlength"],
                         capture_output=True, text=True, timeout=60, check=True)
    rows = [line.split("\t") for line in out.stdout.splitlines() if line]
    assert len(rows) >= 3  # every 0.5 s, with jitter, over 2 s
    for row in rows:
        assert row == ["1", "224.0.0.1", "16", "1", "0", COA, "1", "600", COA, "24"], row


def test_relayed_registration_end_to_end(agents: Any, node: Node, journald: Journald, topo: Topology) -> None:
    ha, fa = agents
    reply = register_mn1(node, flags=T, lifetime=300)
    assert (reply["code"], reply["lifetime"], reply["auth_ok"]) == (0, 300, {32: True})
    (mac,) = [link["address"] for link in ip_json("-n", topo.ns("mn"), "link", "show", "eth0")]
    visitors = fa.json("visitors")["visitors"]
    entry = next(v for v in visitors if v["home_address"] == MN1 and v["state"] == "active")
    assert (entry["home_agent"], entry["care_of_address"], entry["link_address"], entry["flags"]) == \
        (HA, COA, mac, "T")
    assert entry["lifetime_granted"] == 300 and 295 <= entry["lifetime_remaining"] <= 300
    binding = next(b for b in ha.json("bindings")["bindings"] if b["home_address"] == MN1)
    assert (binding["care_of_address"], binding["foreign_agent"], binding["lifetime_granted"]) == (COA, COA, 300)
    for event in ("visitor.pending", "registration.relayed", "visitor.added"):
        assert journald.entries(MIP_EVENT=event, MIP_INSTANCE="fa-e2e", MIP_HOME_ADDRESS=MN1), event
    assert journald.entries(MIP_EVENT="binding.added", MIP_INSTANCE="ha-e2e", MIP_HOME_ADDRESS=MN1)
    assert fa.json("stats")["counters"]["relayed"] >= 1


def test_tunnelled_delivery_and_reverse_tunnel(agents: Any, node: Node, topo: Topology) -> None:
    ha, fa = agents
    assert register_mn1(node, flags=T)["code"] == 0
    result = ping(topo.ns("home"), MN1)
    assert result.returncode == 0, result.stdout + result.stderr
    fa_plane = fa.json("stats")["counters"]["data_plane"]
    ha_plane = ha.json("stats")["counters"]["data_plane"]
    assert ha_plane["encapsulated"] >= 3 and ha_plane["decapsulated"] >= 3  # out to the FA, back reverse-tunnelled
    assert sum(v for k, v in fa_plane.items() if "decap" in k or "deliver" in k) >= 3
    assert sum(v for k, v in fa_plane.items() if "reverse" in k and not k.startswith("dropped")) >= 3
    # No ARP for the home address on the visited link: the foreign agent's neighbour entry is static.
    neighbours = ip_json("-n", topo.ns("fa"), "neigh", "show", MN1, "dev", "visit0")
    assert neighbours and "PERMANENT" in neighbours[0]["state"]


CODES = [
        ("lifetime above the FA's maximum", {"lifetime": 700}, 255, 69),
        ("reserved x bit", {"flags": T | X}, 255, 70),
        ("care-of address not offered", {"flags": 0, "coa": "10.2.0.77"}, 255, 77),
        ("home agent field is the FA", {"ha": COA}, 255, 194),
        ("T from beyond the link", {"flags": T}, 64, 76),
        ("encapsulating delivery style", {"flags": T, "before": bytes([130, 0])}, 255, 79),
        ("minimal encapsulation not available", {"flags": T | M}, 255, 72),
        ("home network unreachable", {"ha": "10.7.0.1"}, 255, 80),
        ("home agent host unreachable", {"ha": "10.8.0.1"}, 255, 81),
        ("home agent port unreachable", {"ha": "10.4.0.3"}, 255, 82),
        ("home agent unreachable, other ICMP", {"ha": "10.9.0.1"}, 255, 88),
        ("no reply in time", {"ha": "10.5.0.1"}, 255, 78),
]
CODE_CASES = [case[0] for case in CODES]


@pytest.mark.parametrize(("name", "kwargs", "ttl", "code"), CODES, ids=CODE_CASES)
def test_foreign_agent_codes(agents: Any, node: Node, journald: Journald, name: str, kwargs: dict[str, Any],
                             ttl: int, code: int) -> None:
    home = SPARE[CODE_CASES.index(name)]  # one home address per case: denials are rate-limited per node
    if 80 <= code <= 88:
        # The router's forwarding errors (no route, unreachable, prohibit) share the kernel's
        # ip_error() token bucket, about one per second per source: let it refill.
        time.sleep(1.1)
    message, ident = request(home, K1, 256, **kwargs)
    answer = node.ask(message, ttl=ttl, timeout=6)
    assert answer is not None, name
    reply = parse_reply(answer[0], K1)
    assert (reply["code"], reply["home"], reply["ident"]) == (code, home, ident), name
    if code == 69:
        assert reply["lifetime"] == 600  # our maximum, in the reply's Lifetime (3.7.2.3)
    assert journald.entries(MIP_EVENT="registration.denied", MIP_INSTANCE="fa-e2e", MIP_CODE=str(code))


def test_mn_fa_authentication(agents: Any, node: Node) -> None:
    message, _ = request(MN2, K2, 257, mn_fa=bytes(16))
    assert parse_reply(node.ask(message)[0], K2)["code"] == 67  # type: ignore[index]
    time.sleep(1.1)  # one denial per second per node
    message, _ = request(MN2, K2, 257, mn_fa=KMF)
    answer = node.ask(message)
    assert answer is not None
    reply = parse_reply(answer[0], K2)
    assert reply["code"] == 0 and reply["ext_types"] == [32, 33]  # FA-HA stripped, MN-FA appended
    body = answer[0]
    expected = hmac.new(KMF, body[:-16], hashlib.md5).digest()
    assert hmac.compare_digest(expected, body[-16:])


def test_too_many_pending_requests(agents: Any, node: Node) -> None:
    home = SPARE[-1]
    first, _ = request(home, K1, 256, ha="10.5.0.1")  # blackholed: stays pending for 2 s
    node.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)  # T: sent from the link itself
    node.sock.sendto(first, (COA, 434))
    second, _ = request(home, K1, 256, ha="10.5.0.1", lifetime=299)
    answer = node.ask(second, timeout=1.5)
    assert answer is not None and parse_reply(answer[0], K1)["code"] == 66


def test_reverse_tunnel_policy_and_bad_home_agent_authentication_after_reload(
        agents: Any, node: Node, topo: Topology) -> None:
    _, fa = agents
    workdir = fa.profile.parent
    try:
        fa.write_profile(fa_profile(workdir, reverse="off"))
        assert fa.mipctl("reload").returncode == 0
        assert register_mn1(node, flags=T)["code"] == 74
        time.sleep(1.1)
        fa.write_profile(fa_profile(workdir, reverse="required"))
        assert fa.mipctl("reload").returncode == 0
        assert register_mn1(node, flags=0)["code"] == 75
        time.sleep(1.1)
        # A wrong FA-HA key: the home agent refuses the relayed request (132) and the foreign agent
        # relays that denial (Lifetime 0: no FA-HA check on it, 3.7.1).
        fa.write_profile(fa_profile(workdir, fa_ha_key=bytes(16)))
        assert fa.mipctl("reload").returncode == 0
        assert register_mn1(node, flags=T)["code"] == 132
        time.sleep(1.1)
        # A home agent that accepts but signs its reply with the wrong key: 68 (3.7.3.1).
        fa.write_profile(fa_profile(workdir, fake_home_agent=True))
        assert fa.mipctl("reload").returncode == 0
        fake = netns_socket(topo.ns("ha"), socket.SOCK_DGRAM, 0, (FAKE_HA, 434))
        try:
            message, ident = request(MN1, K1, 256, ha=FAKE_HA)
            node.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
            node.sock.sendto(message, (COA, 434))
            fake.settimeout(5)
            relayed, relay_address = fake.recvfrom(65535)
            assert relayed[:len(message)] == message  # unchanged through MN-HA, FA-HA appended after it
            reply = bytes(MobileIP(type=3) / MobileIPRRP(code=0, lifetime=300, homeaddr=MN1, haaddr=FAKE_HA, id=ident))
            reply += auth_ext(32, 256, K1, reply)
            reply += auth_ext(34, 502, bytes(16), reply)
            fake.sendto(reply, relay_address)
            node.sock.settimeout(5)
            answer, _ = node.sock.recvfrom(65535)
            assert parse_reply(answer, K1)["code"] == 68
        finally:
            fake.close()
    finally:
        fa.write_profile(fa_profile(workdir))
        assert fa.mipctl("reload").returncode == 0
        time.sleep(1.1)


def test_restart_keeps_visitors_and_their_delivery(agents: Any, node: Node, topo: Topology) -> None:
    _, fa = agents
    assert register_mn1(node, flags=T)["code"] == 0
    before = {v["home_address"]: v for v in fa.json("visitors")["visitors"] if v["state"] == "active"}
    fa.kill9()
    fa.start()
    after = {v["home_address"]: v for v in fa.json("visitors")["visitors"] if v["state"] == "active"}
    assert set(after) == set(before)
    assert all(0 < after[h]["lifetime_remaining"] <= before[h]["lifetime_remaining"] for h in after)
    result = ping(topo.ns("home"), MN1)
    assert result.returncode == 0, result.stdout + result.stderr


def capture_advertisements(topo: Topology, path: Path, seconds: int = 2) -> list[list[str]]:
    """(icmp.mip.f, icmp.mip.b) of each advertisement seen on the visited link for ``seconds``."""
    tshark = subprocess.Popen([tool("ip"), "netns", "exec", topo.ns("mn"), tool("tshark"), "-i", "eth0", "-f",
                               "icmp", "-a", f"duration:{seconds}", "-F", "pcap", "-w", str(path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert tshark.wait(timeout=30) == 0
    out = subprocess.run([tool("tshark"), "-n", "-r", str(path), "-Y", "icmp.type == 9", "-T", "fields",
                          "-e", "icmp.mip.f", "-e", "icmp.mip.b"], capture_output=True, text=True, timeout=60,
                         check=True)
    return [line.split("\t") for line in out.stdout.splitlines() if line]


def test_a_full_visitor_list_is_advertised_busy(agents: Any, node: Node, topo: Topology, tmp_path: Path) -> None:
    _, fa = agents
    workdir = fa.profile.parent
    assert register_mn1(node, flags=T)["code"] == 0
    try:
        fa.write_profile(fa_profile(workdir, max_visitors=1))
        assert fa.mipctl("reload").returncode == 0
        rows = capture_advertisements(topo, tmp_path / "busy.pcap")
        assert rows and all(row == ["1", "1"] for row in rows)  # F and B (RFC 5944 2.1.1)
    finally:
        fa.write_profile(fa_profile(workdir))
        assert fa.mipctl("reload").returncode == 0
    rows = capture_advertisements(topo, tmp_path / "free.pcap")
    assert rows and all(row == ["1", "0"] for row in rows)


def test_flush_removes_the_visitor(agents: Any, node: Node, journald: Journald) -> None:
    _, fa = agents
    assert register_mn1(node, flags=T)["code"] == 0
    assert fa.json("flush", MN1)["removed"] >= 1
    assert MN1 not in [v["home_address"] for v in fa.json("visitors")["visitors"]]
    assert journald.entries(MIP_EVENT="visitor.removed", MIP_INSTANCE="fa-e2e", MIP_REASON="flushed")
    assert fa.mipctl("flush", MN1).returncode == 1


def test_sigterm_removes_the_foreign_agents_data_plane(agents: Any, node: Node, topo: Topology) -> None:
    _, fa = agents
    assert register_mn1(node, flags=T)["code"] == 0
    fa.signal(signal.SIGTERM)
    assert fa.wait() == 0
    fa_ns = topo.ns("fa")
    assert not ip_json("-n", fa_ns, "route", "show", "proto", "77")
    assert not [n for n in ip_json("-n", fa_ns, "neigh", "show", "dev", "visit0") if n.get("dst") == MN1]
    assert not any(link["ifname"].startswith("mip") for link in ip_json("-n", fa_ns, "link", "show"))
    fa.start()  # for any test after this one
