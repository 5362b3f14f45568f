"""The tests' NAT (tests/support/nat.py) behaves as a real NAT: nftables masquerade and conntrack.

    client 10.8.0.50 --- br-nat --- [nat] 10.7.0.2 --- 10.7.0.1 server

A client behind the NAT talks UDP to a server outside; the server sees the NAT's address; an
unsolicited datagram from outside reaches nobody inside; a mapping without traffic expires after the
UDP timeout and traffic keeps it; a flush (NAT reboot) loses it, and with port randomisation the next
datagram leaves from another port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from tests.support.nat import NAT_INSIDE, NAT_OUTSIDE, NAT_PEER, Nat, nat, parse_conntrack
from tests.support.netns import Topology, netns_socket, topology
from tests.support.roaming import ip, port
from tests.support.tools import tool

CLIENT, CLIENT_PORT, SERVER_PORT = "10.8.0.50", 40434, 5434
TIMEOUT = 3


@pytest.fixture
def topo() -> Iterator[Topology]:
    with topology() as t:
        yield t


def behind(topo: Topology) -> None:
    """The client host on the NAT's visited network, its default route via the NAT."""
    port(topo, "client", "eth0", f"{CLIENT}/24", "br-nat")
    ip("-n", topo.ns("client"), "route", "add", "default", "via", NAT_INSIDE)


def sockets(topo: Topology) -> tuple[socket.socket, socket.socket]:
    client = netns_socket(topo.ns("client"), bind=(CLIENT, CLIENT_PORT))
    server = netns_socket(topo.ns("server"), bind=(NAT_PEER, SERVER_PORT))
    for sock in (client, server):
        sock.settimeout(2)
    return client, server


def exchange(client: socket.socket, server: socket.socket, payload: bytes) -> tuple[str, int]:
    """The client sends ``payload`` to the server; the (address, port) the server saw it from."""
    client.sendto(payload, (NAT_PEER, SERVER_PORT))
    data, source = server.recvfrom(2048)
    assert data == payload
    return source


def arrives(sock: socket.socket, wait: float = 1.0) -> bytes | None:
    sock.settimeout(wait)
    try:
        return sock.recv(2048)
    except TimeoutError:
        return None


@pytest.fixture
def box(topo: Topology) -> Iterator[Nat]:
    with nat(topo, peer="server", peer_interface="eth0", udp_timeout=TIMEOUT) as b:
        behind(topo)
        yield b


def test_the_server_sees_the_nat_address_and_answers_through_the_mapping(topo: Topology, box: Nat) -> None:
    client, server = sockets(topo)
    with client, server:
        source = exchange(client, server, b"hello")
        assert source[0] == NAT_OUTSIDE
        mapping = box.mapping((CLIENT, CLIENT_PORT))
        assert mapping is not None
        assert mapping.public == (IPv4Address(source[0]), source[1])
        assert mapping.remote == (IPv4Address(NAT_PEER), SERVER_PORT)
        assert not mapping.replied
        server.sendto(b"answer", source)
        assert arrives(client) == b"answer"
        mapping = box.mapping((CLIENT, CLIENT_PORT))
        assert mapping is not None and mapping.replied
        assert mapping.timeout <= TIMEOUT


def test_nothing_unsolicited_comes_in(topo: Topology, box: Nat) -> None:
    client, server = sockets(topo)
    with client, server:
        # no mapping yet: to the NAT's address at the client's port, and routed to the private address
        server.sendto(b"to the nat", (NAT_OUTSIDE, CLIENT_PORT))
        ip("-n", topo.ns("server"), "route", "add", "10.8.0.0/24", "via", NAT_OUTSIDE)
        server.sendto(b"to the private address", (CLIENT, CLIENT_PORT))
        assert arrives(client) is None
        # a mapping towards the server admits only the server's port
        source = exchange(client, server, b"out")
        with netns_socket(topo.ns("server"), bind=(NAT_PEER, SERVER_PORT + 1)) as other:
            other.sendto(b"from another port", source)
        assert arrives(client) is None


def test_the_udp_timeout_is_the_nat_namespace_s_own(topo: Topology, box: Nat) -> None:
    assert box.sysctl("nf_conntrack_udp_timeout") == str(TIMEOUT)
    assert box.sysctl("nf_conntrack_udp_timeout_stream") == str(TIMEOUT)
    with open("/proc/sys/net/netfilter/nf_conntrack_udp_timeout") as host:
        assert host.read().strip() != str(TIMEOUT)


def test_a_mapping_expires_without_traffic_and_traffic_keeps_it(topo: Topology, box: Nat) -> None:
    client, server = sockets(topo)
    with client, server:
        source = exchange(client, server, b"one")
        server.sendto(b"reply", source)
        assert arrives(client) == b"reply"
        # traffic every second, for three timeouts: the mapping stays, the server still reaches the client
        until = time.monotonic() + 3 * TIMEOUT
        while time.monotonic() < until:
            assert exchange(client, server, b"keepalive") == source
            time.sleep(1)
        server.sendto(b"still there", source)
        assert arrives(client) == b"still there"
        # silence for longer than the timeout: the mapping is gone, the server's datagram is lost
        time.sleep(TIMEOUT + 1.5)
        assert box.mapping((CLIENT, CLIENT_PORT)) is None
        server.sendto(b"too late", source)
        assert arrives(client) is None


def test_without_randomisation_a_new_mapping_keeps_the_port(topo: Topology, box: Nat) -> None:
    client, server = sockets(topo)
    with client, server:
        first = exchange(client, server, b"before")
        assert first == (NAT_OUTSIDE, CLIENT_PORT)
        box.flush()
        assert box.mappings() == []
        assert exchange(client, server, b"after") == first


def test_a_flush_loses_the_mapping_and_randomised_ports_change(topo: Topology) -> None:
    with nat(topo, peer="server", peer_interface="eth0", randomize_ports=True) as box:
        behind(topo)
        client, server = sockets(topo)
        with client, server:
            before = exchange(client, server, b"before")
            assert before[0] == NAT_OUTSIDE and before[1] != CLIENT_PORT
            box.flush()
            assert box.mappings() == []
            server.sendto(b"after the reboot", before)
            assert arrives(client) is None
            after = exchange(client, server, b"after")
            assert after[0] == NAT_OUTSIDE
            assert after[1] != before[1]  # a fresh draw: the same port again has odds of 1 in ~64000
            mapping = box.mapping((CLIENT, CLIENT_PORT))
            assert mapping is not None and mapping.public == (IPv4Address(after[0]), after[1])


def test_ip_in_ip_does_not_cross(topo: Topology, box: Nat) -> None:
    client = netns_socket(topo.ns("client"), kind=socket.SOCK_RAW, proto=socket.IPPROTO_IPIP)
    server = netns_socket(topo.ns("server"), kind=socket.SOCK_RAW, proto=socket.IPPROTO_IPIP)
    with client, server:
        client.sendto(bytes(20), (NAT_PEER, 0))
        assert arrives(server) is None


def test_everything_is_removed(topo: Topology) -> None:
    with nat(topo, peer="server", peer_interface="eth0") as box:
        namespace = box.namespace
    assert namespace not in topo.namespaces
    assert not os.path.exists(f"/run/netns/{namespace}")
    links = subprocess.run([tool("ip"), "-n", topo.ns("sw"), "-o", "link"],
                           capture_output=True, text=True, timeout=30, check=True).stdout
    assert "br-nat" not in links


def test_parse_conntrack_reads_both_directions() -> None:
    text = ("udp      17 28 src=10.8.0.50 dst=10.7.0.1 sport=40434 dport=434 [UNREPLIED] src=10.7.0.1 "
            "dst=10.7.0.2 sport=434 dport=61234 mark=0 use=1\n"
            "udp      17 118 src=10.8.0.51 dst=10.7.0.1 sport=434 dport=434 src=10.7.0.1 dst=10.7.0.2 "
            "sport=434 dport=434 [ASSURED] mark=0 use=1\n")
    first, second = parse_conntrack(text)
    assert first.inside == (IPv4Address("10.8.0.50"), 40434)
    assert first.public == (IPv4Address("10.7.0.2"), 61234)
    assert first.timeout == 28 and not first.replied and not first.assured
    assert second.replied and second.assured and second.public[1] == 434
