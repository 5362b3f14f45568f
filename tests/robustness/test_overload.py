"""Overload protection: a home agent flooded far above its saturation by one source keeps serving.

A real ``mipd run`` home agent (tests/support/daemon.py, its journal in a real journald). One process
in the home namespace sends forged Registration Requests (the configured SPI 256, a random
authenticator: tests/support/flood.py ``badauth``) as fast as it can for a few seconds, from one
source address; meanwhile a legitimate node in the visited namespace re-registers every 50 ms from its
co-located address. The flooding source runs out of its authentication-failure budget
(mipd/core/budget.py, mipd(8) JOURNAL) and its datagrams are dropped before any HMAC is computed.
Asserted: at least 80 % of the node's registrations are answered within 1 s (without the budget about
2 % are; the issue's 99 % target is a benchmark figure, not a timed test's), ``mipctl stats`` counts
the shed datagrams (``source_over_budget``), and the journal holds a rate-limited summary of them,
not one entry per datagram. Printed: the figures (legitimate share, flood rate, shed count).

Then from spoofed sources: the same forged requests from random addresses of 198.18.0.0/16 (a raw
socket), so that no source fails often enough to run out. What holds then is the rate limit on 131
replies (mipd/core/reply_limit.py): the forged requests are checked and left unanswered, with no reply
built, signed or committed; and the flood guard (mipd/core/flood_guard.py), which has the kernel admit
the node's known source and only a sample of the others. Asserted: at least 75 % of the node's
registrations are still answered within 1 s (measured 97 %; 48 % without the guard, 2 % without
either), the forgeries are counted as ``reply_rate_limited`` while at most a burst of 131 goes out,
the kernel dropped most of the flood (``socket_queue``), memory stays bounded, and the daemon lives on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_home_agent_daemon import ask, topo
from tests.robustness.test_flood import finished, flood, legit_node
from tests.support import journal as journal_support
from tests.support.daemon import COLOCATED, NODES, HomeAgentDaemon, Peer
from tests.support.journal import Journald
from tests.support.netns import Topology

journald = journal_support.journald
__all__ = ["topo"]  # the home agent tests' topology fixture, used as is
MN2 = list(NODES)[1]
FLOOD_SECONDS = 5.0


@pytest.fixture(scope="module")
def home_agent(journald: Journald, topo: Topology, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[HomeAgentDaemon]:
    daemon = HomeAgentDaemon(journald, topo, tmp_path_factory.mktemp("ha"), "ha-overload")
    daemon.start()
    yield daemon
    daemon.close()


def test_a_source_failing_authentication_is_shed_and_the_legitimate_node_is_served(
        home_agent: HomeAgentDaemon, topo: Topology, journald: Journald) -> None:
    peer = Peer(topo.ns("visited"), COLOCATED)
    try:
        assert ask(peer, MN2, lifetime=600)["code"] == 0
        before = home_agent.json("stats")["counters"]
        attack = flood(topo, FLOOD_SECONDS, 0, "badauth")  # rate 0: as fast as the sender goes
        times = legit_node(peer, FLOOD_SECONDS)
        result = finished(attack)
        after = home_agent.json("stats")["counters"]
        served = sorted(t for t in times if t is not None)
        share = len(served) / len(times)
        shed = after["dropped"].get("source_over_budget", 0) - before["dropped"].get("source_over_budget", 0)
        dropped = journald.entries(count=1, MIP_EVENT="packet.dropped", MIP_INSTANCE=home_agent.instance,
                                   MIP_REASON="source-over-budget")
        figures = {
            "flood_sent": result["sent"], "flood_rate_per_s": round(result["sent"] / FLOOD_SECONDS),
            "flood_answered": result["replies"], "legit_sent": len(times), "legit_share_within_1s": round(share, 3),
            "legit_p50_ms": round(served[len(served) // 2] * 1000, 1) if served else None,
            "received": after["requests_received"] - before["requests_received"],
            "denied_131": after["denied"].get("131", 0) - before["denied"].get("131", 0),
            "shed_source_over_budget": shed, "journal_entries": len(dropped),
        }
        print("overload figures:", json.dumps(figures))
        assert share >= 0.80, figures
        assert shed > 0 and shed > figures["denied_131"], figures  # most of the flood never reached an HMAC
        assert 1 <= len(dropped) <= 10 + 10 * (FLOOD_SECONDS + 5), figures  # a summary, rate-limited
        assert home_agent.process and home_agent.process.poll() is None
    finally:
        peer.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_forged_requests_from_spoofed_sources_are_left_unanswered_and_the_node_is_served(
        home_agent: HomeAgentDaemon, topo: Topology) -> None:
    peer = Peer(topo.ns("visited"), COLOCATED)
    try:
        assert ask(peer, MN2, lifetime=600)["code"] == 0
        assert home_agent.process is not None
        before, rss_before = home_agent.json("stats")["counters"], rss_mib(home_agent.process.pid)
        attack = flood(topo, FLOOD_SECONDS, 0, "spoofed")
        times = legit_node(peer, FLOOD_SECONDS)
        result = finished(attack)
        after = home_agent.json("stats")["counters"]
        served = sorted(t for t in times if t is not None)
        share = len(served) / len(times)

        def grown(section: str, key: str) -> int:
            return int(after[section].get(key, 0)) - int(before[section].get(key, 0))

        figures = {
            "flood_sent": result["sent"], "flood_rate_per_s": round(result["sent"] / FLOOD_SECONDS),
            "legit_sent": len(times), "legit_share_within_1s": round(share, 3),
            "legit_p50_ms": round(served[len(served) // 2] * 1000, 1) if served else None,
            "received": after["requests_received"] - before["requests_received"],
            "denied_131": grown("denied", "131"), "reply_rate_limited": grown("dropped", "reply_rate_limited"),
            "source_over_budget": grown("dropped", "source_over_budget"),
            "socket_queue": grown("dropped", "socket_queue"),
            "rss_growth_mib": round(rss_mib(home_agent.process.pid) - rss_before, 1),
        }
        print("spoofed overload figures:", json.dumps(figures))
        assert share >= 0.75, figures
        assert figures["reply_rate_limited"] > 100 * max(1, figures["denied_131"]), figures
        assert figures["socket_queue"] > figures["received"], figures  # sampled away in the kernel
        assert figures["denied_131"] <= 10 + 2 * (FLOOD_SECONDS + 2), figures  # a burst, then 2 a second
        assert figures["rss_growth_mib"] < 32, figures
        assert home_agent.process.poll() is None
    finally:
        peer.close()
