"""The home agent's registration fast path against the full engine, differentially.

Two real HomeAgent engines with the same settings, clock and nonce source, one with the fast path
(mipd.core.fast_path, tried first by HomeAgent.receive) and one without, get the same random
sequence of datagrams: first registrations, renewals, moves, deregistrations, bad authenticators,
replayed, stale and repeated Identifications, right and wrong nonces, unknown SPIs, extra
extensions (an NAI before MN-HA, FA-HA from a foreign agent after it), requests to a broadcast
address, from behind a NAT, with a lifetime above the limit or infinite, a mobile router's
explicit and implicit Mobile Network Prefixes (RFC 5177) and prefixes from a node that is no
router, and the clock moving on with the timer expiring bindings. After every step both gave the
same actions (reply bytes, events, persisted records, data plane), hold the same bindings, data
plane and counters; at the end flushing every node persists the same replay state on both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mipd.core.actions import Action, Datagram, DataPlane, SendDatagram
from mipd.core.fast_path import Renewal
from mipd.core.home_agent import HomeAgent, HomeAgentSettings
from mipd.core.reply_limit import ReplyLimit
from mipd.core.security import ReplayProtection, ReverseTunneling, SecurityAssociation
from mipd.core.wire import identification as ident
from mipd.core.wire.auth import Algorithm, append_authentication
from mipd.core.wire.extensions import ExtensionType, MobileNodeNAI, RegistrationExtension
from mipd.core.wire.mobile_network import MobileNetworkAcknowledgement, MobileNetworkRequest
from mipd.core.wire.registration import RegistrationRequest, RequestFlags, decode_registration
from mipd.core.wire.tunnel import Encapsulation

HA, HA2 = IPv4Address("10.1.0.1"), IPv4Address("10.1.0.2")
HOME = IPv4Network("10.1.0.0/24")
FA = IPv4Address("10.2.0.1")
NAT = IPv4Address("192.0.2.7")
COAS = (IPv4Address("10.5.0.5"), IPv4Address("10.6.0.6"), FA)
MN_T, MN_N, MN_K = IPv4Address("10.1.0.10"), IPv4Address("10.1.0.11"), IPv4Address("10.1.0.12")
MN_R = IPv4Address("10.1.0.13")  # a mobile router (RFC 5177): its prefixes are configured
SPI = {MN_T: 256, MN_N: 257, MN_K: 258, MN_R: 259}
KEY = {MN_T: bytes(range(16)), MN_N: bytes(range(16, 32)), MN_K: b"keyed-md5 secret", MN_R: bytes(range(48, 64))}
LANS = (IPv4Network("192.168.50.0/24"), IPv4Network("192.168.60.0/24"))
NETWORKS = {  # the Mobile Network Requests a request carries
    "lan": (MobileNetworkRequest(24, IPv4Address("192.168.50.0")),),
    "both": tuple(MobileNetworkRequest(24, n.network_address) for n in LANS),
    "refused": (MobileNetworkRequest(24, IPv4Address("172.16.0.0")), MobileNetworkRequest(0, IPv4Address(0))),
}
FA_SPI, FA_KEY = 300, bytes(range(32, 48))
UNKNOWN_SPI = 999
WALL0 = 1_790_000_000.0
FLAGS = (RequestFlags(0), RequestFlags.D, RequestFlags.T | RequestFlags.D, RequestFlags.S | RequestFlags.D,
         RequestFlags.G, RequestFlags.M | RequestFlags.T, RequestFlags.B | RequestFlags.D, RequestFlags.r)


def ha_settings(max_bindings: int, reverse: ReverseTunneling, nat: str, max_lifetime: int,
                address: IPv4Address = HA) -> HomeAgentSettings:
    nodes = {
        SPI[MN_T]: SecurityAssociation(SPI[MN_T], KEY[MN_T], MN_T),
        SPI[MN_N]: SecurityAssociation(SPI[MN_N], KEY[MN_N], MN_N, replay=ReplayProtection.NONCE),
        SPI[MN_K]: SecurityAssociation(SPI[MN_K], KEY[MN_K], MN_K, algorithm=Algorithm.KEYED_MD5),
        SPI[MN_R]: SecurityAssociation(SPI[MN_R], KEY[MN_R], MN_R),
    }
    agents = {FA: {FA_SPI: SecurityAssociation(FA_SPI, FA_KEY, FA)}}
    return HomeAgentSettings(address, HOME, nodes, foreign_agents=agents,
                             max_lifetime=max_lifetime, max_bindings_per_node=max_bindings,
                             reverse_tunneling=reverse, encapsulations=frozenset({Encapsulation.IPIP,
                                                                                  Encapsulation.GRE}),
                             nat_traversal=nat, mobile_networks={MN_R: LANS})  # type: ignore[arg-type]


@dataclass
class Clock:
    now: float = 50.0

    def wall(self) -> float:
        return self.now + WALL0


@dataclass
class Nonces:
    value: int = 0x1234_5678

    def __call__(self) -> int:
        self.value = (self.value * 1_103_515_245 + 12_345) & 0xFFFF_FFFF
        return self.value


@dataclass
class Node:
    """What the test's mobile node remembers: its last Identification, the home agent's nonce."""

    last: int = 0
    ha_nonce: int | None = None
    coa: IPv4Address = COAS[0]
    flags: RequestFlags = RequestFlags.D


@dataclass
class Pair:
    clock: Clock
    fast: Counting
    full: HomeAgent
    nodes: dict[IPv4Address, Node] = field(default_factory=lambda: {n: Node() for n in SPI})
    def deliver(self, datagram: Datagram) -> list[Action]:
        now = self.clock.now
        fast, full = self.fast.receive(datagram, now), self.full.receive(datagram, now)
        assert fast == full
        self.agree()
        return fast

    def timer(self) -> None:
        now = self.clock.now
        assert self.fast.on_timer(now) == self.full.on_timer(now)
        self.agree()

    def agree(self) -> None:
        assert list(self.fast.bindings) == list(self.full.bindings)
        assert self.fast.data_plane() == self.full.data_plane()
        assert self.fast.counters == self.full.counters
        assert self.fast.next_timer() == self.full.next_timer()


class Counting(HomeAgent):
    """The engine with the fast path, counting the requests the fast path decided."""

    hits = 0
    unanswered = 0

    def _renew_fast(self, datagram: Datagram, now: float, r: Renewal) -> list[Action] | None:
        decided = super()._renew_fast(datagram, now, r)
        self.hits += decided is not None
        return decided

    def _forgery_unanswered(self, datagram: Datagram, now: float, r: Renewal) -> list[Action] | None:
        decided = super()._forgery_unanswered(datagram, now, r)
        self.unanswered += decided is not None
        return decided


def pair(max_bindings: int, reverse: ReverseTunneling, nat: str, max_lifetime: int,
         reply_burst: int | None = None, debug: bool = True) -> Pair:
    """The two engines; with ``reply_burst``, a reply limit (mipd/core/reply_limit.py) that short
    sequences do exhaust: that many 131 and 133 replies back to back, one more per 2 s; without
    ``debug``, debug-level events are not wanted (a log level above debug)."""
    clock = Clock()
    s = ha_settings(max_bindings, reverse, nat, max_lifetime)
    p = Pair(clock, Counting(s, wall_clock=clock.wall, random32=Nonces(), debug_events=lambda: debug),
             HomeAgent(s, wall_clock=clock.wall, random32=Nonces(), fast_path=False, debug_events=lambda: debug))
    if reply_burst is not None:
        p.fast.replies, p.full.replies = ReplyLimit(reply_burst, 0.5), ReplyLimit(reply_burst, 0.5)
    return p


def identification(p: Pair, node: IPv4Address, kind: str, salt: int) -> int:
    state = p.nodes[node]
    if kind == "replayed":
        return state.last
    if kind == "stale":
        return ident.timestamp(p.clock.wall() - 60, salt)
    if kind == "random":
        return salt * 0x9E37_79B9_7F4A_7C15 & 0xFFFF_FFFF_FFFF_FFFF
    if node == MN_N:  # fresh: echo the home agent's nonce (5.7.2)
        return ident.nonce_request(state.ha_nonce if state.ha_nonce is not None else salt, salt)
    return max(ident.timestamp(p.clock.wall(), salt), state.last + 1)


requests = st.fixed_dictionaries({
    "node": st.sampled_from((MN_T, MN_N, MN_K, MN_R)),
    "networks": st.sampled_from((None,) * 6 + tuple(NETWORKS)),  # RFC 5177 requests before MN-HA
    "renew": st.sampled_from((True, True, True, False)),  # its last care-of address and flags, else drawn
    "coa": st.sampled_from(COAS),
    "flags": st.sampled_from(FLAGS),
    "lifetime": st.sampled_from((0, 1, 30, 300, 5000, 0xFFFF)),
    "ident": st.sampled_from(("fresh",) * 6 + ("replayed", "stale", "random")),
    "salt": st.integers(0, 0xFFFF_FFFF),
    "auth": st.sampled_from(("good",) * 6 + ("bad", "bad", "unknown-spi")),
    "nai": st.sampled_from((5,) * 9 + (0,)),  # 0: an NAI before MN-HA
    "source": st.sampled_from(("coa",) * 5 + ("nat",)),
    "broadcast": st.sampled_from((5,) * 19 + (0,)),  # 0: sent to the home network's broadcast address
    "home": st.sampled_from((5,) * 18 + (0, 1)),  # 0: home address 0.0.0.0, 1: another node's
    "reload": st.sampled_from((None,) * 30 + (  # before it: a reload, our address or policies changed
        (1, ReverseTunneling.ALLOWED, "allowed", 1800, HA2), (2, ReverseTunneling.ALLOWED, "allowed", 60, HA),
        (1, ReverseTunneling.REQUIRED, "off", 1800, HA), (1, ReverseTunneling.ALLOWED, "allowed", 1800, HA))),
    "wait": st.sampled_from((0.0,) * 6 + (0.5, 3.0, 40.0, 400.0)),  # before it: the clock moves, the timer runs
})


def datagram(p: Pair, r: dict[str, object]) -> Datagram:
    node = r["node"]
    assert isinstance(node, IPv4Address)
    state = p.nodes[node]
    coa, flags = (state.coa, state.flags) if r["renew"] else (r["coa"], r["flags"])
    assert isinstance(coa, IPv4Address) and isinstance(flags, RequestFlags)
    lifetime, salt = r["lifetime"], r["salt"]
    assert isinstance(lifetime, int) and isinstance(salt, int)
    if r["renew"] and lifetime == 0:
        lifetime = 300
    home = {0: IPv4Address(0), 1: MN_T if node != MN_T else MN_N}.get(r["home"], node)  # type: ignore[arg-type]
    extensions: tuple[RegistrationExtension, ...] = (MobileNodeNAI(b"node@example.net"),) if r["nai"] == 0 else ()
    extensions += NETWORKS.get(r.get("networks"), ())  # type: ignore[arg-type]
    identification_ = identification(p, node, str(r["ident"]), salt)
    address = p.full.settings.address
    request = RegistrationRequest(flags, lifetime, home, address, coa, identification_, extensions)
    spi = UNKNOWN_SPI if r["auth"] == "unknown-spi" else SPI[node]
    algorithm = Algorithm.KEYED_MD5 if node == MN_K else Algorithm.HMAC_MD5
    request = append_authentication(request, ExtensionType.MOBILE_HOME_AUTHENTICATION, spi, KEY[node], algorithm)
    if coa == FA and lifetime != 0:  # relayed: the foreign agent adds FA-HA (3.5.4)
        request = append_authentication(request, ExtensionType.FOREIGN_HOME_AUTHENTICATION, FA_SPI, FA_KEY,
                                        Algorithm.HMAC_MD5)
    payload = bytearray(request.encode())
    if r["auth"] == "bad":
        payload[-1 - salt % 16] ^= 1 << (salt % 8)
    source = NAT if r["source"] == "nat" and coa != FA else coa
    destination = HOME.broadcast_address if r["broadcast"] == 0 else address
    if r["ident"] == "fresh":
        state.last = max(state.last, identification_)
    return Datagram(bytes(payload), source, 434 if source != NAT else 40_000, destination)


def learn(p: Pair, r: dict[str, object], actions: list[Action]) -> None:
    """Take the home agent's nonce from the reply; remember what was accepted."""
    node = r["node"]
    assert isinstance(node, IPv4Address)
    for action in actions:
        if isinstance(action, SendDatagram):
            reply = decode_registration(action.payload)
            if node == MN_N:
                p.nodes[node].ha_nonce = ident.high32(reply.identification)
            if getattr(reply, "code", 1) in (0, 1) and reply.lifetime:
                binding = next((b for b in p.full.bindings if b.home_address == node), None)
                if binding is not None:
                    p.nodes[node].coa, p.nodes[node].flags = binding.care_of_address, binding.flags


def run(p: Pair, sequence: list[object]) -> None:
    for step in sequence:
        assert isinstance(step, dict)
        if (reload := step.get("reload")) is not None:
            assert isinstance(reload, tuple)
            p.fast.reconfigure(ha_settings(*reload))
            p.full.reconfigure(ha_settings(*reload))
        wait = step.get("wait", 0.0)
        if wait:
            assert isinstance(wait, float)
            p.clock.now += wait
            p.timer()
        learn(p, step, p.deliver(datagram(p, step)))
    for node in SPI:
        assert p.fast.flush(node, p.clock.now) == p.full.flush(node, p.clock.now)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from((1, 2)), st.sampled_from((ReverseTunneling.ALLOWED,) * 4 + tuple(ReverseTunneling)),
       st.sampled_from(("allowed", "allowed", "required", "off")), st.sampled_from((1800, 120, 0xFFFF)),
       st.sampled_from((None, 1, 3)), st.booleans(), st.lists(requests, min_size=5, max_size=40))
def test_fast_path_gives_what_the_engine_gives(max_bindings: int, reverse: ReverseTunneling, nat: str,
                                               max_lifetime: int, reply_burst: int | None, debug: bool,
                                               sequence: list[object]) -> None:
    p = pair(max_bindings, reverse, nat, max_lifetime, reply_burst, debug)
    run(p, sequence)
    event(f"fast path decided {min(p.fast.hits, 3)}+ requests")
    event(f"fast path left {min(p.fast.unanswered, 2)}+ forgeries unanswered")


def test_renewals_take_the_fast_path() -> None:
    """The common case does go the fast way (not only fall back), for each replay protection and
    algorithm, and is answered as the engine answers it; a move, a repeat and a bad authenticator
    are the full engine's."""
    p = pair(1, ReverseTunneling.ALLOWED, "allowed", 1800)
    counting = p.fast
    base = {"renew": False, "coa": COAS[0], "flags": RequestFlags.D, "lifetime": 300, "ident": "fresh",
            "salt": 7, "auth": "good", "nai": 5, "source": "coa", "broadcast": 5, "home": 5}
    for node in (MN_T, MN_K, MN_N, MN_N):  # the nonce node's first request learns the nonce (133)
        learn(p, {**base, "node": node}, p.deliver(datagram(p, {**base, "node": node})))
    assert len(p.full.bindings) == 3 and counting.hits == 0
    for node in (MN_T, MN_K, MN_N):
        p.clock.now += 10
        request = {**base, "node": node, "renew": True, "lifetime": 600}
        actions = p.deliver(datagram(p, request))
        learn(p, request, actions)
        assert [a for a in actions if isinstance(a, SendDatagram)]
    assert counting.hits == 3
    for change in ({"coa": COAS[1]}, {"ident": "replayed"}, {"auth": "bad"}, {"nai": 0}):
        request = {**base, "node": MN_T, "renew": "coa" not in change, "lifetime": 600, **change}
        learn(p, request, p.deliver(datagram(p, request)))
    assert counting.hits == 3


BASE: dict[str, object] = {"renew": False, "coa": COAS[0], "flags": RequestFlags.D, "lifetime": 300,
                           "ident": "fresh", "salt": 7, "auth": "good", "nai": 5, "source": "coa", "broadcast": 5,
                           "home": 5}


def test_renewing_the_older_of_simultaneous_bindings() -> None:
    """With S, the renewed binding moves to the end of the node's list, so its data plane (the
    endpoints in that order) is stated again, as the engine states it."""
    p = pair(2, ReverseTunneling.ALLOWED, "allowed", 1800)
    simultaneous = {**BASE, "node": MN_T, "flags": RequestFlags.S | RequestFlags.D}
    for step in ({**simultaneous, "coa": COAS[0]}, {**simultaneous, "coa": COAS[1]}, {**simultaneous, "renew": True}):
        p.clock.now += 1
        learn(p, step, p.deliver(datagram(p, step)))
    assert p.fast.hits == 1
    assert [b.care_of_address for b in p.full.bindings] == [COAS[1], COAS[0]]


def test_renewal_after_a_reload_that_changed_our_address() -> None:
    """A reload that gives the home agent another address changes every endpoint's outer source:
    the renewal that follows states the data plane again, as the engine does."""
    p = pair(1, ReverseTunneling.ALLOWED, "allowed", 1800)
    learn(p, {**BASE, "node": MN_T}, p.deliver(datagram(p, {**BASE, "node": MN_T})))
    moved = ha_settings(1, ReverseTunneling.ALLOWED, "allowed", 1800, HA2)
    p.fast.reconfigure(moved)
    p.full.reconfigure(moved)
    p.clock.now += 1
    actions = p.deliver(datagram(p, {**BASE, "node": MN_T, "renew": True}))
    assert p.fast.hits == 1
    assert [a for a in actions if isinstance(a, DataPlane)]


def test_a_mobile_routers_renewals_are_the_engines() -> None:
    """RFC 5177: a mobile router's replies carry acknowledgements, which the fast path does not
    build; its renewals, implicit (no extension but MN-HA, the fast path's shape) or explicit,
    are the full engine's, and answered alike by both."""
    p = pair(1, ReverseTunneling.ALLOWED, "allowed", 1800)
    for networks in (None, None, "both", "lan", None):
        step = {**BASE, "node": MN_R, "renew": p.full.bindings.of(MN_R) != (), "networks": networks}
        p.clock.now += 1
        actions = p.deliver(datagram(p, step))
        learn(p, step, actions)
        reply = decode_registration(next(a for a in actions if isinstance(a, SendDatagram)).payload)
        assert reply.code == 0 and any(isinstance(e, MobileNetworkAcknowledgement) for e in reply.extensions)
    assert p.fast.hits == 0
    assert p.full.data_plane()[0].prefixes == LANS
