"""The mobile node's lifecycle table (mipd.core.mobile_machine): closed, every state reachable, and
the engine refuses a change the table does not have. That the engine's explicit state agrees with
its data, step by step, is an invariant of tests/property/test_mobile_node_machine.py."""

from __future__ import annotations

import pytest

from mipd.core.mobile_machine import SETTLE, TRANSITIONS, Event, Lifecycle, TransitionError
from tests.support.scenario import build


def test_the_table_is_closed() -> None:
    assert set(TRANSITIONS) == set(Lifecycle)  # a row for every state
    for row in TRANSITIONS.values():
        for target in row.values():
            assert target is SETTLE or target in Lifecycle
    assert {event for row in TRANSITIONS.values() for event in row} == set(Event)  # no input unused


def _next(state: Lifecycle, *, settle: bool = False) -> set[Lifecycle]:
    """Where the table leads from ``state`` in one step; SETTLE, when ``settle``, to whatever the
    payload implies (IDLE once it is empty)."""
    targets: set[Lifecycle] = set()
    for target in TRANSITIONS[state].values():
        if target is SETTLE:
            targets |= set(Lifecycle) if settle else set()
        else:
            targets.add(Lifecycle(target))
    return targets


def test_every_state_is_reachable_from_idle_by_concrete_rows() -> None:
    reached, frontier = {Lifecycle.IDLE}, [Lifecycle.IDLE]
    while frontier:
        for state in _next(frontier.pop()) - reached:
            reached.add(state)
            frontier.append(state)
    assert reached == set(Lifecycle)


def test_every_state_leads_back_to_idle() -> None:
    """No state is a trap: from each, the rows lead back to IDLE (a request, its answer, an expiry)."""
    for start in Lifecycle:
        reached, frontier = {start}, [start]
        while frontier and Lifecycle.IDLE not in reached:
            for state in _next(frontier.pop(), settle=True) - reached:
                reached.add(state)
                frontier.append(state)
        assert Lifecycle.IDLE in reached or start is Lifecycle.IDLE, start


def test_a_change_not_in_the_table_is_a_bug() -> None:
    _, node, _, _ = build()
    assert node.state is Lifecycle.IDLE
    with pytest.raises(TransitionError):
        node._transition(Event.ACCEPTED)  # nothing was in flight
    assert node.state is Lifecycle.IDLE
