"""The roaming demo's tour with every check, for the host tests and (as a script) inside a real kernel.

:func:`tour` runs one :class:`mipd.demo.session.Session` whose daemons log to a real journald (a
:class:`tests.support.journal.Journald`, entered with nsenter) and checks, at every location once the move
has settled (the session's ``on_move`` hook: the node registered at the new place and the correspondent's
pings answered over the new path):

- the node's ``mipctl --json status`` names the place (home; the agent and its care-of address; co-located),
  with ``udp_tunnel`` true exactly behind the NAT (``Options(nat=True)``, the stop ``nat``);
- the home agent's ``mipctl --json bindings``: none at home; away exactly one, with the care-of address of
  the place (the foreign agent's, or the co-located address), D exactly when co-located (also behind the
  NAT), T exactly with reverse tunneling; ``udp_tunnel`` true with ``outer_address`` the NAT's outside
  address and an ``outer_port`` exactly behind the NAT, else false with neither (RFC 3519);
- ``mipctl --json visitors`` of the foreign agent being visited lists the node ``active`` with our home agent
  and its care-of address (T exactly with reverse tunneling). A foreign agent the node visited before and
  left still lists it ``active`` until its lifetime ends: RFC 5944 tells an agent nothing when a node moves
  on, and a return home deregisters with the home agent directly, never through the agent. An
  agent not visited yet lists nothing;
- on a foreign agent's link, one captured Agent Advertisement from it has R exactly when the tour runs
  with ``registration_required``; then the node also holds the link's lease (it could go co-located) and
  still registers through the agent;
- with a mobile router (``Options(mobile_router=True)``, tests/support/vehicle_lan.py): away, the node's
  status and the home agent's binding list the mobile prefix as ``mobile_networks`` (only it, never the
  refused one); the LAN host's address is preserved end to end in both directions (captures on the
  correspondent beyond the home agent and on the LAN host); the home agent routes the prefix itself while
  the node is away and leaves it to the operator's route at home, and never routes the refused prefix.

After the tour (before clean-up), from the journal: the home agent's binding events and each foreign agent's
visitor events for the node, in order, are exactly those the tour's stops imply (binding.added,
binding.removed replaced/deregistered; visitor.pending then visitor.added, or only visitor.pending on a
return while the old entry is still active: that renewal changes nothing but the lifetime, so its
visitor.renewed is a debug entry, not written at the demo's info level), less only what a retransmitted
request adds; the binding events carry ``MIP_OUTER_ADDRESS`` (the NAT's outside address) and
``MIP_OUTER_PORT`` exactly for the care-of address behind the NAT; the node's ``nat.detected`` (reason
``nat``) comes exactly once per stop behind the NAT, after the home agent's ``binding.added`` for that
place and before the node's next move; the agents'
``daemon.started`` reasons name the backend, and nothing was logged at error priority or worse; with a
mobile router, the binding events carry ``MIP_MOBILE_NETWORKS``, every accepted Registration Reply on the
node's link acknowledges the mobile prefix with code 0 and the first one refuses the refused prefix with
code 2 (decoded from the captured bytes), and the LAN host's pings and TCP connection survived. Every
check's outcome goes into the returned JSON-able result (``problems`` lists all failures), so a caller
asserts once and sees everything.

Run as a script (``python -m tests.support.demo_tour [--moves N] [--reverse-tunneling]
[--registration-required] [--nat] [--guest]``, as root, with the checkout on the Python path) it starts its own
journald in a private mount namespace, runs the tour and prints the result as one JSON line:
tests/integration/test_demo_tour.py runs it so under a real kernel (tests/support/realkernel.py).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mipd.demo import processes, report
from mipd.demo.processes import Journal
from mipd.demo.session import Options, Session
from mipd.demo.topology import FA1, FA2, HA, LAN_PREFIX, LEASES, MN, NAT_LEASE, NAT_OUTSIDE, Topology, ip
from mipd.demo.tour import STOPS, Move, plan
from tests.support import vehicle_lan
from tests.support.journal import Journald, running_journald
from tests.support.netns import entered
from tests.support.tools import tool

AGENT_OF = {"v1": ("fa1", FA1), "v2": ("fa2", FA2)}  # stop -> the foreign agent there
R_BIT = 0x80  # the Mobility Agent Advertisement Extension's flags byte: R B H F M G r T
NAT_STOP = "nat"  # behind the NAT: co-located there, UDP-tunnelled through the NAT's mapping (RFC 3519)
CO_LOCATED_STOPS = ("colocated", NAT_STOP)


# --- an advertisement, captured and decoded independently of mipd ---

def advertisement_flags(namespace: str, agent: str, timeout: float = 5.0) -> int | None:
    """The flags byte of the next Agent Advertisement (ICMP 9 with extension 16) from ``agent``."""
    with entered(namespace):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    with sock:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, (source, _) = sock.recvfrom(2048)
            except TimeoutError:
                return None
            icmp = data[(data[0] & 0x0F) * 4:]
            if source != agent or len(icmp) < 8 or icmp[0] != 9:
                continue
            offset = 8 + icmp[4] * icmp[5] * 4  # past the router addresses
            while offset + 2 <= len(icmp):
                kind, length = icmp[offset], icmp[offset + 1]
                if kind == 16 and length >= 6:
                    return icmp[offset + 6]
                offset += 2 + length
    return None


# --- the checks ---

def _flags_ok(flags: str, letter: str, wanted: bool) -> bool:
    return (letter in flags) == wanted


class Checker:
    """What the node, the agents and the link show at each location (the session's ``on_move``)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.options = session.options
        self.moves: list[dict[str, Any]] = []
        self.visited: set[str] = set()  # foreign agents the node registered through so far

    def sock(self, name: str) -> Path:
        return self.session.directory / f"{name}.sock"

    def __call__(self, move: Move) -> None:
        problems: list[str] = []
        seen: dict[str, Any] = {}
        coa = STOPS[move.stop][2]
        rt = self.options.reverse_tunneling

        def expect(ok: bool, what: str) -> None:
            if not ok:
                problems.append(f"move {move.number} ({move.origin} -> {move.stop}): {what}")

        # The four mipctl calls at once: each starts a Python, which is slow in a guest kernel.
        with ThreadPoolExecutor(4) as pool:
            asked = {key: pool.submit(processes.mipctl, self.sock(name), command) for key, name, command in (
                ("status", "mn", "status"), ("bindings", "ha", "bindings"), ("fa1", "fa1", "visitors"),
                ("fa2", "fa2", "visitors"))}
            answers = {key: future.result() for key, future in asked.items()}
        status = answers["status"]
        seen["status"] = status
        if status is None:
            expect(False, "the node's mipctl status did not answer")
        elif coa is None:
            expect(status.get("location") == "home" and not status.get("registered"), f"node status {status}")
        else:
            agent = AGENT_OF[move.stop][1] if move.stop in AGENT_OF else None
            expect(status.get("location") == "away" and status.get("registered") is True
                   and status.get("care_of_address") == coa and status.get("agent") == agent,
                   f"node status {status}, expected away at {coa} with agent {agent}")
        if status is not None:
            expect(status.get("udp_tunnel") is (move.stop == NAT_STOP),
                   f"node status udp_tunnel {status.get('udp_tunnel')!r} at {move.stop}")

        answer = answers["bindings"]
        bindings = [b for b in (answer or {}).get("bindings", []) if b.get("home_address") == MN]
        seen["bindings"] = bindings
        expect(answer is not None, "the home agent's mipctl bindings did not answer")
        if coa is None:
            expect(bindings == [], f"bindings at home: {bindings}")
        else:
            expect(len(bindings) == 1, f"{len(bindings)} bindings, expected one: {bindings}")
            for b in bindings[:1]:
                flags = str(b.get("flags", ""))
                expect(b.get("care_of_address") == coa, f"binding care-of {b.get('care_of_address')} != {coa}")
                expect(_flags_ok(flags, "D", move.stop in CO_LOCATED_STOPS), f"binding flags {flags!r}: D")
                expect(_flags_ok(flags, "T", rt), f"binding flags {flags!r}: T (reverse tunneling {rt})")
                expect(0 < int(b.get("lifetime_remaining", 0)) <= int(b.get("lifetime_granted", 0)) <= 120,
                       f"binding lifetimes {b}")
                agent = AGENT_OF[move.stop][1] if move.stop in AGENT_OF else None
                expect(b.get("foreign_agent") == agent, f"binding foreign_agent {b.get('foreign_agent')} != {agent}")
                outer = (b.get("udp_tunnel"), b.get("outer_address"), b.get("outer_port"))
                if move.stop == NAT_STOP:  # the NAT's mapping: its outside address, a port it chose
                    expect(outer[0] is True and outer[1] == NAT_OUTSIDE and isinstance(outer[2], int)
                           and 0 < outer[2] < 65536, f"binding behind the NAT: udp_tunnel, outer {outer}")
                else:
                    expect(outer == (False, None, None), f"binding at {move.stop}: udp_tunnel, outer {outer}")

        if move.stop in AGENT_OF:
            self.visited.add(AGENT_OF[move.stop][0])
        for name, address in AGENT_OF.values():
            answer = answers[name]
            visitors = [v for v in (answer or {}).get("visitors", []) if v.get("home_address") == MN]
            seen[f"visitors_{name}"] = visitors
            expect(answer is not None, f"{name}'s mipctl visitors did not answer")
            if name not in self.visited:
                expect(visitors == [], f"{name} lists a node that never came: {visitors}")
                continue
            here = move.stop in AGENT_OF and AGENT_OF[move.stop][0] == name
            what = "the agent visited" if here else "an agent left earlier (kept until its lifetime ends)"
            expect(len(visitors) == 1, f"{name} ({what}): {len(visitors)} entries: {visitors}")
            for v in visitors[:1]:
                flags = str(v.get("flags", ""))
                expect(v.get("state") == "active" and v.get("home_agent") == HA
                       and v.get("care_of_address") == address and _flags_ok(flags, "T", rt)
                       and 0 < int(v.get("lifetime_remaining", 0)) <= int(v.get("lifetime_granted", 0)) <= 120,
                       f"{name} ({what}): {v}")

        if move.stop in AGENT_OF:
            name, address = AGENT_OF[move.stop]
            flags = advertisement_flags(self.session.topology.ns("mn"), address)
            seen["advertisement_flags"] = flags
            expect(flags is not None, f"no advertisement from {name} heard on the node's link")
            if flags is not None:
                expect(bool(flags & R_BIT) == self.options.registration_required,
                       f"{name}'s advertisement flags {flags:#04x}: R should be {self.options.registration_required}")
            if self.options.registration_required:
                lease = LEASES[STOPS[move.stop][0]][0]
                addresses = ip("-n", self.session.topology.ns("mn"), "-4", "-o", "addr", "show", "eth0")
                seen["node_addresses"] = addresses.split()
                expect(f"{lease}/24" in addresses.split(), f"the node does not hold the link's lease {lease}")

        if self.options.mobile_router:
            if coa is not None:  # away: the accepted prefix, only it
                networks = status.get("mobile_networks") if isinstance(status, dict) else None
                expect(networks == [LAN_PREFIX], f"node status mobile_networks {networks!r}")
                for b in bindings[:1]:
                    expect(b.get("mobile_networks") == [LAN_PREFIX],
                           f"binding mobile_networks {b.get('mobile_networks')!r}")
            seen["lan"], lan_problems = vehicle_lan.lan_checks(self.session.topology.ns, away=coa is not None)
            for problem in lan_problems:
                expect(False, problem)

        self.moves.append({"number": move.number, "origin": move.origin, "stop": move.stop,
                           "handoff_ms": move.handoff_ms, "seen": seen, "problems": problems})


def expected_events(stops: list[str]) -> dict[str, list[list[str | None]]]:
    """The node's binding events at the home agent and visitor events at each foreign agent, in order,
    as ``[event, care-of address, reason]``, that the tour's stops imply (no lifetime ends during a tour)."""
    ha: list[list[str | None]] = []
    agents: dict[str, list[list[str | None]]] = {"fa1": [], "fa2": []}
    active: set[str] = set()
    current: str | None = None
    for stop in stops:
        coa = STOPS[stop][2]
        if coa is None:
            if current is not None:
                ha.append(["binding.removed", current, "deregistered"])
        elif current is None:
            ha.append(["binding.added", coa, None])
        elif current == coa:
            pass  # a renewal that changes nothing but the lifetime: a counter and a debug entry
        else:
            ha += [["binding.removed", current, "replaced"], ["binding.added", coa, None]]
        current = coa
        if stop in AGENT_OF:
            name, address = AGENT_OF[stop]
            agents[name].append(["visitor.pending", address, None])
            if name not in active:  # a return while the entry is still active renews it unchanged: debug only
                agents[name].append(["visitor.added", address, None])
            active.add(name)
    return {"ha": ha, **agents}


def without_retransmissions(events: list[list[str | None]]) -> tuple[list[list[str | None]], int]:
    """``events`` less what a retransmitted request adds (a reply slower than the node's one-second
    retransmission, seen in a guest kernel): a second ``visitor.pending`` in a row, and a ``*.renewed`` right after
    the ``*.added`` or ``*.renewed`` of the same care-of address. Returns them and how many were left out."""
    kept: list[list[str | None]] = []
    for event in events:
        name = str(event[0])
        last = kept[-1] if kept else None
        if last is not None and last[1] == event[1] and (
                (name == "visitor.pending" and last[0] == "visitor.pending")
                or (name.endswith(".renewed") and str(last[0]).endswith((".added", ".renewed")))):
            continue
        kept.append(event)
    return kept, len(events) - len(kept)


def nat_checks(ha: list[dict[str, Any]], node: list[dict[str, Any]], moves: list[Move]) -> tuple[
        dict[str, Any], list[str]]:
    """RFC 3519 in the journal: the outer address/port on the home agent's binding events for the node
    (exactly those for the care-of address behind the NAT), and the node's ``nat.detected`` once per stop
    behind the NAT, after the home agent bound that place and before the node moved on."""
    problems: list[str] = []
    bound = [e for e in ha if str(e.get("MIP_EVENT", "")).startswith("binding.") and e.get("MIP_HOME_ADDRESS") == MN]
    outer = [[e.get("MIP_EVENT"), e.get("MIP_CARE_OF_ADDRESS"), e.get("MIP_OUTER_ADDRESS"), e.get("MIP_OUTER_PORT")]
             for e in bound]
    for event, coa, address, port in outer:
        if coa == NAT_LEASE:
            if address != NAT_OUTSIDE or not str(port or "").isdigit() or not 0 < int(str(port)) < 65536:
                problems.append(f"the home agent's {event} for {coa} (behind the NAT): outer {address}:{port}")
        elif address is not None or port is not None:
            problems.append(f"the home agent's {event} for {coa} carries an outer address {address}:{port}")
    detected = [e for e in node if e.get("MIP_EVENT") == "nat.detected"]
    story = [[e.get("MIP_EVENT"), e.get("MIP_CARE_OF_ADDRESS"), e.get("MIP_REASON")] for e in detected]
    nat_moves = [(m, after) for m, after in zip(moves, [m.at for m in moves[1:]] + [float("inf")], strict=True)
                 if m.stop == NAT_STOP]
    if story != [["nat.detected", NAT_LEASE, "nat"]] * len(nat_moves):
        problems.append(f"the node's nat.detected events {story}, expected one per stop behind the NAT "
                        f"({len(nat_moves)})")
    for move, after in nat_moves:
        added = [float(e["time"]) for e in bound if e.get("MIP_EVENT") == "binding.added"
                 and e.get("MIP_CARE_OF_ADDRESS") == NAT_LEASE and move.at <= float(e["time"]) < after]
        found = [float(e["time"]) for e in detected if move.at <= float(e["time"]) < after]
        if not (added and found and added[0] <= found[0]):
            problems.append(f"move {move.number} behind the NAT: binding.added at {added}, nat.detected at {found}")
    return {"outer": outer, "nat_detected": story}, problems


def journal_checks(session: Session, journal: Journald, stops: list[str], moves: list[Move] | None = None) -> dict[
        str, Any]:
    journal_ = Journal(journal.pid)
    found: dict[str, Any] = {}
    retransmitted: dict[str, int] = {}
    story: dict[str, list[list[str | None]]] = {}
    problems: list[str] = []
    expected = expected_events(stops)
    for name, prefix in (("ha", "binding."), ("fa1", "visitor."), ("fa2", "visitor.")):
        events = journal_.events(f"demo-{name}")
        found[name] = [[e.get("MIP_EVENT"), e.get("MIP_CARE_OF_ADDRESS"), e.get("MIP_REASON")] for e in events
                       if str(e.get("MIP_EVENT", "")).startswith(prefix) and e.get("MIP_HOME_ADDRESS") == MN]
        if name != "ha":  # the reason of a visitor's events is not part of the tour's story
            found[name] = [[event, coa, None] for event, coa, _ in found[name]]
        story[name], retransmitted[name] = without_retransmissions(found[name])
        if story[name] != expected[name]:
            problems.append(f"{name}'s journal: {found[name]}, expected {expected[name]}")
    nat, nat_problems = nat_checks(journal_.events("demo-ha"), journal_.events("demo-mn"), moves or [])
    problems += nat_problems
    started = {}
    for name in ("ha", "fa1", "fa2", "mn"):
        events = journal_.events(f"demo-{name}")
        reasons = [str(e.get("MIP_REASON", "")) for e in events if e.get("MIP_EVENT") == "daemon.started"]
        started[name] = reasons[-1] if reasons else None
        errors = [f"{e.get('MIP_EVENT')}: {e.get('MESSAGE')}" for e in events if int(e.get("PRIORITY", "6")) <= 3]
        if errors:
            problems.append(f"{name} logged errors: {errors}")
    return {"events": found, "story": story, "expected": expected, "retransmitted": retransmitted,
            "started": started, "nat": nat, "problems": problems}


def mobile_router_checks(session: Session, journal: Journald, result: dict[str, Any],
                         node_link: vehicle_lan.Capture | None) -> list[str]:
    """After a mobile router's tour: the LAN host's pings and connection, the acknowledgements on the wire
    and the prefixes in the home agent's binding events (tests/support/vehicle_lan.py)."""
    lan = session.lan
    problems: list[str] = []
    if lan is None:
        return ["no result for the vehicle LAN's host"]
    replies = vehicle_lan.registration_replies(list(node_link.packets) if node_link is not None else [])
    problems += vehicle_lan.acknowledgement_checks(replies, session.options.refused_network)
    bound, journal_problems = vehicle_lan.journal_checks(Journal(journal.pid).events("demo-ha"))
    problems += journal_problems
    accepted, node_problems = vehicle_lan.node_journal_checks(Journal(journal.pid).events("demo-mn"),
                                                              session.options.refused_network)
    problems += node_problems
    result["lan"] = {"delivered": [len(lan.pings.answered), len(lan.pings.sent)], "tcp_survived": lan.tcp_survived,
                     "tcp_peer": lan.tcp.peer, "wrong_source": lan.pings.wrong_source,
                     "replies": [r.as_list() for r in replies], "binding_events": bound,
                     "node_accepted": accepted}
    if not lan.tcp_survived:
        tcp = lan.tcp
        problems.append("the TCP connection to the LAN host did not survive every move")
        result["lan"]["tcp"] = {"accepted": tcp.accepted, "ended": tcp.ended, "bytes": tcp.bytes_total()}
    if lan.tcp.peer != vehicle_lan.FAR:
        problems.append(f"the LAN host saw its TCP peer as {lan.tcp.peer}, not the correspondent {vehicle_lan.FAR}")
    if lan.pings.wrong_source:
        problems.append(f"echo replies for the LAN host from other addresses: {lan.pings.wrong_source}")
    for m in result.get("per_move", []):
        if not m.get("lan_answered"):
            problems.append(f"move to {m['stop']}: no ping to the LAN host answered")
    return problems


def tcp_diagnostics(session: Session) -> dict[str, str]:
    """What the kernels say about the path to the node: routes (with cached path MTU) and link counters."""
    t = session.topology
    commands = {
        "cn_route": ["-n", t.ns("cn"), "route", "get", MN],
        "ha_route": ["-n", t.ns("ha"), "route", "get", MN],
        "ha_links": ["-n", t.ns("ha"), "-s", "link", "show"],
        "mn_links": ["-n", t.ns("mn"), "-s", "link", "show"],
    }
    found = {}
    for name, args in commands.items():
        out = subprocess.run([tool("ip"), *args], capture_output=True, text=True, timeout=30, check=False)
        found[name] = out.stdout + out.stderr
    return found


def leftovers(prefix: str, directory: str) -> list[str]:
    """What is left of one session (its namespaces ``PREFIX-*``, its directory, processes that name it);
    other demos running on the machine at the same time are not counted."""
    namespaces = subprocess.run([tool("ip"), "netns", "list"], capture_output=True, text=True, check=True).stdout
    found = [line.split()[0] for line in namespaces.splitlines() if line.startswith(f"{prefix}-")]
    found += [directory] if Path(directory).exists() else []
    procs = subprocess.run([tool("pgrep"), "-af", directory], capture_output=True, text=True, check=False).stdout
    return found + procs.splitlines()


def tour(options: Options, journal: Journald, *, slow: bool = False) -> dict[str, Any]:
    """One tour of the demo with its daemons on ``journal``; everything it makes is removed at the end.
    ``slow``: give every start and move three times the time (Python starts slowly in a guest kernel),
    and stay 8 s instead of 1.5 s at each place: a handoff there takes about ten times as long (~0.5 s
    under QEMU's TCG), and the pings lost in it are then as small a share of those sent as on the host."""
    session = Session(options, topology=Topology(nat=options.nat, mobile_router=options.mobile_router),
                      journal=Journal(journal.pid),
                      start_timeout=60.0 if slow else 20.0,
                      move_timeout=60.0 if slow else 20.0, dwell=8.0 if slow else 1.5)
    checker = Checker(session)
    session.on_move = checker
    result: dict[str, Any] = {"moves": checker.moves, "problems": [], "prefix": session.topology.prefix,
                              "directory": str(session.directory)}
    began = time.monotonic()
    phases: dict[str, float] = {}
    result["phases_s"] = phases

    def phase(name: str) -> None:
        phases[name] = round(time.monotonic() - began - sum(phases.values()), 1)

    node_link: vehicle_lan.Capture | None = None
    try:
        session.topology.build()
        phase("topology")
        if options.mobile_router:  # the registration replies the node receives, for the whole tour
            node_link = vehicle_lan.Capture(session.topology.ns("mn"), "eth0").start()
        result["backend"] = session.start_roles()
        phase("daemons")
        session.start_traffic()
        phase("traffic")
        moves, pings, survived = session.tour()
        phase("tour")
        lan = session.lan
        result["summary"] = report.summary(moves, len(pings.sent), len(pings.answered), survived, None if lan is None
                                           else (len(lan.pings.sent), len(lan.pings.answered), lan.tcp_survived))
        result["tcp_survived"] = survived
        result["delivered"] = [len(pings.answered), len(pings.sent)]
        result["per_move"] = [{"stop": m.stop, "sent": m.sent, "answered": m.answered, "handoff_ms": m.handoff_ms,
                               "registration_ms": m.registration_ms, "lan_sent": m.lan_sent,
                               "lan_answered": m.lan_answered, "lan_handoff_ms": m.lan_handoff_ms} for m in moves]
        result["journal"] = journal_checks(session, journal, plan(options.moves, options.nat, options.mobile_router),
                                           moves)
        result["problems"] += result["journal"]["problems"]
        if options.mobile_router:
            result["problems"] += mobile_router_checks(session, journal, result, node_link)
        if not survived:
            result["problems"].append("the TCP connection did not survive every move")
            tcp = session.tcp()
            result["tcp"] = {"accepted": tcp.accepted, "ended": tcp.ended, "data_after_each_move": [
                next((when - m.at for when, _ in tcp.data if when > m.at), None) for m in moves],
                "bytes": tcp.bytes_total(), "node_stats": processes.mipctl(checker.sock("mn"), "stats"),
                "kernel": tcp_diagnostics(session)}
        for m in moves:
            if m.answered == 0 or m.first_answer is None:
                result["problems"].append(f"move {m.number} to {m.stop}: no ping answered")
    except Exception as error:  # reported in the result: the caller asserts on it
        result["problems"].append(f"the tour failed: {type(error).__name__}: {error}")
        result["daemon_tails"] = {name: [line for _, line in child.snapshot()[-10:]]
                                  + [f"{e.get('MIP_EVENT')}: {e.get('MESSAGE')}" for e in child.events()[-10:]]
                                  for name, child in session.daemons.items()}
    finally:
        phase("checks")
        if node_link is not None:
            node_link.stop()
        session.cleanup(keep=False)
        phase("cleanup")
    result["problems"] += [p for m in checker.moves for p in m["problems"]]
    result["checked_moves"] = len(checker.moves)
    result["seconds"] = round(time.monotonic() - began, 1)
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--moves", type=int, default=4)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--reverse-tunneling", action="store_true")
    parser.add_argument("--registration-required", action="store_true")
    parser.add_argument("--nat", action="store_true", help="on to a fifth stop behind a NAT (set --moves 5)")
    parser.add_argument("--mobile-router", action="store_true", help="the mobile router's tour with its vehicle LAN")
    parser.add_argument("--refused-network", action="store_true", help="the router also asks for a refused prefix")
    parser.add_argument("--guest", action="store_true",
                        help="inside a real-kernel guest (tests/support/realkernel.py): files on its tmpfs /run, "
                             "journald's namespace over /run/systemd and /run/log only, slower timeouts")
    args = parser.parse_args(argv)
    if args.guest:
        for directory in ("/run/systemd", "/run/log", "/run/mipd-demo-tour"):
            Path(directory).mkdir(parents=True, exist_ok=True)
        os.environ["TMPDIR"] = "/run/mipd-demo-tour"  # the demo's directory (sockets, profiles, state)
        if not os.path.ismount("/sys/fs/cgroup"):  # journald refuses to start without a cgroup root
            subprocess.run([tool("mount"), "-t", "cgroup2", "cgroup2", "/sys/fs/cgroup"], check=True, timeout=30)
        tempfile.tempdir = None
    options = Options(moves=args.moves, interval_ms=args.interval_ms, reverse_tunneling=args.reverse_tunneling,
                      registration_required=args.registration_required, nat=args.nat,
                      mobile_router=args.mobile_router, refused_network=args.refused_network)
    with running_journald() as journal:
        result = tour(options, journal, slow=args.guest)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
