"""A home agent under a flood of hostile datagrams keeps serving its legitimate nodes.

A real ``mipd run`` home agent (tests/support/daemon.py, its journal in a real journald) is first driven to
saturation with badly authenticated requests from another namespace to learn how many it can answer per
second. Then, at that rate, a mix of bad authenticators, unknown SPIs, truncated and oversized datagrams
and a replayed request floods it for several seconds while a legitimate node re-registers every 50 ms with
fresh timestamps. Measured (printed, and kept in docs/robustness.md): the share of the node's requests
answered within 1 s, their latency, the agent's CPU and memory growth, and how many journal entries the
flood cost. Asserted: loose floors only — the agent lives, answers most of the node's requests, its
memory does not grow with the flood, and the journal holds the rate limit (mipd(8) JOURNAL).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_home_agent_daemon import ask, ntp_now, parse_reply, rrq, topo
from tests.support import journal as journal_support
from tests.support.daemon import COLOCATED, HA, NODES, HomeAgentDaemon, Peer
from tests.support.journal import Journald
from tests.support.netns import Topology
from tests.support.tools import tool

journald = journal_support.journald
__all__ = ["topo"]  # the home agent tests' topology fixture, used as is
_, MN2, MN3 = list(NODES)[:3]
FLOOD_SECONDS = 6.0
LEGIT_EVERY = 0.05


@pytest.fixture(scope="module")
def home_agent(journald: Journald, topo: Topology, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[HomeAgentDaemon]:
    daemon = HomeAgentDaemon(journald, topo, tmp_path_factory.mktemp("ha"), "ha-flood")
    daemon.start()
    yield daemon
    daemon.close()


def flood(topo: Topology, seconds: float, rate: float, mix: str, replay: bytes = b"") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [tool("ip"), "netns", "exec", topo.ns("home"), sys.executable, "-m", "tests.support.flood", HA,
         str(seconds), str(rate), mix, replay.hex()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])


def finished(process: subprocess.Popen[str]) -> dict[str, int]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    result: dict[str, int] = json.loads(out.splitlines()[-1])
    return result


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def legit_node(peer: Peer, seconds: float) -> list[float | None]:
    """MN2 re-registers every 50 ms; the round trip of each request (None: unanswered within 1 s)."""
    key = NODES[MN2][1]
    sent: dict[int, float] = {}
    answered: dict[int, float] = {}
    peer.sock.setblocking(False)
    start = time.monotonic()
    next_send = start
    while time.monotonic() < start + seconds + 1.0:
        now = time.monotonic()
        if now >= next_send and now < start + seconds:
            message, ident = rrq(MN2, lifetime=600)
            sent[ident] = now
            peer.sock.sendto(message, (HA, 434))
            next_send += LEGIT_EVERY
        ready, _, _ = select.select([peer.sock], [], [], max(0.0, min(next_send - time.monotonic(), 0.05)))
        if ready:
            data = peer.sock.recv(2048)
            reply = parse_reply(data, key)
            if reply["code"] == 0 and reply["auth_ok"].get(32):
                answered.setdefault(reply["ident"], time.monotonic())
    peer.sock.setblocking(True)
    return [answered[i] - t if i in answered and answered[i] - t <= 1.0 else None for i, t in sent.items()]


def test_legitimate_nodes_are_served_during_a_flood(home_agent: HomeAgentDaemon, topo: Topology,
                                                   journald: Journald) -> None:
    pid = home_agent.process.pid if home_agent.process else 0
    assert b"mipd" in Path(f"/proc/{pid}/cmdline").read_bytes()  # ip netns exec and nsenter exec it
    peer = Peer(topo.ns("visited"), COLOCATED)
    try:
        assert ask(peer, MN2, lifetime=600)["code"] == 0
        # Saturation: bad authenticators as fast as one sender goes, counted by the agent itself (the
        # sender's own socket overflows with the 131 replies while it sends).
        before, probe_cpu = home_agent.json("stats")["counters"]["requests_received"], cpu_seconds(pid)
        probe = finished(flood(topo, 2.0, 0, "badauth"))
        probe_cpu = (cpu_seconds(pid) - probe_cpu) / probe["seconds"]
        saturation = (home_agent.json("stats")["counters"]["requests_received"] - before) / probe["seconds"]
        assert saturation > 100, probe
        replay, _ = rrq(MN3, ident=ntp_now(-3600))  # signed, an hour old: 133 each time
        rss_before, cpu_before, wall_before = rss_kib(pid), cpu_seconds(pid), time.monotonic()
        attack = flood(topo, FLOOD_SECONDS, saturation, "badauth,nospi,short,huge,replay", replay)
        times = legit_node(peer, FLOOD_SECONDS)
        result = finished(attack)
        cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
        rss_after = rss_kib(pid)
        served = [t for t in times if t is not None]
        share = len(served) / len(times)
        served.sort()
        denied = journald.entries(count=1, MIP_EVENT="registration.denied", MIP_INSTANCE=home_agent.instance)
        dropped = journald.entries(count=1, MIP_EVENT="packet.dropped", MIP_INSTANCE=home_agent.instance)
        figures = {
            "saturation_per_s": round(saturation), "ha_cpu_pct_at_saturation": round(probe_cpu * 100),
            "flood_sent": result["sent"], "flood_answered": result["replies"],
            "flood_rate_per_s": round(result["sent"] / FLOOD_SECONDS), "legit_sent": len(times),
            "legit_share_within_1s": round(share, 3),
            "legit_p50_ms": round(served[len(served) // 2] * 1000, 1) if served else None,
            "legit_p99_ms": round(served[int(len(served) * 0.99) - 1] * 1000, 1) if served else None,
            "ha_cpu_pct": round(cpu * 100), "rss_kib_before": rss_before, "rss_kib_after": rss_after,
            "journal_denied_entries": len(denied), "journal_dropped_entries": len(dropped),
            "journal_suppressed": sum(int(e.get("MIP_SUPPRESSED", 0)) for e in denied + dropped),
        }
        print("flood figures:", json.dumps(figures))
        assert share >= 0.8, figures  # the goal is 95 %; docs/robustness.md has the measured share
        assert rss_after - rss_before < 20 * 1024, figures  # nothing kept per hostile datagram
        # A burst of 10 then 10 per second per event name, over the probe and the flood (< 15 s).
        assert len(denied) <= 10 + 10 * 15 and len(dropped) <= 10 + 10 * 15, figures
        # Not one entry per hostile datagram: most of the flood is shed before it makes an event at
        # all (the source's budget, the socket filter, the 131/133 reply limit: mipd(8) "Overload
        # protection"), and what remains is rate-limited.
        assert len(denied) + len(dropped) < result["sent"] / 10, figures
        assert home_agent.process and home_agent.process.poll() is None
        [binding] = [b for b in home_agent.json("bindings")["bindings"] if b["home_address"] == MN2]
        assert binding["care_of_address"] == COLOCATED
        counters = home_agent.json("stats")["counters"]
        assert counters["denied"].get("131", 0) > 0 and counters["denied"].get("133", 0) > 0
        assert counters["dropped"]["malformed"] > 0 and counters["dropped"]["no_sa"] > 0
    finally:
        peer.close()
