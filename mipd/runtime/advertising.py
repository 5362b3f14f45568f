"""Agent advertisements on one link, as an agent's daemon runs them (RFC 5944 2.3).

:class:`Advertising` joins the sans-I/O :class:`~mipd.core.advertiser.Advertiser` to the raw
ICMP adapter. It is one of the daemon's *timed components*: the daemon arms its one event-loop
timer at the earliest ``next_timer()`` of its engine and of this, and calls ``on_timer(now)``
on whichever is due. Everything it produces goes through the daemon's ``execute`` (which then
re-arms the timer, since a solicitation may leave an answer pending); the daemon hands each
:class:`SendIcmp` back to :meth:`send`, at once: advertisements announce no state, so they do not
wait for the group commit. Both agents use it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address

from mipd.adapters.link.icmp import IcmpEndpoint, Received
from mipd.core.actions import Action, SendIcmp
from mipd.core.advertiser import Advertiser, AdvertiserConfig


class Advertising:
    """Periodic advertisements and answers to solicitations on ``interface``, from ``address``."""

    def __init__(self, config: AdvertiserConfig, interface: str, address: IPv4Address,
                 clock: Callable[[], float], execute: Callable[[Iterable[Action]], None]) -> None:
        self.advertiser = Advertiser(config, random=random.random)
        self.endpoint = IcmpEndpoint(interface, address)
        self._clock = clock
        self._execute = execute

    def start(self) -> None:
        """Open the sockets (OSError if impossible) and send the first advertisement."""
        self.endpoint.open(self._on_solicitations)
        self._execute(self.advertiser.start(self._clock()))

    def next_timer(self) -> float | None:
        return self.advertiser.next_timer()

    def on_timer(self, now: float) -> list[SendIcmp]:
        """What is due; the daemon executes it (see :meth:`send`)."""
        return self.advertiser.on_timer(now)

    def send(self, action: SendIcmp) -> None:
        self.endpoint.send(action)

    def reconfigure(self, config: AdvertiserConfig) -> None:
        self.advertiser.reconfigure(config)

    def counters(self) -> dict[str, int]:
        """For ``mipctl stats``: what was sent, solicited, coalesced, dropped."""
        a, e = self.advertiser.counters, self.endpoint.counters
        return {"sent": a.sent, "solicitations": a.solicitations, "solicited": a.solicited,
                "coalesced": a.coalesced, "malformed": e.malformed, "ignored": e.ignored,
                "send_errors": e.send_errors}

    def close(self) -> None:
        self.endpoint.close()

    def _on_solicitations(self, batch: list[Received]) -> None:
        now = self._clock()
        actions: list[Action] = []
        for received in batch:
            actions += self.advertiser.solicited(received.source, now)
        self._execute(actions)
