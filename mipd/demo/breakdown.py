"""Where a move's handoff time goes (``mipd demo --breakdown FILE``), from the daemons' own events.

Each move is cut at milestones, each the first of its kind after the one before (all times are the
wall clock of this one machine: the daemons stamp their events, the demo its link changes and pings):

    link down        the demo took the node's carrier down (the move's start, as for the handoff time)
    link up          the demo's ``ip link set ... up`` returned (another bridge, carrier up), or the
                     node's first milestone if that came sooner (ip(8) takes a while to exit)
    discovered       the node heard an agent (``agent.discovered``); for the co-located link, where no
                     agent advertises, the care-of address that appears instead (``movement.detected``)
    request sent     the node decided to register (``registration.sent``; it leaves after its commit)
    relayed          the foreign agent took the request (``registration.relayed``; agent moves only)
    home agent       the home agent decided (``registration.accepted`` of the home agent)
    visitor          the foreign agent took the reply (``visitor.added`` / ``renewed`` / ``removed``)
    node accepted    the node took the reply (the node's ``registration.accepted``)
    first answer     the first echo reply to an echo sent after the link went down

The stages are the gaps between milestones, named for what happens in them:

    link_change_ms         down -> up: the demo's own ip(8) commands
    discovery_ms           up -> discovered: carrier detection (netlink), solicitation, advertisement
    decision_ms            discovered -> request sent (the once-a-second rule can defer a request here)
    node_request_ms        request sent -> relayed (or -> home agent): the node's commit, the send
    foreign_agent_relay_ms relayed -> home agent: the relay's send, the home agent's decision
    home_agent_ms          home agent -> visitor (or -> node accepted): its commit, data plane, reply
    foreign_agent_reply_ms visitor -> node accepted: the visitor's commit, delivery, the relayed reply
    node_accept_ms         node accepted -> first answer: the node's commit, its routes, the next echo

A stage whose milestones are missing (a move home has no foreign agent) is left out of that move.
Besides, ``commit_ms`` gives per role the mean time of one group commit during the move (from
``mipctl stats``' ``state`` counters, read before the move and once it settled).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from mipd.core.names import EventName

STAGES = ("link_change_ms", "discovery_ms", "decision_ms", "node_request_ms", "foreign_agent_relay_ms",
          "home_agent_ms", "foreign_agent_reply_ms", "node_accept_ms")
_VISITOR = frozenset({EventName.VISITOR_ADDED, EventName.VISITOR_RENEWED, EventName.VISITOR_REMOVED})


def _first(events: Sequence[Mapping[str, Any]], names: frozenset[str], after: float, before: float) -> float | None:
    times = [float(e["time"]) for e in events
             if e.get("MIP_EVENT") in names and "time" in e and after <= float(e["time"]) < before]
    return min(times) if times else None


def move_stages(*, down: float, up: float | None, end: float, first_answer: float | None,
                node: Sequence[Mapping[str, Any]], home_agent: Sequence[Mapping[str, Any]],
                foreign_agent: Sequence[Mapping[str, Any]] | None) -> dict[str, float]:
    """The stages of one move (milliseconds) that its events show, ``end`` the start of the next move."""
    # ip(8) returns a little after the carrier came up: the node may have heard an agent by then.
    start = down
    discovered = _first(node, frozenset({EventName.AGENT_DISCOVERED}), start, end)
    sent = _first(node, frozenset({EventName.REGISTRATION_SENT}), start, end)
    if discovered is None or (sent is not None and discovered > sent):
        discovered = _first(node, frozenset({EventName.MOVEMENT_DETECTED, EventName.HOME_RETURNED}), start, end)
    first = next((t for t in (discovered, sent) if t is not None), None)
    if up is not None and first is not None:
        up = min(up, first)
    milestones: list[tuple[str, float | None]] = [("link_change_ms", up), ("discovery_ms", discovered),
                                                  ("decision_ms", sent)]
    at = sent if sent is not None else start
    relayed = None
    if foreign_agent is not None:
        relayed = _first(foreign_agent, frozenset({EventName.REGISTRATION_RELAYED}), at, end)
        milestones.append(("node_request_ms", relayed))
    decided = _first(home_agent, frozenset({EventName.REGISTRATION_ACCEPTED}), relayed or at, end)
    milestones.append(("foreign_agent_relay_ms" if relayed is not None else "node_request_ms", decided))
    visitor = None
    if foreign_agent is not None:
        visitor = _first(foreign_agent, _VISITOR, decided or at, end)
        milestones.append(("home_agent_ms", visitor))
    accepted = _first(node, frozenset({EventName.REGISTRATION_ACCEPTED}), visitor or decided or at, end)
    milestones.append(("foreign_agent_reply_ms" if visitor is not None else "home_agent_ms", accepted))
    milestones.append(("node_accept_ms", first_answer if first_answer is not None and accepted is not None
                       and first_answer >= accepted else None))
    stages: dict[str, float] = {}
    previous: float | None = down
    for name, when in milestones:
        if when is not None and previous is not None and when >= previous:
            stages[name] = round((when - previous) * 1000, 3)
        previous = when
    return stages


def commit_ms(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> float | None:
    """The mean time of one group commit between two ``mipctl stats`` results, None if none was made."""
    try:
        a, b = before["counters"]["state"], after["counters"]["state"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    made = b["commits"] - a["commits"]
    return round((b["commit_ms_total"] - a["commit_ms_total"]) / made, 3) if made > 0 else None


def medians(moves: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The median of each stage over the moves that have it, and of each role's commit time."""
    result: dict[str, Any] = {}
    for stage in STAGES:
        values = [m["stages"][stage] for m in moves if stage in m["stages"]]
        if values:
            result[stage] = round(statistics.median(values), 3)
    roles = sorted({role for m in moves for role in m.get("commit_ms", {})})
    commits = {}
    for role in roles:
        values = [m["commit_ms"][role] for m in moves if m.get("commit_ms", {}).get(role) is not None]
        if values:
            commits[role] = round(statistics.median(values), 3)
    result["commit_ms"] = commits
    return result
