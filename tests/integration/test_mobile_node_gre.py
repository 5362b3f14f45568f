"""A co-located mobile node that prefers GRE (``tunnel.encapsulations: [gre, ipip]``) asks its home
agent for it (the G bit, RFC 5944 3.3) and tunnels both ways in GRE (RFC 2784) once granted; a home
agent that offers no GRE answers 139 and the node falls back to IP-in-IP (mip.yaml(5)).

Real ``mipd run`` home agent (userspace backend) and mobile node in the roaming topology of
tests/support/roaming.py, the node on the agent-less visited link br-v3 with a co-located address. A
correspondent on the home link pings the home address; an AF_PACKET socket on the node's link sees
what arrives from the home agent and what the node sends back, and scapy takes it apart.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from scapy.layers.inet import GRE, ICMP, IP
from scapy.layers.l2 import Ether

from tests.support import journal as journal_support
from tests.support import roaming, waiting
from tests.support.journal import Journald
from tests.support.netns import Topology, netns_socket, topology
from tests.support.tools import tool

journald = journal_support.journald
ETH_P_ALL = 0x0003  # not ETH_P_IP: only ETH_P_ALL sockets see what the host itself sends


wait_for = partial(waiting.wait_for, timeout=15.0, every=0.1)


@pytest.fixture(scope="module", params=["ipip, gre", "ipip"], ids=["ha-offers-gre", "ha-without-gre"])
def world(request: pytest.FixtureRequest, journald: Journald, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict[str, Any]]:
    offered = str(request.param)
    with topology() as topo:
        roaming.build(topo)
        roaming.move(topo, "br-v3")
        profiles = {
            "ha": roaming.home_agent_profile(tunnel=f"{{backend: userspace, encapsulations: [{offered}]}}"),
            "mn": roaming.mobile_node_profile(lifetime=600, care_of="auto", reverse_tunneling=True,
                                              tunnel="{encapsulations: [gre, ipip]}"),
        }
        suffix = "gre" if "gre" in offered else "nogre"
        with roaming.started(journald, topo, profiles, suffix, tmp_path_factory.mktemp) as daemons:
            roaming.ip("-n", topo.ns("mn"), "addr", "add", f"{roaming.COLOCATED}/24", "dev", "eth0")
            yield {"topo": topo, "gre": "gre" in offered, "instance": suffix, **daemons}


def binding(world: dict[str, Any]) -> dict[str, Any] | None:
    found = [b for b in world["ha"].json("bindings")["bindings"] if b["home_address"] == roaming.MN]
    return found[0] if found else None


class Capture:
    """IPv4 frames on the node's link, both directions, collected in a thread."""

    def __init__(self, topo: Topology) -> None:
        self.sock = netns_socket(topo.ns("mn"), socket.SOCK_RAW, ETH_P_ALL, ("eth0", 0), family=socket.AF_PACKET)
        self.sock.settimeout(0.2)
        self.packets: list[IP] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.sock.recv(65535)
            except TimeoutError:
                continue
            packet = Ether(frame).payload
            if isinstance(packet, IP):
                self.packets.append(packet)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def inner(outer: IP) -> IP | None:
    """The datagram inside an IP-in-IP (4) or GRE (47, RFC 2784: no checksum, key or sequence) packet."""
    if outer.proto == 4:
        return IP(bytes(outer.payload))
    if outer.proto == 47:
        gre = GRE(bytes(outer.payload))
        assert (gre.chksum_present, gre.key_present, gre.seqnum_present, gre.version, gre.proto) == (0, 0, 0, 0, 0x0800)
        return IP(bytes(gre.payload))
    return None


def test_pings_to_the_home_address_travel_in_the_encapsulation_granted(world: dict[str, Any],
                                                                       journald: Journald) -> None:
    topo, gre = world["topo"], world["gre"]
    found = wait_for(lambda: (b := binding(world)) is not None and b["care_of_address"] == roaming.COLOCATED and b,
                     timeout=20, what="the co-located binding")
    assert "D" in found["flags"] and "T" in found["flags"]
    assert ("G" in found["flags"]) is gre  # asked for and granted; or refused with 139, then IP-in-IP
    denied = journald.entries(count=0, timeout=0, MIP_EVENT="registration.denied",
                              MIP_INSTANCE=f"{world['instance']}-mn")
    assert [e["MIP_CODE"] for e in denied] == ([] if gre else ["139"])
    before = world["mn"].json("stats")["counters"]["routing"]
    capture = Capture(topo)
    try:
        out = subprocess.run([tool("ip"), "netns", "exec", topo.ns("cn"), tool("ping"), "-n", "-c", "3", "-i", "0.2",
                              "-W", "2", roaming.MN], capture_output=True, text=True, timeout=30, check=False)
        time.sleep(0.3)
    finally:
        capture.close()
    assert out.returncode == 0, out.stdout + out.stderr
    protocol = 47 if gre else 4
    tunnelled = [(p.src, p.dst, p.proto, inner(p)) for p in capture.packets if p.proto in (4, 47)]
    requests = [(s, d, pr) for s, d, pr, i in tunnelled if i is not None and i.src == roaming.CN
                and i.dst == roaming.MN and ICMP in i and i[ICMP].type == 8]
    replies = [(s, d, pr) for s, d, pr, i in tunnelled if i is not None and i.src == roaming.MN
               and i.dst == roaming.CN and ICMP in i and i[ICMP].type == 0]
    assert requests and set(requests) == {(roaming.HA, roaming.COLOCATED, protocol)}, tunnelled
    # Reverse tunnelling (T): the node's echo replies go back to the home agent in the same encapsulation.
    assert replies and set(replies) == {(roaming.COLOCATED, roaming.HA, protocol)}, tunnelled
    after = world["mn"].json("stats")["counters"]["routing"]
    assert after["decapsulated"] >= before["decapsulated"] + 3
    assert after["reverse_tunnelled"] >= before["reverse_tunnelled"] + 3
