"""Agent advertisements on one link, as an agent's daemon runs them (RFC 5944 2.3).

:class:`Advertising` joins the sans-I/O :class:`~mipd.core.advertiser.Advertiser` to the raw
ICMP adapter. It is one of the daemon's *timed components*: the daemon arms its one event-loop
timer at the earliest ``next_timer()`` of its engine and of this, and calls ``on_timer(now)``
on whichever is due. Everything it produces goes through the host's ``execute`` (which then
re-arms the timer, since a solicitation may leave an answer pending); the agent's action table
hands each :class:`SendIcmp` back to :meth:`send` in phase NOW: advertisements announce no state,
so they do not wait for the group commit. Both agents use it.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address

from mipd.adapters.link.icmp import IcmpEndpoint, Received
from mipd.core.actions import SendIcmp
from mipd.core.advertiser import Advertiser, AdvertiserConfig
from mipd.runtime.host import Host, drive


class Advertising:
    """Periodic advertisements and answers to solicitations on ``interface``, from ``address``."""

    def __init__(self, config: AdvertiserConfig, interface: str, address: IPv4Address, host: Host) -> None:
        self.advertiser = Advertiser(config, random=random.random)
        self.endpoint = IcmpEndpoint(interface, address)
        self._host = host

    def start(self) -> None:
        """Open the sockets (OSError if impossible) and send the first advertisement."""
        self.endpoint.open(drive(self._host, self._solicited))
        self._host.execute(self.advertiser.start(self._host.now()))

    def next_timer(self) -> float | None:
        return self.advertiser.next_timer()

    def on_timer(self, now: float) -> list[SendIcmp]:
        """What is due; the daemon executes it (see :meth:`send`)."""
        return self.advertiser.on_timer(now)

    def send(self, action: SendIcmp) -> None:
        self.endpoint.send(action)

    @property
    def config(self) -> AdvertiserConfig:
        return self.advertiser.config

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

    def _solicited(self, received: Received, now: float) -> list[SendIcmp]:
        return self.advertiser.solicited(received.source, now)
