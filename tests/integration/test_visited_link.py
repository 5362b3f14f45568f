"""The visited link adapter for real: a packet socket with its BPF filter, in network namespaces.

    mn (mn0 10.2.0.20, MAC 02:00:00:00:00:0a) ----- fa (fa0 10.2.0.1)

A VisitedLink runs in ``fa`` (tests/support/foreign_link_driver.py). From ``mn`` the test sends
registration-like datagrams: through a UDP socket (unicast with TTL 255, to 224.0.0.11, to
255.255.255.255, to another port) and as hand-made frames on a packet socket (a bad UDP checksum, a
fragment, no checksum at all, a home-address source, an address of someone else). Exactly the ones
a foreign agent must hear arrive, with the node's MAC and the IP TTL; no ICMP port unreachable comes
back for port 434. Replies (SendToNode) reach ``mn`` as frames to the node's MAC although their IP
destination, the home address, is not on the link, with checksums that scapy recomputes alike.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tests.support.foreign_link import LinkDriver
from tests.support.netns import Topology, ip, netns_socket, topology
from tests.support.tools import tool

FA, MN, HOME = "10.2.0.1", "10.2.0.20", "10.1.0.10"
MN_MAC = "02:00:00:00:00:0a"
FA_MAC = "02:00:00:00:00:fa"
ETH_P_IP = 0x0800


@pytest.fixture
def link() -> Iterator[tuple[Topology, LinkDriver]]:
    with topology() as topo:
        topo.link("mn", "mn0", f"{MN}/24", "fa", "fa0", f"{FA}/24")
        ip("-n", topo.ns("mn"), "link", "set", "mn0", "address", MN_MAC)
        ip("-n", topo.ns("fa"), "link", "set", "fa0", "address", FA_MAC)
        driver = LinkDriver(topo.ns("fa"))
        try:
            driver("visited", interface="fa0", accepted=[FA])
            yield topo, driver
        finally:
            driver.stop()


def frame(packet: IP) -> bytes:
    return bytes(Ether(dst=FA_MAC, src=MN_MAC) / packet)


def test_exactly_the_registration_datagrams_for_us_arrive(link: tuple[Topology, LinkDriver]) -> None:
    topo, driver = link
    mn = topo.ns("mn")
    with netns_socket(mn, socket.SOCK_RAW, socket.IPPROTO_ICMP) as icmp, \
            netns_socket(mn, bind=(MN, 49152)) as udp, \
            netns_socket(mn, socket.SOCK_RAW, ETH_P_IP, bind=("mn0", 0), family=socket.AF_PACKET) as raw, \
            netns_socket(topo.ns("fa"), bind=(FA, 0)) as fa_out:
        udp.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(MN))
        udp.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
        udp.sendto(b"unicast", (FA, 434))
        udp.sendto(b"multicast", ("224.0.0.11", 434))  # IP_MULTICAST_TTL stays 1
        udp.sendto(b"other port", (FA, 435))
        udp.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 64)
        udp.sendto(b"broadcast", ("255.255.255.255", 434))
        bad = bytearray(frame(IP(src=MN, dst=FA, ttl=255) / UDP(sport=49152, dport=434) / Raw(b"bad checksum")))
        bad[40] ^= 0x5A
        raw.send(bytes(bad))
        raw.send(frame(IP(src=MN, dst=FA, flags="MF") / UDP(sport=49152, dport=434) / Raw(b"fragment")))
        raw.send(frame(IP(src=MN, dst="10.2.0.99") / UDP(sport=49152, dport=434) / Raw(b"someone else")))
        raw.send(frame(IP(src=MN, dst=FA, ttl=17) / UDP(sport=49153, dport=434, chksum=0) / Raw(b"no checksum")))
        fa_out.sendto(b"outgoing", (MN, 434))  # the FA's own datagram to 434 must not come back as a request
        raw.send(frame(IP(src=HOME, dst=FA, ttl=255) / UDP(sport=434, dport=434) / Raw(b"from home")))

        driver.wait_events("request", 5)
        time.sleep(0.5)  # anything that should not have come would have come by now
        icmp_errors = icmp_port_unreachables(icmp)

    arrived = {bytes.fromhex(e["payload"]): e for e in driver.events if e["event"] == "request"}
    assert set(arrived) == {b"unicast", b"multicast", b"broadcast", b"no checksum", b"from home"}
    expected = {  # payload: (source, source port, destination, TTL)
        b"unicast": (MN, 49152, FA, 255),
        b"multicast": (MN, 49152, "224.0.0.11", 1),
        b"broadcast": (MN, 49152, "255.255.255.255", 64),
        b"no checksum": (MN, 49153, FA, 17),
        b"from home": (HOME, 434, FA, 255),
    }
    for payload, (source, port, destination, ttl) in expected.items():
        e = arrived[payload]
        assert (e["source"], e["source_port"], e["destination"], e["ttl"]) == (source, port, destination, ttl)
        assert e["link_address"] == MN_MAC.replace(":", "")

    counters = driver("counters")["visited"]
    assert counters["dropped_bad_udp_checksum"] == 1
    assert counters["dropped_not_for_us"] == 1
    # The kernel's filter let through nothing but those: not the fragment, not port 435. Nor the FA's
    # own outgoing frame: a packet socket bound to ETH_P_IP sees no outgoing traffic (only ETH_P_ALL
    # taps do); the adapter would ignore a PACKET_OUTGOING frame all the same.
    assert counters["received"] == 5 + 1 + 1
    assert counters["delivered"] == 5
    # The discard socket kept the kernel from answering port 434 with ICMP; port 435 shows it would.
    assert 435 in icmp_errors and 434 not in icmp_errors
    assert counters["discarded"] >= 3  # the unicast, multicast and broadcast ones went through IP too
    # and that socket holds the interface's membership of 224.0.0.11 (its multicast filter on a real NIC)
    groups = subprocess.run([tool("ip"), "-n", topo.ns("fa"), "maddr", "show", "dev", "fa0"],
                            capture_output=True, text=True, check=True, timeout=30).stdout
    assert "224.0.0.11" in groups


def icmp_port_unreachables(icmp: socket.socket) -> list[int]:
    """The UDP destination ports quoted by the ICMP port unreachables received so far."""
    icmp.setblocking(False)
    ports: list[int] = []
    while True:
        try:
            data = icmp.recv(65535)
        except BlockingIOError:
            return ports
        packet = IP(data)
        if ICMP in packet and (packet[ICMP].type, packet[ICMP].code) == (3, 3):
            quoted = bytes(packet[ICMP].payload)
            ihl = (quoted[0] & 0x0F) * 4
            ports.append(struct.unpack_from("!H", quoted, ihl + 2)[0])


def test_replies_go_to_the_node_mac_with_valid_checksums(link: tuple[Topology, LinkDriver]) -> None:
    topo, driver = link
    with netns_socket(topo.ns("mn"), socket.SOCK_RAW, ETH_P_IP, bind=("mn0", 0), family=socket.AF_PACKET) as raw:
        raw.settimeout(5)
        driver("send_to_node", payload=b"registration reply".hex(), source=FA, source_port=434,
               destination=HOME, destination_port=49152, link_address=MN_MAC.replace(":", ""))
        driver("send_to_node", payload=b"lost".hex(), source=FA, source_port=434,
               destination=HOME, destination_port=49152, link_address="0200000000")  # 5 bytes: refused
        while True:
            packet = Ether(raw.recv(65535))
            if UDP in packet and bytes(packet[UDP].payload) == b"registration reply":
                break
    assert (packet.dst, packet.src, packet.type) == (MN_MAC, FA_MAC, ETH_P_IP)
    assert (packet[IP].src, packet[IP].dst, packet[IP].ttl, int(packet[IP].flags), packet[IP].frag) == \
        (FA, HOME, 64, 0, 0)
    assert (packet[UDP].sport, packet[UDP].dport, packet[UDP].len) == (434, 49152, 8 + len(b"registration reply"))
    sent = (packet[IP].chksum, packet[UDP].chksum)
    del packet[IP].chksum, packet[UDP].chksum
    rebuilt = Ether(bytes(packet))
    assert (rebuilt[IP].chksum, rebuilt[UDP].chksum) == sent
    counters = driver("counters")["visited"]
    assert (counters["sent"], counters["send_errors"]) == (1, 1)
