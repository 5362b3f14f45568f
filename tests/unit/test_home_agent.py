"""The home agent engine, rule by rule (RFC 5944 section 3.8), with an explicit clock."""

from __future__ import annotations

import math
from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from mipd.core.actions import Datagram, Emit, PersistNode, ReplayState, SendDatagram
from mipd.core.bindings import Binding, BindingTable
from mipd.core.home_agent import HomeAgent, NodeRecord
from mipd.core.planes import DataPlane, Endpoint
from mipd.core.security import ReverseTunneling, SecurityAssociation
from mipd.core.wire import identification as ident
from mipd.core.wire.auth import append_authentication, verify
from mipd.core.wire.codes import ReplyCode
from mipd.core.wire.extensions import EncapsulatingDeliveryStyle, ExtensionType, MobileNodeNAI
from mipd.core.wire.registration import RegistrationRequest, RequestFlags
from mipd.core.wire.tlv import OpaqueTail, UnknownExtension
from mipd.core.wire.tunnel import Encapsulation
from tests.support.registration import (
    COA,
    COA2,
    FA,
    FA_KEY,
    HA,
    HOME_NET,
    KEY,
    KEY2,
    MN,
    MN2,
    Clock,
    Nonces,
    datagram,
    engine,
    events,
    only_reply,
    persisted,
    replies,
    request,
    settings,
)

F = RequestFlags


@pytest.fixture
def clock() -> Clock:
    return Clock(now=100.0)


def code_of(ha: object, clock: Clock, **kwargs: object) -> int:
    source = kwargs.pop("source", COA)
    destination = kwargs.pop("destination", HA)
    actions = ha.receive(datagram(request(clock, **kwargs), source, destination), clock.now)  # type: ignore[attr-defined]
    return only_reply(actions)[1].code


# --- acceptance and the reply (3.8.2.2, 3.8.3) ---

def test_accepted_registration_reply_and_binding(clock: Clock) -> None:
    ha = engine(clock)
    req = request(clock, lifetime=600)
    actions = ha.receive(datagram(req, COA, HA, 40123), clock.now)
    send, reply = only_reply(actions)
    assert (reply.code, reply.lifetime, reply.home_address, reply.home_agent) == (0, 600, MN, HA)
    assert reply.identification == req.identification  # 5.7.1: the whole field copied
    assert verify(reply, 0, KEY, "hmac-md5")  # type: ignore[arg-type]
    assert (send.source, send.source_port, send.destination, send.destination_port) == (HA, 434, COA, 40123)
    assert events(actions) == ["binding.added", "registration.accepted"]
    # docs/interfaces.md "Durability": the node's state is persisted before the reply that announces it.
    kinds = [type(a) for a in actions if isinstance(a, PersistNode | SendDatagram)]
    assert kinds == [PersistNode, SendDatagram]
    binding = ha.bindings.get(MN, COA)
    assert binding is not None and binding.expires == clock.now + 600
    assert binding.foreign_agent == COA  # D clear: an FA care-of address, the request came through its FA
    assert ha.counters.accepted == 1 and ha.counters.requests_received == 1


def test_lifetime_capped_at_max_and_never_above_request(clock: Clock) -> None:
    ha = engine(clock, max_lifetime=300)
    assert only_reply(ha.receive(datagram(request(clock, lifetime=1800)), clock.now))[1].lifetime == 300
    clock.now += 1
    assert only_reply(ha.receive(datagram(request(clock, lifetime=100)), clock.now))[1].lifetime == 100


def test_infinite_lifetime_needs_no_timer(clock: Clock) -> None:
    ha = engine(clock, max_lifetime=0xFFFF)
    reply = only_reply(ha.receive(datagram(request(clock, lifetime=0xFFFF)), clock.now))[1]
    assert reply.lifetime == 0xFFFF
    binding = ha.bindings.get(MN, COA)
    assert binding is not None and math.isinf(binding.expires) and binding.remaining(1e9) == 0xFFFF
    assert ha.next_timer() is None


@pytest.mark.parametrize(
    ("flags", "source", "foreign_agent"),
    [(F.D, COA, None), (F.D, FA, FA), (F(0), FA, FA)],
    ids=["co-located, direct", "co-located via FA (R)", "FA care-of address"],
)
def test_foreign_agent_is_recorded_when_relayed(clock: Clock, flags: RequestFlags, source: IPv4Address,
                                                foreign_agent: IPv4Address | None) -> None:
    ha = engine(clock)
    fa_ha = (300, FA_KEY) if source == FA else None
    coa = FA if not flags & F.D else COA
    reply = only_reply(ha.receive(datagram(request(clock, flags=flags, coa=coa, fa_ha=fa_ha), source), clock.now))[1]
    assert reply.code == 0
    binding = ha.bindings.get(MN, coa)
    assert binding is not None and binding.foreign_agent == foreign_agent


def test_relayed_request_records_the_foreign_agent_and_signs_for_it(clock: Clock) -> None:
    ha = engine(clock)
    req = request(clock, fa_ha=(300, FA_KEY))
    send, reply = only_reply(ha.receive(datagram(req, source=FA, destination=HA), clock.now))
    assert reply.code == 0 and send.destination == FA
    # 3.8.1: the reply to an FA we share an SA with carries a valid FA-HA after the MN-HA.
    assert [e.type for e in reply.extensions] == [32, 34]
    assert verify(reply, 1, FA_KEY, "hmac-md5")  # type: ignore[arg-type]


def test_home_address_zero_is_answered_with_the_sas_address(clock: Clock) -> None:
    ha = engine(clock)
    reply = only_reply(ha.receive(datagram(request(clock, home=IPv4Address(0))), clock.now))[1]
    assert reply.code == 0 and reply.home_address == MN
    assert ha.bindings.get(MN, COA) is not None


def test_broadcast_flag_ignored_rather_than_rejected(clock: Clock) -> None:
    assert code_of(engine(clock), clock, flags=F.B) == 0  # 3.8.2: "MUST ignore the 'B' bit"


# --- silent discards (1.8, 3.8.2.1 a and d) ---

@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x01\x00", "malformed"),
        (bytes.fromhex("03000708c0a800f2c0a8001ee8fe6f8012345678"), "not-a-request"),
    ],
)
def test_undecodable_datagrams_are_counted_drops(clock: Clock, payload: bytes, reason: str) -> None:
    ha = engine(clock)
    actions = ha.receive(datagram(payload), clock.now)
    assert not replies(actions) and events(actions) == ["packet.dropped"]
    assert ha.counters.dropped[reason] == 1


def test_unrecognised_nonskippable_extension_discards_the_message(clock: Clock) -> None:
    ha = engine(clock)
    req = request(clock, after=(OpaqueTail(b"\x32\x00"),))
    actions = ha.receive(datagram(req), clock.now)
    assert not replies(actions) and ha.counters.dropped["unknown-extension"] == 1
    emitted = [a for a in actions if isinstance(a, Emit)]
    assert emitted[0].fields["reason"] == "unknown-extension"


def test_unrecognised_skippable_extensions_are_skipped(clock: Clock) -> None:
    ha = engine(clock)
    req = request(clock, before=(UnknownExtension(200, b"xy"), MobileNodeNAI(b"mn@example.org"),
                                 EncapsulatingDeliveryStyle()), after=(UnknownExtension(250, b""),))
    assert only_reply(ha.receive(datagram(req), clock.now))[1].code == 0


def test_no_mobile_home_extension_is_a_silent_discard(clock: Clock) -> None:
    ha = engine(clock)
    bare = RegistrationRequest(F(0), 600, MN, HA, COA, ident.timestamp(clock.wall(), 0))
    assert not replies(ha.receive(datagram(bare), clock.now))
    assert ha.counters.dropped["no-auth"] == 1


def test_unknown_spi_is_a_silent_discard(clock: Clock) -> None:
    ha = engine(clock)
    assert not replies(ha.receive(datagram(request(clock, spi=999)), clock.now))
    assert ha.counters.dropped["no-sa"] == 1 and not ha.counters.denied


def test_fa_ha_from_an_agent_without_sa_is_discarded(clock: Clock) -> None:
    ha = engine(clock)
    stranger = IPv4Address("10.9.0.1")
    actions = ha.receive(datagram(request(clock, fa_ha=(300, FA_KEY)), source=stranger), clock.now)
    assert not replies(actions) and ha.counters.dropped["fa-ha-without-sa"] == 1


# --- denials, each with its code ---

def test_bad_authenticator_is_131_with_a_valid_mn_ha(clock: Clock) -> None:
    ha = engine(clock)
    forged = request(clock, key=bytes(16))
    reply = only_reply(ha.receive(datagram(forged), clock.now))[1]
    assert reply.code == ReplyCode.HA_MOBILE_NODE_FAILED_AUTHENTICATION
    assert verify(reply, 0, KEY, "hmac-md5")  # type: ignore[arg-type]
    assert ha.counters.denied[131] == 1 and not ha.bindings.of(MN)


def test_stale_timestamp_is_133_with_our_time(clock: Clock) -> None:
    ha = engine(clock)
    old = ident.timestamp(clock.wall() - 60, 0x123)
    reply = only_reply(ha.receive(datagram(request(clock, identification=old)), clock.now))[1]
    assert reply.code == ReplyCode.HA_REGISTRATION_IDENTIFICATION_MISMATCH
    assert ident.low32(reply.identification) == ident.low32(old)  # 5.7: low half copied
    assert ident.high32(reply.identification) == int(clock.wall()) + ident.NTP_UNIX_OFFSET  # our time of day


def test_replayed_timestamp_is_133(clock: Clock) -> None:
    ha = engine(clock)
    req = request(clock, lifetime=600)
    assert only_reply(ha.receive(datagram(req), clock.now))[1].code == 0
    ha.flush(MN, clock.now)  # no current binding: not a duplicate, a replay
    assert only_reply(ha.receive(datagram(req), clock.now + 1))[1].code == 133


def test_nonces_resynchronise_and_rotate(clock: Clock) -> None:
    ha = engine(clock)
    first = request(clock, home=MN2, spi=257, key=KEY2, identification=0x0000000011111111)
    denial = only_reply(ha.receive(datagram(first), clock.now))[1]
    assert denial.code == 133  # no nonce issued yet; the denial carries one (5.7.2)
    nonce = ident.high32(denial.identification)
    assert ident.low32(denial.identification) == 0x11111111
    ok = request(clock, home=MN2, spi=257, key=KEY2, identification=ident.nonce_request(nonce, 0x22))
    reply = only_reply(ha.receive(datagram(ok), clock.now))[1]
    assert reply.code == 0 and ident.low32(reply.identification) == 0x22
    assert ident.high32(reply.identification) != nonce  # every reply carries a fresh nonce
    stale = request(clock, home=MN2, spi=257, key=KEY2, coa=COA2, identification=ident.nonce_request(nonce, 0x33))
    assert only_reply(ha.receive(datagram(stale), clock.now))[1].code == 133


def test_duplicate_never_extends_the_granted_lifetime(clock: Clock) -> None:
    ha = engine(clock)
    req = request(clock, lifetime=600)
    ha.receive(datagram(req), clock.now)
    clock.now += 100
    actions = ha.receive(datagram(req), clock.now)
    assert only_reply(actions)[1].lifetime == 500
    binding = ha.bindings.get(MN, COA)
    assert binding is not None and binding.expires == 100.0 + 600


@pytest.mark.parametrize("fa_ha", [None, (300, bytes(16)), (301, FA_KEY)])
def test_foreign_agent_authentication_is_132(clock: Clock, fa_ha: tuple[int, bytes] | None) -> None:
    assert code_of(engine(clock), clock, fa_ha=fa_ha, source=FA) == 132


def test_two_fa_ha_extensions_are_132(clock: Clock) -> None:
    ha = engine(clock)
    req = request(clock, fa_ha=(300, FA_KEY))
    twice = append_authentication(req, ExtensionType.FOREIGN_HOME_AUTHENTICATION, 300, FA_KEY, "hmac-md5")  # type: ignore[arg-type]
    assert only_reply(ha.receive(datagram(twice, source=FA), clock.now))[1].code == 132


def test_deregistration_via_fa_needs_no_fa_ha(clock: Clock) -> None:
    ha = engine(clock)
    ha.receive(datagram(request(clock, fa_ha=(300, FA_KEY)), source=FA), clock.now)
    clock.now += 1
    dereg = request(clock, lifetime=0)
    reply = only_reply(ha.receive(datagram(dereg, source=FA), clock.now))[1]
    assert reply.code == 0 and reply.lifetime == 0 and [e.type for e in reply.extensions] == [32]
    assert not ha.bindings.of(MN)


@pytest.mark.parametrize("flag", [F.r, F.x])
def test_reserved_bits_are_134(clock: Clock, flag: RequestFlags) -> None:
    assert code_of(engine(clock), clock, flags=flag) == 134


@pytest.mark.parametrize("destination", [HOME_NET.broadcast_address, IPv4Address("255.255.255.255")])
def test_request_to_broadcast_is_136_from_our_address(clock: Clock, destination: IPv4Address) -> None:
    ha = engine(clock)
    req = request(clock, home_agent=destination)
    send, reply = only_reply(ha.receive(datagram(req, destination=destination), clock.now))
    assert reply.code == 136 and reply.home_agent == HA and send.source == HA


def test_home_agent_field_not_ours_is_136(clock: Clock) -> None:
    ha = engine(clock)
    reply = only_reply(ha.receive(datagram(request(clock, home_agent=IPv4Address("10.1.0.2"))), clock.now))[1]
    assert reply.code == 136 and reply.home_agent == HA


def test_home_address_not_authorised_by_the_sa_is_129(clock: Clock) -> None:
    assert code_of(engine(clock), clock, home=MN2) == 129


@pytest.mark.parametrize(
    ("policy", "flags", "code"),
    [
        (ReverseTunneling.OFF, F.T, 137),
        (ReverseTunneling.REQUIRED, F(0), 138),
        (ReverseTunneling.REQUIRED, F.T, 0),
        (ReverseTunneling.ALLOWED, F.T, 0),
        (ReverseTunneling.ALLOWED, F(0), 0),
    ],
)
def test_reverse_tunneling_policy(clock: Clock, policy: ReverseTunneling, flags: RequestFlags, code: int) -> None:
    assert code_of(engine(clock, reverse_tunneling=policy), clock, flags=flags) == code


@pytest.mark.parametrize(
    ("offered", "flags", "code"),
    [
        (frozenset({Encapsulation.IPIP}), F.M, 139),
        (frozenset({Encapsulation.IPIP}), F.G, 139),
        (frozenset({Encapsulation.IPIP, Encapsulation.GRE}), F.G, 0),
        (frozenset({Encapsulation.IPIP, Encapsulation.MINIMAL}), F.M, 0),
    ],
)
def test_encapsulation_not_offered_is_139(clock: Clock, offered: frozenset[Encapsulation], flags: RequestFlags,
                                          code: int) -> None:
    assert code_of(engine(clock, encapsulations=offered), clock, flags=flags) == code


def test_checks_run_in_the_order_of_3_8_2_1(clock: Clock) -> None:
    ha = engine(clock)
    # invalid authenticator beats everything after it
    assert code_of(ha, clock, key=bytes(16), flags=F.r, home=MN2) == 131
    # a bad Identification beats FA-HA, reserved bits and the rest
    stale = ident.timestamp(clock.wall() - 60, 0)
    assert code_of(ha, clock, identification=stale, source=FA, flags=F.r) == 133
    clock.now += 1
    # FA-HA (132) before reserved bits (134)
    assert code_of(ha, clock, source=FA, flags=F.r) == 132
    clock.now += 1
    # reserved bits (134) before the home agent address (136)
    assert code_of(ha, clock, flags=F.x, home_agent=IPv4Address("10.1.0.2")) == 134
    clock.now += 1
    # home agent address (136) before the home address authorisation (129)
    assert code_of(ha, clock, home_agent=IPv4Address("10.1.0.2"), home=MN2) == 136


# --- simultaneous bindings and deregistration ---

def test_s_without_simultaneous_bindings_is_code_1_and_replaces(clock: Clock) -> None:
    ha = engine(clock)
    ha.receive(datagram(request(clock, coa=COA)), clock.now)
    clock.now += 1
    actions = ha.receive(datagram(request(clock, coa=COA2, flags=F.S)), clock.now)
    assert only_reply(actions)[1].code == 1
    assert [b.care_of_address for b in ha.bindings.of(MN)] == [COA2]
    removed = [a for a in actions if isinstance(a, Emit) and a.event == "binding.removed"]
    assert removed[0].fields["reason"] == "replaced"


def test_simultaneous_bindings_up_to_the_limit(clock: Clock) -> None:
    ha = engine(clock, max_bindings_per_node=2)
    assert code_of(ha, clock, coa=COA, flags=F.S) == 0
    clock.now += 1
    assert code_of(ha, clock, coa=COA2, flags=F.S) == 0
    assert len(ha.bindings.of(MN)) == 2
    clock.now += 1
    assert code_of(ha, clock, coa=IPv4Address("10.4.0.1"), flags=F.S) == 135
    clock.now += 1
    assert code_of(ha, clock, coa=COA, flags=F.S) == 0  # renewing one of them is fine
    clock.now += 1
    assert code_of(ha, clock, coa=COA2) == 0  # without S: all previous removed
    assert [b.care_of_address for b in ha.bindings.of(MN)] == [COA2]


def test_deregistration_of_one_care_of_address(clock: Clock) -> None:
    ha = engine(clock, max_bindings_per_node=2)
    code_of(ha, clock, coa=COA, flags=F.S)
    clock.now += 1
    code_of(ha, clock, coa=COA2, flags=F.S)
    clock.now += 1
    actions = ha.receive(datagram(request(clock, lifetime=0, coa=COA2)), clock.now)
    assert only_reply(actions)[1].lifetime == 0
    assert [b.care_of_address for b in ha.bindings.of(MN)] == [COA]
    clock.now += 1
    actions = ha.receive(datagram(request(clock, lifetime=0, coa=MN), source=MN), clock.now)
    assert only_reply(actions)[0].destination == MN and not ha.bindings.of(MN)
    gone = [a for a in actions if isinstance(a, Emit) and a.event == "binding.removed"]
    assert [e.fields["reason"] for e in gone] == ["deregistered"]


def test_renewal_with_the_same_care_of_address(clock: Clock) -> None:
    ha = engine(clock)
    ha.receive(datagram(request(clock)), clock.now)
    clock.now += 10
    assert events(ha.receive(datagram(request(clock)), clock.now)) == ["binding.renewed", "registration.accepted"]


def priorities(actions: list[object]) -> dict[str, int]:
    return {a.event: int(a.priority) for a in actions if isinstance(a, Emit)}


def test_a_renewal_changing_only_the_lifetime_is_a_counter_and_debug_events(clock: Clock) -> None:
    ha = engine(clock)
    added = ha.receive(datagram(request(clock, lifetime=300)), clock.now)
    assert priorities(added) == {"binding.added": 6, "registration.accepted": 6}
    assert ha.counters.renewals == 0
    clock.now += 10
    renewed = ha.receive(datagram(request(clock, lifetime=200)), clock.now)
    assert priorities(renewed) == {"binding.renewed": 7, "registration.accepted": 7}
    assert ha.counters.renewals == 1 and ha.counters.accepted == 2
    assert only_reply(renewed)[1].lifetime == 200


@pytest.mark.parametrize("fast_path", [True, False])
def test_without_debug_events_a_pure_renewal_builds_none_and_other_changes_still_do(clock: Clock,
                                                                                     fast_path: bool) -> None:
    """At a log level above debug the runtime says debug events are not wanted: a renewal that only
    extends the lifetime is then a counter, a commit and a reply, and no event at all; a change of
    the binding list still gives its info events."""
    ha = HomeAgent(settings(), wall_clock=clock.wall, random32=Nonces(), fast_path=fast_path,
                   debug_events=lambda: False)
    assert events(ha.receive(datagram(request(clock)), clock.now)) == ["binding.added", "registration.accepted"]
    clock.now += 10
    renewed = ha.receive(datagram(request(clock)), clock.now)
    assert events(renewed) == [] and only_reply(renewed)[1].code == 0 and persisted(renewed)
    assert ha.counters.renewals == 1
    clock.now += 10
    assert events(ha.receive(datagram(request(clock, flags=F.T)), clock.now)) == ["binding.renewed",
                                                                                 "registration.accepted"]


def test_a_renewal_that_changes_the_flags_stays_an_info_entry(clock: Clock) -> None:
    ha = engine(clock)
    ha.receive(datagram(request(clock)), clock.now)
    clock.now += 10
    renewed = ha.receive(datagram(request(clock, flags=F.T)), clock.now)
    assert priorities(renewed) == {"binding.renewed": 6, "registration.accepted": 6}
    assert ha.counters.renewals == 0


def test_a_move_stays_removed_and_added_at_info(clock: Clock) -> None:
    ha = engine(clock)
    ha.receive(datagram(request(clock)), clock.now)
    clock.now += 10
    moved = ha.receive(datagram(request(clock, coa=COA2), COA2), clock.now)
    assert events(moved) == ["binding.removed", "binding.added", "registration.accepted"]
    assert set(priorities(moved).values()) == {6} and ha.counters.renewals == 0


# --- expiry, flush, reload, restart ---

def test_expiry_through_the_timer_sends_nothing(clock: Clock) -> None:
    ha = engine(clock)
    ha.receive(datagram(request(clock, lifetime=30)), clock.now)
    assert ha.next_timer() == clock.now + 30
    assert ha.on_timer(clock.now + 29) == []
    actions = ha.on_timer(clock.now + 30)
    assert events(actions) == ["binding.expired"] and not replies(actions)
    assert persisted(actions)[0].bindings == () and ha.next_timer() is None


def test_flush_removes_now(clock: Clock) -> None:
    ha = engine(clock)
    ha.receive(datagram(request(clock)), clock.now)
    actions = ha.flush(MN, clock.now)
    assert events(actions) == ["binding.removed"] and not ha.bindings.of(MN)
    assert ha.flush(MN, clock.now) == []


def test_reconfigure_applies_to_the_next_request_and_keeps_bindings(clock: Clock) -> None:
    ha = engine(clock)
    ha.receive(datagram(request(clock)), clock.now)
    ha.reconfigure(settings(mobile_nodes={256: SecurityAssociation(256, KEY2, MN)}))
    assert ha.bindings.get(MN, COA) is not None
    clock.now += 1
    assert code_of(ha, clock) == 131  # the old key no longer authenticates
    clock.now += 1
    assert code_of(ha, clock, key=KEY2) == 0


def test_restore_keeps_remaining_lifetime_and_refuses_replays(clock: Clock) -> None:
    ha = engine(clock)
    req = request(clock, lifetime=600)
    actions = ha.receive(datagram(req), clock.now)
    record = persisted(actions)[-1]
    stored = NodeRecord(record.home_address,
                        tuple(replace(b, expires=b.expires + record.wall_offset) for b in record.bindings),
                        record.replay)
    # a restart 200 s later, on a monotonic clock that starts elsewhere
    later = Clock(now=5.0, wall_offset=clock.wall() + 200 - 5.0)
    fresh = engine(later)
    assert fresh.restore([stored], later.now) == []
    binding = fresh.bindings.get(MN, COA)
    assert binding is not None and binding.remaining(later.now) == 400
    assert fresh.next_timer() == pytest.approx(later.now + 400)
    # the last accepted Identification survived: the replayed request (no longer current: flush) is refused
    fresh.flush(MN, later.now)
    assert only_reply(fresh.receive(datagram(req), later.now))[1].code == 133


def test_restore_drops_expired_bindings(clock: Clock) -> None:
    ha = engine(clock)
    expired = Binding(MN, COA, 60, clock.wall() - 1, 1, F(0), 256)
    actions = ha.restore([NodeRecord(MN, (expired,), ReplayState(last_identification=5))], clock.now)
    assert not ha.bindings.of(MN) and persisted(actions)[0].bindings == ()
    assert persisted(actions)[0].replay == ReplayState(last_identification=5)


def test_a_hundred_thousand_bindings(clock: Clock) -> None:
    """O(1) lookup and heap expiry hold up at 100,000 bindings (functional, not timed)."""
    table = BindingTable()
    base = int(IPv4Address("10.128.0.0"))
    for i in range(100_000):
        table.put(Binding(IPv4Address(base + i), COA, 600, 1000.0 + i % 1000, i, F(0), 256))
    assert len(table) == 100_000
    assert table.get(IPv4Address(base + 54_321), COA) is not None
    assert table.next_expiry() == 1000.0
    expired = table.expire(1499.0)
    assert len(expired) == 50_000 and len(table) == 50_000
    assert all(b.expires <= 1499.0 for b in expired)
    assert table.next_expiry() == 1500.0


def test_counters_add_up(clock: Clock) -> None:
    ha = engine(clock)
    ha.receive(datagram(b"junk"), clock.now)
    code_of(ha, clock)
    clock.now += 1
    code_of(ha, clock, key=bytes(16))
    c = ha.counters
    assert (c.requests_received, c.accepted, dict(c.denied), dict(c.dropped)) == (3, 1, {131: 1}, {"malformed": 1})


def test_datagram_to_another_port_is_still_processed_by_payload(clock: Clock) -> None:
    ha = engine(clock)
    d = Datagram(request(clock).encode(), COA, 434, HA)
    send, _ = only_reply(ha.receive(d, clock.now))
    assert send.destination_port == 434  # copied from the request's source port (3.8.3.1)


# --- the data plane the engine states (RFC 5944 4.2.3, 4.6) ---

def planes(actions: list[object]) -> list[DataPlane]:
    return [a for a in actions if isinstance(a, DataPlane)]


def test_data_plane_follows_the_bindings(clock: Clock) -> None:
    ha = engine(clock, encapsulations=frozenset({Encapsulation.IPIP, Encapsulation.GRE}))
    (plane,) = planes(ha.receive(datagram(request(clock, flags=F.D | F.G | F.T | F.B)), clock.now))
    assert plane == DataPlane(MN, (Endpoint(COA, HA, Encapsulation.GRE, reverse=True, broadcast=True,
                                            decapsulates=True),))
    clock.now += 1
    assert planes(ha.receive(datagram(request(clock, flags=F.D | F.G | F.T | F.B)), clock.now)) == []  # same
    clock.now += 1
    (moved,) = planes(ha.receive(datagram(request(clock, coa=COA2, flags=F.D)), clock.now))
    assert moved == DataPlane(MN, (Endpoint(COA2, HA, Encapsulation.IPIP, decapsulates=True),))
    clock.now += 1
    (home,) = planes(ha.receive(datagram(request(clock, lifetime=0, coa=MN), source=MN), clock.now))
    assert home == DataPlane(MN, ()) and not home.away


def test_rejected_registrations_change_no_data_plane(clock: Clock) -> None:
    ha = engine(clock)
    ha.receive(datagram(request(clock)), clock.now)
    clock.now += 1
    for kwargs in ({"key": bytes(16)}, {"flags": F.x}, {"home_agent": IPv4Address("10.1.0.2")}, {"flags": F.G}):
        assert planes(ha.receive(datagram(request(clock, **kwargs)), clock.now)) == []  # type: ignore[arg-type]
        clock.now += 1


def test_simultaneous_bindings_give_one_endpoint_each(clock: Clock) -> None:
    ha = engine(clock, max_bindings_per_node=2)
    ha.receive(datagram(request(clock, coa=COA, flags=F.S)), clock.now)
    clock.now += 1
    (plane,) = planes(ha.receive(datagram(request(clock, coa=COA2, flags=F.S)), clock.now))
    assert [e.care_of_address for e in plane.endpoints] == [COA, COA2]


def test_expiry_and_flush_bring_the_node_home(clock: Clock) -> None:
    ha = engine(clock)
    ha.receive(datagram(request(clock, lifetime=10)), clock.now)
    assert planes(ha.on_timer(clock.now + 10)) == [DataPlane(MN, ())]
    ha.receive(datagram(request(clock, home=MN, lifetime=10, identification=ident.timestamp(clock.wall() + 1, 0))),
               clock.now)
    assert planes(ha.flush(MN, clock.now)) == [DataPlane(MN, ())]


def test_restore_states_the_whole_data_plane_for_reconciliation(clock: Clock) -> None:
    ha = engine(clock)
    live = Binding(MN, COA, 600, clock.wall() + 300, 1, F.T, 256)
    gone = Binding(MN2, COA, 600, clock.wall() - 1, 1, F(0), 257)
    actions = ha.restore([NodeRecord(MN, (live,), ReplayState()), NodeRecord(MN2, (gone,), ReplayState())],
                         clock.now)
    assert planes(actions) == []  # not node by node
    assert ha.data_plane() == [DataPlane(MN, (Endpoint(COA, HA, Encapsulation.IPIP, reverse=True),))]
