"""The foreign agent engine, rule by rule (RFC 5944 section 3.7, RFC 3024), with an explicit clock."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from mipd.core.actions import Datagram, Emit, PersistVisitor, SendDatagram, SendToNode
from mipd.core.foreign_agent import ForeignAgent, ForeignAgentSettings, NodeRequest
from mipd.core.planes import Delivery, VisitorPlane
from mipd.core.security import ReverseTunneling, SecurityAssociation
from mipd.core.wire import identification as ident
from mipd.core.wire.auth import append_authentication, verify
from mipd.core.wire.codes import ReplyCode
from mipd.core.wire.extensions import EncapsulatingDeliveryStyle, ExtensionType, MobileNodeNAI
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest, RequestFlags, decode_registration
from mipd.core.wire.tlv import OpaqueTail, UnknownExtension
from mipd.core.wire.tunnel import Encapsulation
from tests.support.registration import HA, KEY, MN, MN2, Clock, request

F = RequestFlags
COA = IPv4Address("10.2.0.2")  # the foreign agent's care-of address
HA_FA_KEY = bytes(range(40, 56))
MN_FA_KEY = bytes(range(60, 76))
MAC = bytes.fromhex("02000000000a")


def settings(**overrides: object) -> ForeignAgentSettings:
    base = ForeignAgentSettings(
        care_of_address=COA,
        addresses=frozenset({COA}),
        home_agents={HA: {500: SecurityAssociation(500, HA_FA_KEY, HA)}},
        mobile_nodes={MN2: {600: SecurityAssociation(600, MN_FA_KEY, MN2)}},
        max_lifetime=600,
        encapsulations=frozenset({Encapsulation.IPIP, Encapsulation.GRE}),
        max_pending_per_node=2,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock(now=100.0)


def agent(clock: Clock, **overrides: object) -> ForeignAgent:
    return ForeignAgent(settings(**overrides), wall_clock=clock.wall)


def node_request(clock: Clock, *, mn_fa: bool = False, **kwargs: object) -> RegistrationRequest:
    kwargs.setdefault("coa", COA)
    msg = request(clock, **kwargs)  # type: ignore[arg-type]
    if mn_fa:
        msg = append_authentication(msg, ExtensionType.MOBILE_FOREIGN_AUTHENTICATION, 600, MN_FA_KEY, "hmac-md5")  # type: ignore[arg-type]
    return msg


def frame(msg: RegistrationRequest | bytes, *, ttl: int = 255, destination: IPv4Address = COA,
          source: IPv4Address = MN) -> NodeRequest:
    payload = msg if isinstance(msg, bytes) else msg.encode()
    return NodeRequest(payload, source, 40000, destination, MAC, ttl)


def denial(actions: list[object]) -> RegistrationReply:
    sends = [a for a in actions if isinstance(a, SendToNode)]
    assert len(sends) == 1, actions
    reply = decode_registration(sends[0].payload)
    assert isinstance(reply, RegistrationReply)
    return reply


def relayed(actions: list[object]) -> tuple[SendDatagram, RegistrationRequest]:
    sends = [a for a in actions if isinstance(a, SendDatagram)]
    assert len(sends) == 1, actions
    msg = decode_registration(sends[0].payload)
    assert isinstance(msg, RegistrationRequest)
    return sends[0], msg


def events(actions: list[object]) -> list[str]:
    return [a.event for a in actions if isinstance(a, Emit)]


def ha_reply(req: RegistrationRequest, *, code: int = 0, lifetime: int | None = None,
             fa_ha_key: bytes | None = HA_FA_KEY, extra: tuple[object, ...] = ()) -> Datagram:
    reply = RegistrationReply(code, req.lifetime if lifetime is None else lifetime, req.home_address, HA,
                              req.identification, extra)  # type: ignore[arg-type]
    reply = append_authentication(reply, ExtensionType.MOBILE_HOME_AUTHENTICATION, 256, KEY, "hmac-md5")  # type: ignore[arg-type]
    if fa_ha_key is not None:
        reply = append_authentication(reply, ExtensionType.FOREIGN_HOME_AUTHENTICATION, 500, fa_ha_key, "hmac-md5")  # type: ignore[arg-type]
    return Datagram(reply.encode(), HA, 434, COA, 50000)


# --- relaying (3.7.2.2) ---

def test_request_is_relayed_unchanged_through_mn_ha_with_fa_ha_appended(clock: Clock) -> None:
    fa = agent(clock)
    req = node_request(clock, after=(UnknownExtension(200, b"for the FA"),))
    actions = fa.from_node(frame(req), clock.now)
    send, out = relayed(actions)
    assert (send.source, send.destination, send.destination_port) == (COA, HA, 434)
    mn_ha_end = len(req.encode_through(1))
    assert send.payload[:mn_ha_end] == req.encode()[:mn_ha_end]  # unchanged through MN-HA
    assert [e.type for e in out.extensions] == [32, 34]  # the later extension removed, FA-HA appended
    assert verify(out, 1, HA_FA_KEY, "hmac-md5")  # type: ignore[arg-type]
    assert events(actions) == ["visitor.pending", "registration.relayed"]
    (pending,) = fa.visitors.pending(MN)
    assert (pending.link_address, pending.source_port, pending.destination) == (MAC, 40000, COA)
    assert fa.counters.relayed == 1


def visit(fa: ForeignAgent, clock: Clock, **kwargs: object) -> list[object]:
    """The node's request through ``fa`` and the home agent's acceptance; the reply's actions."""
    req = node_request(clock, **kwargs)
    fa.from_node(frame(req), clock.now)
    clock.now += 0.1
    return fa.from_home_agent(ha_reply(req), clock.now)  # type: ignore[return-value]


def test_a_renewal_changing_only_the_lifetime_is_a_counter_and_a_debug_event(clock: Clock) -> None:
    fa = agent(clock)
    added = [a for a in visit(fa, clock, lifetime=500) if isinstance(a, Emit)]
    assert [(e.event, int(e.priority)) for e in added] == [("visitor.added", 6)]
    clock.now += 10
    renewed = [a for a in visit(fa, clock, lifetime=400) if isinstance(a, Emit)]
    assert [(e.event, int(e.priority)) for e in renewed] == [("visitor.renewed", 7)]
    assert fa.counters.renewals == 1 and fa.counters.accepted == 2
    clock.now += 10
    changed = [a for a in visit(fa, clock, lifetime=400, flags=F.T) if isinstance(a, Emit)]
    assert [(e.event, int(e.priority)) for e in changed] == [("visitor.renewed", 6)]  # reverse tunnel now
    assert fa.counters.renewals == 1


def test_no_fa_ha_on_deregistration_or_for_a_care_of_address_not_ours(clock: Clock) -> None:
    fa = agent(clock)
    assert [e.type for e in relayed(fa.from_node(frame(node_request(clock, lifetime=0)), clock.now))[1].extensions] \
        == [32]
    colocated = node_request(clock, flags=F.D, coa=IPv4Address("10.2.0.50"))
    assert [e.type for e in relayed(fa.from_node(frame(colocated), clock.now))[1].extensions] == [32]


def test_accepted_reply_makes_a_visitor_and_is_relayed_to_the_node(clock: Clock) -> None:
    fa = agent(clock)
    req = node_request(clock, flags=F.T, lifetime=500)
    fa.from_node(frame(req), clock.now)
    clock.now += 0.2
    actions = fa.from_home_agent(ha_reply(req, lifetime=900), clock.now)
    (to_node,) = [a for a in actions if isinstance(a, SendToNode)]
    assert (to_node.source, to_node.destination, to_node.destination_port, to_node.link_address) == \
        (COA, MN, 40000, MAC)
    reply = decode_registration(to_node.payload)
    assert isinstance(reply, RegistrationReply) and [e.type for e in reply.extensions] == [32]  # FA-HA stripped
    visitor = fa.visitors.active(MN)
    assert visitor is not None and visitor.lifetime_granted == 500  # min(reply 900, max 600, asked 500)
    assert events(actions) == ["visitor.added"]
    plane = next(a for a in actions if isinstance(a, VisitorPlane))
    assert plane.delivery == Delivery(MN, MAC, HA, COA, Encapsulation.IPIP, reverse=True)
    assert any(isinstance(a, PersistVisitor) and a.visitor == visitor for a in actions)
    assert fa.counters.accepted == 1


def test_mn_fa_is_appended_to_the_relayed_reply_when_we_share_an_sa(clock: Clock) -> None:
    fa = agent(clock)
    req = node_request(clock, home=MN2, spi=257, key=bytes(range(16, 32)), mn_fa=True,
                       identification=0x1234)
    fa.from_node(frame(req, source=MN2), clock.now)
    to_node = next(a for a in fa.from_home_agent(ha_reply(req), clock.now) if isinstance(a, SendToNode))
    reply = decode_registration(to_node.payload)
    assert isinstance(reply, RegistrationReply) and [e.type for e in reply.extensions] == [32, 33]
    assert verify(reply, 1, MN_FA_KEY, "hmac-md5")  # type: ignore[arg-type]


def test_home_agent_denial_keeps_the_current_visitor(clock: Clock) -> None:
    fa = agent(clock)
    first = node_request(clock)
    fa.from_node(frame(first), clock.now)
    fa.from_home_agent(ha_reply(first), clock.now)
    clock.now += 1
    second = node_request(clock)
    fa.from_node(frame(second), clock.now)
    actions = fa.from_home_agent(ha_reply(second, code=133, lifetime=0), clock.now)
    assert events(actions) == ["registration.denied"]
    assert fa.visitors.active(MN) is not None and not fa.visitors.pending(MN)
    assert denial(actions).code == 133  # relayed to the node


def test_deregistration_removes_the_visitor_only_on_success(clock: Clock) -> None:
    fa = agent(clock)
    req = node_request(clock)
    fa.from_node(frame(req), clock.now)
    fa.from_home_agent(ha_reply(req), clock.now)
    clock.now += 1
    dereg = node_request(clock, lifetime=0)
    fa.from_node(frame(dereg), clock.now)
    assert fa.visitors.active(MN) is not None  # not before the reply (3.7.1)
    actions = fa.from_home_agent(ha_reply(dereg, lifetime=0, fa_ha_key=None), clock.now)
    assert events(actions) == ["visitor.removed"] and fa.visitors.active(MN) is None
    assert VisitorPlane(MN, None) in actions


# --- replies that are discarded (3.7.3.1) ---

def test_reply_without_pending_or_with_other_identification_is_dropped(clock: Clock) -> None:
    fa = agent(clock)
    req = node_request(clock)
    assert events(fa.from_home_agent(ha_reply(req), clock.now)) == ["packet.dropped"]
    fa.from_node(frame(req), clock.now)
    other = replace(req, identification=req.identification + 1)
    assert events(fa.from_home_agent(ha_reply(other), clock.now)) == ["packet.dropped"]
    assert fa.counters.dropped["no-pending"] == 2 and fa.visitors.pending(MN)


@pytest.mark.parametrize("fa_ha_key", [None, bytes(16)])
def test_bad_fa_ha_on_the_reply_is_68(clock: Clock, fa_ha_key: bytes | None) -> None:
    fa = agent(clock)
    req = node_request(clock)
    fa.from_node(frame(req), clock.now)
    actions = fa.from_home_agent(ha_reply(req, fa_ha_key=fa_ha_key), clock.now)
    assert denial(actions).code == ReplyCode.FA_HOME_AGENT_FAILED_AUTHENTICATION
    assert fa.visitors.active(MN) is None and fa.counters.dropped["bad-fa-ha"] == 1


# --- denials by the foreign agent, each with its code ---

@pytest.mark.parametrize(
    ("name", "kwargs", "frame_kwargs", "code"),
    [
        ("reserved bit", {"flags": F.x}, {}, 70),
        ("home agent is us", {"home_agent": COA}, {}, 194),
        ("care-of address not ours", {"coa": IPv4Address("10.9.9.9")}, {}, 77),
        ("lifetime too long", {"lifetime": 601}, {}, 69),
        ("GRE is available", {"flags": F.G}, {}, None),
        ("minimal is not", {"flags": F.M}, {}, 72),
        ("delivery style", {"flags": F.T, "before": (EncapsulatingDeliveryStyle(),)}, {}, 79),
        ("T from afar", {"flags": F.T}, {"ttl": 64}, 76),
        ("T on the link", {"flags": F.T}, {"ttl": 255}, None),
    ],
)
def test_denials(clock: Clock, name: str, kwargs: dict[str, object], frame_kwargs: dict[str, int],
                 code: int | None) -> None:
    fa = agent(clock)
    actions = fa.from_node(frame(node_request(clock, **kwargs), **frame_kwargs), clock.now)  # type: ignore[arg-type]
    if code is None:
        relayed(actions)
        return
    reply = denial(actions)
    assert reply.code == code, name
    assert (reply.home_address, reply.home_agent) == (MN, kwargs.get("home_agent", HA))
    assert reply.lifetime == (600 if code == 69 else kwargs.get("lifetime", 600))
    assert not any(isinstance(a, SendDatagram) for a in actions) and fa.counters.denied[code] == 1


@pytest.mark.parametrize(("policy", "flags", "code"), [(ReverseTunneling.OFF, F.T, 74),
                                                       (ReverseTunneling.REQUIRED, F(0), 75)])
def test_reverse_tunneling_policy(clock: Clock, policy: ReverseTunneling, flags: RequestFlags, code: int) -> None:
    assert denial(agent(clock, reverse_tunneling=policy).from_node(frame(node_request(clock, flags=flags)),
                                                                   clock.now)).code == code


@pytest.mark.parametrize("mn_fa", [False, True])
def test_mn_fa_missing_or_invalid_is_67(clock: Clock, mn_fa: bool) -> None:
    fa = agent(clock, mobile_nodes={MN2: {600: SecurityAssociation(600, bytes(16), MN2)}})
    req = node_request(clock, home=MN2, spi=257, key=bytes(range(16, 32)), mn_fa=mn_fa)
    assert denial(fa.from_node(frame(req, source=MN2), clock.now)).code == 67


def test_no_mobile_home_extension_is_70(clock: Clock) -> None:
    fa = agent(clock)
    bare = RegistrationRequest(F(0), 600, MN, HA, COA, 1, (MobileNodeNAI(b"mn@example.org"),))
    assert denial(fa.from_node(frame(bare), clock.now)).code == 70


def test_too_many_pending_is_66(clock: Clock) -> None:
    fa = agent(clock)
    for _ in range(2):
        relayed(fa.from_node(frame(node_request(clock)), clock.now))
        clock.now += 1.1
    assert denial(fa.from_node(frame(node_request(clock)), clock.now)).code == 66


def test_visitor_limit_is_66(clock: Clock) -> None:
    fa = agent(clock, max_visitors=1)
    first = node_request(clock)
    fa.from_node(frame(first), clock.now)
    fa.from_home_agent(ha_reply(first), clock.now)
    other = node_request(clock, home=MN2, spi=257, key=bytes(range(16, 32)), mn_fa=True)
    assert denial(fa.from_node(frame(other, source=MN2), clock.now)).code == 66
    relayed(fa.from_node(frame(node_request(clock, identification=ident.timestamp(clock.wall() + 1, 0))),
                         clock.now))  # the current visitor may still renew


def test_denials_are_rate_limited_per_node(clock: Clock) -> None:
    fa = agent(clock)
    bad = node_request(clock, flags=F.x)
    assert [a for a in fa.from_node(frame(bad), clock.now) if isinstance(a, SendToNode)]
    clock.now += 0.5
    second = fa.from_node(frame(bad), clock.now)
    assert not [a for a in second if isinstance(a, SendToNode)] and events(second) == ["registration.denied"]
    clock.now += 0.6
    assert [a for a in fa.from_node(frame(bad), clock.now) if isinstance(a, SendToNode)]
    assert fa.counters.denied[70] == 3


def test_silent_discards(clock: Clock) -> None:
    fa = agent(clock)
    for payload, reason in ((b"\x01", "malformed"), (node_request(clock, after=(OpaqueTail(b"\x05\x00"),)),
                                                      "unknown-extension")):
        actions = fa.from_node(frame(payload), clock.now)
        assert events(actions) == ["packet.dropped"] and not [a for a in actions if isinstance(a, SendToNode)]
        assert fa.counters.dropped[reason] == 1


def test_reply_addressing_for_a_request_to_all_mobility_agents_and_home_address_zero(clock: Clock) -> None:
    fa = agent(clock)
    req = node_request(clock, home=IPv4Address(0), lifetime=700)
    (send,) = [a for a in fa.from_node(frame(req, destination=IPv4Address("224.0.0.11")), clock.now)
               if isinstance(a, SendToNode)]
    assert (send.source, send.destination, send.source_port) == (COA, IPv4Address("255.255.255.255"), 434)


# --- time: pending timeout, ICMP errors, expiry ---

def test_pending_timeout_is_78(clock: Clock) -> None:
    fa = agent(clock, pending_timeout=7.0)
    fa.from_node(frame(node_request(clock)), clock.now)
    assert fa.next_timer() == clock.now + 7.0
    assert fa.on_timer(clock.now + 6.9) == []
    assert denial(fa.on_timer(clock.now + 7.0)).code == 78 and not fa.visitors.pending(MN)


@pytest.mark.parametrize(("icmp_code", "code"), [(0, 80), (1, 81), (3, 82), (13, 88)])
def test_icmp_errors_for_a_relayed_request(clock: Clock, icmp_code: int, code: int) -> None:
    fa = agent(clock)
    send, _ = relayed(fa.from_node(frame(node_request(clock)), clock.now))
    assert denial(fa.relay_failed(send.payload, 3, icmp_code, clock.now)).code == code
    assert not fa.visitors.pending(MN)


def test_visitor_expiry_sends_nothing(clock: Clock) -> None:
    fa = agent(clock)
    req = node_request(clock, lifetime=30)
    fa.from_node(frame(req), clock.now)
    fa.from_home_agent(ha_reply(req), clock.now)
    actions = fa.on_timer(clock.now + 30)
    assert events(actions) == ["visitor.expired"] and VisitorPlane(MN, None) in actions
    assert not [a for a in actions if isinstance(a, SendToNode | SendDatagram)]


def test_flush_and_restore(clock: Clock) -> None:
    fa = agent(clock)
    req = node_request(clock, lifetime=300)
    fa.from_node(frame(req), clock.now)
    actions = fa.from_home_agent(ha_reply(req), clock.now)
    stored = next(a for a in actions if isinstance(a, PersistVisitor))
    assert stored.visitor is not None
    on_disk = replace(stored.visitor, expires=stored.visitor.expires + stored.wall_offset)
    later = Clock(now=3.0, wall_offset=clock.wall() + 100 - 3.0)
    fresh = ForeignAgent(settings(), wall_clock=later.wall)
    assert fresh.restore([on_disk], later.now) == []
    restored = fresh.visitors.active(MN)
    assert restored is not None and restored.remaining(later.now) == 200
    assert fresh.data_plane() == [VisitorPlane(MN, Delivery(MN, MAC, HA, COA))]
    assert events(fresh.flush(MN, later.now)) == ["visitor.removed"] and fresh.visitors.active(MN) is None


def test_icmp_error_quoting_only_part_of_the_request_still_matches(clock: Clock) -> None:
    fa = agent(clock)
    send, _ = relayed(fa.from_node(frame(node_request(clock, before=(MobileNodeNAI(b"x" * 200),))), clock.now))
    assert denial(fa.relay_failed(send.payload[:60], 3, 1, clock.now)).code == 81
    assert fa.relay_failed(b"\x01\x00", 3, 1, clock.now) == []  # too short to match anything
