"""A hostile host on a visited link, next to a real mobile node registered through a real foreign agent.

Topology: tests/support/roaming.py (home agent, two foreign agents, the node on visited link 1), plus an
``evil`` namespace on the same bridge. From there the test sends what an attacker on the link can:

- broken agent advertisements (bad checksum, truncated mobility extension, a length that overruns the
  packet, an unknown non-skippable extension): each dropped and counted by the node's link adapter;
- a well-formed advertisement from an agent that is not there (another address, no prefix-lengths
  extension): the node notes it (``agent.discovered``) and stays with its foreign agent — RFC 5944 2.4.2
  moves only when the current agent is lost or the prefixes differ;
- forged registration replies to the node's registration socket (random Identification, random or no
  authenticator, truncated): dropped and counted.

Through all of it the node stays registered through the same agent with the same binding at the home
agent, and its mipd keeps running. (Advertisements carry no authentication in RFC 5944: an attacker who
advertises disjoint prefixes can make a node move; that is the protocol's own limit, see docs/robustness.md.)
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_mobile_node_daemon import binding, status, wait_for, world
from tests.support import journal as journal_support
from tests.support import roaming
from tests.support.journal import Journald
from tests.support.netns import netns_socket
from tests.support.tools import tool

journald = journal_support.journald
EVIL = "10.2.0.66"
__all__ = ["world"]  # the module fixture, used here as is


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def advertisement(source: str, *, extension: bytes | None = None, good_checksum: bool = True) -> bytes:
    """ICMP type 9 code 0: one router address (``source``), lifetime 9 s, then the mobility extension."""
    router = struct.pack("!BBHBBH4sI", 9, 0, 0, 1, 2, 9, socket.inet_aton(source), 0)
    if extension is None:  # seq 300, lifetime 600, F, one care-of address: the advertiser's own
        extension = struct.pack("!BBHHBB4s", 16, 10, 300, 600, 0x10, 0, socket.inet_aton(source))
    body = router + extension
    value = checksum(body) if good_checksum else checksum(body) ^ 0x5555
    return body[:2] + struct.pack("!H", value) + body[4:]


@pytest.fixture(scope="module")
def attacker(world: dict[str, Any]) -> Iterator[socket.socket]:
    roaming.port(world["topo"], "evil", "eth0", f"{EVIL}/24", "br-v1")
    roaming.move(world["topo"], "br-v1")
    wait_for(lambda: status(world).get("registered") and status(world).get("care_of_address") == roaming.FA1,
             timeout=30, what="the node to register through foreign agent 1")
    sock = netns_socket(world["topo"].ns("evil"), socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")  # 255.255.255.255 out of this link
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
    # The node answers no ARP while away: the attacker learns its MAC from the wire, here from ip link.
    evil, mn = world["topo"].ns("evil"), world["topo"].ns("mn")
    mac = json.loads(subprocess.run([tool("ip"), "-j", "-n", mn, "link", "show", "eth0"], capture_output=True,
                                    text=True, check=True).stdout)[0]["address"]
    roaming.ip("-n", evil, "route", "add", f"{roaming.MN}/32", "dev", "eth0")
    roaming.ip("-n", evil, "neigh", "add", roaming.MN, "lladdr", mac, "dev", "eth0", "nud", "permanent")
    yield sock
    sock.close()


def node_port(world: dict[str, Any]) -> int:
    """The node's registration socket: mipd's one UDP socket in its namespace (ss -uanp)."""
    out = subprocess.run([tool("ip"), "netns", "exec", world["topo"].ns("mn"), tool("ss"), "-uanpH"],
                         capture_output=True, text=True, check=True).stdout
    ports = [int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if "python" in line
             or "mipd" in line]
    assert len(ports) == 1, out
    return ports[0]


def settled(world: dict[str, Any]) -> tuple[Any, Any, Any]:
    s, b = status(world), binding(world)
    return s["agent"], s["care_of_address"], b["care_of_address"] if b else None


def test_broken_advertisements_are_dropped_and_counted(world: dict[str, Any], attacker: socket.socket) -> None:
    before_state = settled(world)
    link_before = world["mn"].json("stats")["counters"]["link"]
    broken = [
        advertisement(EVIL, good_checksum=False),
        advertisement(EVIL, extension=struct.pack("!BBHH", 16, 10, 300, 600)),  # the extension cut short
        advertisement(EVIL, extension=struct.pack("!BB", 16, 200) + os.urandom(6)),  # a length past the end
        advertisement(EVIL, extension=bytes([99, 4]) + os.urandom(4)),  # unknown, non-skippable (0-127)
    ]
    for _ in range(25):
        for packet in broken:
            attacker.sendto(packet, ("255.255.255.255", 0))
    time.sleep(1.0)
    link = world["mn"].json("stats")["counters"]["link"]
    dropped = sum(link.get(k, 0) - link_before.get(k, 0) for k in ("dropped_bad_checksum", "dropped_malformed"))
    assert dropped >= 75, (link_before, link)  # the first three kinds; the fourth is decoded, then ignored
    assert world["mn"].process.poll() is None
    assert settled(world) == before_state == (roaming.FA1, roaming.FA1, roaming.FA1)


def test_a_spoofed_agent_does_not_pull_the_node_away(world: dict[str, Any], attacker: socket.socket,
                                                     journald: Journald) -> None:
    for _ in range(10):
        attacker.sendto(advertisement(EVIL), ("255.255.255.255", 0))
        time.sleep(0.1)
    heard = journald.entries(count=1, MIP_EVENT="agent.discovered", MIP_INSTANCE="roam-mn", MIP_FOREIGN_AGENT=EVIL)
    assert heard, "the node never heard the spoofed advertisement: the test proves nothing"
    time.sleep(1.0)
    assert settled(world) == (roaming.FA1, roaming.FA1, roaming.FA1)


def test_forged_replies_to_the_node_are_dropped(world: dict[str, Any]) -> None:
    port = node_port(world)
    counters_before = world["mn"].json("stats")["counters"]
    sock = netns_socket(world["topo"].ns("evil"), socket.SOCK_DGRAM, 0, (EVIL, 434))
    try:
        fixed = struct.pack("!BBH4s4sQ", 3, 0, 600, socket.inet_aton(roaming.MN), socket.inet_aton(roaming.HA),
                            int.from_bytes(os.urandom(8), "big"))
        forged = [fixed, fixed + struct.pack("!BBI", 32, 20, 256) + os.urandom(16), fixed[:11], os.urandom(700)]
        for _ in range(20):
            for packet in forged:
                sock.sendto(packet, (roaming.MN, port))
        time.sleep(1.0)
    finally:
        sock.close()
    counters = world["mn"].json("stats")["counters"]
    dropped = sum(counters["dropped"].values()) - sum(counters_before["dropped"].values())
    assert dropped == 80, (counters_before["dropped"], counters["dropped"])
    assert world["mn"].process.poll() is None
    assert settled(world) == (roaming.FA1, roaming.FA1, roaming.FA1)
