"""The mobile link adapter for real: Agent Advertisements in and Agent Solicitations out, in namespaces.

    mn (mn0, MAC 02:00:00:00:00:0a; 10.2.0.20/24 or no address at all) ----- fa (fa0 10.2.0.1, MAC ..:fa)

A MobileLink runs in ``mn`` (tests/support/mobile_link_driver.py). From ``fa`` the test writes
frames on a packet socket: Agent Advertisements to 224.0.0.1, to 255.255.255.255 and unicast to the
home address, and around them what a mobile node must not take for one (RFC 5944 2.4): a router
advertisement without the Mobility Agent Advertisement Extension, one with a bad ICMP checksum, an
ICMP echo, a fragment, an advertisement to another host's MAC. Exactly the three arrive, each with
its own IP source, Ethernet source and TTL. Solicitations (2.2) come out as frames to 01:00:5e:00:00:0b
or broadcast, TTL 1, from the given source address, even when mn0 has no IPv4 address: the agent's
IP stack takes them too (a raw ICMP socket joined to 224.0.0.11, as mipd.adapters.link.icmp opens it).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from mipd.core.wire.icmp import (
    AdvertisementFlags,
    AgentAdvertisement,
    AgentSolicitation,
    MobilityAgentExtension,
    RouterAddress,
    decode_icmp,
)
from tests.support.foreign_link import LinkDriver
from tests.support.netns import Topology, ip, netns_socket, topology
from tests.support.tools import tool

FA, FA2, MN, HOME = "10.2.0.1", "10.2.0.2", "10.2.0.20", "10.1.0.10"
MN_MAC, FA_MAC, FA2_MAC = "02:00:00:00:00:0a", "02:00:00:00:00:fa", "02:00:00:00:00:fb"
ETH_P_IP = 0x0800
DRIVER = str(Path(__file__).resolve().parents[1] / "support" / "mobile_link_driver.py")


def advertisement(sequence: int, *, mobility: bool = True) -> bytes:
    extensions = (MobilityAgentExtension(sequence, 600, AdvertisementFlags.F | AdvertisementFlags.T,
                                         (IPv4Address(FA),)),) if mobility else ()
    return AgentAdvertisement(1800, 0, (RouterAddress(IPv4Address(FA)),), extensions).encode()


@pytest.fixture(params=["addressed", "no-address"])
def link(request: pytest.FixtureRequest) -> Iterator[tuple[Topology, LinkDriver]]:
    with topology() as topo:
        topo.link("mn", "mn0", f"{MN}/24", "fa", "fa0", f"{FA}/24")
        mn = topo.ns("mn")
        ip("-n", mn, "link", "set", "mn0", "address", MN_MAC)
        ip("-n", topo.ns("fa"), "link", "set", "fa0", "address", FA_MAC)
        ip("-n", mn, "addr", "add", f"{HOME}/32", "dev", "lo")  # away from home: the home address on lo
        if request.param == "no-address":
            ip("-n", mn, "addr", "flush", "dev", "mn0")
        driver = LinkDriver(mn, script=DRIVER)
        try:
            driver("mobile_link", interface="mn0", source=HOME)
            yield topo, driver
        finally:
            driver.stop()


def test_exactly_the_agent_advertisements_arrive(link: tuple[Topology, LinkDriver]) -> None:
    topo, driver = link
    with netns_socket(topo.ns("fa"), socket.SOCK_RAW, ETH_P_IP, bind=("fa0", 0), family=socket.AF_PACKET) as raw:
        def send(dst_mac: str, src_mac: str, packet: IP) -> None:
            packet.proto = 1  # scapy leaves 0 under a Raw payload
            raw.send(bytes(Ether(dst=dst_mac, src=src_mac) / packet))

        send("01:00:5e:00:00:01", FA_MAC, IP(src=FA, dst="224.0.0.1", ttl=1) / Raw(advertisement(1)))
        send("01:00:5e:00:00:01", FA_MAC, IP(src=FA, dst="224.0.0.1", ttl=1) / Raw(advertisement(9, mobility=False)))
        bad = bytearray(advertisement(10))
        bad[2] ^= 0x5A
        send("01:00:5e:00:00:01", FA_MAC, IP(src=FA, dst="224.0.0.1", ttl=1) / Raw(bytes(bad)))
        send(MN_MAC, FA_MAC, IP(src=FA, dst=HOME) / ICMP(type=8) / Raw(b"echo"))
        send("01:00:5e:00:00:01", FA_MAC, IP(src=FA, dst="224.0.0.1", ttl=1, flags="MF") / Raw(advertisement(11)))
        send("02:00:00:00:00:99", FA_MAC, IP(src=FA, dst=HOME, ttl=1) / Raw(advertisement(12)))  # another host
        send("ff:ff:ff:ff:ff:ff", FA2_MAC, IP(src=FA2, dst="255.255.255.255", ttl=1) / Raw(advertisement(2)))
        send(MN_MAC, FA_MAC, IP(src=FA, dst=HOME, ttl=7) / Raw(advertisement(3)))  # an answer; any TTL is reported

        heard = driver.wait_events("advertisement", 3)
        time.sleep(0.5)  # anything that should not have come would have come by now

    heard = [e for e in driver.events if e["event"] == "advertisement"]
    by_sequence = {e["sequence"]: e for e in heard}
    assert sorted(by_sequence) == [1, 2, 3] and len(heard) == 3
    expected = {  # sequence: (source, destination, link_address, ttl)
        1: (FA, "224.0.0.1", FA_MAC, 1),
        2: (FA2, "255.255.255.255", FA2_MAC, 1),
        3: (FA, HOME, FA_MAC, 7),
    }
    for sequence, (source, destination, mac, ttl) in expected.items():
        e = by_sequence[sequence]
        assert (e["source"], e["destination"], e["link_address"], e["ttl"]) == \
            (source, destination, mac.replace(":", ""), ttl)
        assert (e["lifetime"], e["care_of_addresses"]) == (1800, [FA])
        assert e["flags"] == int(AdvertisementFlags.F | AdvertisementFlags.T)

    counters = driver("counters")["mobile_link"]
    assert counters["ignored_router_advertisement"] == 1
    assert counters["dropped_bad_checksum"] == 1
    assert counters["ignored_other_host"] == 1
    # The kernel's filter let through nothing else: not the echo, not the fragment.
    assert counters["received"] == 3 + 3
    assert counters["delivered"] == 3
    # Every IPv4 interface joins 224.0.0.1 itself, with or without an address (and the packet
    # socket adds the group's MAC): a real NIC's multicast filter passes advertisements to it.
    groups = subprocess.run([tool("ip"), "-n", topo.ns("mn"), "maddr", "show", "dev", "mn0"],
                            capture_output=True, text=True, check=True, timeout=30).stdout
    assert "inet  224.0.0.1" in groups and "01:00:5e:00:00:01" in groups


def join(sock: socket.socket, group: str, interface_address: str) -> None:
    """IP_ADD_MEMBERSHIP with struct ip_mreq (the interface by address, looked up in the socket's namespace)."""
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                    socket.inet_aton(group) + socket.inet_aton(interface_address))


def test_solicitations_leave_as_frames_with_ttl_1(link: tuple[Topology, LinkDriver]) -> None:
    topo, driver = link
    solicitation = AgentSolicitation().encode()
    fa = topo.ns("fa")
    with netns_socket(fa, socket.SOCK_RAW, ETH_P_IP, bind=("fa0", 0), family=socket.AF_PACKET) as raw, \
            netns_socket(fa, socket.SOCK_RAW, socket.IPPROTO_ICMP) as icmp:
        join(icmp, "224.0.0.11", FA)
        driver("solicit", payload=solicitation.hex(), destination="224.0.0.11", ttl=1)  # from HOME
        driver("solicit", payload=solicitation.hex(), destination="224.0.0.11", ttl=1, source="0.0.0.0")
        driver("solicit", payload=solicitation.hex(), destination="255.255.255.255", ttl=1)
        driver("solicit", payload=solicitation.hex(), destination=FA, ttl=1)  # unicast: no MAC known, refused
        frames = receive_solicitations(raw, 3)
        datagrams = receive_solicitations(icmp, 3, link_layer=False)

    expected = [("01:00:5e:00:00:0b", HOME, "224.0.0.11"), ("01:00:5e:00:00:0b", "0.0.0.0", "224.0.0.11"),
                ("ff:ff:ff:ff:ff:ff", HOME, "255.255.255.255")]
    assert [(f.dst, f[IP].src, f[IP].dst) for f in frames] == expected
    for f in frames:
        assert (f.src, f.type, f[IP].ttl, f[IP].proto, int(f[IP].flags), f[IP].frag) == (MN_MAC, ETH_P_IP, 1, 1, 0, 0)
        assert decode_icmp(bytes(f[IP].payload)) == AgentSolicitation()  # the ICMP checksum verifies
        sent = f[IP].chksum
        del f[IP].chksum
        assert Ether(bytes(f))[IP].chksum == sent  # scapy computes the same IP header checksum
    # The agent's IP stack takes all three, the one from 0.0.0.0 included (RFC 1256 5.1).
    assert [(d.src, d.dst, d.ttl) for d in datagrams] == [(src, dst, 1) for _, src, dst in expected]
    counters = driver("counters")["mobile_link"]
    assert (counters["sent"], counters["send_errors"]) == (3, 1)


def receive_solicitations(sock: socket.socket, count: int, *, link_layer: bool = True) -> list[Ether | IP]:
    """The first ``count`` ICMP type 10 messages read from ``sock`` (within 5 seconds)."""
    sock.settimeout(5)
    found: list[Ether | IP] = []
    while len(found) < count:
        data = sock.recv(65535)
        packet: Ether | IP = Ether(data) if link_layer else IP(data)
        if ICMP in packet and packet[ICMP].type == 10:
            found.append(packet)
    return found
