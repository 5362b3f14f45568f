"""The home agent's registration processing (RFC 5944 section 3.8), as a sans-I/O engine.

Bytes in (:meth:`HomeAgent.receive`), actions out: replies to send, journal events, and node
state to persist. Time comes in as ``now`` (monotonic seconds, for lifetimes and the timer);
the wall clock (for timestamp Identifications) and randomness (for nonces) are injected.

A Registration Request passes these checks, in this order (section 3.8.2.1, then 3.8.2.3 and
3.8.3.2); the first that fails decides:

    undecodable / not a request ........ silent discard, counted  (reason malformed / not-a-request)
    unrecognised extension 0-127 ....... silent discard           (1.8; unknown-extension)
    no Mobile-Home Authentication ...... silent discard           (3.8.2.1 a; no-auth)
    no SA for its SPI .................. silent discard           (3.8.2.1 a; no-sa)
    MN-HA authenticator invalid ........ 131                      (3.8.2.1 a)
    (before all of these: a source over its budget of authentication failures, no-sa and 131, is
    dropped unread: source-over-budget; see mipd/core/budget.py. A 131 or 133 for a node or to a
    source whose reply budget is spent is not sent: reply-rate-limited; mipd/core/reply_limit.py)
    duplicate of the current binding ... accepted, lifetime not extended (3.8.2.2)
    Identification invalid ............. 133, Identification per 5.7
    FA-HA missing/duplicated/invalid ... 132 when the sending FA has an SA and Lifetime != 0 (3.8.2.1 c)
    FA-HA from an FA without SA ........ silent discard           (3.8.2.1 d; fa-ha-without-sa)
    reserved bits set (r, x) ........... 134                      (3.8.2.3)
    to a broadcast address, or Home
      Agent field not ours ............. 136 with our address     (3.8.2.1 e, 3.8.3.2)
    home address the SA does not
      authorise ........................ 129                      (3.8.3.2)
    T requested, reverse tunneling off . 137                      (RFC 3024)
    T missing, reverse tunneling req'd . 138                      (RFC 3024)
    M or G not offered ................. 139                      (RFC 3024 code; 4.1)
    per-node binding limit ............. 135                      (3.8.2.3)
    UDP tunnelling (RFC 3519), when nat_traversal is not off; see :meth:`HomeAgent._udp_tunnel`:
      UDP Tunnel Request before MN-HA
      without D, or after it with D .... 134                      (RFC 3519 3.1, 4.1)
      tunnelling to be done, but GRE
      or minimal inside UDP asked ...... 142                      (RFC 3519 3.1.4, 3.5: IP-in-IP only)
      IP source != care-of address
      (a NAT) and no UDP Tunnel
      Request, nat_traversal required .. 129
    Mobile Network Prefixes (RFC 5177 6; see mipd/core/prefix_table.py):
      prefixes requested by a node with
      no mobile_networks configured .... 148                      (6.1)
      no prefix could be accepted ...... 147, with the acknowledgements saying why (6.3)
    otherwise .......................... 0, or 1 for S without simultaneous bindings (3.8.2.2)

A mobile router's successful reply carries a Mobile Network Acknowledgement per prefix (explicit
mode: per requested prefix; implicit: per configured one), before the MN-HA authenticator; the
binding keeps the accepted prefixes (RFC 5177 6.2.1), which a later registration replaces, and
which go with the binding at deregistration and expiry (6.3, 6.7).

A request carrying the UDP Tunnel Request is answered with a UDP Tunnel Reply, placed before the
reply's MN-HA authenticator so that it is covered: code 0 and the keepalive interval when a NAT
is seen (the IP source is not the care-of address) or F forces it, and the binding then records
the request's IP source address and UDP source port as its outer endpoint (with R, registered
through a foreign agent: that address and port 0, "half bound", the data plane taking the port of
the node's first keepalive, 4.6); code 64 (declined) otherwise. With nat_traversal off the
extension is ignored (skippable; RFC 3519 3.1.1: a home agent without UDP tunnelling sends no
reply extension).

The common request, a renewal of a binding from the same care-of address with the same flags
and no extension but MN-HA, of a node that is no mobile router, is decided first by
:meth:`HomeAgent._renew_fast` (the wire work in
mipd.core.fast_path: one struct unpack, the authenticator over the received bytes, the reply
built and signed directly) when every check above would pass; it gives the same actions as the
table above, and anything else falls through to it (tests/property/test_home_agent_fast_path.py
holds the two to the same answers).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network

from mipd.core.actions import (
    Action,
    AdmitSources,
    Datagram,
    DropSource,
    Emit,
    PersistNode,
    Priority,
    ReplayState,
    SendDatagram,
)
from mipd.core.bindings import Binding, BindingTable
from mipd.core.budget import SourceBudget
from mipd.core.counters import Counters
from mipd.core.denial import Denied, Discard, open_registration
from mipd.core.fast_path import Renewal, authentic, parse_renewal, signed_reply
from mipd.core.flood_guard import FloodGuard
from mipd.core.home_agent_types import HomeAgentSettings, NodeRecord
from mipd.core.names import DiscardReason, EventName
from mipd.core.planes import HALF_BOUND, DataPlane, Endpoint, UdpTunnelEndpoint
from mipd.core.prefix_table import NO_PREFIXES, PrefixDecision, decide, requested
from mipd.core.reply_limit import ReplyLimit
from mipd.core.security import ReplayProtection, ReverseTunneling, SecurityAssociation
from mipd.core.wire import identification as ident
from mipd.core.wire.addresses import LIMITED_BROADCAST, UNSPECIFIED
from mipd.core.wire.auth import append_authentication, verify
from mipd.core.wire.codes import ReplyCode
from mipd.core.wire.extensions import ExtensionType, RegistrationExtension
from mipd.core.wire.nat import (
    Encapsulation as UdpEncapsulation,
)
from mipd.core.wire.nat import (
    UdpTunnelReply,
    UdpTunnelReplyCode,
    UdpTunnelReplyFlags,
    UdpTunnelRequest,
    UdpTunnelRequestFlags,
)
from mipd.core.wire.registration import (
    INFINITE_LIFETIME,
    REGISTRATION_PORT,
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
)
from mipd.core.wire.tunnel import Encapsulation

__all__ = ["Counters", "HomeAgent", "HomeAgentSettings", "NodeRecord"]

_RESERVED_FLAGS = RequestFlags.r | RequestFlags.x
# The failure replies a forger or a replaying attacker can provoke at will (mipd/core/reply_limit.py).
_LIMITED_REPLIES = frozenset({ReplyCode.HA_MOBILE_NODE_FAILED_AUTHENTICATION,
                              ReplyCode.HA_REGISTRATION_IDENTIFICATION_MISMATCH})
_RESERVED_INT, _S, _D, _M, _G, _T = (int(f) for f in (_RESERVED_FLAGS, RequestFlags.S, RequestFlags.D, RequestFlags.M,
                                                      RequestFlags.G, RequestFlags.T))


@functools.lru_cache(maxsize=1 << 16)
def _dotted(value: int) -> str:
    return str(IPv4Address(value))


def _text(address: IPv4Address) -> str:
    """``str(address)``, cached: every registration's events name the same addresses again, and
    IPv4Address.__str__ showed in the profile of the registration path (bench/, issue 9)."""
    return _dotted(int(address))


def _only_lifetime_differs(previous: Binding, renewed: Binding) -> bool:
    """Whether ``renewed`` changes nothing of ``previous`` but its lifetime (and the Identification
    that renewed it): same care-of address, flags, SPI, foreign agent and UDP outer endpoint. Such
    a renewal is a counter and a debug event, not an entry of the audit trail (mipd(8) JOURNAL)."""
    return replace(renewed, lifetime_granted=previous.lifetime_granted, expires=previous.expires,
                   identification=previous.identification) == previous


@dataclass(frozen=True, slots=True)
class _UdpDecision:
    """What RFC 3519 processing decided for one request: the reply extension (None: send none)
    and, on assent, the outer endpoint the binding is UDP-tunnelled to."""

    reply: UdpTunnelReply | None = None
    outer: UdpTunnelEndpoint | None = None
    # The request's extension was a foreign agent's (after MN-HA): the reply's goes after MN-HA too,
    # where the agent finds and removes what is meant for it (RFC 3519 3.2, RFC 5944 3.7.3.2).
    for_foreign_agent: bool = False


_NO_UDP = _UdpDecision()


def _agent_address(request: RegistrationRequest, datagram: Datagram) -> IPv4Address:
    """Who relayed ``request``: the foreign agent is known by the address it sends from, except
    behind a NAT (RFC 3519 4.5), where that is the NAT's; an agent that asks for UDP tunnelling
    (its extension after MN-HA, D clear) sends from its care-of address, so that names it. Its
    FA-HA authenticator, checked with that agent's key, is what proves it."""
    mn_ha = request.authentications(ExtensionType.MOBILE_HOME_AUTHENTICATION)
    if mn_ha and not request.flags & RequestFlags.D and any(
            isinstance(e, UdpTunnelRequest) for e in request.extensions[mn_ha[0][0] + 1:]):
        return request.care_of_address
    return datagram.source


@dataclass(frozen=True, slots=True)
class _Exchange:
    """One request being processed: what arrived, the SA its SPI selected, and when."""

    request: RegistrationRequest
    datagram: Datagram
    sa: SecurityAssociation
    now: float

    @property
    def node(self) -> IPv4Address:
        """The home address of the SA's node: its replay state and bindings live under it."""
        return self.sa.peer

    @property
    def reply_home_address(self) -> IPv4Address:
        """3.8.3.2: a request for home address 0.0.0.0 is answered with the SA's address."""
        return self.sa.peer if self.request.home_address == UNSPECIFIED else self.request.home_address


class HomeAgent:
    """Registration processing and the binding list of one home agent."""

    def __init__(
        self,
        settings: HomeAgentSettings,
        *,
        wall_clock: Callable[[], float],
        random32: Callable[[], int],
        fast_path: bool = True,
        debug_events: Callable[[], bool] = lambda: True,
    ) -> None:
        self.settings = settings
        self.fast_path = fast_path  # try :meth:`_renew_fast` first (off: the full engine decides all)
        # Whether debug-level events are written at all (the runtime's log level): a pure renewal's
        # two debug events are not built when they are not (mipd(8) JOURNAL).
        self._debug_events = debug_events
        self.bindings = BindingTable()
        self.counters = Counters()
        self.budget = SourceBudget()  # authentication failures per source: shed before any HMAC
        self.replies = ReplyLimit()  # 131 and 133 replies per node and per source
        self.flood = FloodGuard()  # under a flood from spoofed sources, known sources first
        self._replay: dict[IPv4Address, ReplayState] = {}
        self._planes: dict[IPv4Address, tuple[Endpoint, ...]] = {}  # last data plane stated per node
        self._prefixes: dict[IPv4Address, tuple[IPv4Network, ...]] = {}  # ... and its routed prefixes
        self._wall_clock = wall_clock
        self._random32 = random32

    # --- inputs ---

    def receive(self, datagram: Datagram, now: float) -> list[Action]:
        """Handle one datagram that arrived on UDP port 434."""
        if self.shed(_text(datagram.source), now):
            return []
        self.counters.requests_received += 1
        if self.fast_path and (r := parse_renewal(datagram.payload)) is not None:
            if (fast := self._renew_fast(datagram, now, r)) is not None:
                return fast
            if (unanswered := self._forgery_unanswered(datagram, now, r)) is not None:
                return unanswered
        try:
            message = open_registration(datagram.payload, RegistrationRequest,
                                        "a registration reply sent to the home agent")
        except Discard as discard:
            return self._drop(discard.reason, datagram, discard.detail)
        return self._process(message, datagram, now)

    def shed(self, source: str, now: float) -> bool:
        """Whether a datagram from ``source`` (dotted quad) is to be dropped unread now: its source
        is over its budget of authentication failures (mipd/core/budget.py). Counted when so (a
        request received and dropped, ``source-over-budget``), not logged one by one: the entry
        is written when the source runs out, rate-limited like every ``packet.dropped``. The UDP
        adapter asks this before it builds the datagram; :meth:`receive` asks it too."""
        if self.budget.admits(source, now):
            return False
        self.count_shed(1)
        return True

    def count_shed(self, count: int) -> None:
        """Count ``count`` datagrams the UDP adapter dropped unread because ``budget.over`` said so."""
        self.counters.requests_received += count
        self.counters.dropped[DiscardReason.SOURCE_OVER_BUDGET] += count

    def next_timer(self) -> float | None:
        """When :meth:`on_timer` must next run (the earliest binding expiry, the end of the flood
        guard's window), or None."""
        expiry, tick = self.bindings.next_expiry(), self.flood.next_tick()
        return expiry if tick is None else tick if expiry is None else min(expiry, tick)

    def on_timer(self, now: float) -> list[Action]:
        """Expire bindings (no reply is sent because a binding expired, 3.8, 4.2.3); say what the
        kernel is to admit when the flood guard changed its mind (mipd/core/flood_guard.py)."""
        actions: list[Action] = []
        if (admission := self.flood.tick(now)) is not None:
            actions.append(AdmitSources(tuple(IPv4Address(s) for s in admission.known), admission.fraction))
        touched: set[IPv4Address] = set()
        for binding in self.bindings.expire(now):
            actions.append(self._binding_event(EventName.BINDING_EXPIRED, binding, now, reason="expired"))
            touched.add(binding.home_address)
        for home in sorted(touched):
            actions += [self._persist(home, now), *self._data_plane(home)]
        return actions

    def flush(self, home_address: IPv4Address, now: float) -> list[Action]:
        """Remove a node's bindings at once (``mipctl flush``)."""
        removed = self.bindings.remove_all(home_address)
        actions: list[Action] = [
            self._binding_event(EventName.BINDING_REMOVED, b, now, reason="flushed") for b in removed
        ]
        if removed:
            actions += [self._persist(home_address, now), *self._data_plane(home_address)]
        return actions

    def reconfigure(self, settings: HomeAgentSettings) -> None:
        """Adopt a reloaded profile: SAs apply to the next request, bindings stay as they are."""
        self.settings = settings

    def restore(self, records: Iterable[NodeRecord], now: float) -> list[Action]:
        """Reinstall stored state: expired bindings are dropped, live ones keep what remains.
        Their data plane is not emitted node by node: the runtime applies :meth:`data_plane` as a
        whole, removing what no binding needs."""
        wall = self._wall_clock()
        actions: list[Action] = []
        for record in records:
            if record.replay != ReplayState():
                self._replay[record.home_address] = record.replay
            dropped = False
            for stored in record.bindings:
                remaining = stored.expires - wall
                if remaining <= 0:
                    dropped = True
                    continue
                self.bindings.put(replace(stored, expires=now + remaining))
            if dropped:
                actions.append(self._persist(record.home_address, now))
            self._data_plane(record.home_address)  # recorded; the runtime reconciles data_plane()
        return actions

    def data_plane(self) -> list[DataPlane]:
        """The desired data plane of every node that is away (for reconciliation at start)."""
        return [DataPlane(home, endpoints, self._prefixes.get(home, ()))
                for home, endpoints in sorted(self._planes.items()) if endpoints]

    # --- registration processing ---

    def _renew_fast(self, datagram: Datagram, now: float, r: Renewal) -> list[Action] | None:
        """The common request, decided without the object model: a renewal of a node's only
        binding (or, with simultaneous bindings, one of them) from the same care-of address with
        the same flags, the Mobile-Home authenticator its only extension (mipd.core.fast_path),
        valid, with an acceptable new Identification, and every check of :meth:`_process`
        passing, of a node that is no mobile router (RFC 5177: its replies carry acknowledgements).
        Exactly the actions :meth:`_process` gives; None hands anything else to it."""
        payload = datagram.payload
        if r.lifetime == 0:
            return None
        s = self.settings
        sa = s.mobile_nodes.get(r.spi)
        if sa is None:
            return None
        node = sa.peer
        coa = IPv4Address(r.care_of_address)
        current = self.bindings.get(node, coa)
        f = r.flags  # as an int: IntFlag arithmetic showed in the profile of this path
        if (current is None or current.outer is not None or int(current.flags) != f or current.prefixes
                or node in s.mobile_networks
                or r.identification == current.identification or r.home_address != int(node)
                or r.home_agent != int(s.address) or f & _RESERVED_INT
                or datagram.source in s.foreign_agents
                or datagram.destination in (LIMITED_BROADCAST, s.home_network.broadcast_address)):
            return None
        reverse = s.reverse_tunneling
        if ((reverse is ReverseTunneling.OFF and f & _T) or (reverse is ReverseTunneling.REQUIRED and not f & _T)
                or (f & _M and Encapsulation.MINIMAL not in s.encapsulations)
                or (f & _G and Encapsulation.GRE not in s.encapsulations)
                or (f & _D and s.nat_traversal == "required" and datagram.source != coa)):
            return None
        count = len(self.bindings.of(node))
        if (count - 1 >= s.max_bindings_per_node) if f & _S and s.max_bindings_per_node > 1 else count != 1:
            return None  # 135, or other bindings to replace: the full engine
        state = self._replay.get(node, ReplayState())
        nonce = sa.replay is ReplayProtection.NONCE
        if nonce and not ident.nonce_acceptable(r.identification, state.nonce):
            return None
        wall = self._wall_clock()
        if not nonce and not ident.timestamp_acceptable(r.identification, wall, s.replay_window,
                                                        state.last_identification):
            return None
        if not authentic(payload, sa.key, sa.algorithm):
            return None
        # Decided: accepted. The state changes and actions of _remember_identification and _accept.
        if not nonce:
            self._replay[node] = state = ReplayState(r.identification, state.nonce)
        granted = min(r.lifetime, s.max_lifetime)
        agent = datagram.source if not f & _D or datagram.source != coa else None  # relayed by it
        binding = Binding(node, coa, granted, math.inf if granted == INFINITE_LIFETIME else now + granted,
                          r.identification, current.flags, sa.spi, agent)
        self.bindings.put(binding)
        # _only_lifetime_differs(current, binding), known field by field: the care-of address,
        # flags and (no) outer endpoint are the current binding's, as checked above.
        pure_renewal = current.spi == sa.spi and current.foreign_agent == agent
        if pure_renewal:
            self.counters.renewals += 1
        priority = Priority.DEBUG if pure_renewal else Priority.INFO
        planes = self._planes.get(node)
        # One binding's endpoint depends on its care-of address, flags and outer endpoint, which a
        # renewal keeps, and on our address, which a reload may change. Several: the renewed one
        # moves to the end of the node's list, and so of its endpoints.
        plane = self._data_plane(node) if count != 1 or not planes or planes[0].source != s.address else []
        self.counters.accepted += 1
        self.flood.accepted(_text(datagram.source))
        code = (ReplyCode.ACCEPTED_SIMULTANEOUS_BINDINGS_UNSUPPORTED if f & _S and s.max_bindings_per_node == 1
                else ReplyCode.ACCEPTED)  # _success_code
        # A debug event nobody reads is not built.
        actions: list[Action] = [
            self._binding_event(EventName.BINDING_RENEWED, binding, now, priority=priority), *plane,
            self._accepted_event(node, coa, s.address, code=code, granted=granted, spi=sa.spi, priority=priority),
        ] if not pure_renewal or self._debug_events() else plane
        if nonce:
            fresh = self._random32() & ident.LOW32
            self._replay[node] = ReplayState(state.last_identification, fresh)
            identification = ident.nonce_reply(r.identification, fresh)
        else:
            identification = r.identification
        reply = signed_reply(int(code), granted, r.home_address, r.home_agent, identification, spi=sa.spi,
                             key=sa.key, algorithm=sa.algorithm)
        source = datagram.destination
        if source != s.address and source.is_multicast:
            source = s.address  # 3.8.3.1 (broadcast destinations were handed to the full engine)
        actions += [PersistNode(node, self.bindings.of(node), self._replay.get(node, ReplayState()), wall - now),
                    SendDatagram(reply, source, REGISTRATION_PORT, datagram.source, datagram.source_port)]
        return actions

    def _forgery_unanswered(self, datagram: Datagram, now: float, r: Renewal) -> list[Action] | None:
        """A request of the fast path's shape for a configured SPI whose authenticator is wrong,
        while its 131 would not be sent (:meth:`_deny`: the node's or the source's reply budget is
        spent): what :meth:`_process` decides, without decoding it. The flood of forged requests
        takes this path. None hands anything else to :meth:`_process`."""
        sa = self.settings.mobile_nodes.get(r.spi)
        if (sa is None or self.replies.allows(sa.peer, _text(datagram.source), now)
                or authentic(datagram.payload, sa.key, sa.algorithm)):
            return None
        self.counters.dropped[DiscardReason.REPLY_RATE_LIMITED] += 1
        return self._authentication_failed(datagram, now)

    def _process(self, request: RegistrationRequest, datagram: Datagram, now: float) -> list[Action]:
        mn_ha = request.authentications(ExtensionType.MOBILE_HOME_AUTHENTICATION)
        if not mn_ha:
            return self._drop(DiscardReason.NO_AUTH, datagram, "no Mobile-Home Authentication Extension")
        index, extension = mn_ha[0]
        sa = self.settings.mobile_nodes.get(extension.spi)
        if sa is None:
            return [*self._drop(DiscardReason.NO_SA, datagram, f"no security association for SPI {extension.spi}"),
                    *self._authentication_failed(datagram, now)]
        x = _Exchange(request, datagram, sa, now)
        node = x.node
        if not verify(request, index, sa.key, sa.algorithm):
            return [*self._deny(x, ReplyCode.HA_MOBILE_NODE_FAILED_AUTHENTICATION, "invalid Mobile-Home authenticator"),
                    *self._authentication_failed(datagram, now)]

        current = self.bindings.get(node, request.care_of_address)
        if (
            current is not None
            and request.lifetime != 0
            and request.identification == current.identification
            and request.home_address in (node, UNSPECIFIED)
        ):
            # 3.8.2.2: a duplicate of the accepted current registration; never extend its lifetime.
            again = _UdpDecision(self._assent(request), current.outer) if current.outer is not None else _NO_UDP
            repeated: tuple[RegistrationExtension, ...]
            try:  # the same acknowledgements as the first answer
                repeated = self._prefix_decision(request, index, node, current.outer).acknowledgements
            except Denied as denial:
                repeated = denial.extensions
            return self._reply(x, ReplyCode(self._success_code(request.flags)), current.remaining(now), again,
                               repeated)

        if not self._identification_valid(request, sa):
            return self._deny(x, ReplyCode.HA_REGISTRATION_IDENTIFICATION_MISMATCH,
                              "Identification failed replay protection")
        self._remember_identification(node, request, sa)

        udp, prefixes = _NO_UDP, NO_PREFIXES
        try:
            self._check_foreign_agent(request, datagram)
            self._check_request(request, datagram, sa)
            if request.lifetime != 0:  # RFC 5177 6.7: a deregistration's prefix extensions are ignored
                udp = self._udp_tunnel(request, datagram, index)
                self._check_binding_limit(request, node)
                prefixes = self._prefix_decision(request, index, node, udp.outer)
        except Denied as denial:
            return self._deny(x, denial.code, denial.reason, denial.extensions)
        except Discard as discard:
            return [*self._drop(discard.reason, datagram, discard.detail), self._persist(node, now)]
        return self._accept(x, udp, prefixes)

    def _prefix_decision(self, request: RegistrationRequest, mn_ha_index: int, node: IPv4Address,
                         outer: UdpTunnelEndpoint | None) -> PrefixDecision:
        """RFC 5177 6.3 (mipd/core/prefix_table.py): the request's Mobile Network Requests that its
        MN-HA authenticator covers, against the prefixes configured for the node; Denied 147/148."""
        avoid = [request.care_of_address, self.settings.address, node]
        if outer is not None:
            avoid.append(outer.address)
        nested = outer is None and not request.flags & RequestFlags.D  # a foreign agent's care-of address
        tunnel = Endpoint.for_request(request.care_of_address, self.settings.address, request.flags).encapsulation
        return decide(requested(request.extensions[:mn_ha_index]), self.settings.mobile_networks.get(node, ()),
                      avoid, forwarding=not nested or tunnel in self.settings.mobile_network_nesting)

    def _udp_tunnel(self, request: RegistrationRequest, datagram: Datagram, mn_ha_index: int) -> _UdpDecision:
        """RFC 3519 section 4 at the home agent: answer a UDP Tunnel Request, or deny (Denied)."""
        policy = self.settings.nat_traversal
        if policy == "off":
            return _NO_UDP  # 3.1.1: the extension is skippable; no reply extension
        behind_nat = datagram.source != request.care_of_address  # NAT detection: IP source vs care-of
        found = next(((i, e) for i, e in enumerate(request.extensions) if isinstance(e, UdpTunnelRequest)), None)
        if found is None:
            if behind_nat and policy == "required" and request.flags & RequestFlags.D:
                raise Denied(ReplyCode.HA_ADMINISTRATIVELY_PROHIBITED,
                             f"from {datagram.source}, not its care-of address {request.care_of_address} (a NAT), "
                             "without a UDP Tunnel Request, and nat_traversal is required")
            return _NO_UDP
        position, extension = found
        decapsulates = bool(request.flags & RequestFlags.D)
        if position < mn_ha_index and not decapsulates:
            raise Denied(ReplyCode.HA_POORLY_FORMED_REQUEST,
                         "UDP Tunnel Request placed by the mobile node without the D flag")
        if position > mn_ha_index and decapsulates:
            raise Denied(ReplyCode.HA_POORLY_FORMED_REQUEST,
                         "UDP Tunnel Request placed by a foreign agent with the D flag set")
        forced = bool(extension.flags & UdpTunnelRequestFlags.F)
        if not behind_nat and not forced:
            # No NAT seen and not forced: decline; the M and G bits decide the ordinary tunnel (3.1.4).
            return _UdpDecision(UdpTunnelReply(UdpTunnelReplyCode.TUNNELLING_DECLINED_REASON_UNSPECIFIED),
                                for_foreign_agent=position > mn_ha_index)
        inside = extension.encapsulation
        if inside == UdpEncapsulation.UNSPECIFIED:  # 3.1.4: zero defaults to what M and G say
            if request.flags & RequestFlags.G:
                inside = UdpEncapsulation.GRE
            elif request.flags & RequestFlags.M:
                inside = UdpEncapsulation.MINIMAL
            else:
                inside = UdpEncapsulation.IP_IN_IP
        if inside != UdpEncapsulation.IP_IN_IP:  # 3.5: 142, told apart from 139 (M/G without UDP)
            raise Denied(ReplyCode.HA_UDP_ENCAP_UNAVAIL,
                         f"encapsulation {int(inside)} inside UDP is not offered (IP-in-IP only)")
        if extension.flags & UdpTunnelRequestFlags.R:
            # 4.6: co-located, registered through an FA that advertised R: the source port is the
            # FA's mapping, not the node's. Half bound: the port comes from the node's first keepalive.
            return _UdpDecision(self._assent(request), UdpTunnelEndpoint(datagram.source, HALF_BOUND))
        return _UdpDecision(self._assent(request), UdpTunnelEndpoint(datagram.source, datagram.source_port),
                            for_foreign_agent=position > mn_ha_index)

    def _assent(self, request: RegistrationRequest) -> UdpTunnelReply:
        """The UDP Tunnel Reply that says tunnelling will be done, with our keepalive interval; F
        when the request forced it (3.2: "because the F flag was set ... irrespective of the
        detection of a NAT or not")."""
        found = next((e for e in request.extensions if isinstance(e, UdpTunnelRequest)), None)
        forced = found is not None and bool(found.flags & UdpTunnelRequestFlags.F)
        flags = UdpTunnelReplyFlags.F if forced else UdpTunnelReplyFlags(0)
        return UdpTunnelReply(UdpTunnelReplyCode.WILL_DO_TUNNELLING, flags, self.settings.keepalive_interval)

    def _identification_valid(self, request: RegistrationRequest, sa: SecurityAssociation) -> bool:
        state = self._replay.get(sa.peer, ReplayState())
        if sa.replay is ReplayProtection.NONCE:
            return ident.nonce_acceptable(request.identification, state.nonce)
        return ident.timestamp_acceptable(
            request.identification, self._wall_clock(), self.settings.replay_window, state.last_identification
        )

    def _remember_identification(self, node: IPv4Address, request: RegistrationRequest,
                                 sa: SecurityAssociation) -> None:
        if sa.replay is ReplayProtection.TIMESTAMP:
            state = self._replay.get(node, ReplayState())
            self._replay[node] = replace(state, last_identification=request.identification)

    def _check_foreign_agent(self, request: RegistrationRequest, datagram: Datagram) -> None:
        """3.8.2.1 (c) and (d): the Foreign-Home Authentication Extension."""
        agent_sas = self.settings.foreign_agents.get(_agent_address(request, datagram))
        fa_ha = request.authentications(ExtensionType.FOREIGN_HOME_AUTHENTICATION)
        if agent_sas is None:
            if fa_ha:
                raise Discard(DiscardReason.FA_HA_WITHOUT_SA, f"FA-HA from {datagram.source}, which has no SA")
            return
        if request.lifetime == 0:
            return  # 3.8.1: MAY skip for deregistration; 3.5.4: FA MUST NOT add it there
        if len(fa_ha) != 1:
            raise Denied(ReplyCode.HA_FOREIGN_AGENT_FAILED_AUTHENTICATION,
                          f"{len(fa_ha)} Foreign-Home Authentication Extensions, exactly one required")
        index, extension = fa_ha[0]
        agent_sa = agent_sas.get(extension.spi)
        if agent_sa is None or not verify(request, index, agent_sa.key, agent_sa.algorithm):
            raise Denied(ReplyCode.HA_FOREIGN_AGENT_FAILED_AUTHENTICATION, "invalid Foreign-Home authenticator")

    def _check_request(self, request: RegistrationRequest, datagram: Datagram, sa: SecurityAssociation) -> None:
        s = self.settings
        if request.flags & _RESERVED_FLAGS:
            raise Denied(ReplyCode.HA_POORLY_FORMED_REQUEST, "reserved flag bits set")
        if datagram.destination in (LIMITED_BROADCAST, s.home_network.broadcast_address):
            raise Denied(ReplyCode.HA_UNKNOWN_HOME_AGENT_ADDRESS, "request sent to a broadcast address")
        if request.home_agent != s.address:
            raise Denied(ReplyCode.HA_UNKNOWN_HOME_AGENT_ADDRESS, f"home agent {request.home_agent} is not us")
        if request.home_address not in (sa.peer, UNSPECIFIED):
            raise Denied(ReplyCode.HA_ADMINISTRATIVELY_PROHIBITED,
                          f"SPI {sa.spi} does not authorise home address {request.home_address}")
        if request.lifetime == 0:
            return
        reverse = bool(request.flags & RequestFlags.T)
        if reverse and s.reverse_tunneling is ReverseTunneling.OFF:
            raise Denied(ReplyCode.HA_REQUESTED_REVERSE_TUNNEL_UNAVAILABLE, "reverse tunneling is off")
        if not reverse and s.reverse_tunneling is ReverseTunneling.REQUIRED:
            raise Denied(ReplyCode.HA_REVERSE_TUNNEL_IS_MANDATORY_AND_T_BIT_NOT_SET,
                          "reverse tunneling is required")
        for flag, encapsulation in ((RequestFlags.M, Encapsulation.MINIMAL), (RequestFlags.G, Encapsulation.GRE)):
            if request.flags & flag and encapsulation not in s.encapsulations:
                raise Denied(ReplyCode.HA_REQUESTED_ENCAPSULATION_UNAVAILABLE,
                              f"{encapsulation} encapsulation is not offered")

    def _check_binding_limit(self, request: RegistrationRequest, node: IPv4Address) -> None:
        if not self._simultaneous(request):
            return
        others = [b for b in self.bindings.of(node) if b.care_of_address != request.care_of_address]
        if len(others) >= self.settings.max_bindings_per_node:
            raise Denied(ReplyCode.HA_TOO_MANY_SIMULTANEOUS_MOBILITY_BINDINGS,
                          f"already {len(others)} bindings, the limit")

    def _simultaneous(self, request: RegistrationRequest) -> bool:
        return bool(request.flags & RequestFlags.S) and self.settings.max_bindings_per_node > 1

    def _success_code(self, flags: RequestFlags) -> int:
        # 3.8.2.2: 1 when S asks for simultaneous bindings that this home agent does not keep.
        if flags & RequestFlags.S and self.settings.max_bindings_per_node == 1:
            return ReplyCode.ACCEPTED_SIMULTANEOUS_BINDINGS_UNSUPPORTED
        return ReplyCode.ACCEPTED

    def _accept(self, x: _Exchange, udp: _UdpDecision = _NO_UDP, prefixes: PrefixDecision = NO_PREFIXES
                ) -> list[Action]:
        request, datagram, sa, now, node = x.request, x.datagram, x.sa, x.now, x.node
        coa = request.care_of_address
        actions: list[Action] = []
        pure_renewal = False
        if request.lifetime == 0:
            # 3.8.2.2: care-of address = home address deregisters all, else only that binding.
            removed = self.bindings.remove_all(node) if coa == node else (
                (b,) if (b := self.bindings.remove(node, coa)) else ())
            actions += [self._binding_event(EventName.BINDING_REMOVED, b, now, reason="deregistered") for b in removed]
            granted = 0
        else:
            granted = min(request.lifetime, self.settings.max_lifetime)  # never above the request
            if not self._simultaneous(request):
                for old in self.bindings.of(node):
                    if old.care_of_address != coa:
                        self.bindings.remove(node, old.care_of_address)
                        actions.append(self._binding_event(EventName.BINDING_REMOVED, old, now, reason="replaced"))
            # Relayed by a foreign agent: always with an FA care-of address (D clear, 3.6.1.2), and
            # with a co-located one when the request arrives from elsewhere than that address.
            # A UDP-tunnelled co-located node's request comes from its NAT, which is no foreign agent.
            relayed = not request.flags & RequestFlags.D or (
                datagram.source != coa and (udp.outer is None or udp.outer.port == HALF_BOUND))
            foreign_agent = _agent_address(request, datagram) if relayed else None
            binding = Binding(node, coa, granted, math.inf if granted == INFINITE_LIFETIME else now + granted,
                              request.identification, request.flags, sa.spi, foreign_agent, udp.outer,
                              prefixes.accepted)
            previous = self.bindings.put(binding)
            pure_renewal = previous is not None and _only_lifetime_differs(previous, binding)
            if pure_renewal:
                self.counters.renewals += 1
            if not pure_renewal or self._debug_events():
                actions.append(self._binding_event(EventName.BINDING_RENEWED if previous else EventName.BINDING_ADDED,
                                                   binding, now, priority=Priority.DEBUG if pure_renewal
                                                   else Priority.INFO))
        actions += self._data_plane(node)
        self.counters.accepted += 1
        self.flood.accepted(_text(datagram.source))
        code = ReplyCode(self._success_code(request.flags))
        if not pure_renewal or self._debug_events():
            actions.append(self._accepted_event(x.reply_home_address, coa, request.home_agent, code=code,
                                                granted=granted, spi=sa.spi,
                                                priority=Priority.DEBUG if pure_renewal else Priority.INFO))
        return actions + self._reply(x, code, granted, udp, prefixes.acknowledgements)

    def _accepted_event(self, home: IPv4Address, coa: IPv4Address, agent: IPv4Address, *, code: ReplyCode,
                        granted: int, spi: int, priority: Priority = Priority.INFO) -> Emit:
        return Emit(EventName.REGISTRATION_ACCEPTED, f"registration of {_text(home)} via {_text(coa)} accepted for "
                    f"{granted} s", priority,
                    {"home_address": _text(home), "care_of_address": _text(coa), "home_agent": _text(agent),
                     "code": int(code), "lifetime": granted, "spi": spi})

    def _deny(self, x: _Exchange, code: ReplyCode, reason: str,
              extensions: tuple[RegistrationExtension, ...] = ()) -> list[Action]:
        if code in _LIMITED_REPLIES and not self.replies.take(x.node, _text(x.datagram.source), x.now):
            # Not answered, and nothing changes (no new nonce, no commit): mipd/core/reply_limit.py.
            self.counters.dropped[DiscardReason.REPLY_RATE_LIMITED] += 1
            return []
        self.counters.denied[int(code)] += 1
        event = Emit(EventName.REGISTRATION_DENIED, f"registration of {x.reply_home_address} denied with {int(code)}: "
                     f"{reason}", Priority.NOTICE, self._fields(x, code=int(code), spi=x.sa.spi, reason=reason))
        return [event, *self._reply(x, code, 0, _NO_UDP, extensions)]

    def _reply(self, x: _Exchange, code: ReplyCode, lifetime: int, udp: _UdpDecision = _NO_UDP,
               acknowledgements: tuple[RegistrationExtension, ...] = ()) -> list[Action]:
        """Build, authenticate and address the reply (3.8.3); persist the node first. A UDP Tunnel
        Reply goes before the MN-HA authenticator, which covers it (RFC 3519 3.2), and so do the
        Mobile Network Acknowledgements (RFC 5177 4.2)."""
        request, datagram, sa = x.request, x.datagram, x.sa
        home_agent = self.settings.address if code == ReplyCode.HA_UNKNOWN_HOME_AGENT_ADDRESS else request.home_agent
        before = (() if udp.reply is None or udp.for_foreign_agent else (udp.reply,)) + acknowledgements
        reply = RegistrationReply(
            int(code), lifetime, x.reply_home_address, home_agent, self._reply_identification(request, sa, code),
            before,
        )
        reply = append_authentication(reply, ExtensionType.MOBILE_HOME_AUTHENTICATION, sa.spi, sa.key, sa.algorithm)
        if udp.reply is not None and udp.for_foreign_agent:  # after MN-HA, before FA-HA (which covers it)
            reply = replace(reply, extensions=(*reply.extensions, udp.reply))
        agent_sa = self._foreign_agent_sa(request, datagram)
        if agent_sa is not None:  # 3.8.1: the reply to an FA we share an SA with carries FA-HA
            reply = append_authentication(reply, ExtensionType.FOREIGN_HOME_AUTHENTICATION, agent_sa.spi,
                                          agent_sa.key, agent_sa.algorithm)
        source = datagram.destination
        if source.is_multicast or source in (LIMITED_BROADCAST, self.settings.home_network.broadcast_address):
            source = self.settings.address  # 3.8.3.1: never reply from a broadcast or multicast address
        send = SendDatagram(reply.encode(), source, REGISTRATION_PORT, datagram.source, datagram.source_port)
        return [self._persist(x.node, x.now), send]

    def _reply_identification(self, request: RegistrationRequest, sa: SecurityAssociation, code: ReplyCode) -> int:
        if sa.replay is ReplayProtection.NONCE:
            nonce = self._random32() & ident.LOW32  # 5.7.2: a new nonce in every reply
            state = self._replay.get(sa.peer, ReplayState())
            self._replay[sa.peer] = replace(state, nonce=nonce)
            return ident.nonce_reply(request.identification, nonce)
        if code == ReplyCode.HA_REGISTRATION_IDENTIFICATION_MISMATCH:
            return ident.timestamp_mismatch_reply(request.identification, self._wall_clock())
        return request.identification  # 5.7.1: "copies the entire Identification field"

    def _foreign_agent_sa(self, request: RegistrationRequest, datagram: Datagram) -> SecurityAssociation | None:
        agent_sas = self.settings.foreign_agents.get(_agent_address(request, datagram))
        if not agent_sas or request.lifetime == 0:
            return None
        used = request.authentications(ExtensionType.FOREIGN_HOME_AUTHENTICATION)
        if used and used[0][1].spi in agent_sas:
            return agent_sas[used[0][1].spi]
        return next(iter(agent_sas.values()))

    # --- outputs ---

    def _data_plane(self, node: IPv4Address) -> list[Action]:
        """The node's data plane, if it differs from what was last stated (a rejected or a
        duplicate registration changes nothing: RFC 5944 4.6, "no ARP processing")."""
        bindings = self.bindings.of(node)
        endpoints = tuple(Endpoint.for_request(b.care_of_address, self.settings.address, b.flags, b.outer)
                          for b in bindings)
        # RFC 5177: the prefixes every binding accepted, routed through the node's tunnel(s).
        prefixes = tuple(dict.fromkeys(p for b in bindings for p in b.prefixes)) if endpoints else ()
        if endpoints == self._planes.get(node, ()) and prefixes == self._prefixes.get(node, ()):
            return []
        if endpoints:
            self._planes[node] = endpoints
        else:
            self._planes.pop(node, None)
        if prefixes:
            self._prefixes[node] = prefixes
        else:
            self._prefixes.pop(node, None)
        return [DataPlane(node, endpoints, prefixes)]

    def _persist(self, node: IPv4Address, now: float) -> PersistNode:
        return PersistNode(node, self.bindings.of(node), self._replay.get(node, ReplayState()),
                           self._wall_clock() - now)

    def _drop(self, reason: DiscardReason, datagram: Datagram, detail: str) -> list[Action]:
        self.counters.dropped[reason] += 1
        return [Emit(EventName.PACKET_DROPPED, f"dropped a datagram from {datagram.source}:{datagram.source_port}: "
                     f"{detail}", Priority.NOTICE, {"reason": reason})]

    def _authentication_failed(self, datagram: Datagram, now: float) -> list[Action]:
        """Spend the source's budget; when it runs out, the kernel asked to drop the source's
        datagrams until its next token is back, and the first time in an episode the entry that
        says so (mipd(8) JOURNAL)."""
        source = _text(datagram.source)
        self.flood.failed(now)
        if not self.budget.failed(source, now):
            return []
        drop = DropSource(datagram.source, self.budget.release(source))
        if not self.budget.first_time(source):  # again: the periodic summary counts it (mipd(8))
            return [drop]
        return [drop, Emit(EventName.PACKET_DROPPED, f"{datagram.source} keeps failing authentication: its "
                     f"datagrams are dropped unread until its budget refills "
                     f"({self.budget.refill_per_s:g} failures a second)",
                     Priority.NOTICE, {"reason": DiscardReason.SOURCE_OVER_BUDGET})]

    def _binding_event(self, event: EventName, binding: Binding, now: float, reason: str | None = None,
                       priority: Priority = Priority.INFO) -> Emit:
        fields: dict[str, str | int] = {
            "home_address": _text(binding.home_address),
            "care_of_address": _text(binding.care_of_address),
            "home_agent": _text(self.settings.address),
            "lifetime": binding.remaining(now) if event != EventName.BINDING_ADDED else binding.lifetime_granted,
            "spi": binding.spi,
        }
        if binding.foreign_agent is not None:
            fields["foreign_agent"] = _text(binding.foreign_agent)
        if binding.outer is not None:  # UDP-tunnelled (RFC 3519): the NAT's address and port
            fields["outer_address"] = _text(binding.outer.address)
            fields["outer_port"] = binding.outer.port
        if binding.prefixes:  # RFC 5177: a mobile router's accepted prefixes
            fields["mobile_networks"] = ",".join(map(str, binding.prefixes))
        if reason is not None:
            fields["reason"] = reason
        return Emit(event, f"binding {fields['home_address']} -> {fields['care_of_address']} {event.verb}",
                    priority, fields)

    def _fields(self, x: _Exchange, **extra: str | int) -> dict[str, str | int]:
        return {"home_address": _text(x.reply_home_address), "care_of_address": _text(x.request.care_of_address),
                "home_agent": _text(x.request.home_agent), **extra}

