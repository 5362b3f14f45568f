"""The foreign agent's registration relay (RFC 5944 section 3.7), as a sans-I/O engine.

Requests come from nodes on the visited link (:meth:`ForeignAgent.from_node`, with the frame's
link-layer source and IP TTL); replies come from home agents (:meth:`from_home_agent`); ICMP
errors for relayed requests come in through :meth:`relay_failed`. A request passes, in order:

    undecodable / not a request / unrecognised extension 0-127 .. silent discard, counted (1.8)
    MN-FA SA for the node, MN-FA missing, duplicated or invalid ... 67 (3.7.2.1)
    reserved bits set, or no Mobile-Home extension ............... 70 (3.7.2.1, 3.6.1.3)
    Home Agent field is one of our addresses ..................... 194 (3.7.2.1)
    D clear, Lifetime != 0, care-of address not ours ............. 77 (3.7.2.1)
    Lifetime above our maximum ................................... 69, our maximum in the reply (3.7.2.3)
    T but reverse tunneling off / T missing but required ......... 74 / 75 (RFC 3024)
    T and an IP TTL other than 255 (not on our link) ............. 76 (RFC 3024, recalled, see below)
    Encapsulating Delivery Style asked for ....................... 79 (RFC 3024; we deliver directly)
    M or G and that encapsulation not available ................. 72 (3.7.2.1)
    too many pending requests of the node, or visitors ........... 66 (3.7.2.1)

then it is kept as a pending entry and relayed to the home agent from our care-of address,
unchanged through the authorization-enabling extension, later extensions removed, Foreign-Home
Authentication appended when we share an SA with that home agent and Lifetime != 0 (3.7.2.2).
A pending entry times out after ``pending_timeout`` with 78; an ICMP error for the relayed
request gives 80, 81, 82 or 88 (3.7.3). Denials go out at most once per second per node (3.7.2).

Behind a NAT (RFC 3519 4.5), with ``nat_traversal``, a relayed registration for our own care-of
address (Lifetime not 0, never a co-located one) carries a UDP Tunnel Request after MN-HA and
before FA-HA: a conditional request, which only a home agent that sees the request NATed assents
to. A UDP Tunnel Reply after MN-HA in the home agent's reply answers it (type 44 is understood
here, and removed from the reply relayed to the node with every extension after MN-HA); an
assenting one makes the visitor UDP-tunnelled (its delivery says so, with the keepalive interval,
110 s when the reply gives 0) and shows that we are behind a NAT, so U is advertised from then on
(3.4). A declining reply, or none (a home agent without RFC 3519), leaves classic IP-in-IP.

The TTL rule of code 76 is RFC 3024's as remembered (a node asking for a reverse tunnel sends
its request with TTL 255, so a lower one shows it is not on our link); the RFC text itself was not
at hand when this was written.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

from mipd.core.actions import Action, Datagram, Emit, PersistVisitor, Priority, SendDatagram, SendToNode
from mipd.core.counters import Counters
from mipd.core.denial import Denied, Discard, open_registration
from mipd.core.names import DiscardReason, EventName, VisitorState
from mipd.core.planes import Delivery, VisitorPlane
from mipd.core.security import ReverseTunneling, SecurityAssociation
from mipd.core.visitors import Visitor, VisitorList
from mipd.core.wire.addresses import LIMITED_BROADCAST, UNSPECIFIED
from mipd.core.wire.auth import append_authentication, verify
from mipd.core.wire.codes import ReplyCode, is_accepted
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.extensions import EncapsulatingDeliveryStyle, ExtensionType
from mipd.core.wire.nat import Encapsulation as UdpEncapsulation
from mipd.core.wire.nat import UdpTunnelReply, UdpTunnelRequest
from mipd.core.wire.registration import (
    REGISTRATION_PORT,
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    decode_registration,
)
from mipd.core.wire.tunnel import Encapsulation

ALL_MOBILITY_AGENTS = IPv4Address("224.0.0.11")
RELAY_PORT = 0  # SendDatagram.source_port meaning "the relay socket's own port" (3.7.2.2: variable)
_RESERVED_FLAGS = RequestFlags.r | RequestFlags.x
_LOCAL_ERRORS = {errno.ENETUNREACH: 0, errno.EHOSTUNREACH: 1}  # errno -> the ICMP unreachable code
DEFAULT_KEEPALIVE = 110  # RFC 3519 4.9: K, when the UDP Tunnel Reply leaves it 0
_ICMP_CODES = {0: ReplyCode.FA_HOME_NETWORK_UNREACHABLE, 1: ReplyCode.FA_HOME_AGENT_HOST_UNREACHABLE,
               3: ReplyCode.FA_HOME_AGENT_PORT_UNREACHABLE}


def _only_lifetime_differs(old: Visitor, renewed: Visitor) -> bool:
    """Whether the active visitor ``renewed`` changes nothing of ``old`` but its lifetime (and the
    request's Identification, addressing its reply): same care-of address, home agent, link
    address, IP source, flags and UDP tunnel. Such a renewal is a counter and a debug event (mipd(8) JOURNAL)."""
    return old.state == VisitorState.ACTIVE and replace(
        renewed, lifetime_requested=old.lifetime_requested, lifetime_granted=old.lifetime_granted,
        expires=old.expires, identification=old.identification, destination=old.destination,
        source_port=old.source_port) == old


@dataclass(frozen=True)
class ForeignAgentSettings:
    """What the engine needs of a foreign-agent profile."""

    care_of_address: IPv4Address
    addresses: frozenset[IPv4Address]  # all of ours: a request naming one as home agent gets 194
    home_agents: Mapping[IPv4Address, Mapping[int, SecurityAssociation]] = field(default_factory=dict)
    mobile_nodes: Mapping[IPv4Address, Mapping[int, SecurityAssociation]] = field(default_factory=dict)
    max_lifetime: int = 600
    reverse_tunneling: ReverseTunneling = ReverseTunneling.ALLOWED
    encapsulations: frozenset[Encapsulation] = frozenset({Encapsulation.IPIP})
    max_visitors: int = 10000
    max_pending_per_node: int = 5
    pending_timeout: float = 7.0
    denial_interval: float = 1.0  # 3.7.2: no more than one denial per second to the same node
    nat_traversal: bool = False  # RFC 3519 4.5: offer UDP tunnelling in relayed requests (profile: allowed)


@dataclass(frozen=True, slots=True)
class NodeRequest:
    """A datagram to UDP 434 from the visited link, with what its frame said of the sender."""

    payload: bytes
    source: IPv4Address
    source_port: int
    destination: IPv4Address
    link_address: bytes
    ttl: int = 255


class ForeignAgent:
    """Relay, visitor list and delivery state of one foreign agent."""

    def __init__(self, settings: ForeignAgentSettings, *, wall_clock: Callable[[], float]) -> None:
        self.settings = settings
        self.visitors = VisitorList()
        self.counters = Counters()
        self._wall_clock = wall_clock
        self._last_denial: dict[tuple[IPv4Address, bytes], float] = {}
        self.behind_nat = False  # a home agent assented to UDP tunnelling: it saw our requests NATed

    # --- inputs ---

    def from_node(self, frame: NodeRequest, now: float) -> list[Action]:
        self.counters.requests_received += 1
        try:
            request = open_registration(frame.payload, RegistrationRequest,
                                        "a registration reply from the visited link")
        except Discard as discard:
            return self._drop(discard.reason, frame.source, discard.detail)
        try:
            self._check(request, frame)
        except Denied as denial:
            return self._deny(request, frame, denial.code, denial.reason, now)
        return self._relay(request, frame, now)

    def from_home_agent(self, datagram: Datagram, now: float) -> list[Action]:
        """A reply on the relay socket (3.7.3)."""
        try:
            reply = _open_reply(datagram.payload)
        except Discard as discard:
            return self._drop(discard.reason, datagram.source, discard.detail)
        pending = self.visitors.take_pending(reply.home_address, reply.identification & 0xFFFF_FFFF)
        if pending is None:  # 3.7.3.1: no pending request with this home address and Identification
            return self._drop(DiscardReason.NO_PENDING, datagram.source,
                              f"no pending request for {reply.home_address}")
        if not self._reply_authentic(reply):
            # 3.7.3.1: discard the reply, reject the registration with 68.
            dropped = self._drop(DiscardReason.BAD_FA_HA, datagram.source,
                                 "invalid Foreign-Home authenticator on a reply")
            return dropped + self._deny_pending(pending, ReplyCode.FA_HOME_AGENT_FAILED_AUTHENTICATION,
                                                "home agent failed authentication", now)
        return self._accept_reply(reply, pending, now)

    def relay_failed(self, payload: bytes, icmp_type: int, icmp_code: int, now: float) -> list[Action]:
        """An ICMP error came back for a relayed request (``payload``: the request as sent, or as
        much of it as the ICMP message quoted: only the fixed part is needed to match it)."""
        try:
            request = decode_registration(payload[:RegistrationRequest.FIXED_LENGTH])
        except DecodeError:
            return []
        if not isinstance(request, RegistrationRequest):
            return []
        pending = self.visitors.take_pending(request.home_address, request.identification & 0xFFFF_FFFF)
        if pending is None:
            return []
        code = _ICMP_CODES.get(icmp_code, ReplyCode.FA_HOME_AGENT_UNREACHABLE) if icmp_type == 3 else \
            ReplyCode.FA_HOME_AGENT_UNREACHABLE
        return self._deny_pending(pending, code, f"ICMP type {icmp_type} code {icmp_code} from the home agent", now)

    def relay_unreachable(self, payload: bytes, error: int | None, now: float) -> list[Action]:
        """Our own routing could not send a relayed request (``error``: the errno): answer as the
        ICMP error would have (3.7.3: 80 net, 81 host unreachable; 88 otherwise) rather than
        let it time out (78)."""
        return self.relay_failed(payload, 3, _LOCAL_ERRORS.get(error or 0, 255), now)

    @property
    def advertises_udp_tunnelling(self) -> bool:
        """RFC 3519 3.4: U only from an agent that supports UDP tunnelling and is behind a NAT, which
        this one knows once a home agent assented to it (the agent cannot see the NAT itself)."""
        return self.settings.nat_traversal and self.behind_nat

    @property
    def busy(self) -> bool:
        """The visitor list is full: new nodes would get 66 (advertised as B, 2.1.1)."""
        return len(self.visitors) >= self.settings.max_visitors

    def next_timer(self) -> float | None:
        return self.visitors.next_deadline()

    def on_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for visitor in self.visitors.due(now):
            if visitor.state == VisitorState.PENDING:
                actions += self._deny_pending(visitor, ReplyCode.FA_REGISTRATION_TIMEOUT,
                                              "no reply from the home agent in time", now)
            else:
                actions += [self._visitor_event(EventName.VISITOR_EXPIRED, visitor, now, "expired"),
                            *self._gone(visitor.home_address, now)]
        return actions

    def flush(self, home_address: IPv4Address, now: float) -> list[Action]:
        current, pending = self.visitors.remove_node(home_address)
        actions: list[Action] = [self._visitor_event(EventName.VISITOR_REMOVED, v, now, "flushed") for v in pending]
        if current is not None:
            actions += [self._visitor_event(EventName.VISITOR_REMOVED, current, now, "flushed"),
                        *self._gone(home_address, now)]
        return actions

    def reconfigure(self, settings: ForeignAgentSettings) -> None:
        self.settings = settings

    def restore(self, stored: Iterable[Visitor], now: float) -> list[Action]:
        """Current visitors from storage (expiry as wall-clock time); expired ones are deleted."""
        wall = self._wall_clock()
        actions: list[Action] = []
        for visitor in stored:
            remaining = visitor.expires - wall
            if remaining <= 0:
                actions.append(PersistVisitor(visitor.home_address, None, wall - now))
                continue
            self.visitors.set_active(replace(visitor, expires=now + remaining, state=VisitorState.ACTIVE))
        return actions

    def data_plane(self) -> list[VisitorPlane]:
        """Delivery for every current visitor (for reconciliation at start)."""
        return [self._plane(v.home_address) for v in sorted(self.visitors.all_active(),
                                                            key=lambda v: v.home_address)]

    # --- the request checks ---

    def _check(self, request: RegistrationRequest, frame: NodeRequest) -> None:
        s = self.settings
        node_sas = s.mobile_nodes.get(request.home_address)
        if node_sas:
            mn_fa = request.authentications(ExtensionType.MOBILE_FOREIGN_AUTHENTICATION)
            if len(mn_fa) != 1:
                raise Denied(ReplyCode.FA_MOBILE_NODE_FAILED_AUTHENTICATION,
                              f"{len(mn_fa)} Mobile-Foreign Authentication Extensions, exactly one required")
            index, ext = mn_fa[0]
            sa = node_sas.get(ext.spi)
            if sa is None or not verify(request, index, sa.key, sa.algorithm):
                raise Denied(ReplyCode.FA_MOBILE_NODE_FAILED_AUTHENTICATION, "invalid Mobile-Foreign authenticator")
        if request.flags & _RESERVED_FLAGS:
            raise Denied(ReplyCode.FA_POORLY_FORMED_REQUEST, "reserved flag bits set")
        if request.mobile_home_auth is None:
            raise Denied(ReplyCode.FA_POORLY_FORMED_REQUEST, "no Mobile-Home Authentication Extension")
        if request.home_agent in s.addresses:
            raise Denied(ReplyCode.FA_INVALID_HOME_AGENT_ADDRESS, f"{request.home_agent} is this foreign agent")
        if request.lifetime == 0:
            return  # a deregistration needs no resources and no reverse tunnel
        if not request.flags & RequestFlags.D and request.care_of_address != s.care_of_address:
            raise Denied(ReplyCode.FA_INVALID_CARE_OF_ADDRESS, f"{request.care_of_address} is not offered here")
        if request.lifetime > s.max_lifetime:
            raise Denied(ReplyCode.FA_REQUESTED_LIFETIME_TOO_LONG, f"lifetime above our {s.max_lifetime} s")
        reverse = bool(request.flags & RequestFlags.T)
        if reverse and s.reverse_tunneling is ReverseTunneling.OFF:
            raise Denied(ReplyCode.FA_REQUESTED_REVERSE_TUNNEL_UNAVAILABLE, "reverse tunneling is off")
        if not reverse and s.reverse_tunneling is ReverseTunneling.REQUIRED:
            raise Denied(ReplyCode.FA_REVERSE_TUNNEL_IS_MANDATORY_AND_T_BIT_NOT_SET, "reverse tunneling is required")
        if reverse and frame.ttl != 255:
            raise Denied(ReplyCode.FA_MOBILE_NODE_TOO_DISTANT, f"IP TTL {frame.ttl}, not 255")
        if any(isinstance(e, EncapsulatingDeliveryStyle) for e in request.extensions):
            raise Denied(ReplyCode.FA_DELIVERY_STYLE_NOT_SUPPORTED, "only direct delivery is supported")
        for flag, encapsulation in ((RequestFlags.M, Encapsulation.MINIMAL), (RequestFlags.G, Encapsulation.GRE)):
            if request.flags & flag and encapsulation not in s.encapsulations:
                raise Denied(ReplyCode.FA_REQUESTED_ENCAPSULATION_UNAVAILABLE, f"{encapsulation} is not available")
        if len(self.visitors.pending(request.home_address)) >= s.max_pending_per_node:
            raise Denied(ReplyCode.FA_INSUFFICIENT_RESOURCES, "too many pending requests for this node")
        if self.visitors.active(request.home_address) is None and len(self.visitors) >= s.max_visitors:
            raise Denied(ReplyCode.FA_INSUFFICIENT_RESOURCES, f"{s.max_visitors} visitors already")

    # --- relaying ---

    def _relay(self, request: RegistrationRequest, frame: NodeRequest, now: float) -> list[Action]:
        s = self.settings
        timeout = min(s.pending_timeout, request.lifetime or s.pending_timeout)
        ours = request.care_of_address == s.care_of_address  # 3.5.4: never FA-HA for a CoA not ours
        # RFC 3519 4.5: offered for our own care-of address only, never for a co-located one (the
        # tunnel would come to us, not to the node); not for a deregistration (no tunnel follows).
        udp = s.nat_traversal and ours and request.lifetime != 0 and not request.flags & RequestFlags.D
        pending = Visitor(request.home_address, request.home_agent, request.care_of_address, frame.link_address,
                          frame.source, frame.destination, frame.source_port, request.identification,
                          request.lifetime, 0, now + timeout, request.flags, udp_tunnel_requested=udp)
        self.visitors.add_pending(pending)
        # 3.7.2.2: unchanged through the authorization-enabling extension, later ones removed.
        last = max(i for i, _ in request.authentications(ExtensionType.MOBILE_HOME_AUTHENTICATION))
        relayed = RegistrationRequest(request.flags, request.lifetime, request.home_address, request.home_agent,
                                      request.care_of_address, request.identification,
                                      request.extensions[: last + 1])
        agent_sa = self._agent_sa(request.home_agent)
        if udp:
            # RFC 3519 4.5: after MN-HA and before FA-HA, sent from the care-of address (the relay
            # socket's). Only IP-in-IP travels inside our UDP tunnel (3.1.4: asked for explicitly).
            relayed = replace(relayed, extensions=(*relayed.extensions,
                                                   UdpTunnelRequest(encapsulation=UdpEncapsulation.IP_IN_IP)))
        if agent_sa is not None and request.lifetime != 0 and ours:
            relayed = append_authentication(relayed, ExtensionType.FOREIGN_HOME_AUTHENTICATION, agent_sa.spi,
                                            agent_sa.key, agent_sa.algorithm)
        self.counters.relayed += 1
        return [
            self._visitor_event(EventName.VISITOR_PENDING, pending, now),
            Emit(EventName.REGISTRATION_RELAYED,
                 f"registration of {request.home_address} relayed to {request.home_agent}",
                 Priority.INFO, self._fields(pending, lifetime=request.lifetime)),
            SendDatagram(relayed.encode(), s.care_of_address, RELAY_PORT, request.home_agent, REGISTRATION_PORT),
        ]

    def _reply_authentic(self, reply: RegistrationReply) -> bool:
        """3.7.3.1 (with the 3.7.1 exception for Lifetime 0): exactly one valid FA-HA when we
        share an SA with the home agent named in the reply's Home Agent field (3.5.4)."""
        sas = self.settings.home_agents.get(reply.home_agent)
        if not sas or reply.lifetime == 0:
            return True
        fa_ha = reply.authentications(ExtensionType.FOREIGN_HOME_AUTHENTICATION)
        if len(fa_ha) != 1:
            return False
        index, ext = fa_ha[0]
        sa = sas.get(ext.spi)
        return sa is not None and verify(reply, index, sa.key, sa.algorithm)

    def _accept_reply(self, reply: RegistrationReply, pending: Visitor, now: float) -> list[Action]:
        actions: list[Action] = []
        home = pending.home_address
        if not is_accepted(reply.code):
            # 3.7.3.2: delete the pending entry, but not the visitor entry.
            self.counters.denied[reply.code] += 1
            actions.append(Emit(EventName.REGISTRATION_DENIED, f"home agent {pending.home_agent} denied {home} with "
                                f"{reply.code}", Priority.NOTICE,
                                self._fields(pending, code=reply.code, reason="denied by the home agent")))
        elif reply.lifetime == 0 or pending.lifetime_requested == 0:
            # A deregistration (the node asked for Lifetime 0) ends the visit whatever Lifetime the
            # reply carries: a visitor entry is never made with no lifetime (3.7.3.2, 3.4).
            current = self.visitors.remove_active(home)
            if current is not None:
                actions += [self._visitor_event(EventName.VISITOR_REMOVED, current, now, "deregistered"),
                            *self._gone(home, now)]
        else:
            # 3.7.3.2 and 3.4: never longer than our maximum, nor than the node asked for.
            granted = min(reply.lifetime, self.settings.max_lifetime, pending.lifetime_requested)
            tunnel = _udp_tunnel_reply(reply) if pending.udp_tunnel_requested else None
            udp = tunnel is not None and tunnel.accepted
            if udp:
                self.behind_nat = True  # 3.4, 4.6: the home agent assents only when it sees a NAT
            visitor = replace(pending, state=VisitorState.ACTIVE, lifetime_granted=granted,
                              expires=math.inf if granted == 0xFFFF else now + granted, udp_tunnel=udp,
                              keepalive_interval=(tunnel.keepalive_interval or DEFAULT_KEEPALIVE)
                              if tunnel is not None and udp else 0)
            old = self.visitors.set_active(visitor)
            renewed = old is not None and old.care_of_address == visitor.care_of_address
            pure_renewal = old is not None and _only_lifetime_differs(old, visitor)
            self.counters.accepted += 1
            if pure_renewal:
                self.counters.renewals += 1
            actions += [self._visitor_event(EventName.VISITOR_RENEWED if renewed else EventName.VISITOR_ADDED,
                                            visitor, now, priority=Priority.DEBUG if pure_renewal else Priority.INFO),
                        PersistVisitor(home, visitor, self._wall_clock() - now), self._plane(home)]
        return [*actions, self._to_node(self._relayed_reply(reply), pending)]

    def _relayed_reply(self, reply: RegistrationReply) -> RegistrationReply:
        """3.7.3.2: unchanged through MN-HA, later extensions removed, MN-FA appended if we share
        an SA with the node."""
        mn_ha = reply.authentications(ExtensionType.MOBILE_HOME_AUTHENTICATION)
        keep = reply.extensions[: mn_ha[-1][0] + 1] if mn_ha else ()
        return self._sign_for_node(replace(reply, extensions=keep))

    def _sign_for_node(self, reply: RegistrationReply) -> RegistrationReply:
        sas = self.settings.mobile_nodes.get(reply.home_address)
        if not sas:
            return reply
        sa = next(iter(sas.values()))
        return append_authentication(reply, ExtensionType.MOBILE_FOREIGN_AUTHENTICATION, sa.spi, sa.key, sa.algorithm)

    # --- denials ---

    def _deny(self, request: RegistrationRequest, frame: NodeRequest, code: ReplyCode, reason: str,
              now: float) -> list[Action]:
        entry = Visitor(request.home_address, request.home_agent, request.care_of_address, frame.link_address,
                        frame.source, frame.destination, frame.source_port, request.identification,
                        request.lifetime, 0, now, request.flags)
        return self._deny_pending(entry, code, reason, now)

    def _deny_pending(self, entry: Visitor, code: ReplyCode, reason: str, now: float) -> list[Action]:
        self.counters.denied[int(code)] += 1
        actions: list[Action] = [Emit(EventName.REGISTRATION_DENIED,
                                      f"registration of {entry.home_address} denied with {int(code)}: {reason}",
                                      Priority.NOTICE, self._fields(entry, code=int(code), reason=reason))]
        key = (entry.home_address, entry.link_address)
        last = self._last_denial.get(key)
        if last is not None and now - last < self.settings.denial_interval:
            return actions  # 3.7.2: at most one denial per second to the same node; this one is not sent
        self._last_denial[key] = now
        # 3.7.2.3: Home Address, Home Agent and Identification copied; Lifetime too, but for 69.
        lifetime = self.settings.max_lifetime if code == ReplyCode.FA_REQUESTED_LIFETIME_TOO_LONG else \
            entry.lifetime_requested
        reply = RegistrationReply(int(code), lifetime, entry.home_address, entry.home_agent, entry.identification)
        return [*actions, self._to_node(self._sign_for_node(reply), entry)]

    # --- outputs ---

    def _to_node(self, reply: RegistrationReply, entry: Visitor) -> SendToNode:
        """3.7.2.3: from the request's destination (our address if that was 224.0.0.11), to the
        home address (255.255.255.255 if it is 0.0.0.0), from port 434 to the request's port."""
        source = self.settings.care_of_address if entry.destination.is_multicast or \
            entry.destination == LIMITED_BROADCAST else entry.destination
        destination = LIMITED_BROADCAST if entry.home_address == UNSPECIFIED else entry.home_address
        return SendToNode(reply.encode(), source, REGISTRATION_PORT, destination, entry.source_port,
                          entry.link_address)

    def _agent_sa(self, home_agent: IPv4Address) -> SecurityAssociation | None:
        sas = self.settings.home_agents.get(home_agent)
        return next(iter(sas.values())) if sas else None

    def _plane(self, home: IPv4Address) -> VisitorPlane:
        v = self.visitors.active(home)
        if v is None:
            return VisitorPlane(home, None)
        if v.udp_tunnel:  # RFC 3519 3.3: IP-in-IP inside UDP, whatever M and G asked of the node's leg
            return VisitorPlane(home, Delivery(home, v.link_address, v.home_agent, self.settings.care_of_address,
                                               Encapsulation.IPIP, v.reverse, True, v.keepalive_interval))
        return VisitorPlane(home, Delivery(home, v.link_address, v.home_agent, self.settings.care_of_address,
                                           v.encapsulation, v.reverse))

    def _gone(self, home: IPv4Address, now: float) -> list[Action]:
        return [PersistVisitor(home, None, self._wall_clock() - now), VisitorPlane(home, None)]

    def _drop(self, reason: DiscardReason, source: IPv4Address, detail: str) -> list[Action]:
        self.counters.dropped[reason] += 1
        return [Emit(EventName.PACKET_DROPPED, f"dropped a datagram from {source}: {detail}", Priority.NOTICE,
                     {"reason": reason})]

    def _visitor_event(self, event: EventName, visitor: Visitor, now: float, reason: str | None = None,
                       priority: Priority = Priority.INFO) -> Emit:
        fields = self._fields(visitor, lifetime=visitor.remaining(now) if visitor.state == VisitorState.ACTIVE else
                              visitor.lifetime_requested)
        if reason is not None:
            fields["reason"] = reason
        tunnel = ", UDP-tunnelled to its home agent (RFC 3519)" if visitor.udp_tunnel else ""
        return Emit(event, f"visitor {visitor.home_address} ({visitor.state}{tunnel}) {event.verb}",
                    priority, fields)

    def _fields(self, visitor: Visitor, **extra: str | int) -> dict[str, str | int]:
        return {"home_address": str(visitor.home_address), "home_agent": str(visitor.home_agent),
                "care_of_address": str(visitor.care_of_address),
                "link_address": ":".join(f"{b:02x}" for b in visitor.link_address),
                "foreign_agent": str(self.settings.care_of_address), **extra}


def _open_reply(payload: bytes) -> RegistrationReply:
    """A reply from the relay socket, opened as :func:`open_registration` does; the UDP Tunnel Reply
    (type 44, not skippable) is understood (RFC 3519 3.2, 4.5), so it does not discard the reply."""
    return open_registration(payload, RegistrationReply, "a request on the relay socket")


def _udp_tunnel_reply(reply: RegistrationReply) -> UdpTunnelReply | None:
    """The UDP Tunnel Reply answering our own request (called only when we added one, so never for a
    co-located request, the only kind a node adds its own to, RFC 3519 4.4). Its place is after the
    Mobile-Home authenticator, where extensions for the foreign agent go (RFC 5944 3.7.3.2: we remove
    them before relaying); one before MN-HA is accepted too, but then reaches the node as well."""
    mn_ha = reply.authentications(ExtensionType.MOBILE_HOME_AUTHENTICATION)
    after = reply.extensions[mn_ha[-1][0] + 1:] if mn_ha else ()
    found = next((e for e in after if isinstance(e, UdpTunnelReply)), None)
    return found or next((e for e in reply.extensions if isinstance(e, UdpTunnelReply)), None)
