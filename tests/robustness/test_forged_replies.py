"""Forged and broken registration replies at a real foreign agent's relay socket; kill -9 under load.

The test plays the mobile node on the visited link and the home agent (a socket on 10.4.0.3:434, an
address of the ``ha`` namespace the foreign agent's profile has an FA-HA association with). While a
relayed request is pending, replies that are not the home agent's answer to it arrive at the relay socket:
a wrong Identification, a truncated datagram, a request instead of a reply, oversized garbage. Each is
dropped and counted; the visitor stays pending, the node hears nothing. The genuine reply then completes
the registration. A reply with the right Identification but a wrong Foreign-Home authenticator is
discarded and the node told 68 (RFC 5944 3.7.3.1); the agent keeps running throughout.

Then five visitors, a stream of requests at the agent, and kill -9: after the restart every active visitor
is back once, with no more lifetime than before, and the kernel's delivery state is as it was.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.mobileip import MobileIP, MobileIPRRP

from tests.integration.test_foreign_agent_daemon import FAKE_HA, K1, KFH, MN1, SPARE, Node, fa_profile, request, topo
from tests.integration.test_home_agent_daemon import auth_ext, parse_reply
from tests.support import journal as journal_support
from tests.support.daemon import HomeAgentDaemon
from tests.support.journal import Journald
from tests.support.netns import Topology, netns_socket
from tests.support.tools import tool

journald = journal_support.journald
__all__ = ["topo"]  # the foreign agent tests' topology fixture, used as is


@pytest.fixture(scope="module")
def foreign_agent(journald: Journald, topo: Topology, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[HomeAgentDaemon]:
    workdir = tmp_path_factory.mktemp("fa")
    fa = HomeAgentDaemon(journald, topo, workdir, "fa-e2e", namespace="fa")
    fa.write_profile(fa_profile(workdir, fake_home_agent=True).replace("pending_timeout: 2", "pending_timeout: 7"))
    fa.start()
    yield fa
    fa.close()


@pytest.fixture
def home_agent_socket(topo: Topology) -> Iterator[socket.socket]:
    sock = netns_socket(topo.ns("ha"), socket.SOCK_DGRAM, 0, (FAKE_HA, 434))
    sock.settimeout(5)
    yield sock
    sock.close()


def reply(ident: int, *, code: int = 0, fa_ha_key: bytes = KFH, home: str = MN1) -> bytes:
    message = bytes(MobileIP(type=3) / MobileIPRRP(code=code, lifetime=300, homeaddr=home, haaddr=FAKE_HA, id=ident))
    message += auth_ext(32, 256, K1, message)
    return message + auth_ext(34, 502, fa_ha_key, message)


def relayed(node: Node, home_agent_socket: socket.socket) -> tuple[int, tuple[str, int]]:
    """The node asks; the request reaches our home agent socket; returns its Identification and relay address."""
    message, ident = request(MN1, K1, 256, ha=FAKE_HA)
    node.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)  # from the link itself (RFC 5944 3.7.2.1)
    node.sock.sendto(message, ("10.2.0.1", 434))
    data, relay = home_agent_socket.recvfrom(4096)
    assert data[:1] == b"\x01" and int.from_bytes(data[16:24], "big") == ident
    return ident, relay


def visitor(fa: HomeAgentDaemon) -> dict[str, Any] | None:
    found = [v for v in fa.json("visitors")["visitors"] if v["home_address"] == MN1]
    return found[0] if found else None


def test_forged_replies_are_dropped_and_the_genuine_one_completes(foreign_agent: HomeAgentDaemon, topo: Topology,
                                                                  home_agent_socket: socket.socket) -> None:
    node = Node(topo.ns("mn"))
    try:
        ident, relay = relayed(node, home_agent_socket)
        assert visitor(foreign_agent)["state"] == "pending"  # type: ignore[index]
        dropped_before = foreign_agent.json("stats")["counters"]["dropped"]
        forgeries = [
            reply(ident ^ 0x1234),  # another Identification: no pending request matches
            reply(ident)[:13],  # truncated
            reply(ident)[:1].replace(b"\x03", b"\x01") + reply(ident)[1:],  # a request on the relay socket
            os.urandom(1400),  # garbage
            reply(ident, home="10.1.0.99"),  # another home address
        ]
        for forged in forgeries:
            home_agent_socket.sendto(forged, relay)
        time.sleep(0.5)
        assert foreign_agent.process and foreign_agent.process.poll() is None
        assert visitor(foreign_agent)["state"] == "pending"  # type: ignore[index]
        node.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            node.sock.recvfrom(4096)  # nothing reached the node
        dropped = foreign_agent.json("stats")["counters"]["dropped"]
        assert sum(dropped.values()) - sum(dropped_before.values()) == len(forgeries), (dropped_before, dropped)
        assert {k for k, v in dropped.items() if v > dropped_before.get(k, 0)} >= {"no_pending", "malformed"}
        home_agent_socket.sendto(reply(ident), relay)  # the home agent's real answer
        node.sock.settimeout(5)
        data, _ = node.sock.recvfrom(4096)
        assert parse_reply(data, K1)["code"] == 0
        assert visitor(foreign_agent)["state"] == "active"  # type: ignore[index]

        # Right Identification, wrong Foreign-Home authenticator: discarded, the node is told 68.
        ident, relay = relayed(node, home_agent_socket)
        home_agent_socket.sendto(reply(ident, fa_ha_key=bytes(16)), relay)
        data, _ = node.sock.recvfrom(4096)
        assert (parse_reply(data, K1)["code"], parse_reply(data, K1)["ident"]) == (68, ident)
        assert foreign_agent.json("stats")["counters"]["dropped"]["bad_fa_ha"] == 1
        assert visitor(foreign_agent)["state"] == "active"  # the earlier registration stands
    finally:
        node.close()


def fa_owned(topo: Topology) -> list[str]:
    """The foreign agent's delivery state in the kernel: proto-77 routes and its policy rules."""
    run = lambda *a: subprocess.run([tool("ip"), "-n", topo.ns("fa"), *a], capture_output=True,  # noqa: E731
                                    text=True, check=True).stdout.splitlines()
    return sorted([" ".join(r.split()) for r in run("route", "show", "table", "all", "proto", "77")]
                  + [" ".join(r.split()) for r in run("rule") if r.startswith("77")])


def test_kill_9_under_load_keeps_every_visitor_once(foreign_agent: HomeAgentDaemon, topo: Topology,
                                                    home_agent_socket: socket.socket) -> None:
    node = Node(topo.ns("mn"))
    homes = [MN1, *SPARE[:4]]
    try:
        for home in homes:  # each registered through the agent, answered by "the home agent" (this test)
            message, ident = request(home, K1, 256, ha=FAKE_HA)
            node.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
            node.sock.sendto(message, ("10.2.0.1", 434))
            _, relay = home_agent_socket.recvfrom(4096)
            home_agent_socket.sendto(reply(ident, home=home), relay)
            node.sock.settimeout(5)
            assert parse_reply(node.sock.recvfrom(4096)[0], K1)["code"] == 0
        before = {v["home_address"]: v for v in foreign_agent.json("visitors")["visitors"]}
        assert set(before) >= set(homes) and all(before[h]["state"] == "active" for h in homes)
        plane = fa_owned(topo)
        assert len(plane) >= len(homes), plane  # something per visitor to lose
        load = subprocess.Popen(  # requests keep coming to the agent from the visited link
            [tool("ip"), "netns", "exec", topo.ns("mn"), sys.executable, "-m", "tests.support.flood", "10.2.0.1",
             "4", "500", "badauth,nospi,short"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parents[2])
        time.sleep(1.5)
        foreign_agent.kill9()
        foreign_agent.start()
        load.communicate(timeout=60)
        after = foreign_agent.json("visitors")["visitors"]
        active = [v["home_address"] for v in after if v["state"] == "active"]
        assert sorted(active) == sorted(h for h, v in before.items() if v["state"] == "active")  # all, once
        for entry in after:
            if entry["state"] == "active":
                assert 0 < entry["lifetime_remaining"] <= before[entry["home_address"]]["lifetime_remaining"]
        assert fa_owned(topo) == plane  # delivery re-installed as it was, nothing twice
        assert foreign_agent.process and foreign_agent.process.poll() is None
    finally:
        node.close()
