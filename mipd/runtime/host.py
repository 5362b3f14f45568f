"""The seam between the daemon and a role's runtime: what a role may ask of its host.

A role (home agent, foreign agent, mobile node) never sees the daemon itself. It is given a
:class:`Host` (the daemon implements it) and uses only that: the engines' clock and the wall
clock, ``execute`` for the engines' actions, ``commit`` to wait for the group commit, the event
log, and ``reload`` for mipctl. In return each role declares, once, what happens to every action
type its engines produce: an :data:`ActionTable` from action type to a :class:`Phase` and a
handler. The daemon carries a turn's actions out by that table alone::

    Phase     when                                        e.g.
    NOW       at once, as execute sees it                 Emit, SendIcmp (announce no state)
    COMMIT    in the turn's one transaction               PersistNode, PersistVisitor, PersistMobile
    APPLY     after the commit, committed or not          DataPlane, VisitorPlane, MobilePlane
    ANNOUNCE  after every APPLY, only if committed        SendDatagram, SendToNode

A reply never announces what a crash could lose (ANNOUNCE waits for COMMIT), and a node told it
is registered finds its tunnel in place (APPLY before ANNOUNCE). A handler may return follow-up
actions (the foreign agent answers a relay that its own routing cannot carry); the daemon executes
them after the turn, like any other input's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, TypeVar

from mipd.control.protocol import JSONObject
from mipd.core.actions import Action
from mipd.obs import EventLog
from mipd.runtime.clock import TimeOfDay

A = TypeVar("A")
Item = TypeVar("Item")


class StartError(Exception):
    """The instance cannot start; the message says why, for stderr and the journal."""


class Phase(Enum):
    """When the daemon carries out an action of a turn (the table above)."""

    NOW = "now"
    COMMIT = "commit"
    APPLY = "apply"
    ANNOUNCE = "announce"


FollowUps = Iterable[Action] | None


@dataclass(frozen=True, slots=True)
class On:
    """One row of an action table: the phase, and the handler (None for COMMIT: the state store).
    ``many``, if given, takes all of a turn's actions of the row at once, in order, instead of
    ``handler`` one by one (the home agent batches a turn's data plane changes)."""

    phase: Phase
    handler: Callable[[Any], FollowUps] | None = None
    many: Callable[[list[Any]], FollowUps] | None = None


ActionTable = Mapping[type, On]


def on(kind: type[A], phase: Phase, handler: Callable[[A], FollowUps] | None = None, *,
       many: Callable[[list[A]], FollowUps] | None = None) -> tuple[type, On]:
    """A typed row: ``dict([on(SendDatagram, Phase.ANNOUNCE, udp.send), ...])``."""
    return kind, On(phase, handler, many)


class Timed(Protocol):
    """A component driven by the daemon's one timer: an engine, the advertisements."""

    def next_timer(self) -> float | None: ...

    def on_timer(self, now: float) -> Sequence[Action]: ...


class Host(Protocol):
    """What a role's runtime may use of the daemon that runs it."""

    @property
    def instance(self) -> str: ...

    @property
    def events(self) -> EventLog: ...

    @property
    def time_of_day(self) -> TimeOfDay:
        """The engines' wall clock (Identification timestamps, stored expiry); never steps back."""
        ...

    def now(self) -> float:
        """The engines' clock: the event loop's monotonic time."""
        ...

    def uptime(self) -> float: ...

    def execute(self, actions: Iterable[Action]) -> None:
        """Carry out actions by the role's table: NOW at once, the rest at the end of this loop turn."""
        ...

    async def commit(self, actions: Iterable[Action] = ()) -> None:
        """Execute ``actions`` and wait until this turn is committed and carried out."""
        ...

    def state_counters(self) -> dict[str, int | float | str]:
        """The group commits so far, their time and failures (``mipctl stats``: ``state``)."""
        ...

    async def reload(self) -> JSONObject:
        """Re-read the profile and hand it to the role (mipctl reload, SIGHUP)."""
        ...


def drive(host: Host, step: Callable[[Item, float], Iterable[Action]]) -> Callable[[list[Item]], None]:
    """An adapter's callback for a batch of inputs: each goes to the engine's ``step`` at the same
    ``now``, and the actions of the whole batch are executed together."""

    def deliver(batch: list[Item]) -> None:
        now = host.now()
        host.execute([action for item in batch for action in step(item, now)])

    return deliver
