"""The mobile node (RFC 5944 sections 2.4, 3.6, 4.6), as a sans-I/O engine.

Inputs: advertisements heard on the link (with the sender's link-layer address), registration
replies, link up/down and address changes, the timer, stop. Outputs: Agent Solicitations,
registration requests, the routing state to be in (MobilePlane), gratuitous ARP when home,
journal events and state to persist.

Where to be (decided again after every input, :meth:`MobileNode._decide`):

    home agent's advertisement (H) heard, or a home-prefix address ...... home: ARP on, announce, deregister (4.6)
    a foreign agent heard (F), care_of auto/foreign-agent ............... register through it (3.1)
    no foreign agent, a co-located address, care_of auto/colocated ...... register directly, D set (3.1)
    nothing ............................................................. unknown: solicit (2.4)

A foreign agent advertising R is used even when a co-located address exists and care_of is
colocated (2.4.1, 3.3). While the current agent still advertises, another agent's advertisement
does not move the node (3.6), unless both carry prefixes and they differ (2.4.2, algorithm 2) or
the link went down and up.

Registration (3.6): a request at most once a second; retransmitted after 1 s, then each time
after twice the previous interval, capped at the requested lifetime (3.6.3): timestamps get a
new Identification each time, nonces are resent unchanged. A reply must match the request's
Identification in its low 32 bits, carry exactly one valid MN-HA when the home agent answered,
and exactly one valid MN-FA when the node shares an SA with the foreign agent (3.6.2.1). 133
resynchronises the Identification (timestamps: the clock offset; nonces: the new nonce), 69
retries with the offered lifetime, 136 adopts the home agent address given (3.6.2.3). The
registration is renewed before it ends, counted from when the request was sent (3.6.2.2).
Where the registration stands (idle, registering, deferred, registered, denied and waiting,
deregistering) is :attr:`MobileNode.state`, moved only by the table in mipd.core.mobile_machine.

Encapsulation (G and M, 3.3; an agent's G and M, 2.1.1; codes 72 and 139, 3.4): the first of
``tunnel.encapsulations`` the node may ask for is requested, G for GRE and M for minimal
encapsulation, neither for IP-in-IP. Co-located, the node decapsulates itself and may ask for
any; through a foreign agent only for one the agent advertises (its G or M: it can decapsulate
that), else the agent would deny it with 72. A denial with 139 (home agent) or 72 (foreign agent)
of a request with G or M is followed by a request for the next choice, finally IP-in-IP, and
the refused encapsulation is not asked of that agent again.

Mobile router (RFC 5177, ``mobile_networks`` configured): every request sets T (section 5; the
settings force reverse_tunneling). In explicit mode each registration request (never a
deregistration, section 5) carries one Mobile Network Request per prefix, before the MN-HA
authenticator (section 10); in implicit mode none. The reply's acknowledgements (4.2, 5.1)
decide which prefixes the registration serves (:attr:`Registration.mobile_networks`, and so the
plane's ``mobile_networks``): those acknowledged with code 0 that the node has (the ones it asked
for, in explicit mode). A success without any acknowledgement is a home agent without mobile
network support (5.1): a warning, and the node carries on as a host. Denied with 148
(HA_MOBNET_DISALLOWED), the node stops sending prefixes to that home agent; with 147
(HA_MOBNET_ERROR), it stops sending the prefixes the acknowledgements name (5.1); either way it
asks again at once without them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from mipd.core.actions import Action, Datagram, Emit, PersistMobile, Priority, SendDatagram, SendIcmp
from mipd.core.counters import Counters
from mipd.core.discovery import Agent, AgentTable, Heard, Solicitation, prefixes_differ
from mipd.core.keepalive import TRIES, Due, Keepalive, interval_from_reply
from mipd.core.mobile_machine import SETTLE, TRANSITIONS, Event, Lifecycle, TransitionError
from mipd.core.mobile_state import MobileState, StoredRegistration
from mipd.core.mobile_types import (
    DENIED_RETRY,
    MIN_REGISTRATION_GAP,
    MIN_RETRANSMISSION,
    TTL_TO_FOREIGN_AGENT,
    Attempt,
    MobileNodeSettings,
    Registration,
)
from mipd.core.names import CareOfMode, DiscardReason, EventName, Location, MobileNetworkMode, NodeNatTraversal
from mipd.core.planes import AnnounceHome, MobilePlane
from mipd.core.security import ReplayProtection
from mipd.core.wire import identification as ident
from mipd.core.wire.auth import append_authentication, verify
from mipd.core.wire.codes import ReplyCode, denied_by_foreign_agent, is_accepted
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.extensions import ExtensionType
from mipd.core.wire.icmp import (
    ALL_MOBILITY_AGENTS,
    SOLICITATION_TTL,
    AdvertisementFlags,
    AgentAdvertisement,
    AgentSolicitation,
    MobilityAgentExtension,
)
from mipd.core.wire.mobile_network import (
    MobileNetworkAcknowledgement,
    MobileNetworkAcknowledgementCode,
    MobileNetworkRequest,
)
from mipd.core.wire.nat import Encapsulation as NatEncapsulation
from mipd.core.wire.nat import UdpTunnelReply, UdpTunnelReplyFlags, UdpTunnelRequest, UdpTunnelRequestFlags
from mipd.core.wire.registration import (
    INFINITE_LIFETIME,
    REGISTRATION_PORT,
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    decode_registration,
)
from mipd.core.wire.tunnel import Encapsulation

_ENCAPSULATION_FLAGS = {Encapsulation.GRE: RequestFlags.G, Encapsulation.MINIMAL: RequestFlags.M}
# After the carrier came back, how long an address the interface held before is not taken for a
# co-located care-of address: it may be the lease of the link the node left, about to go; a new
# lease, or an agent answering the solicitation, comes first. On the same link it is used after this.
LINK_CHANGE_GRACE = 1.0
_ADVERTISED = {Encapsulation.GRE: AdvertisementFlags.G, Encapsulation.MINIMAL: AdvertisementFlags.M}


def _requested_encapsulation(flags: RequestFlags) -> Encapsulation | None:
    """GRE or minimal encapsulation if ``flags`` ask for one, None for IP-in-IP."""
    return next((e for e, flag in _ENCAPSULATION_FLAGS.items() if flags & flag), None)


def _asks_udp(request: RegistrationRequest) -> bool:
    return any(isinstance(e, UdpTunnelRequest) for e in request.extensions)


def _udp_tunnel_granted(request: RegistrationRequest, reply: RegistrationReply) -> UdpTunnelReply | None:
    """The UDP Tunnel Reply of an accepted ``reply`` if it assents to the tunnelling ``request`` asked
    for (RFC 3519 3.2); None otherwise (not asked, declined, or absent: an agent without support)."""
    if not _asks_udp(request):
        return None
    found = next((e for e in reply.extensions if isinstance(e, UdpTunnelReply)), None)
    return found if found is not None and found.accepted else None


def _requested_prefixes(request: RegistrationRequest) -> tuple[IPv4Network, ...]:
    """The Mobile Network Prefixes a request of ours named (RFC 5177 4.1)."""
    return tuple(IPv4Network(f"{e.prefix}/{e.prefix_length}") for e in request.extensions
                 if isinstance(e, MobileNetworkRequest))


def _acknowledged(reply: RegistrationReply) -> list[tuple[IPv4Network | None, MobileNetworkAcknowledgement]]:
    """The reply's Mobile Network Acknowledgements (4.2), each with its prefix (None when the
    prefix length or the host bits make no IPv4 network of it)."""
    out: list[tuple[IPv4Network | None, MobileNetworkAcknowledgement]] = []
    for e in reply.extensions:
        if isinstance(e, MobileNetworkAcknowledgement):
            try:
                out.append((IPv4Network(f"{e.prefix}/{e.prefix_length}"), e))
            except ValueError:
                out.append((None, e))
    return out


def _ack_text(network: IPv4Network | None, ack: MobileNetworkAcknowledgement) -> str:
    try:
        why = MobileNetworkAcknowledgementCode(ack.code).name
    except ValueError:
        why = "unknown code"
    return f"{network or f'{ack.prefix}/{ack.prefix_length}'} (code {ack.code} {why})"


class MobileNode:
    """Discovery, movement detection, registration and return home of one mobile node."""

    def __init__(self, settings: MobileNodeSettings, *, wall_clock: Callable[[], float],
                 random32: Callable[[], int], random: Callable[[], float]) -> None:
        self.settings = settings
        self.home_agent = settings.home_agent
        self.agents = AgentTable()
        # For mipctl stats: requests_received counts the replies this node received.
        self.counters = Counters()
        self.solicitation = Solicitation(random)
        self.location = Location.UNKNOWN
        self.registration: Registration | None = None
        self.attempt: Attempt | None = None
        self.link_up = True
        self.colocated: IPv4Interface | None = settings.colocated_address
        self._home_prefix_address = False
        self._wall_clock = wall_clock
        self._random32 = random32
        self._clock_offset = 0.0
        self._last_identification = 0
        self._ha_nonce: int | None = None
        self._last_sent = -math.inf
        # A request waiting for the once-a-second rule: (when, lifetime, care-of address, agent).
        self._deferred: tuple[float, int, IPv4Address, Agent | None] | None = None
        self._retry_at: float | None = None  # after a denial
        self._requested_lifetime = settings.lifetime
        self._prefer: IPv4Address | None = None  # an agent to move to (prefixes changed)
        # The carrier changed since the start: the node may have moved, so the agent of a restored
        # registration is no longer kept unheard (see _choose_agent); and the address held when it came
        # back, with the time until which it is not a co-located care-of address (LINK_CHANGE_GRACE).
        self._link_changed = False
        self._held_at_link: tuple[IPv4Interface, float] | None = None
        self._stopping = False  # stop() was called: no new registrations, only the deregistration
        # The registration lifecycle (mipd.core.mobile_machine): changed by _transition alone.
        self.state = Lifecycle.IDLE
        # Encapsulations an agent (home or foreign, by address) refused with 139 / 72: not asked again.
        self._refused: dict[IPv4Address, set[Encapsulation]] = {}
        # RFC 3519: home agents that refused UDP tunnelling with 142 (not asked again), and the
        # keepalives of a UDP-tunnelled registration (None when the registration is not one).
        self._udp_refused: set[IPv4Address] = set()
        self._keepalive: Keepalive | None = None
        # RFC 5177 5.1: home agents that denied with 148 (no prefixes are sent to them again), the
        # prefixes each home agent failed with 147 (not sent to it again), and the home agents
        # already reported as without mobile network support (warned once each).
        self._mobnet_disallowed: set[IPv4Address] = set()
        self._mobnet_failed: dict[IPv4Address, set[IPv4Network]] = {}
        self._mobnet_unsupported: set[IPv4Address] = set()

    def _transition(self, event: Event) -> None:
        """Move the lifecycle by the table (mipd.core.mobile_machine); a row it lacks is a bug."""
        target = TRANSITIONS[self.state].get(event)
        if target is None:
            raise TransitionError(f"mobile node: no transition from {self.state} on {event}")
        self.state = self.implied() if target is SETTLE else target

    def implied(self) -> Lifecycle:
        """The state the payload implies (what SETTLE resolves to): a request deferred, else one in
        flight, else a denial's hold, else a registration in force, else none."""
        if self._deferred is not None:
            return Lifecycle.DEFERRED
        if self.attempt is not None:
            return Lifecycle.DEREGISTERING if self.attempt.deregistration else Lifecycle.REGISTERING
        if self._retry_at is not None:
            return Lifecycle.DENIED_WAIT
        return Lifecycle.REGISTERED if self.registration is not None else Lifecycle.IDLE

    # --- inputs ---

    def start(self, now: float) -> list[Action]:
        """Begin: solicit at once (2.4), and state where the node is (unknown until heard)."""
        self.solicitation.start(now)
        return self._decide(now)

    def advertisement(self, advertisement: AgentAdvertisement, source: IPv4Address, link_address: bytes,
                      now: float) -> list[Action]:
        """An Agent Advertisement heard on the link (decoded and checksum-checked)."""
        mobility = advertisement.mobility
        if mobility is None or advertisement.unrecognised_nonskippable is not None:
            return []  # not an agent advertisement, or one with an unknown 0-127 extension (1.8)
        agent = Agent(source, link_address, advertisement, mobility, now + advertisement.lifetime)
        current = self._current_agent()
        heard = self.agents.heard(agent)
        actions: list[Action] = []
        if heard is Heard.NEW:
            actions.append(self._event(EventName.AGENT_DISCOVERED, f"agent {source} heard", agent=source,
                                       care_of=agent.care_of_address))
        if heard is Heard.REBOOTED and current is not None and current.address == source:
            actions.append(self._movement("the foreign agent rebooted (2.4.4)"))
            self.registration = None  # it lost its visitor list: register again
            self._transition(Event.FORGOTTEN)
        elif current is not None and current.address != source and prefixes_differ(current, agent):
            actions.append(self._movement(f"prefixes of {source} differ from {current.address} (2.4.2)"))
            self.registration = None
            self._transition(Event.FORGOTTEN)
            self._prefer = source
        self.solicitation.stop()
        return actions + self._decide(now)

    def reply(self, datagram: Datagram, now: float) -> list[Action]:
        """A registration reply received on the node's socket."""
        self.counters.requests_received += 1
        try:
            reply = decode_registration(datagram.payload)
        except DecodeError as exc:
            self.counters.dropped[DiscardReason.MALFORMED] += 1
            return [self._event(EventName.PACKET_DROPPED, f"malformed datagram from {datagram.source}: {exc.reason}",
                                Priority.WARNING, reason=DiscardReason.MALFORMED)]
        attempt = self.attempt
        if not isinstance(reply, RegistrationReply) or attempt is None:
            self.counters.dropped["unexpected"] += 1
            return []
        if not ident.reply_matches(attempt.request.identification, reply.identification):
            self.counters.dropped["identification-mismatch"] += 1
            return []  # 3.6.2.1: not the answer to our request
        if not self._authentic(reply, attempt):
            self.counters.dropped[DiscardReason.BAD_AUTHENTICATOR] += 1
            return [self._event(EventName.PACKET_DROPPED, f"reply from {datagram.source} failed authentication",
                                Priority.WARNING, reason=DiscardReason.BAD_AUTHENTICATOR)]
        self.attempt = None
        if not denied_by_foreign_agent(reply.code) and self.settings.sa.replay is ReplayProtection.NONCE:
            self._ha_nonce = ident.high32(reply.identification)  # every home agent reply carries one (5.7.2)
        if is_accepted(reply.code):
            self.counters.accepted += 1
            return self._accepted(reply, attempt, now)
        self.counters.denied[reply.code] += 1
        return self._denied(reply, attempt, now)

    def link(self, up: bool, now: float) -> list[Action]:
        """The link's carrier changed. Coming up is a hint the node may have moved: forget the
        agents heard before and solicit at once (2.4). The registration's own agent too: from now
        on it counts only once heard again."""
        self.link_up = up
        self._link_changed = True
        if not up:
            return []
        if self.colocated is not None and self.settings.colocated_address is None:
            self._held_at_link = (self.colocated, now + LINK_CHANGE_GRACE)
        self.agents.clear()
        self.solicitation.start(now)
        return self._decide(now)

    def addresses(self, addresses: Iterable[IPv4Interface], now: float) -> list[Action]:
        """The interface's IPv4 addresses changed: a co-located care-of address, or the home prefix."""
        listed = list(addresses)
        s = self.settings
        self._home_prefix_address = any(a.ip in s.home_network and a.ip != s.home_address
                                        and a.network == s.home_network for a in listed)
        if s.colocated_address is None:
            foreign = [a for a in listed if a.ip not in s.home_network and not a.ip.is_loopback]
            self.colocated = foreign[0] if foreign else None
        return self._decide(now)

    def next_timer(self) -> float | None:
        deadlines = [self.agents.next_expiry(), self.solicitation.next_at, self._retry_at,
                     self._deferred[0] if self._deferred is not None else None,
                     self._held_at_link[1] if self._held_at_link is not None else None]
        if self.attempt is not None:
            deadlines.append(self.attempt.sent_at + self.attempt.interval)
        if self.registration is not None:
            deadlines.append(self.registration.expires)
            if self.attempt is None:  # a renewal in flight has its own retransmission deadline
                deadlines.append(self.registration.renew_at)
        keepalive = self._live_keepalive()
        if keepalive is not None:
            deadlines.append(keepalive.next_timer())
        return min((d for d in deadlines if d is not None and not math.isinf(d)), default=None)

    def on_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        if self._held_at_link is not None and now >= self._held_at_link[1]:
            self._held_at_link = None  # the grace is over (the decision below may use the address)
        for agent in self.agents.expire(now):
            actions.append(self._event(EventName.AGENT_LOST,
                                       f"agent {agent.address} not heard for its lifetime (2.4.2)",
                                       agent=agent.address))
        if self.registration is not None and now >= self.registration.expires:
            actions.append(self._event(EventName.REGISTRATION_EXPIRED, "registration lifetime over",
                                       care_of=self.registration.care_of_address))
            self.registration = None
            self._transition(Event.EXPIRED)
            actions.append(self._persist(now))
        if self.attempt is not None and now >= self.attempt.sent_at + self.attempt.interval:
            actions += self._retransmit(now)
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self._transition(Event.RETRY_DUE)
        if self._deferred is not None and now >= self._deferred[0]:
            _, lifetime, care_of, waiting_for = self._deferred
            self._deferred = None
            actions += self._send(now, lifetime=lifetime, care_of=care_of, agent=waiting_for)
        if not self.agents.all() and self.solicitation.next_at is None and self.location != Location.HOME \
                and not self._stopping:
            self.solicitation.start(now)
        if self.solicitation.due(now):
            actions.append(SendIcmp(AgentSolicitation().encode(), ALL_MOBILITY_AGENTS, SOLICITATION_TTL))
        actions += self._decide(now)
        actions += self._keepalives(now)
        reg = self.registration
        if reg is not None and now >= reg.renew_at and self.attempt is None:
            # Due for renewal with nowhere to renew from (no agent, no co-located address): look
            # again in a second rather than leave the timer due, which would fire it in a busy loop.
            self.registration = replace(reg, renew_at=min(now + MIN_RETRANSMISSION, reg.expires))
        return actions

    def stop(self, now: float) -> list[Action]:
        """Stopping: deregister if away and registered, or a registration is on its way that the
        home agent may accept (``deregister_on_stop``).

        The deregistration is bound by the once-a-second rule like any request: within a second
        of the last one it is deferred and sent by :meth:`on_timer` when the second is over (the
        caller keeps the timer running while :attr:`stop_pending`). From now on nothing but the
        deregistration is sent: no renewal, no registration after it is answered.
        """
        self._stopping = True
        if self._deferred is not None and self._deferred[1] != 0:
            self._deferred = None  # a registration not sent yet never will be (a deregistration still is)
            self._transition(Event.CANCEL_DEFERRED)
        reg, attempt = self.registration, self.attempt
        if reg is not None:
            care_of, agent = reg.care_of_address, reg.agent
        elif attempt is not None and not attempt.deregistration:
            care_of, agent = attempt.request.care_of_address, attempt.agent
        else:
            return []
        if not self.settings.deregister_on_stop or self.location == Location.HOME:
            return []
        self.attempt = None  # superseded: a renewal must not be retransmitted in its place
        self._deferred = None
        self._retry_at = None
        return self._send(now, lifetime=0, care_of=care_of, agent=agent)

    @property
    def stop_pending(self) -> bool:
        """Stopping, and the deregistration still waits to be sent or answered."""
        if not self._stopping:
            return False
        return self._deferred is not None or (self.attempt is not None and self.attempt.deregistration)

    # --- deciding where to be ---

    def _current_agent(self) -> Agent | None:
        reg = self.registration
        if reg is not None and reg.agent is not None:
            return self.agents.get(reg.agent.address)
        if self.attempt is not None and self.attempt.agent is not None:
            return self.agents.get(self.attempt.agent.address)
        return None

    def _home_agent_heard(self) -> bool:
        """Home: our home agent advertises here (H), or an agent's advertised prefix is the home
        network's (2.4.2 algorithm 2 / 2.4.3: the node knows its home prefix)."""
        s = self.settings
        for agent in self.agents.all():
            if agent.mobility.flags & AdvertisementFlags.H and (agent.address == self.home_agent
                                                                or agent.address in s.home_network):
                return True
            if agent.prefixes is not None and s.home_network in agent.prefixes:
                return True
        return False

    def _choose_agent(self) -> Agent | None:
        # care_of colocated: only an agent whose advertisement sets R (registration required, 3.3:
        # register via that foreign agent even with a co-located care-of address) is used.
        only_required = self.settings.care_of == CareOfMode.COLOCATED

        def usable(agent: Agent) -> bool:
            return agent.foreign and (not only_required or bool(agent.mobility.flags & AdvertisementFlags.R))

        current = self._current_agent()
        if current is not None and usable(current) and self._prefer in (None, current.address):
            return current
        foreign = [a for a in self.agents.all() if usable(a)]
        preferred = [a for a in foreign if a.address == self._prefer]
        if preferred or foreign:
            return (preferred or foreign)[0]
        reg = self.registration
        # Restored after a restart and not heard again yet: keep the agent of the registration, unless
        # the carrier changed since (the node may be on another link: a co-located address there, or
        # the next agent heard, takes over).
        keep = reg is not None and reg.agent is not None and self._prefer is None and not self._link_changed
        return reg.agent if keep and reg is not None else None

    def _decide(self, now: float) -> list[Action]:
        if self._stopping:
            return []  # stop(): the deregistration is the last request
        s = self.settings
        if self._home_agent_heard() or self._home_prefix_address:
            return self._go_home(now)
        agent = self._choose_agent()
        requires_agent = agent is not None and bool(agent.mobility.flags & AdvertisementFlags.R)
        colocated = self._colocated(now)
        use_colocated = colocated is not None and s.care_of != CareOfMode.FOREIGN_AGENT and (
            agent is None or (s.care_of == CareOfMode.COLOCATED and not requires_agent))
        if agent is not None and not use_colocated:
            care_of = agent.care_of_address
            assert care_of is not None
            return self._be_registered(now, Location.FOREIGN_AGENT, care_of, agent)
        if use_colocated and colocated is not None:
            return self._be_registered(now, Location.COLOCATED, colocated.ip, None)
        if self.location != Location.UNKNOWN and self.registration is None and self.attempt is None:
            left_home = self.location == Location.HOME
            self.location = Location.UNKNOWN
            moved = [self._movement("left the home link")] if left_home else []
            return [*moved, self._plane()]
        return []

    def _colocated(self, now: float) -> IPv4Interface | None:
        """The co-located care-of address to use now: not, for LINK_CHANGE_GRACE after the carrier came
        back, the address the interface held before (the old link's lease, as like as not)."""
        held = self._held_at_link
        if held is not None and now >= held[1]:
            self._held_at_link = held = None
        if held is not None and self.colocated == held[0]:
            return None
        return self.colocated

    def _be_registered(self, now: float, location: Location, care_of: IPv4Address, agent: Agent | None
                       ) -> list[Action]:
        actions: list[Action] = []
        reg, attempt = self.registration, self.attempt
        if reg is not None and reg.care_of_address == care_of:
            if self.location != location:
                self.location = location
                actions.append(self._plane())
            if now >= reg.renew_at and attempt is None:
                actions += self._send(now, lifetime=self._requested(agent), care_of=care_of, agent=agent)
            return actions
        if attempt is not None and attempt.request.care_of_address == care_of and not attempt.deregistration:
            return actions  # already on its way
        if self._deferred is not None and self._deferred[2] == care_of:
            return actions  # on its way as soon as the once-a-second rule lets it
        if self._retry_at is not None and now < self._retry_at:
            return actions
        if self.location not in (Location.UNKNOWN, location) or (reg is not None and reg.care_of_address != care_of):
            actions.append(self._movement(f"now at care-of address {care_of}"))
        self.location = location
        actions.append(self._plane(agent=agent, care_of=care_of))
        return actions + self._send(now, lifetime=self._requested(agent), care_of=care_of, agent=agent)

    def _go_home(self, now: float) -> list[Action]:
        """4.6: re-enable ARP, gratuitous ARP, then the deregistration."""
        if self.location == Location.HOME:
            return []
        was_away = self.registration is not None or self.attempt is not None or self.location != Location.UNKNOWN
        self.location = Location.HOME
        self.solicitation.stop()
        actions: list[Action] = [self._plane(), AnnounceHome(self.settings.home_address)]
        if was_away:
            actions.append(self._event(EventName.HOME_RETURNED, "back on the home link"))
            actions += self._send(now, lifetime=0, care_of=self.settings.home_address, agent=None)
        return actions

    def _requested(self, agent: Agent | None) -> int:
        lifetime = self._requested_lifetime
        if agent is not None and agent.mobility.registration_lifetime != INFINITE_LIFETIME:
            lifetime = min(lifetime, agent.mobility.registration_lifetime)  # 3.6.1.2: "SHOULD NOT exceed"
        return lifetime

    # --- sending ---

    def _send(self, now: float, *, lifetime: int, care_of: IPv4Address, agent: Agent | None) -> list[Action]:
        if now - self._last_sent < MIN_REGISTRATION_GAP:
            self._deferred = (self._last_sent + MIN_REGISTRATION_GAP, lifetime, care_of, agent)
            if self.attempt is not None and self.attempt.request.care_of_address != care_of:
                self.attempt = None  # superseded: its reply would be for a place the node left
            self._transition(Event.DEFER)
            return []
        s = self.settings
        home = care_of == s.home_address
        flags = RequestFlags(0)
        if agent is None and not home:
            flags |= RequestFlags.D  # 3.6.1.2: co-located
        if s.reverse_tunneling and not home and (agent is None or agent.mobility.flags & AdvertisementFlags.T):
            flags |= RequestFlags.T
        if not home and lifetime:
            flags |= _ENCAPSULATION_FLAGS.get(self._encapsulation(agent), RequestFlags(0))
        request = RegistrationRequest(flags, lifetime, s.home_address, self.home_agent, care_of,
                                      self._identification())
        if agent is None and not home and lifetime and s.nat_traversal is not NodeNatTraversal.OFF \
                and self.home_agent not in self._udp_refused:
            # RFC 3519 3.1: co-located (D is set), before the MN-HA authenticator; F with force.
            force = UdpTunnelRequestFlags.F if s.nat_traversal is NodeNatTraversal.FORCE else UdpTunnelRequestFlags(0)
            request = replace(request, extensions=(*request.extensions,
                                                   UdpTunnelRequest(force, NatEncapsulation.IP_IN_IP)))
        if not home and lifetime:
            # RFC 5177 4.1, 10: one Mobile Network Request per prefix, before the MN-HA authenticator;
            # never in a deregistration (section 5).
            request = replace(request, extensions=(*request.extensions, *(
                MobileNetworkRequest(n.prefixlen, n.network_address) for n in self.requested_networks())))
        request = append_authentication(request, ExtensionType.MOBILE_HOME_AUTHENTICATION, s.sa.spi, s.sa.key,
                                        s.sa.algorithm)
        fa_sa = s.foreign_agents.get(agent.address) if agent is not None else None
        if fa_sa is not None:
            request = append_authentication(request, ExtensionType.MOBILE_FOREIGN_AUTHENTICATION, fa_sa.spi,
                                            fa_sa.key, fa_sa.algorithm)
        if agent is not None:  # 3.6.1.1: through the agent, from the home address
            destination, source, ttl = agent.address, s.home_address, TTL_TO_FOREIGN_AGENT
        elif home:
            destination, source, ttl = self.home_agent, s.home_address, 1  # App. C: TTL 1 from home
        else:
            destination, source, ttl = self.home_agent, care_of, None
        interval = self.attempt.interval * 2 if self.attempt is not None and \
            self.attempt.request.care_of_address == care_of else MIN_RETRANSMISSION
        self.attempt = Attempt(request, destination, source, ttl, agent, now,
                               min(interval, max(MIN_RETRANSMISSION, float(lifetime or MIN_RETRANSMISSION))))
        self._transition(Event.SEND_BEHIND_DEFERRED if self._deferred is not None
                         else Event.SEND_DEREGISTRATION if lifetime == 0 else Event.SEND_REGISTRATION)
        self._last_sent = now
        return [
            self._event(EventName.REGISTRATION_SENT, f"registration via {destination} for {lifetime} s",
                        care_of=care_of, agent=agent.address if agent else None, lifetime=lifetime),
            SendDatagram(request.encode(), source, 0, destination, REGISTRATION_PORT, ttl),
            self._persist(now),
        ]

    def _retransmit(self, now: float) -> list[Action]:
        attempt = self.attempt
        assert attempt is not None
        if self.settings.sa.replay is ReplayProtection.NONCE:
            # 3.6.3: with nonces the request is resent unchanged.
            self.attempt = replace(attempt, sent_at=now, interval=min(attempt.interval * 2, max(
                MIN_RETRANSMISSION, float(attempt.request.lifetime or MIN_RETRANSMISSION))))
            self._last_sent = now
            return [SendDatagram(attempt.request.encode(), attempt.source, 0, attempt.destination, REGISTRATION_PORT,
                                 attempt.ttl)]
        # With timestamps each retransmission is a new registration with a new Identification.
        return self._send(now, lifetime=attempt.request.lifetime, care_of=attempt.request.care_of_address,
                          agent=attempt.agent)

    @property
    def mobile_router(self) -> bool:
        """RFC 5177: the node serves prefixes behind it (``mobile_networks`` configured)."""
        return bool(self.settings.mobile_networks)

    def requested_networks(self) -> tuple[IPv4Network, ...]:
        """The prefixes the next registration request names: explicit mode, less what this home
        agent refused with 147, and none at all for a home agent that answered 148 (5.1)."""
        s = self.settings
        if s.mobile_network_mode is not MobileNetworkMode.EXPLICIT or self.home_agent in self._mobnet_disallowed:
            return ()
        failed = self._mobnet_failed.get(self.home_agent, set())
        return tuple(n for n in s.mobile_networks if n not in failed)

    @property
    def mobile_networks(self) -> tuple[IPv4Network, ...]:
        """The prefixes the registration in force serves (the home agent routes them to us)."""
        return self.registration.mobile_networks if self.registration is not None else ()

    def _served(self, reply: RegistrationReply, attempt: Attempt) -> tuple[tuple[IPv4Network, ...], Priority, str]:
        """RFC 5177 4.2, 5, 5.1: what a successful reply's acknowledgements grant, the event's
        priority and a reason (empty when everything asked for was granted)."""
        if not self.mobile_router:
            return (), Priority.INFO, ""
        acks = _acknowledged(reply)
        if not acks:
            # 5.1: "must be interpreted ... as the case where the Home Agent does not support Mobile
            # Networks": carry on as a host; said once per home agent.
            if self.home_agent in self._mobnet_unsupported:
                return (), Priority.INFO, "no mobile network acknowledgement: served as a host"
            self._mobnet_unsupported.add(self.home_agent)
            return (), Priority.WARNING, (f"home agent {self.home_agent} sent no mobile network acknowledgement "
                                          "(RFC 5177 5.1: it does not support mobile networks): served as a host")
        self._mobnet_unsupported.discard(self.home_agent)
        asked = set(_requested_prefixes(attempt.request))
        explicit = bool(asked)
        served: list[IPv4Network] = []
        refused: list[str] = []
        for network, ack in acks:
            if ack.code != MobileNetworkAcknowledgementCode.SUCCESS:
                refused.append(_ack_text(network, ack))
            elif network is None or (network not in asked if explicit else not any(
                    network.subnet_of(mine) for mine in self.settings.mobile_networks)):
                refused.append(f"{network or f'{ack.prefix}/{ack.prefix_length}'} (acknowledged but not ours)")
            elif network not in served:
                served.append(network)
        missing = [str(n) for n in self.settings.mobile_networks if not any(x.subnet_of(n) for x in served)]
        if refused:
            return tuple(served), Priority.WARNING, "not served: " + ", ".join(refused)
        if missing and explicit:
            return tuple(served), Priority.WARNING, "not acknowledged: " + ", ".join(missing)
        return tuple(served), Priority.INFO, ""

    def _encapsulation(self, agent: Agent | None) -> Encapsulation:
        """The encapsulation to ask for: the first preferred one that this home agent (and the
        foreign agent, which must advertise it) has not refused; IP-in-IP otherwise."""
        refused = self._refused.get(self.home_agent, set())
        if agent is not None:
            refused = refused | self._refused.get(agent.address, set())
        for encapsulation in self.settings.encapsulations:
            if encapsulation is Encapsulation.IPIP:
                break
            if encapsulation in refused:
                continue
            if agent is None or agent.mobility.flags & _ADVERTISED[encapsulation]:
                return encapsulation
        return Encapsulation.IPIP

    def _identification(self) -> int:
        if self.settings.sa.replay is ReplayProtection.NONCE:
            high = self._ha_nonce if self._ha_nonce is not None else self._random32()
            return ident.nonce_request(high, self._random32())
        value = ident.timestamp(self._wall_clock() + self._clock_offset, self._random32())
        value = max(value, self._last_identification + 1)  # 5.7.1: greater than any before
        self._last_identification = value
        return value

    # --- replies ---

    def _authentic(self, reply: RegistrationReply, attempt: Attempt) -> bool:
        """3.6.2.1: exactly one valid MN-FA when we share an SA with the agent; exactly one valid
        MN-HA when the home agent answered (a foreign agent's denial carries none)."""
        if attempt.agent is not None:
            fa_sa = self.settings.foreign_agents.get(attempt.agent.address)
            if fa_sa is not None:
                mn_fa = reply.authentications(ExtensionType.MOBILE_FOREIGN_AUTHENTICATION)
                if len(mn_fa) != 1 or not verify(reply, mn_fa[0][0], fa_sa.key, fa_sa.algorithm):
                    return False
        if denied_by_foreign_agent(reply.code):
            return True
        mn_ha = reply.authentications(ExtensionType.MOBILE_HOME_AUTHENTICATION)
        sa = self.settings.sa
        return len(mn_ha) == 1 and mn_ha[0][1].spi == sa.spi and verify(reply, mn_ha[0][0], sa.key, sa.algorithm)

    def _accepted(self, reply: RegistrationReply, attempt: Attempt, now: float) -> list[Action]:
        if attempt.deregistration:
            self.registration = None
            self._transition(Event.DEREGISTERED)
            done: list[Action] = [self._event(EventName.REGISTRATION_ACCEPTED, "deregistered", code=reply.code,
                                              lifetime=0), self._persist(now)]
            # Away again before the deregistration was answered: the binding is gone, register anew.
            return done if self.location == Location.HOME else done + self._decide(now)
        lifetime = min(reply.lifetime, attempt.request.lifetime)
        # 3.6.2.2: the lifetime counts from when the request was sent.
        expires = math.inf if lifetime == INFINITE_LIFETIME else attempt.sent_at + lifetime
        margin = min(max(MIN_RETRANSMISSION, 0.2 * lifetime), 0.5 * lifetime)
        udp = _udp_tunnel_granted(attempt.request, reply)
        served, priority, why = self._served(reply, attempt)
        self.registration = Registration(attempt.request.care_of_address, attempt.agent, lifetime, expires,
                                         expires - margin, attempt.request.identification, attempt.request.flags,
                                         None if udp is None else interval_from_reply(udp.keepalive_interval),
                                         served)
        self._transition(Event.ACCEPTED)
        self._requested_lifetime = self.settings.lifetime
        self._prefer = None
        router: dict[str, str | int] = {}
        message = f"registered at {attempt.request.care_of_address} for {lifetime} s"
        if self.mobile_router:
            # RFC 5177: which prefixes the home agent now routes to us (MIP_MOBILE_NETWORKS), and why not others.
            router["mobile_networks"] = ",".join(map(str, served))
            message += f", serving {', '.join(map(str, served)) or 'no mobile network'}"
            if why:
                router["reason"] = why
                message += f"; {why}"
        actions: list[Action] = [
            self._event(EventName.REGISTRATION_ACCEPTED, message, priority, code=reply.code, lifetime=lifetime,
                        care_of=attempt.request.care_of_address, agent=attempt.agent.address if attempt.agent else None,
                        **router)]
        if udp is not None:
            self._start_keepalives(now)
            actions.append(self._nat_detected(udp))
        else:
            self._keepalive = None
        return [*actions, self._plane(), self._persist(now)]

    def _denied(self, reply: RegistrationReply, attempt: Attempt, now: float) -> list[Action]:
        code = reply.code
        actions: list[Action] = [self._event(EventName.REGISTRATION_DENIED, f"registration denied with {code}",
                                             Priority.NOTICE, code=code, care_of=attempt.request.care_of_address)]
        if code == ReplyCode.HA_REGISTRATION_IDENTIFICATION_MISMATCH:
            if self.settings.sa.replay is ReplayProtection.TIMESTAMP:
                # 3.6.2.3: take the home agent's time; the old (too high) values no longer bound ours.
                self._clock_offset = ident.clock_offset(reply.identification, self._wall_clock())
                self._last_identification = 0
        elif code == ReplyCode.FA_REQUESTED_LIFETIME_TOO_LONG and reply.lifetime:
            self._requested_lifetime = reply.lifetime
        elif code == ReplyCode.HA_UNKNOWN_HOME_AGENT_ADDRESS:
            self.home_agent = reply.home_agent
        elif code == ReplyCode.HA_UDP_ENCAP_UNAVAIL and _asks_udp(attempt.request):
            # RFC 3519 3.5: this home agent cannot tunnel over UDP; ask again without the extension.
            self._udp_refused.add(self.home_agent)
        elif code == ReplyCode.HA_MOBNET_DISALLOWED and _requested_prefixes(attempt.request):
            # RFC 5177 5.1: "MUST stop sending Registration Requests with any Mobile Network Prefix
            # extensions to that Home Agent"; asked again at once as a host.
            self._mobnet_disallowed.add(self.home_agent)
            actions[0] = self._event(EventName.REGISTRATION_DENIED, f"registration denied with {code}: "
                                     f"{self.home_agent} does not let this node act as a mobile router",
                                     Priority.WARNING, code=code, care_of=attempt.request.care_of_address,
                                     reason="mobile router operation not permitted (RFC 5177 5.1)")
        elif code == ReplyCode.HA_MOBNET_ERROR and (failed := self._mobnet_refused(reply, attempt)):
            # RFC 5177 5.1: stop sending the prefixes the acknowledgements name; ask again without them.
            self._mobnet_failed.setdefault(self.home_agent, set()).update(failed)
            named = ", ".join(_ack_text(n, a) for n, a in _acknowledged(reply) if a.code) or "no acknowledgement"
            actions[0] = self._event(EventName.REGISTRATION_DENIED, f"registration denied with {code}: "
                                     "no mobile network prefix could be served", Priority.WARNING, code=code,
                                     care_of=attempt.request.care_of_address, reason=f"not served: {named}",
                                     mobile_networks=",".join(map(str, sorted(failed))))
        elif (asked := _requested_encapsulation(attempt.request.flags)) is not None and \
                (refuser := self._refuser(code, attempt)) is not None:
            # Not asked of that agent again: the next request falls back (finally to IP-in-IP).
            self._refused.setdefault(refuser, set()).add(asked)
        else:
            self._retry_at = now + DENIED_RETRY  # retrying at once would be denied again
            self._transition(Event.DENIED)
            actions.append(self._persist(now))
            return actions + self._decide(now)
        actions.append(self._persist(now))
        lifetime = 0 if attempt.deregistration else self._requested(attempt.agent)  # a deregistration stays one
        return actions + self._send(now, lifetime=lifetime, care_of=attempt.request.care_of_address,
                                    agent=attempt.agent)

    def _mobnet_refused(self, reply: RegistrationReply, attempt: Attempt) -> set[IPv4Network]:
        """The prefixes of our request a 147 reply refuses (5.1): those acknowledged with a non-zero
        code; every one asked for when the reply names none. Empty: nothing left to leave out."""
        asked = set(_requested_prefixes(attempt.request))
        named = {n for n, ack in _acknowledged(reply) if ack.code and n is not None}
        return (named & asked) or (asked if not named else set())

    def _refuser(self, code: int, attempt: Attempt) -> IPv4Address | None:
        """Who refused the requested encapsulation: the home agent (139) or the foreign agent (72)."""
        if code == ReplyCode.HA_REQUESTED_ENCAPSULATION_UNAVAILABLE:
            return self.home_agent
        if code == ReplyCode.FA_REQUESTED_ENCAPSULATION_UNAVAILABLE and attempt.agent is not None:
            return attempt.agent.address
        return None

    # --- UDP tunnelling (RFC 3519) ---

    def keepalive_reply(self, identifier: int, sequence: int, now: float) -> list[Action]:
        """An ICMP Echo Reply from the home agent came through the UDP tunnel (the runtime's data
        plane saw it): it may answer a keepalive."""
        keepalive = self._live_keepalive()
        if keepalive is not None:
            keepalive.answered(identifier, sequence, now)
        return []

    @property
    def udp_tunnel(self) -> bool:
        """The registration in force is UDP-tunnelled."""
        return self.registration is not None and self.registration.udp_keepalive is not None

    def _live_keepalive(self) -> Keepalive | None:
        if not self.udp_tunnel:
            self._keepalive = None
        return self._keepalive

    def _start_keepalives(self, now: float) -> None:
        reg = self.registration
        assert reg is not None and reg.udp_keepalive is not None
        self._keepalive = Keepalive(float(reg.udp_keepalive), self._random32() & 0xFFFF, now + reg.udp_keepalive)

    def _keepalives(self, now: float) -> list[Action]:
        keepalive, reg = self._live_keepalive(), self.registration
        if keepalive is None or reg is None or self._stopping:
            return []
        due = keepalive.poll(now)
        if due is Due.SEND:
            payload = keepalive.send(now, self.settings.home_address, self.home_agent)
            return [SendDatagram(payload, reg.care_of_address, 0, self.home_agent, REGISTRATION_PORT, None)]
        if due is Due.NOTHING:
            return []
        # RFC 3519 3.6: no answer, the NAT's mapping is gone: register again (through the new one).
        self._keepalive = None
        actions: list[Action] = [self._event(
            EventName.KEEPALIVE_LOST, f"{TRIES} keepalives to {self.home_agent} unanswered: registering again",
            Priority.WARNING, care_of=reg.care_of_address, keepalive_interval=reg.udp_keepalive or 0)]
        if self.attempt is None and self._deferred is None:
            actions += self._send(now, lifetime=self._requested(None), care_of=reg.care_of_address, agent=None)
        return actions

    def _nat_detected(self, udp: UdpTunnelReply) -> Emit:
        forced = bool(udp.flags & UdpTunnelReplyFlags.F)
        reg = self.registration
        assert reg is not None
        why = "UDP tunnelling forced" if forced else "the home agent saw the request come from another address"
        return self._event(EventName.NAT_DETECTED, f"the home agent tunnels over UDP ({why}); keepalives every "
                           f"{reg.udp_keepalive} s", care_of=reg.care_of_address,
                           keepalive_interval=reg.udp_keepalive or 0, reason="forced" if forced else "nat")

    # --- outputs ---

    def _plane(self, agent: Agent | None = None, care_of: IPv4Address | None = None) -> MobilePlane:
        reg = self.registration
        if agent is None and reg is not None:
            agent = reg.agent
        if care_of is None and reg is not None:
            care_of = reg.care_of_address
        s = self.settings
        if self.location in (Location.HOME, Location.UNKNOWN):
            return MobilePlane(self.location, s.home_address, self.home_agent)
        # The reverse tunnel of a co-located node uses what the home agent granted (it accepted
        # the request with G or M); before that, IP-in-IP, which it always accepts (4.1).
        granted = reg.flags if reg is not None and reg.care_of_address == care_of else RequestFlags(0)
        encapsulation = _requested_encapsulation(granted) or Encapsulation.IPIP
        current = reg is not None and reg.care_of_address == care_of
        udp = current and reg is not None and reg.udp_keepalive is not None
        served = reg.mobile_networks if current and reg is not None else ()
        return MobilePlane(self.location, s.home_address, self.home_agent,
                           agent.address if agent else None, agent.link_address if agent else None, care_of,
                           s.reverse_tunneling, encapsulation, udp, served)

    def restore(self, record: MobileState | None, now: float) -> None:
        """Take back a :meth:`snapshot` (as the state file kept it): Identification state always,
        the registration if it has not ended (its agent as it was; it is checked again when heard)."""
        if record is None:
            return
        self.home_agent = record.home_agent
        self._last_identification = record.last_identification
        self._ha_nonce = record.ha_nonce
        self._clock_offset = record.clock_offset
        reg = record.registration
        if reg is None:
            return
        remaining = math.inf if reg.expires_wall is None else reg.expires_wall - self._wall_clock()
        if remaining <= 0:
            return
        agent = None
        if reg.agent is not None and reg.agent_link_address is not None:
            agent = Agent(reg.agent, reg.agent_link_address, AgentAdvertisement(0),
                          MobilityAgentExtension(0, reg.lifetime, AdvertisementFlags.F, (reg.care_of_address,)), now)
        expires = now + remaining
        margin = min(max(MIN_RETRANSMISSION, 0.2 * reg.lifetime), 0.5 * reg.lifetime)
        self.registration = Registration(reg.care_of_address, agent, reg.lifetime, expires, expires - margin,
                                         reg.identification, reg.flags, reg.udp_keepalive, reg.mobile_networks)
        if reg.udp_keepalive is not None:
            self._start_keepalives(now)
        self.location = record.location
        self._transition(Event.RESTORED)

    def plane(self) -> MobilePlane:
        """The routing state the node should be in now (for the runtime at start)."""
        return self._plane()

    def _movement(self, why: str) -> Emit:
        return self._event(EventName.MOVEMENT_DETECTED, f"movement detected: {why}", reason=why)

    def _event(self, event: EventName, message: str, priority: Priority = Priority.INFO, *,
               agent: IPv4Address | None = None, care_of: IPv4Address | None = None, **extra: str | int) -> Emit:
        fields: dict[str, str | int] = {"home_address": str(self.settings.home_address),
                                        "home_agent": str(self.home_agent), **extra}
        if agent is not None:
            fields["foreign_agent"] = str(agent)
        if care_of is not None:
            fields["care_of_address"] = str(care_of)
        return Emit(event, message, priority, fields)

    def _persist(self, now: float) -> PersistMobile:
        return PersistMobile(self.snapshot(now))

    def snapshot(self, now: float) -> MobileState:
        """What survives a restart (docs/interfaces.md, "Durability"); times as wall-clock values."""
        reg = self.registration
        stored = None
        if reg is not None:
            ends = None if math.isinf(reg.expires) else self._wall_clock() + (reg.expires - now)
            stored = StoredRegistration(reg.care_of_address, reg.lifetime, reg.identification, reg.flags, ends,
                                        reg.agent.address if reg.agent else None,
                                        reg.agent.link_address if reg.agent else None, reg.udp_keepalive,
                                        reg.mobile_networks)
        return MobileState(self.home_agent, self._last_identification, self._ha_nonce, self._clock_offset,
                           self.location, stored)
