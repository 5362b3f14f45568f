"""The userspace tunnel backend, for real, in network namespaces (RFC 2003 / 2784 / 2004, RFC 3024, 5944 4.3).

    home (10.1.0.10, correspondent) --home0-- ha (10.1.0.1; 10.2.0.1; 10.3.0.1) --visit0-- visited (10.2.0.20)
                                                         |far0
                                                  far (10.3.0.10, correspondent beyond the HA)

The home agent's backend runs inside ``ha`` in tests/support/userspace_driver.py. The away node is
played by the test itself with raw sockets at its co-located care-of address 10.2.0.20: it
receives the tunnelled echo requests, checks them with scapy, and reverse-tunnels echo replies
built with scapy (minimal encapsulation by hand, per RFC 2004 3.1), so that the correspondent's
``ping`` succeeds. The home link reaches H through the HA by a route (no proxy ARP needed here).
"""

from __future__ import annotations

import json
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import GRE
from scapy.packet import Raw
from scapy.utils import checksum as scapy_checksum

from tests.support.netns import Topology, ip, netns_socket, topology
from tests.support.tools import tool

DRIVER = str(Path(__file__).resolve().parents[1] / "support" / "userspace_driver.py")
HA, HA_VISIT, CH, FAR, COA, HOME = "10.1.0.1", "10.2.0.1", "10.1.0.10", "10.3.0.10", "10.2.0.20", "10.1.0.50"
PROTOCOLS = {"ipip": 4, "gre": 47, "minimal": 55}


class Driver:
    """The driver subprocess in a namespace: one JSON request, one JSON answer."""

    def __init__(self, ns: str, device: str = "mip0") -> None:
        self.process = subprocess.Popen(
            [tool("ip"), "netns", "exec", ns, sys.executable, DRIVER, device],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def __call__(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], 10)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stop()
            errors = self.process.stderr.read() if self.process.stderr else ""
            raise AssertionError(f"driver gave no answer to {op}: {errors}")
        answer: dict[str, Any] = json.loads(line)
        assert answer["ok"], answer
        return answer

    def counters(self) -> dict[str, int]:
        result: dict[str, int] = self("counters")["backend"]
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def endpoint(encapsulation: str = "ipip", **flags: bool) -> dict[str, Any]:
    return {"care_of_address": COA, "source": HA, "encapsulation": encapsulation, **flags}


def routes(ns: str, *selector: str) -> list[dict[str, Any]]:
    out = subprocess.run([tool("ip"), "-n", ns, "-j", "route", "show", *selector],
                         capture_output=True, text=True, timeout=10, check=True)
    found: list[dict[str, Any]] = json.loads(out.stdout or "[]")
    return found


@pytest.fixture(scope="module")
def net() -> Iterator[Topology]:
    with topology() as topo:
        topo.link("home", "home0", f"{CH}/24", "ha", "home0", f"{HA}/24")
        topo.link("ha", "visit0", f"{HA_VISIT}/24", "visited", "visit0", f"{COA}/24")
        topo.link("ha", "far0", "10.3.0.1/24", "far", "far0", f"{FAR}/24")
        ip("-n", topo.ns("home"), "route", "add", f"{HOME}/32", "via", HA)
        ip("-n", topo.ns("visited"), "route", "add", "default", "via", HA_VISIT)
        ip("-n", topo.ns("far"), "route", "add", "default", "via", "10.3.0.1")
        yield topo


@pytest.fixture(scope="module")
def driver(net: Topology) -> Iterator[Driver]:
    drv = Driver(net.ns("ha"))
    try:
        drv("sysctl", path="net/ipv4/ip_forward", value="1")
        drv("start", local=HA, broadcast={"interface": "home0", "network": "10.1.0.0/24"})
        yield drv
    finally:
        drv.stop()


@pytest.fixture(scope="module")
def node(net: Topology) -> Iterator[dict[str, socket.socket]]:
    """The away node's raw sockets at its care-of address: one per tunnel protocol, and one to send."""
    ns = net.ns("visited")
    sockets = {name: netns_socket(ns, socket.SOCK_RAW, proto) for name, proto in PROTOCOLS.items()}
    sockets["send"] = netns_socket(ns, socket.SOCK_RAW, socket.IPPROTO_RAW)
    yield sockets
    for sock in sockets.values():
        sock.close()


def drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while True:
            sock.recv(65535)
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)


def receive(sock: socket.socket, wanted: Any, timeout: float = 4.0) -> IP:
    """The first packet on ``sock`` for which ``wanted(IP(packet))`` holds."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            packet = IP(sock.recv(65535))
        except TimeoutError:
            break
        if wanted(packet):
            return packet
    raise AssertionError("no matching tunnel packet arrived")


def inner_of(outer: IP, encapsulation: str) -> IP:
    """The inner datagram, taken apart independently of mipd (scapy; RFC 2004 3.1 by hand)."""
    payload = bytes(outer.payload)
    if encapsulation == "ipip":
        return IP(payload)
    if encapsulation == "gre":
        gre = GRE(payload)
        assert (gre.chksum_present, gre.key_present, gre.seqnum_present, gre.version, gre.proto) == (0, 0, 0, 0, 0x0800)
        assert len(payload) - len(bytes(gre.payload)) == 4
        return IP(bytes(gre.payload))
    protocol, flags, _ = struct.unpack("!BBH", payload[:4])
    size = 12 if flags & 0x80 else 8
    assert scapy_checksum(payload[:size]) == 0
    raw = bytes(outer)
    header = bytearray(raw[: outer.ihl * 4])
    header[9], header[16:20] = protocol, payload[4:8]
    if size == 12:
        header[12:16] = payload[8:12]
    return IP(rewrite(header, len(raw) - size) + payload[size:])


def rewrite(header: bytearray, total_length: int) -> bytes:
    """``header`` with Total Length set and its checksum recomputed (with scapy's checksum)."""
    struct.pack_into("!H", header, 2, total_length)
    header[10:12] = b"\0\0"
    struct.pack_into("!H", header, 10, scapy_checksum(bytes(header)))
    return bytes(header)


def reverse_tunnel(inner: IP, encapsulation: str, source: str = COA) -> bytes:
    """``inner`` tunnelled from ``source`` to the home agent, built without mipd."""
    if encapsulation == "ipip":
        return bytes(IP(src=source, dst=HA, proto=4) / inner)
    if encapsulation == "gre":
        return bytes(IP(src=source, dst=HA) / GRE(proto=0x0800) / inner)
    raw = bytes(inner)
    header_length = (raw[0] & 0xF) * 4
    forwarding = struct.pack("!BBH4s4s", raw[9], 0x80, 0, raw[16:20], raw[12:16])
    forwarding = forwarding[:2] + struct.pack("!H", scapy_checksum(forwarding)) + forwarding[4:]
    header = bytearray(raw[:header_length])
    header[9], header[12:16], header[16:20] = 55, socket.inet_aton(source), socket.inet_aton(HA)
    return rewrite(header, len(raw) + 12) + forwarding + raw[header_length:]


def ping(ns: str, target: str) -> subprocess.Popen[str]:
    return subprocess.Popen([tool("ip"), "netns", "exec", ns, tool("ping"), "-n", "-c", "1", "-W", "4",
                             "-Q", "40", target], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize(("encapsulation", "correspondent"),
                         [("ipip", "home"), ("gre", "home"), ("minimal", "home"), ("ipip", "far")])
def test_ping_through_the_tunnel_and_back(net: Topology, driver: Driver, node: dict[str, socket.socket],
                                          encapsulation: str, correspondent: str) -> None:
    peer = CH if correspondent == "home" else FAR
    sock = node[encapsulation]
    drain(sock)
    driver("apply", home=HOME, endpoints=[endpoint(encapsulation, reverse=True, decapsulates=True)])
    before = driver.counters()
    pinger = ping(net.ns(correspondent), HOME)
    try:
        outer = receive(sock, lambda p: p.src == HA and p.dst == COA)
        inner = inner_of(outer, encapsulation)
        assert (inner.src, inner.dst, inner.proto) == (peer, HOME, 1)
        request = inner[ICMP]
        assert request.type == 8
        # RFC 2003 3.1 / RFC 2004 3: TOS copied; DF carried over; outer TTL 64 (IP-in-IP, GRE) or the
        # original, unmodified one (minimal); the kernel's forwarding took one off the inner TTL.
        assert outer.tos == inner.tos == 40
        assert inner.ttl == 63
        if encapsulation == "minimal":
            assert outer.ttl == 63 and outer.flags == inner.flags
        else:
            assert outer.ttl == 64 and bool(outer.flags.DF) == bool(inner.flags.DF)
        echo = ICMP(type=0, id=request.id, seq=request.seq) / Raw(bytes(request.payload))
        reply = IP(src=HOME, dst=peer, ttl=64) / echo
        node["send"].sendto(reverse_tunnel(reply, encapsulation), (HA, 0))
        output, _ = pinger.communicate(timeout=8)
        assert pinger.returncode == 0, output
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
    after = driver.counters()
    assert after["encapsulated"] == before["encapsulated"] + 1
    assert after["decapsulated"] == before["decapsulated"] + 1


def test_unregistered_or_unreversed_tunnels_are_dropped_and_counted(driver: Driver,
                                                                   node: dict[str, socket.socket]) -> None:
    driver("apply", home=HOME, endpoints=[endpoint("ipip", reverse=False, decapsulates=True)])
    datagram = IP(src=HOME, dst=CH) / ICMP(type=0)
    before = driver.counters()
    node["send"].sendto(reverse_tunnel(datagram, "ipip", source="10.2.0.99"), (HA, 0))  # no such care-of address
    node["send"].sendto(reverse_tunnel(datagram, "ipip"), (HA, 0))  # registered, but without T
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        after = driver.counters()
        if after["dropped_not_registered"] > before["dropped_not_registered"] and \
                after["dropped_not_reverse"] > before["dropped_not_reverse"]:
            break
        time.sleep(0.05)
    assert after["dropped_not_registered"] == before["dropped_not_registered"] + 1
    assert after["dropped_not_reverse"] == before["dropped_not_reverse"] + 1
    assert after["decapsulated"] == before["decapsulated"]


def test_ipv6_in_gre_is_counted_as_unsupported_not_malformed(driver: Driver, node: dict[str, socket.socket]) -> None:
    """A well-formed GRE packet from the registered care-of address, carrying IPv6 (Protocol Type
    0x86DD): dropped as ``unsupported_protocol``; a GRE packet with C=1 stays ``malformed``."""
    driver("apply", home=HOME, endpoints=[endpoint("gre", reverse=True, decapsulates=True)])
    ipv6 = IPv6(src="2001:db8::10", dst="2001:db8::2") / ICMPv6EchoRequest()
    before = driver.counters()
    node["send"].sendto(bytes(IP(src=COA, dst=HA) / GRE(proto=0x86DD) / ipv6), (HA, 0))
    node["send"].sendto(bytes(IP(src=COA, dst=HA) / GRE(chksum_present=1, proto=0x0800)
                              / IP(src=HOME, dst=CH) / ICMP(type=0)), (HA, 0))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        after = driver.counters()
        if after["dropped_unsupported_protocol"] > before["dropped_unsupported_protocol"] and \
                after["dropped_malformed"] > before["dropped_malformed"]:
            break
        time.sleep(0.05)
    assert after["dropped_unsupported_protocol"] == before["dropped_unsupported_protocol"] + 1
    assert after["dropped_malformed"] == before["dropped_malformed"] + 1
    assert after["decapsulated"] == before["decapsulated"]


def test_deregistration_removes_the_route(net: Topology, driver: Driver) -> None:
    driver("apply", home=HOME, endpoints=[endpoint()])
    assert [r["dst"] for r in routes(net.ns("ha"), "proto", "77")] == [HOME]
    driver("apply", home=HOME, endpoints=[])
    assert routes(net.ns("ha"), "proto", "77") == []
    driver("apply", home=HOME, endpoints=[])  # idempotent
    assert routes(net.ns("ha"), "proto", "77") == []


def test_reconcile_removes_stale_mipd_routes_only(net: Topology, driver: Driver) -> None:
    ha = net.ns("ha")
    ip("-n", ha, "route", "add", "10.9.0.1/32", "dev", "mip0", "proto", "77")
    ip("-n", ha, "route", "add", "10.9.0.2/32", "dev", "mip0")
    try:
        driver("reconcile", desired=[{"home": HOME, "endpoints": [endpoint()]}])
        assert [r["dst"] for r in routes(ha, "proto", "77")] == [HOME]
        assert "10.9.0.2" in [r["dst"] for r in routes(ha, "dev", "mip0")]
    finally:
        subprocess.run([tool("ip"), "-n", ha, "route", "del", "10.9.0.2/32"], capture_output=True, timeout=10,
                       check=False)
        driver("apply", home=HOME, endpoints=[])


@pytest.mark.parametrize("decapsulates", [True, False])
def test_home_link_broadcast_reaches_the_away_node(net: Topology, driver: Driver, node: dict[str, socket.socket],
                                                    decapsulates: bool) -> None:
    sock = node["ipip"]
    drain(sock)
    driver("apply", home=HOME, endpoints=[endpoint("ipip", broadcast=True, decapsulates=decapsulates)])
    sender = netns_socket(net.ns("home"), socket.SOCK_DGRAM, 0, (CH, 0))
    try:
        sender.sendto(b"to everyone", ("10.1.0.255", 9))
        outer = receive(sock, lambda p: p.src == HA and p.dst == COA)
    finally:
        sender.close()
        driver("apply", home=HOME, endpoints=[])
    inner = IP(bytes(outer.payload))
    if not decapsulates:  # RFC 5944 4.3: nested, inside a unicast to the home address
        assert (inner.src, inner.dst, inner.proto) == (HA, HOME, 4)
        inner = IP(bytes(inner.payload))
    assert (inner.src, inner.dst) == (CH, "10.1.0.255")
    assert bytes(inner[UDP].payload) == b"to everyone"


def test_close_deletes_the_device_and_its_routes(net: Topology) -> None:
    ha = net.ns("ha")
    drv = Driver(ha, "mipc")
    try:
        drv("start", local=HA)
        drv("apply", home="10.1.0.60", endpoints=[endpoint()])
        assert [r["dst"] for r in routes(ha, "dev", "mipc")] == ["10.1.0.60"]
        drv("close")
        assert drv.process.wait(timeout=10) == 0
        gone = subprocess.run([tool("ip"), "-n", ha, "link", "show", "mipc"], capture_output=True, timeout=10,
                              check=False)
        assert gone.returncode != 0
        assert "10.1.0.60" not in [r["dst"] for r in routes(ha)]
    finally:
        drv.stop()
