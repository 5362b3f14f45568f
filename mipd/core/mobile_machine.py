"""The mobile node's registration lifecycle (RFC 5944 3.6) as one table, in the manner of h11's
``_state.py``: every change of :attr:`MobileNode.state <mipd.core.mobile_node.MobileNode.state>`
is a row of :data:`TRANSITIONS`, looked up by ``MobileNode._transition``; a change that is not in the
table is a bug and raises :class:`TransitionError`.

The engine's data are the payload of its state: an :class:`~mipd.core.mobile_types.Attempt` in
REGISTERING and DEREGISTERING, the deferred request (when, lifetime, care-of address, agent) in
DEFERRED, the denial's hold (``_retry_at``) in DENIED_WAIT, the
:class:`~mipd.core.mobile_types.Registration` in REGISTERED (and kept, while it lasts, under any
request in flight). Two dimensions stay apart from the table: *where* the node is
(:class:`~mipd.core.names.Location`, decided again after every input) and *stopping* (``stop()`` was
called: from then on the engine itself starts no request but the deregistration; the table is the
same).

::

    state / input   SEND_REG.     SEND_DEREG.    DEFER     ACCEPTED  DEREGISTERED  DENIED       RETRY_DUE  EXPIRED,
                                                                                                        FORGOTTEN
    IDLE            REGISTERING   DEREGISTERING  DEFERRED  -         -             -            -          -
    REGISTERING     REGISTERING   DEREGISTERING  DEFERRED  settle    -             DENIED_WAIT  (same)     (same)
    DEFERRED        REGISTERING   DEREGISTERING  DEFERRED  (same)    (same)        (same)       (same)     (same)
    REGISTERED      REGISTERING   DEREGISTERING  DEFERRED  -         -             -            -          IDLE
    DENIED_WAIT     REGISTERING   DEREGISTERING  DEFERRED  -         -             -            settle     (same)
    DEREGISTERING   REGISTERING   DEREGISTERING  DEFERRED  -         settle        DENIED_WAIT  (same)     (same)

    and: IDLE --RESTORED--> REGISTERED (start from the state file); DEFERRED --CANCEL_DEFERRED--> settle
    (stop() drops a registration not sent yet); DEFERRED --SEND_BEHIND_DEFERRED--> DEFERRED.

    "-": not a transition (TransitionError). "(same)": the state stays, its payload changes.

    The main paths (RFC 5944 3.6):

    IDLE ──SEND_REG.──► REGISTERING ──ACCEPTED──► REGISTERED ──SEND_REG. (renewal)──► REGISTERING
                          │ DENIED                  │ EXPIRED, FORGOTTEN
                          ▼                         ▼
                     DENIED_WAIT ──RETRY_DUE──►   IDLE (settle: REGISTERED while one is in force)
    any state ──SEND_DEREG. (home, stop)──► DEREGISTERING ──DEREGISTERED──► IDLE (settle)
    any state ──DEFER──► DEFERRED ──SEND_* (its second is over)──► REGISTERING or DEREGISTERING

*settle* is the target of the inputs that end what was in flight (a reply, the hold running out, a
deferred request dropped at stop): the state the payload then implies (:meth:`MobileNode.implied
<mipd.core.mobile_node.MobileNode.implied>`): DEFERRED while a request waits, else REGISTERING or
DEREGISTERING while one is in flight, else DENIED_WAIT while a denial's hold runs, else REGISTERED
while a registration is in force, else IDLE. A request sent during a denial's hold (a renewal, or
going home) carries the hold under REGISTERING or DEREGISTERING, and settle finds it again.
Losing the registration (EXPIRED: its lifetime is over; FORGOTTEN: its agent rebooted or the
prefixes changed, RFC 5944 2.4.2, 2.4.4) moves REGISTERED to IDLE and leaves every other state
as it is. Requests are sent (SEND_*) or held for the once-a-second rule (DEFER, 2.4.2) from any
state: a retransmission, a renewal, a move and going home all supersede what was in flight. In
DEFERRED an earlier attempt may still be in flight: its answer, or a request sent meanwhile, leaves
the deferred one waiting.

To extend the machine (a new kind of request, a keepalive), add the state to :class:`Lifecycle`,
the inputs to :class:`Event` and their rows to :data:`TRANSITIONS`; the unit test
tests/unit/test_mobile_machine.py checks that the table stays closed and every state reachable.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Lifecycle(StrEnum):
    """Where the mobile node's registration stands (the payload in brackets)."""

    IDLE = "idle"  # not registered, nothing on its way
    REGISTERING = "registering"  # a registration request in flight [Attempt], a renewal too
    DEFERRED = "deferred"  # a request held for the once-a-second rule [the deferred tuple]
    REGISTERED = "registered"  # registered, nothing on its way [Registration]
    DENIED_WAIT = "denied-wait"  # denied: no new registration before the hold ends [_retry_at]
    DEREGISTERING = "deregistering"  # a deregistration (lifetime 0) in flight [Attempt]


class Event(StrEnum):
    """What changes the lifecycle: a request going out or held back, an answer, a timer, a loss."""

    SEND_REGISTRATION = "send-registration"
    SEND_DEREGISTRATION = "send-deregistration"
    SEND_BEHIND_DEFERRED = "send-behind-deferred"  # a request went out while another one still waits
    DEFER = "defer"
    ACCEPTED = "accepted"
    DEREGISTERED = "deregistered"
    DENIED = "denied"
    RETRY_DUE = "retry-due"
    CANCEL_DEFERRED = "cancel-deferred"  # stop(): a registration not sent yet never will be
    EXPIRED = "expired"
    FORGOTTEN = "forgotten"
    RESTORED = "restored"


class Settle(StrEnum):
    """A target resolved from the payload (see above)."""

    SETTLE = "settle"


SETTLE: Final = Settle.SETTLE

L, E = Lifecycle, Event
_SENDING: dict[Event, Lifecycle | Settle] = {
    E.SEND_REGISTRATION: L.REGISTERING, E.SEND_DEREGISTRATION: L.DEREGISTERING, E.DEFER: L.DEFERRED,
}


def _keeps(state: Lifecycle, *inputs: Event) -> dict[Event, Lifecycle | Settle]:
    return dict.fromkeys(inputs, state)


TRANSITIONS: Final[dict[Lifecycle, dict[Event, Lifecycle | Settle]]] = {
    L.IDLE: {**_SENDING, E.RESTORED: L.REGISTERED},
    L.REGISTERING: {**_SENDING, E.ACCEPTED: SETTLE, E.DENIED: L.DENIED_WAIT,
                    **_keeps(L.REGISTERING, E.EXPIRED, E.FORGOTTEN, E.RETRY_DUE)},
    # DEFERRED's payload may hold an attempt still in flight too (a retransmission, or a request sent
    # since): its answer, or another request, leaves the deferred one waiting.
    L.DEFERRED: {**_SENDING, E.CANCEL_DEFERRED: SETTLE,
                 **_keeps(L.DEFERRED, E.SEND_BEHIND_DEFERRED, E.ACCEPTED, E.DEREGISTERED, E.DENIED, E.EXPIRED,
                          E.FORGOTTEN, E.RETRY_DUE)},
    L.REGISTERED: {**_SENDING, E.EXPIRED: L.IDLE, E.FORGOTTEN: L.IDLE},
    L.DENIED_WAIT: {**_SENDING, E.RETRY_DUE: SETTLE, **_keeps(L.DENIED_WAIT, E.EXPIRED, E.FORGOTTEN)},
    L.DEREGISTERING: {**_SENDING, E.DEREGISTERED: SETTLE, E.DENIED: L.DENIED_WAIT,
                      **_keeps(L.DEREGISTERING, E.EXPIRED, E.FORGOTTEN, E.RETRY_DUE)},
}
"""(state, input) → state, or SETTLE for the state the payload leaves."""

del L, E


class TransitionError(AssertionError):
    """A change of the lifecycle that the table does not have: a bug in the engine."""
