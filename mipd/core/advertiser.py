"""Agent Advertisements, sent by both agents (RFC 5944 sections 2.1 and 2.3), as a sans-I/O engine.

The :class:`Advertiser` is driven like the agents' engines: ``now`` comes in, :class:`SendIcmp`
actions come out, and :meth:`Advertiser.next_timer` tells the runtime when to call
:meth:`Advertiser.on_timer`. Randomness (the jitter) is injected.

Schedule. The first advertisement goes out at :meth:`Advertiser.start`; each next one follows
after a time drawn uniformly from ``[(1 - jitter) * interval, interval]``. This is RFC 1256's
MinAdvertisementInterval / MaxAdvertisementInterval pair (default 0.75 * Max, section 4.1), and
keeps the interval an upper bound: with the lifetime at least three intervals (mipd.config
enforces it) two advertisements may be lost before a mobile node's lifetime runs out (2.4.2).
The send times are thereby "slightly randomized" (2.3).

Sequence numbers (2.3.2): 0 for the first advertisement after start, then +1 for every
advertisement sent (periodic or solicited, as each is a new multicast advertisement), and 0xffff
is followed by 256, so that 0-255 only ever mean "the agent restarted" (2.4.4).

Solicitations (2.3, RFC 1256 5.1). Every Agent Solicitation is answered by a multicast (or
broadcast) advertisement to the configured destination, never by unicast: a unicast answer to an
away node would have to reach the solicitation's link-layer source without ARP (2.1), which a
raw IP socket cannot do, and a multicast answer also serves every other node that solicited
meanwhile. Answers are immediate but rate-limited: at most one solicited advertisement per
``1 / max_response_rate`` seconds. A solicitation that arrives sooner is not dropped but
coalesced into one pending answer sent when the limit allows (counted as ``coalesced``); a
periodic advertisement due first answers it instead. So a flood of solicitations causes at most
``max_response_rate`` extra advertisements per second (2.3: "the rate ... MUST be limited").

Code (2.1): 0 means the agent routes common traffic, 16 that it does not. The runtime decides:
a home agent turns IP forwarding on and is a router on its home link, so it advertises 0; a
foreign agent only forwards for registered visitors (4.2.2), so it advertises 16.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

from mipd.core.actions import SendIcmp
from mipd.core.foreign_agent import ForeignAgentSettings
from mipd.core.home_agent_types import HomeAgentSettings
from mipd.core.security import ReverseTunneling
from mipd.core.wire.addresses import LIMITED_BROADCAST
from mipd.core.wire.icmp import (
    ADVERTISEMENT_TTL,
    ALL_SYSTEMS,
    AdvertisementCode,
    AdvertisementFlags,
    AgentAdvertisement,
    IcmpExtension,
    MobilityAgentExtension,
    PrefixLengthsExtension,
    RouterAddress,
    next_sequence,
)
from mipd.core.wire.tunnel import Encapsulation

INFINITE_REGISTRATION_LIFETIME = 0xFFFF  # 2.1.1: "A value of all ones indicates infinity"
DEFAULT_JITTER = 0.25  # RFC 1256 4.1: MinAdvertisementInterval defaults to 0.75 * Max
DEFAULT_MAX_RESPONSE_RATE = 10.0  # solicited advertisements per second, at most
_MAX_ROUTER_ADDRESSES = 255  # RFC 1256: Num Addrs is one byte
_MAX_CARE_OF_ADDRESSES = (255 - 6) // 4  # 2.1.1: the extension's Length (6 + 4N) is one byte


@dataclass(frozen=True)
class AdvertiserConfig:
    """What one agent advertises on one link, and how often.

    ``routers`` are the agent's addresses on the link with their prefix lengths: the addresses
    become the Router Address entries and the lengths the Prefix-Lengths Extension (2.1.2), which
    is included when ``prefix_lengths_extension`` is true (2.3: on one link, all agents or none).
    Raises ValueError when the flags break the constraints of 2.1.1.
    """

    routers: tuple[IPv4Interface, ...]
    flags: AdvertisementFlags
    care_of_addresses: tuple[IPv4Address, ...] = ()
    registration_lifetime: int = 1800  # the agent's max_lifetime; 0xffff is infinity
    lifetime: int = 3  # ICMP Lifetime of each advertisement (advertisement_lifetime)
    code: AdvertisementCode = AdvertisementCode.MOBILITY_AGENT_ONLY
    destination: IPv4Address = ALL_SYSTEMS  # advertisement_address
    interval: float = 1.0  # advertisement_interval: the longest time between two advertisements
    jitter: float = DEFAULT_JITTER
    max_response_rate: float = DEFAULT_MAX_RESPONSE_RATE
    prefix_lengths_extension: bool = True
    preference: int = 0  # RFC 1256 Preference Level of every router address

    def __post_init__(self) -> None:
        for problem in self.problems():
            raise ValueError(problem)

    def problems(self) -> list[str]:
        """Every way this configuration breaks RFC 5944 2.1 / 2.1.1 or RFC 1256."""
        flags, problems = self.flags, []
        if flags & AdvertisementFlags.F and not self.care_of_addresses:
            problems.append("F is set but no care-of address is advertised (2.1.1)")
        if self.care_of_addresses and not flags & AdvertisementFlags.F:
            problems.append("care-of addresses are advertised without F (2.1.1)")
        if not flags & (AdvertisementFlags.F | AdvertisementFlags.H):
            problems.append("at least one of F and H must be set (2.1.1)")
        for bit in (AdvertisementFlags.B, AdvertisementFlags.R):
            if flags & bit and not flags & AdvertisementFlags.F:
                problems.append(f"{bit.name} must not be set without F (2.1.1)")
        if flags & AdvertisementFlags.r:
            problems.append("the reserved r bit is sent as zero (2.1.1)")
        if self.destination not in (ALL_SYSTEMS, LIMITED_BROADCAST):
            problems.append(f"destination {self.destination} is neither 224.0.0.1 nor 255.255.255.255 (2.1)")
        if not 0 <= self.registration_lifetime <= INFINITE_REGISTRATION_LIFETIME:
            problems.append(f"registration lifetime {self.registration_lifetime} does not fit 16 bits")
        if not 1 <= self.lifetime <= 0xFFFF:
            problems.append(f"advertisement lifetime {self.lifetime} is not 1-65535 seconds")
        if len(self.routers) > _MAX_ROUTER_ADDRESSES or len(self.care_of_addresses) > _MAX_CARE_OF_ADDRESSES:
            problems.append("too many router or care-of addresses for one advertisement")
        if not (self.interval > 0 and 0 <= self.jitter < 1 and self.max_response_rate > 0):
            problems.append("interval and response rate must be positive, jitter in [0, 1)")
        return problems


def offered_flags(reverse_tunneling: ReverseTunneling, encapsulations: frozenset[Encapsulation]
                  ) -> AdvertisementFlags:
    """What either agent offers (2.1.1): T unless reverse tunneling is off (RFC 3024); M and G for
    the encapsulations it implements receiving, i.e. the ones its running backend can carry."""
    flags = AdvertisementFlags(0)
    if reverse_tunneling is not ReverseTunneling.OFF:
        flags |= AdvertisementFlags.T
    if Encapsulation.MINIMAL in encapsulations:
        flags |= AdvertisementFlags.M
    if Encapsulation.GRE in encapsulations:
        flags |= AdvertisementFlags.G
    return flags


def home_agent_advertisement(settings: HomeAgentSettings, *, lifetime: int, interval: float) -> AdvertiserConfig:
    """What a home agent advertises on its home link (RFC 5944 2.1, 2.3): H, so that a node can tell
    it is home, and what it offers. Code 0: the home agent turns IP forwarding on and routes common
    traffic. A home agent advertises to 224.0.0.1."""
    return AdvertiserConfig(
        routers=(IPv4Interface(f"{settings.address}/{settings.home_network.prefixlen}"),),
        flags=AdvertisementFlags.H | offered_flags(settings.reverse_tunneling, settings.encapsulations),
        registration_lifetime=min(settings.max_lifetime, INFINITE_REGISTRATION_LIFETIME),
        lifetime=lifetime,
        code=AdvertisementCode.ROUTES_COMMON_TRAFFIC,
        destination=ALL_SYSTEMS,
        interval=interval,
    )


def foreign_agent_advertisement(settings: ForeignAgentSettings, routers: tuple[IPv4Interface, ...], *,
                                registration_required: bool, busy: bool, destination: IPv4Address,
                                lifetime: int, interval: float, udp_tunnelling: bool = False) -> AdvertiserConfig:
    """What a foreign agent advertises on its visited link (RFC 5944 2.1.1): F with its care-of
    address; R when registration is required; B while busy (its visitor list is full: new nodes
    would get 66); U when it UDP-tunnels behind a NAT (RFC 3519 3.4); and what it offers. Code 16:
    it forwards only for registered visitors (4.2.2)."""
    flags = AdvertisementFlags.F | offered_flags(settings.reverse_tunneling, settings.encapsulations)
    if udp_tunnelling:
        flags |= AdvertisementFlags.U
    if busy:
        flags |= AdvertisementFlags.B
    if registration_required:
        flags |= AdvertisementFlags.R
    return AdvertiserConfig(
        routers=routers,
        flags=flags,
        care_of_addresses=(settings.care_of_address,),
        registration_lifetime=min(settings.max_lifetime, INFINITE_REGISTRATION_LIFETIME),
        lifetime=lifetime,
        code=AdvertisementCode.MOBILITY_AGENT_ONLY,
        destination=destination,
        interval=interval,
    )


@dataclass
class AdvertiserCounters:
    """Totals since start (``mipctl stats`` shows them under ``advertisements``)."""

    sent: int = 0  # every advertisement, periodic and solicited
    solicitations: int = 0  # Agent Solicitations received
    solicited: int = 0  # advertisements sent to answer them
    coalesced: int = 0  # solicitations that found an answer already pending (rate limit)


class Advertiser:
    """Periodic and solicited Agent Advertisements for one agent on one link."""

    def __init__(self, config: AdvertiserConfig, *, random: Callable[[], float]) -> None:
        """``random`` returns floats uniform in [0, 1), as :func:`random.random` does."""
        self.config = config
        self.counters = AdvertiserCounters()
        self._random = random
        self._sequence: int | None = None  # of the last advertisement sent
        self._next_periodic: float | None = None  # None until start()
        self._last_periodic: float | None = None
        self._pending_answer: float | None = None  # when the coalesced answer may go
        self._last_answer: float | None = None

    # --- inputs ---

    def start(self, now: float) -> list[SendIcmp]:
        """Begin advertising: the first advertisement (sequence 0) goes out now."""
        return self._periodic(now)

    def next_timer(self) -> float | None:
        """When :meth:`on_timer` must next run: the next periodic or pending solicited advertisement."""
        times = [t for t in (self._next_periodic, self._pending_answer) if t is not None]
        return min(times) if times else None

    def on_timer(self, now: float) -> list[SendIcmp]:
        """Send what is due; one advertisement answers a pending solicitation and the schedule."""
        if self._next_periodic is not None and now >= self._next_periodic:
            return self._periodic(now)
        if self._pending_answer is not None and now >= self._pending_answer:
            return self._answer(now)
        return []

    def solicited(self, source: IPv4Address, now: float) -> list[SendIcmp]:
        """An Agent Solicitation arrived from ``source`` (any source: 2.3 overrides RFC 1256's
        neighbour check). Answered at once, or coalesced into one pending answer (rate limit)."""
        del source  # the answer is multicast: every node on the link hears it
        self.counters.solicitations += 1
        if self._pending_answer is not None:
            self.counters.coalesced += 1
            return []
        allowed = now if self._last_answer is None else self._last_answer + 1 / self.config.max_response_rate
        if now >= allowed:
            return self._answer(now)
        self.counters.coalesced += 1
        self._pending_answer = allowed
        return []

    def reconfigure(self, config: AdvertiserConfig) -> None:
        """Adopt new settings (a reload); the sequence continues. A shorter interval takes effect
        at once: the next advertisement is due no later than one new interval after the last."""
        self.config = config
        if self._next_periodic is not None and self._last_periodic is not None:
            self._next_periodic = min(self._next_periodic, self._last_periodic + config.interval)

    # --- building ---

    def advertisement(self, sequence: int) -> AgentAdvertisement:
        """The advertisement this configuration describes, with ``sequence``."""
        c = self.config
        extensions: list[IcmpExtension] = [
            MobilityAgentExtension(sequence, c.registration_lifetime, c.flags, c.care_of_addresses)
        ]
        if c.prefix_lengths_extension:
            extensions.append(PrefixLengthsExtension(tuple(r.network.prefixlen for r in c.routers)))
        return AgentAdvertisement(
            lifetime=c.lifetime,
            code=c.code,
            addresses=tuple(RouterAddress(r.ip, c.preference) for r in c.routers),
            extensions=tuple(extensions),
        )

    def _send(self) -> list[SendIcmp]:
        self._sequence = 0 if self._sequence is None else next_sequence(self._sequence)
        self.counters.sent += 1
        payload = self.advertisement(self._sequence).encode()
        return [SendIcmp(payload, self.config.destination, ADVERTISEMENT_TTL)]

    def _periodic(self, now: float) -> list[SendIcmp]:
        c = self.config
        self._last_periodic = now
        self._next_periodic = now + c.interval * (1 - c.jitter * self._random())
        if self._pending_answer is not None:  # this advertisement answers it
            self._pending_answer = None
        return self._send()

    def _answer(self, now: float) -> list[SendIcmp]:
        self._pending_answer = None
        self._last_answer = now
        self.counters.solicited += 1
        return self._send()
