"""Agent discovery as a mobile node does it (RFC 5944 sections 2.4, 2.4.2, 2.4.4).

:class:`AgentTable` keeps the agents heard on the link, each until its advertisement's ICMP
Lifetime runs out (2.4.2, algorithm 1), and tells what a new advertisement means: a new agent, an
agent that rebooted (its sequence number fell to 0-255, 2.4.4) or one whose prefixes differ from
the current agent's (algorithm 2, only when both advertise the Prefix-Lengths Extension).
:class:`Solicitation` schedules Agent Solicitations while no agent is known: three at most one
per second, then binary exponential back-off up to a maximum (2.4; RFC 1256 MAX_SOLICITATIONS 3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address, IPv4Network

from mipd.core.wire.icmp import AdvertisementFlags, AgentAdvertisement, MobilityAgentExtension

INITIAL_SOLICITATIONS = 3  # 2.4: "three initial solicitations at a maximum rate of one per second"
SOLICITATION_INTERVAL = 1.0
MAX_SOLICITATION_INTERVAL = 60.0  # 2.4: the maximum interval "SHOULD be at least one minute"


@dataclass(frozen=True, slots=True)
class Agent:
    """A mobility agent as its last advertisement described it."""

    address: IPv4Address  # the advertisement's IP source
    link_address: bytes
    advertisement: AgentAdvertisement
    mobility: MobilityAgentExtension
    expires: float

    @property
    def foreign(self) -> bool:
        return bool(self.mobility.flags & AdvertisementFlags.F) and bool(self.mobility.care_of_addresses)

    @property
    def care_of_address(self) -> IPv4Address | None:
        """The first advertised care-of address: the one a node SHOULD use (2.4)."""
        return self.mobility.care_of_addresses[0] if self.mobility.care_of_addresses else None

    @property
    def prefixes(self) -> frozenset[IPv4Network] | None:
        """The router addresses' networks, when the Prefix-Lengths Extension is there (2.1.2)."""
        lengths = self.advertisement.prefix_lengths
        if lengths is None or len(lengths.prefix_lengths) != len(self.advertisement.addresses):
            return None
        return frozenset(IPv4Network(f"{entry.address}/{length}", strict=False)
                         for entry, length in zip(self.advertisement.addresses, lengths.prefix_lengths, strict=True))


class Heard(Enum):
    """What an advertisement tells the node."""

    NEW = "new agent"
    SAME = "same agent"
    REBOOTED = "agent rebooted (sequence number reset below 256)"


class AgentTable:
    """The agents currently heard, by IP source address."""

    def __init__(self) -> None:
        self._agents: dict[IPv4Address, Agent] = {}

    def __len__(self) -> int:
        return len(self._agents)

    def get(self, address: IPv4Address | None) -> Agent | None:
        return None if address is None else self._agents.get(address)

    def all(self) -> list[Agent]:
        return list(self._agents.values())

    def heard(self, agent: Agent) -> Heard:
        old = self._agents.get(agent.address)
        self._agents[agent.address] = agent
        if old is None:
            return Heard.NEW
        # 2.4.4: a lower number in 0-255 means the agent rebooted; a lower one from 256 up is
        # the normal roll-over after 0xffff and needs nothing.
        if agent.mobility.sequence < old.mobility.sequence and agent.mobility.sequence < 256:
            return Heard.REBOOTED
        return Heard.SAME

    def expire(self, now: float) -> list[Agent]:
        """Remove and return the agents whose advertisement lifetime has run out (2.4.2 alg. 1)."""
        gone = [a for a in self._agents.values() if a.expires <= now]
        for agent in gone:
            del self._agents[agent.address]
        return gone

    def clear(self) -> list[Agent]:
        gone = list(self._agents.values())
        self._agents.clear()
        return gone

    def next_expiry(self) -> float | None:
        return min((a.expires for a in self._agents.values()), default=None)


def prefixes_differ(a: Agent, b: Agent) -> bool:
    """2.4.2 algorithm 2: the node moved if both advertise prefixes and they differ."""
    pa, pb = a.prefixes, b.prefixes
    return pa is not None and pb is not None and pa.isdisjoint(pb)


class Solicitation:
    """When to solicit: three at one-second spacing, then doubling up to the maximum, each
    randomized slightly (2.4). Stopped while agents are heard; restarted at once when the link
    comes up or the last agent is lost."""

    def __init__(self, random: Callable[[], float], maximum: float = MAX_SOLICITATION_INTERVAL) -> None:
        self._random = random
        self.maximum = maximum
        self.next_at: float | None = None
        self.sent = 0

    def start(self, now: float) -> None:
        self.sent = 0
        self.next_at = now

    def stop(self) -> None:
        self.next_at = None

    def due(self, now: float) -> bool:
        """Whether one is due now; if so, the next one is scheduled."""
        if self.next_at is None or now < self.next_at:
            return False
        self.sent += 1
        if self.sent < INITIAL_SOLICITATIONS:
            interval = SOLICITATION_INTERVAL
        else:
            interval = min(self.maximum, SOLICITATION_INTERVAL * 2 ** (self.sent - INITIAL_SOLICITATIONS + 1))
        # Never faster than one per second; up to 10 % later, randomized.
        self.next_at = now + interval * (1.0 + 0.1 * self._random())
        return True
