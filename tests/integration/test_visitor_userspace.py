"""The foreign agent's userspace data plane, for real, in network namespaces (RFC 5944 4.2.2, RFC 3024).

    ha (10.0.0.1 home agent; 10.9.0.10 on lo: a correspondent) --up0-- fa (10.0.0.2 care-of address)
                                                                         |visit0 10.2.0.1
                                                                   visitor (10.1.0.50/32, its home address;
                                                                            default via 10.2.0.1 onlink)

The FA's VisitorUserspaceBackend runs inside ``fa`` in tests/support/visitor_driver.py. The test
plays the home agent with raw sockets: it sends echo requests tunnelled by hand (scapy; RFC 2004 by
hand) to the care-of address; the visitor's own kernel answers them, and the replies must come back
reverse-tunnelled from the care-of address. Frames are watched with AF_PACKET sockets on both links.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, GRE, Ether
from scapy.packet import Raw
from scapy.utils import checksum as scapy_checksum

from tests.integration.test_userspace_backend import inner_of, rewrite
from tests.support.netns import Topology, ip, netns_socket, topology
from tests.support.tools import tool

DRIVER = str(Path(__file__).resolve().parents[1] / "support" / "visitor_driver.py")
HA, COA, CN, FA_LINK, HOME = "10.0.0.1", "10.0.0.2", "10.9.0.10", "10.2.0.1", "10.1.0.50"
TABLE, PRIORITIES = "770000", range(7700, 7800)
ETH_P_IP, ETH_P_ARP = 0x0800, 0x0806


class Driver:
    """The driver subprocess in the FA namespace: one JSON request, one JSON answer."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.process = subprocess.Popen([tool("ip"), "netns", "exec", ns, sys.executable, DRIVER, "userspace"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)

    def __call__(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            self.stop()
            errors = self.process.stderr.read() if self.process.stderr else ""
            raise AssertionError(f"driver gave no answer to {op}: {errors}")
        answer: dict[str, Any] = json.loads(line)
        assert answer["ok"], answer
        return answer

    def counters(self) -> dict[str, int]:
        result: dict[str, int] = self("counters")["counters"]
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def show(ns: str, *args: str) -> list[dict[str, Any]]:
    out = subprocess.run([tool("ip"), "-n", ns, "-j", *args], capture_output=True, text=True, timeout=10, check=True)
    found: list[dict[str, Any]] = json.loads(out.stdout or "[]")
    return found


@pytest.fixture(scope="module")
def net() -> Iterator[Topology]:
    with topology() as topo:
        topo.link("ha", "up0", f"{HA}/24", "fa", "up0", f"{COA}/24")
        topo.link("fa", "visit0", f"{FA_LINK}/24", "visitor", "visit0", "10.2.0.200/24")
        visitor = topo.ns("visitor")
        ip("-n", visitor, "addr", "flush", "dev", "visit0")  # a mobile node keeps only its home address
        ip("-n", visitor, "addr", "add", f"{HOME}/32", "dev", "visit0")
        ip("-n", visitor, "route", "add", "default", "via", FA_LINK, "dev", "visit0", "onlink")
        ip("-n", topo.ns("ha"), "addr", "add", f"{CN}/32", "dev", "lo")
        ip("-n", topo.ns("fa"), "route", "add", "default", "via", HA)
        yield topo


@pytest.fixture(scope="module")
def mac(net: Topology) -> str:
    address: str = show(net.ns("visitor"), "link", "show", "visit0")[0]["address"]
    return address


@pytest.fixture(scope="module")
def arp_watch(net: Topology) -> Iterator[socket.socket]:
    """ARP frames the visitor receives, from before the backend starts to the end of the module."""
    sock = netns_socket(net.ns("visitor"), socket.SOCK_RAW, ETH_P_ARP, ("visit0", 0), socket.AF_PACKET)
    sock.setblocking(False)
    yield sock
    sock.close()


@pytest.fixture(scope="module")
def driver(net: Topology, arp_watch: socket.socket) -> Iterator[Driver]:
    drv = Driver(net.ns("fa"))
    try:
        drv("sysctl", path="net/ipv4/ip_forward", value="1")
        drv("start", care_of_address=COA, interface="visit0")
        yield drv
    finally:
        drv.stop()


@pytest.fixture(scope="module")
def taps(net: Topology) -> Iterator[dict[str, socket.socket]]:
    """AF_PACKET sockets: IPv4 frames arriving at the visitor and at the home agent; a raw sender at the HA."""
    sockets = {"visitor": netns_socket(net.ns("visitor"), socket.SOCK_RAW, ETH_P_IP, ("visit0", 0), socket.AF_PACKET),
               "ha": netns_socket(net.ns("ha"), socket.SOCK_RAW, ETH_P_IP, ("up0", 0), socket.AF_PACKET),
               "send": netns_socket(net.ns("ha"), socket.SOCK_RAW, socket.IPPROTO_RAW)}
    yield sockets
    for sock in sockets.values():
        sock.close()


def delivery(mac: str, encapsulation: str = "ipip", reverse: bool = True) -> dict[str, Any]:
    return {"link_address": mac, "home_agent": HA, "care_of_address": COA, "encapsulation": encapsulation,
            "reverse": reverse}


def drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while True:
            sock.recv(65535)
    except BlockingIOError:
        pass


def frames(sock: socket.socket, wanted: Callable[[IP], bool], timeout: float = 3.0) -> list[IP]:
    """The IPv4 packets on AF_PACKET ``sock`` for which ``wanted`` holds, until ``timeout`` or the first."""
    sock.setblocking(True)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            packet = Ether(sock.recv(65535))
        except TimeoutError:
            break
        if IP in packet and wanted(packet[IP]):
            return [packet[IP]]
    return []


def tunnel(inner: IP, encapsulation: str, source: str = HA) -> bytes:
    """``inner`` tunnelled from ``source`` to the care-of address, built without mipd."""
    if encapsulation == "ipip":
        return bytes(IP(src=source, dst=COA, proto=4) / inner)
    if encapsulation == "gre":
        return bytes(IP(src=source, dst=COA) / GRE(proto=0x0800) / inner)
    raw = bytes(inner)
    header_length = (raw[0] & 0xF) * 4
    forwarding = struct.pack("!BBH4s4s", raw[9], 0x80, 0, raw[16:20], raw[12:16])
    forwarding = forwarding[:2] + struct.pack("!H", scapy_checksum(forwarding)) + forwarding[4:]
    header = bytearray(raw[:header_length])
    header[9], header[12:16], header[16:20] = 55, socket.inet_aton(source), socket.inet_aton(COA)
    return rewrite(header, len(raw) + 12) + forwarding + raw[header_length:]


def echo(seq: int, destination: str = HOME) -> IP:
    return IP(src=CN, dst=destination, ttl=64) / ICMP(type=8, id=0x4D49, seq=seq) / Raw(b"mipd visitor")


def counted(driver: Driver, name: str, before: dict[str, int]) -> int:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        now = driver.counters()
        if now[name] > before[name]:
            return now[name] - before[name]
        time.sleep(0.05)
    return 0


@pytest.mark.parametrize(("encapsulation", "proto"), [("ipip", 4), ("gre", 47), ("minimal", 55)])
def test_tunnelled_echo_reaches_the_visitor_and_the_reply_is_reverse_tunnelled(
        driver: Driver, taps: dict[str, socket.socket], mac: str, encapsulation: str, proto: int) -> None:
    driver("apply", home=HOME, delivery=delivery(mac, encapsulation))
    drain(taps["visitor"])
    drain(taps["ha"])
    before = driver.counters()
    seq = proto
    taps["send"].sendto(tunnel(echo(seq), encapsulation), (COA, 0))
    arrived = frames(taps["visitor"], lambda p: p.dst == HOME and ICMP in p and p[ICMP].seq == seq)
    assert arrived, "the decapsulated echo request never reached the visitor"
    assert (arrived[0].src, arrived[0].proto, arrived[0][ICMP].type) == (CN, 1, 8)
    assert arrived[0].ttl == 63  # 4.2.2: the FA routes it, decrementing the TTL
    back = frames(taps["ha"], lambda p: p.src == COA and p.dst == HA and p.proto == proto)
    assert back, "no reverse-tunnelled reply reached the home agent"
    inner = inner_of(back[0], encapsulation)
    assert (inner.src, inner.dst, inner[ICMP].type, inner[ICMP].seq) == (HOME, CN, 0, seq)
    after = driver.counters()
    assert after["decapsulated"] == before["decapsulated"] + 1
    assert after["reverse_tunnelled"] == before["reverse_tunnelled"] + 1


def test_without_reverse_tunnelling_the_reply_is_forwarded_plainly(
        driver: Driver, taps: dict[str, socket.socket], mac: str) -> None:
    driver("apply", home=HOME, delivery=delivery(mac, reverse=False))
    assert not [r for r in show(driver.ns, "rule") if r.get("priority") == 7700]
    drain(taps["ha"])
    taps["send"].sendto(tunnel(echo(7), "ipip"), (COA, 0))
    back = frames(taps["ha"], lambda p: p.src == HOME and p.dst == CN and ICMP in p and p[ICMP].seq == 7)
    assert back, "the visitor's reply was not forwarded by the FA (4.2.2)"
    assert back[0].ttl == 63


def test_non_visitor_or_wrong_home_agent_is_dropped_and_counted(
        net: Topology, driver: Driver, taps: dict[str, socket.socket], mac: str) -> None:
    driver("apply", home=HOME, delivery=delivery(mac))
    drain(taps["visitor"])
    drain(taps["ha"])
    before = driver.counters()
    taps["send"].sendto(tunnel(echo(21, "10.2.0.99"), "ipip"), (COA, 0))  # not a visitor
    assert counted(driver, "dropped_not_visitor", before) == 1
    taps["send"].sendto(tunnel(echo(22), "ipip", source="10.0.0.99"), (COA, 0))  # not the visitor's HA
    assert counted(driver, "dropped_not_home_agent", before) == 1
    assert not frames(taps["visitor"], lambda p: ICMP in p and p[ICMP].seq in (21, 22), timeout=0.5)
    icmp_back = frames(taps["ha"], lambda p: p.src == COA and p.proto == 1, timeout=0.5)
    assert not icmp_back, "4.2.2: no ICMP for a datagram silently discarded"
    assert driver.counters()["decapsulated"] == before["decapsulated"]


def test_the_fa_never_arps_for_the_home_address(arp_watch: socket.socket, driver: Driver) -> None:
    """4.2.2: no ARP request for the visitor's home address, ever (static entry made before the route).
    The capture works: it saw the FA's replies to the visitor's own ARP for its default router."""
    requests, replies = [], 0
    while True:
        try:
            frame = Ether(arp_watch.recv(65535))
        except BlockingIOError:
            break
        if ARP in frame and frame[ARP].op == 1 and frame[ARP].pdst == HOME:
            requests.append(frame.summary())
        replies += ARP in frame and frame[ARP].op == 2 and frame[ARP].psrc == FA_LINK
    assert requests == []
    assert replies >= 1


def state(ns: str) -> dict[str, list[str]]:
    """The FA's visitor state as ``ip`` shows it: table routes, owned-range rules, permanent neighbours."""
    return {
        "routes": sorted(f"{r['dst']} {r.get('protocol', '')}".strip()
                         for r in show(ns, "route", "show", "table", TABLE)),
        "rules": sorted(f"{r['priority']} {r.get('src', '')} {r.get('table', r.get('action', ''))}"
                        for r in show(ns, "rule") if r["priority"] in PRIORITIES),
        "neighbours": sorted(f"{n['dst']} {n.get('protocol', '')}".strip()
                             for n in show(ns, "neigh", "show", "nud", "permanent")),
    }


def test_delivery_none_removes_route_neighbour_and_rule(driver: Driver, mac: str) -> None:
    ns = driver.ns
    driver("apply", home=HOME, delivery=delivery(mac))
    present = state(ns)
    assert present["routes"] == [f"{HOME} 77"]
    assert present["neighbours"] == [f"{HOME} 77"]
    assert [r for r in present["rules"] if r.startswith(f"7700 {HOME} ")]
    driver("apply", home=HOME, delivery=None)
    driver("apply", home=HOME, delivery=None)  # idempotent
    gone = state(ns)
    assert gone["routes"] == [] and gone["neighbours"] == []
    assert not [r for r in gone["rules"] if r.startswith("7700")]
    assert sorted(r.split()[0] for r in gone["rules"]) == ["7710", "7720"]  # the fixed rules stay


def test_reconcile_removes_stale_owned_objects_and_keeps_foreign_ones(driver: Driver, mac: str) -> None:
    ns = driver.ns
    stale = [("route", "add", "10.1.0.77/32", "dev", "visit0", "table", TABLE, "proto", "77"),
             ("rule", "add", "from", "10.1.0.77", "iif", "visit0", "lookup", "770009", "prio", "7700", "proto", "77"),
             ("route", "add", "default", "dev", "visit0", "table", "770009", "proto", "77"),
             ("neigh", "replace", "10.1.0.77", "lladdr", mac, "dev", "visit0", "nud", "permanent", "proto", "77")]
    foreign = [("route", "add", "10.1.0.78/32", "dev", "visit0", "table", TABLE, "proto", "static"),
               ("rule", "add", "from", "10.1.0.78", "lookup", "100", "prio", "7701"),
               ("neigh", "replace", "10.1.0.79", "lladdr", mac, "dev", "visit0", "nud", "permanent")]
    for args in stale + foreign:
        ip("-n", ns, *args)
    try:
        driver("reconcile", desired=[{"home": HOME, "delivery": delivery(mac)},
                                     {"home": "10.1.0.80", "delivery": None}])
        now = state(ns)
        assert now["routes"] == [f"{HOME} 77", "10.1.0.78 static"]
        assert now["neighbours"] == [f"{HOME} 77", "10.1.0.79"]
        assert [r for r in now["rules"] if r.startswith(f"7700 {HOME} ")]
        assert not [r for r in now["rules"] if "10.1.0.77" in r or "770009" in r]
        assert "7701 10.1.0.78 100" in now["rules"]
        assert show(ns, "route", "show", "table", "770009") == []
    finally:
        for args in (("route", "del", "10.1.0.78/32", "table", TABLE), ("rule", "del", "prio", "7701"),
                     ("neigh", "del", "10.1.0.79", "dev", "visit0")):
            subprocess.run([tool("ip"), "-n", ns, *args], capture_output=True, timeout=10, check=False)


def test_close_removes_everything(driver: Driver, mac: str) -> None:
    ns = driver.ns
    driver("apply", home=HOME, delivery=delivery(mac))
    driver("apply", home="10.1.0.51", delivery=delivery(mac, "gre"))
    driver("close")
    assert driver.process.wait(timeout=10) == 0
    assert state(ns) == {"routes": [], "rules": [], "neighbours": []}
    assert not [r for r in show(ns, "route", "show", "table", "all") if r.get("protocol") == "77"
                or str(r.get("table", "")).startswith("770")]
    assert subprocess.run([tool("ip"), "-n", ns, "link", "show", "mipv0"], capture_output=True, timeout=10,
                          check=False).returncode != 0
