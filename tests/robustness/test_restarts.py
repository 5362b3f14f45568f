"""Faults at a running home agent: kill -9 under load, its journal and its control socket vanishing.

- kill -9 while nodes renew and a hostile peer floods: after the restart every binding is back once, with
  its remaining lifetime (never more than before), at least as new as the last reply a node received
  (state is committed before the reply that announces it, docs/interfaces.md "Durability"), with its data
  plane re-installed, and a replay of an acknowledged request is still refused;
- the journal (journald) killed, then back: the agent keeps registering nodes, its events go to stderr
  meanwhile, and to the journal again afterwards;
- the control socket removed: the agent keeps registering nodes; mipctl says it cannot reach it (exit 3).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_home_agent_daemon import parse_reply, rrq, topo
from tests.robustness.test_flood import finished, flood
from tests.support import journal as journal_support
from tests.support.daemon import COLOCATED, HA, NODES, HomeAgentDaemon, Peer
from tests.support.journal import Journald
from tests.support.netns import Topology
from tests.support.tools import tool

journald = journal_support.journald
__all__ = ["topo"]  # the home agent tests' topology fixture, used as is
HOMES = list(NODES)


@pytest.fixture
def home_agent(journald: Journald, topo: Topology, tmp_path: Path) -> Iterator[HomeAgentDaemon]:
    daemon = HomeAgentDaemon(journald, topo, tmp_path, f"ha-{tmp_path.name[-8:]}")
    daemon.start()
    yield daemon
    daemon.close()


@pytest.fixture
def peer(topo: Topology) -> Iterator[Peer]:
    node = Peer(topo.ns("visited"), COLOCATED)
    yield node
    node.close()


def answer_to(peer: Peer, home: str, message: bytes, ident: int, timeout: float = 1.0) -> int:
    """Send ``message``; the code of the reply that answers it (its Identification's low 32 bits), or -1.
    Late replies to earlier requests that were given up on are skipped."""
    peer.sock.sendto(message, (HA, 434))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        peer.sock.settimeout(left)
        try:
            data = peer.sock.recv(65535)
        except TimeoutError:
            break
        reply = parse_reply(data, NODES[home][1])
        if reply["ident"] & 0xFFFFFFFF == ident & 0xFFFFFFFF:
            return int(reply["code"])
    return -1


def register(peer: Peer, home: str, lifetime: int) -> tuple[bytes, int, int]:
    """One request; returns (the request, its Identification, the reply's code or -1 if none)."""
    message, ident = rrq(home, lifetime=lifetime)
    return message, ident, answer_to(peer, home, message, ident)


def host_routes(topo: Topology) -> list[str]:
    out = subprocess.run([tool("ip"), "-n", topo.ns("ha"), "route", "show", "table", "all", "proto", "77"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[0].startswith("10.1.0.")]


def test_kill_9_under_load_loses_and_duplicates_nothing(home_agent: HomeAgentDaemon, peer: Peer,
                                                        topo: Topology) -> None:
    for n, home in enumerate(HOMES):
        assert register(peer, home, 300 + 30 * n)[2] == 0
    acknowledged: dict[str, tuple[bytes, int]] = {}
    stop = threading.Event()

    def renew() -> None:  # the nodes keep renewing while the agent dies and comes back
        n = 0
        while not stop.is_set():
            home = HOMES[n % len(HOMES)]
            message, ident, code = register(peer, home, 300 + 30 * HOMES.index(home))
            if code == 0:
                acknowledged[home] = (message, ident)
            n += 1

    attack = flood(topo, 6.0, 1000, "badauth,nospi,short")
    renewer = threading.Thread(target=renew)
    renewer.start()
    try:
        time.sleep(2.0)
        before = {b["home_address"]: b for b in home_agent.json("bindings")["bindings"]}
        home_agent.kill9()
        killed_at = time.monotonic()
        seen = dict(acknowledged)  # every reply a node had received when the agent died
        home_agent.start()
        restarted_in = time.monotonic() - killed_at
    finally:
        stop.set()
        renewer.join(timeout=10)
        finished(attack)
    after = home_agent.json("bindings")["bindings"]
    homes = [b["home_address"] for b in after]
    assert sorted(homes) == sorted(HOMES), homes  # all back, none twice
    for binding in after:
        home = binding["home_address"]
        assert binding["care_of_address"] == COLOCATED
        assert 0 < binding["lifetime_remaining"] <= binding["lifetime_granted"]
        if home in seen:  # committed before its reply: at least as new as what the node was told
            assert int(binding["identification"], 16) >= seen[home][1], home
        else:
            assert binding["lifetime_remaining"] <= before[home]["lifetime_remaining"]
    assert sorted(host_routes(topo)) == sorted(HOMES)  # the data plane, once per binding
    print(f"kill -9 under load: {len(before)} bindings before, {len(after)} after; restart to answering "
          f"in {restarted_in:.2f} s; {len(seen)} nodes had a renewal acknowledged")
    # A request acknowledged before the kill, replayed once the node has renewed since: 133. (Replaying the
    # current registration itself gets its remaining lifetime, changing nothing: RFC 5944 3.8.2.2.)
    replayed_home = next(iter(seen))
    assert register(peer, replayed_home, 300)[2] == 0
    assert answer_to(peer, replayed_home, *seen[replayed_home], timeout=3.0) == 133


def test_journald_gone_and_back(home_agent: HomeAgentDaemon, peer: Peer, journald: Journald) -> None:
    assert register(peer, HOMES[0], 300)[2] == 0
    journald.kill_journald()
    try:
        assert register(peer, HOMES[1], 300)[2] == 0  # the agent does not wait for, or die of, the journal
        assert home_agent.process and home_agent.process.poll() is None
    finally:
        journald.start_journald()
    assert register(peer, HOMES[2], 300)[2] == 0
    events = [json.loads(line) for line in home_agent.stderr.read_text().splitlines() if line.startswith("{")]
    assert any(e.get("MIP_EVENT") == "binding.added" and e.get("MIP_HOME_ADDRESS") == HOMES[1] for e in events)
    [entry] = journald.entries(count=1, MIP_EVENT="binding.added", MIP_INSTANCE=home_agent.instance,
                               MIP_HOME_ADDRESS=HOMES[2])
    assert entry["MIP_CARE_OF_ADDRESS"] == COLOCATED


def test_control_socket_removed(home_agent: HomeAgentDaemon, peer: Peer) -> None:
    home_agent.socket.unlink()
    assert home_agent.mipctl("status").returncode == 3
    assert register(peer, HOMES[3], 300)[2] == 0
    assert home_agent.process is not None
    home_agent.signal(signal.SIGTERM)
    assert home_agent.wait() == 0  # and it still stops cleanly
    with contextlib.suppress(FileNotFoundError):
        assert not home_agent.socket.exists()


def test_process_crash_durability_keeps_every_acknowledged_binding_across_kill_9(
        home_agent: HomeAgentDaemon, peer: Peer) -> None:
    """``durability: process-crash`` (mip.yaml(5)): a commit is written, not flushed to the disk, before
    the reply; a kill -9 right after a reply still finds what it announced on restart."""
    home_agent.signal(signal.SIGTERM)
    assert home_agent.wait() == 0
    home_agent.write_profile(durability="process-crash")
    home_agent.start()
    assert home_agent.json("stats")["counters"]["state"]["durability"] == "process-crash"
    told: dict[str, int] = {}
    for n, home in enumerate(HOMES):
        _, ident, code = register(peer, home, 300 + 30 * n)
        assert code == 0
        told[home] = ident
    home_agent.kill9()  # right after the last reply
    home_agent.start()
    after = {b["home_address"]: b for b in home_agent.json("bindings")["bindings"]}
    assert sorted(after) == sorted(HOMES)
    for home, ident in told.items():
        assert int(after[home]["identification"], 16) == ident, home
    _, ident, code = register(peer, HOMES[0], 600)  # a renewal, and the kill at once after its reply
    assert code == 0
    home_agent.kill9()
    home_agent.start()
    binding = next(b for b in home_agent.json("bindings")["bindings"] if b["home_address"] == HOMES[0])
    assert (int(binding["identification"], 16), binding["lifetime_granted"]) == (ident, 600)
