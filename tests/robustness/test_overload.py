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
"""

from __future__ import annotations

import json
from collections.abc import Iterator

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
