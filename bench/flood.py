"""The home agent under two flooding processes, as an attacker would flood it (issue 17, item 6).

A real ``mipd run`` home agent with journald receiving (tests/support/daemon.py). Two processes in
the home namespace send forged Registration Requests (a configured SPI, a random authenticator:
tests/support/flood.py) as fast as each goes, for ``seconds``, first from one source address
(``badauth``), then from random sources of 198.18.0.0/16 written on a raw socket (``spoofed``);
meanwhile a legitimate node re-registers every 50 ms from its co-located address in the visited
namespace (tests/robustness/test_flood.py ``legit_node``). Measured per run: the share of the
node's registrations answered within 1 s, the flood's rate, and what the agent disposed of a
second: the growth of every ``dropped`` counter of ``mipctl stats`` (shed as read, left unanswered,
dropped in the kernel) and of its 131 replies, over the flood's duration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.test_home_agent_daemon import ask
from tests.robustness.test_flood import finished, flood, legit_node
from tests.support.daemon import COLOCATED, NODES, HomeAgentDaemon, Peer, build_topology
from tests.support.journal import Journald
from tests.support.netns import topology

MN2 = list(NODES)[1]
FLOODERS = 2


def _disposed(before: dict[str, Any], after: dict[str, Any]) -> int:
    dropped = sum(int(v) for v in after["dropped"].values()) - sum(int(v) for v in before["dropped"].values())
    denied = int(after["denied"].get("131", 0)) - int(before["denied"].get("131", 0))
    return dropped + denied


def one_run(daemon: HomeAgentDaemon, peer: Peer, mix: str, seconds: float) -> dict[str, Any]:
    before = daemon.json("stats")["counters"]
    attacks = [flood(daemon.topo, seconds, 0, mix) for _ in range(FLOODERS)]
    try:
        times = legit_node(peer, seconds)
    finally:
        results = [finished(a) for a in attacks]
    after = daemon.json("stats")["counters"]
    served = sorted(t for t in times if t is not None)
    sent = sum(r["sent"] for r in results)
    return {
        "legit_sent": len(times),
        "legit_answered_pct": round(100 * len(served) / len(times), 1) if times else None,
        "legit_p50_ms": round(served[len(served) // 2] * 1000, 1) if served else None,
        "flood_per_s": round(sent / seconds),
        "discard_per_s": round(_disposed(before, after) / seconds),
        "dropped": {k: int(v) - int(before["dropped"].get(k, 0)) for k, v in after["dropped"].items()},
        "denied_131": int(after["denied"].get("131", 0)) - int(before["denied"].get("131", 0)),
    }


def run(journal: Journald, work: Path, seconds: float) -> dict[str, Any]:
    """Both floods against one home agent; its own topology, removed at the end."""
    with topology() as topo:
        build_topology(topo)
        daemon = HomeAgentDaemon(journal, topo, work, "bench-flood")
        daemon.start()
        peer = Peer(topo.ns("visited"), COLOCATED)
        try:
            if ask(peer, MN2, lifetime=600)["code"] != 0:
                raise RuntimeError("the legitimate node's first registration was not accepted")
            result = {name: one_run(daemon, peer, mix, seconds)
                      for name, mix in (("one_source", "badauth"), ("spoofed", "spoofed"))}
            if daemon.process is None or daemon.process.poll() is not None:
                raise RuntimeError("the home agent died under the flood")
            return result
        finally:
            peer.close()
            daemon.close()
