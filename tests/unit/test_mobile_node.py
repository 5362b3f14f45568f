"""The mobile node engine, rule by rule (RFC 5944 2.4, 3.6, 4.6), with an explicit clock."""

from __future__ import annotations

import itertools
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface

from mipd.core.actions import Datagram, SendDatagram, SendIcmp
from mipd.core.mobile_node import LINK_CHANGE_GRACE, MobileNode
from mipd.core.security import ReplayProtection, SecurityAssociation
from mipd.core.wire import identification as ident
from mipd.core.wire.auth import append_authentication
from mipd.core.wire.extensions import ExtensionType
from mipd.core.wire.icmp import AdvertisementFlags, decode_icmp
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest, RequestFlags, decode_registration
from tests.support.scenario import FA1, FA2, FA_MACS, HA, KEY, MN, World, advertisement, build

FA_KEY = bytes(range(80, 96))


def node(**kwargs: object) -> tuple[World, MobileNode]:
    world, mobile, _, _ = build(**kwargs)  # type: ignore[arg-type]
    return world, mobile


def sends(actions: list[object]) -> list[SendDatagram]:
    return [a for a in actions if isinstance(a, SendDatagram)]


def request_of(action: SendDatagram) -> RegistrationRequest:
    msg = decode_registration(action.payload)
    assert isinstance(msg, RegistrationRequest)
    return msg


def answer(mobile: MobileNode, req: RegistrationRequest, now: float, *, code: int = 0, lifetime: int | None = None,
           key: bytes = KEY, identification: int | None = None, home_agent: IPv4Address = HA,
           mn_ha: bool = True, extra_mn_ha: bool = False) -> list[object]:
    reply = RegistrationReply(code, req.lifetime if lifetime is None else lifetime, MN, home_agent,
                              req.identification if identification is None else identification)
    if mn_ha:
        reply = append_authentication(reply, ExtensionType.MOBILE_HOME_AUTHENTICATION, 256, key, "hmac-md5")  # type: ignore[arg-type]
    if extra_mn_ha:
        reply = append_authentication(reply, ExtensionType.MOBILE_HOME_AUTHENTICATION, 256, key, "hmac-md5")  # type: ignore[arg-type]
    return mobile.reply(Datagram(reply.encode(), FA1, 434, MN), now)  # type: ignore[return-value]


def hear(mobile: MobileNode, now: float, agent: IPv4Address = FA1, **kwargs: object) -> list[object]:
    return mobile.advertisement(advertisement(agent, **kwargs), agent, FA_MACS.get(agent, bytes(6)), now)  # type: ignore[arg-type]


def test_solicits_three_times_a_second_apart_then_backs_off() -> None:
    _, mobile = node()
    times: list[float] = []
    now = 0.0
    actions = mobile.start(now)
    for _ in range(200):
        deadline = mobile.next_timer()
        assert deadline is not None
        now = deadline
        for action in mobile.on_timer(now):
            if isinstance(action, SendIcmp):
                times.append(now)
                assert action.ttl == 1 and str(action.destination) == "224.0.0.11"
                assert decode_icmp(action.payload).TYPE == 10
        if now > 400:
            break
    assert actions is not None and times[0] == 0.0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(1.0 <= g <= 1.1 for g in gaps[:2])  # three at about one per second
    assert all(later >= 1.9 * earlier for earlier, later in itertools.pairwise(gaps[2:7]))  # doubling
    assert max(gaps) <= 60 * 1.1 + 1e-9  # up to the maximum interval


def test_advertisement_stops_solicitation_and_registers_through_the_agent() -> None:
    _, mobile = node()
    mobile.start(0.0)
    actions = hear(mobile, 0.5)
    assert mobile.solicitation.next_at is None
    (send,) = sends(actions)
    req = request_of(send)
    assert (send.destination, send.source, send.ttl) == (FA1, MN, 255)  # 3.6.1.1, RFC 3024
    assert (req.home_address, req.home_agent, req.care_of_address) == (MN, HA, FA1)
    assert not req.flags & RequestFlags.D and req.lifetime == 300  # through an agent: D clear (3.6.1.2)


def test_lifetime_never_above_the_agents() -> None:
    _, mobile = node(lifetime=1800)
    (send,) = sends(hear(mobile, 0.0, registration_lifetime=120))
    assert request_of(send).lifetime == 120


def test_reverse_tunneling_only_where_the_agent_offers_it() -> None:
    _, mobile = node(reverse_tunneling=True)
    (send,) = sends(hear(mobile, 0.0, flags=AdvertisementFlags.F))
    assert not request_of(send).flags & RequestFlags.T
    _, mobile = node(reverse_tunneling=True)
    (send,) = sends(hear(mobile, 0.0))
    assert request_of(send).flags & RequestFlags.T


def test_retransmission_doubles_from_one_second_with_new_timestamps() -> None:
    _, mobile = node()
    first = request_of(sends(hear(mobile, 0.0))[0])
    times, idents = [0.0], [first.identification]
    now = 0.0
    while len(times) < 5:
        now = mobile.next_timer()  # type: ignore[assignment]
        for send in sends(mobile.on_timer(now)):
            times.append(now)
            idents.append(request_of(send).identification)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == [1.0, 2.0, 4.0, 8.0]  # 3.6.3
    assert len(set(idents)) == 5 and idents == sorted(idents)  # each a new, larger timestamp


def test_nonce_requests_are_resent_unchanged() -> None:
    _, mobile = node(replay=ReplayProtection.NONCE)
    first = sends(hear(mobile, 0.0))[0]
    retransmitted = sends(mobile.on_timer(1.0))[0]
    assert retransmitted.payload == first.payload


def test_reply_validation() -> None:
    _, mobile = node()
    req = request_of(sends(hear(mobile, 0.0))[0])
    assert answer(mobile, req, 0.1, identification=req.identification ^ 1) == []  # low 32 bits differ
    assert mobile.registration is None
    dropped = answer(mobile, req, 0.1, key=bytes(16))
    assert [getattr(a, "event", None) for a in dropped] == ["packet.dropped"]  # bad MN-HA
    assert answer(mobile, req, 0.1, mn_ha=False)[0].event == "packet.dropped"  # type: ignore[attr-defined]
    assert answer(mobile, req, 0.1, extra_mn_ha=True)[0].event == "packet.dropped"  # type: ignore[attr-defined]
    assert mobile.registration is None
    answer(mobile, req, 0.2)
    assert mobile.registration is not None


def test_foreign_agent_denial_needs_no_mn_ha() -> None:
    _, mobile = node()
    req = request_of(sends(hear(mobile, 0.0))[0])
    actions = answer(mobile, req, 0.1, code=65, mn_ha=False)
    assert next(getattr(a, "event", None) for a in actions) == "registration.denied"


def test_mn_fa_is_required_when_the_node_shares_an_sa_with_the_agent() -> None:
    _, mobile = node(foreign_agents={FA1: SecurityAssociation(700, FA_KEY, FA1)})
    send = sends(hear(mobile, 0.0))[0]
    req = request_of(send)
    assert [e.type for e in req.extensions] == [32, 33]  # 3.6.1.3: MN-FA after MN-HA
    assert answer(mobile, req, 0.1)[0].event == "packet.dropped"  # type: ignore[attr-defined]
    reply = RegistrationReply(0, req.lifetime, MN, HA, req.identification)
    reply = append_authentication(reply, ExtensionType.MOBILE_HOME_AUTHENTICATION, 256, KEY, "hmac-md5")  # type: ignore[arg-type]
    reply = append_authentication(reply, ExtensionType.MOBILE_FOREIGN_AUTHENTICATION, 700, FA_KEY, "hmac-md5")  # type: ignore[arg-type]
    mobile.reply(Datagram(reply.encode(), FA1, 434, MN), 0.2)
    assert mobile.registration is not None


def test_69_retries_with_the_offered_lifetime_and_136_adopts_the_home_agent() -> None:
    _, mobile = node()
    req = request_of(sends(hear(mobile, 0.0))[0])
    answer(mobile, req, 0.1, code=69, lifetime=100, mn_ha=False)
    (retry,) = sends(mobile.on_timer(1.0))
    assert request_of(retry).lifetime == 100
    other = IPv4Address("10.1.0.2")
    answer(mobile, request_of(retry), 1.1, code=136, home_agent=other)
    (retry2,) = sends(mobile.on_timer(2.0))
    assert request_of(retry2).home_agent == other and mobile.home_agent == other


def test_renewal_counts_from_the_request_and_a_shortened_lifetime() -> None:
    _, mobile = node(lifetime=300)
    req = request_of(sends(hear(mobile, 10.0))[0])
    answer(mobile, req, 12.0, lifetime=100)  # the home agent granted less, answering 2 s later
    reg = mobile.registration
    assert reg is not None and reg.expires == 110.0  # from when the request was sent (3.6.2.2)
    assert 10.0 < reg.renew_at < 110.0


def test_sequence_reset_below_256_means_the_agent_rebooted() -> None:
    _, mobile = node()
    req = request_of(sends(hear(mobile, 0.0, sequence=5000))[0])
    answer(mobile, req, 0.1)
    assert not sends(hear(mobile, 1.0, sequence=5001))
    assert not sends(hear(mobile, 2.0, sequence=300))  # rolled over past 0xffff: nothing to do
    actions = hear(mobile, 3.0, sequence=2)  # rebooted (2.4.4): register again
    assert [getattr(a, "event", None) for a in actions if getattr(a, "event", None) == "movement.detected"]
    assert sends(actions)


def test_another_agent_does_not_move_a_registered_node() -> None:
    """3.6: while the current agent still advertises, a new one is no reason to move, unless
    both advertise prefixes and they differ (2.4.2 algorithm 2)."""
    _, mobile = node()
    answer(mobile, request_of(sends(hear(mobile, 0.0))[0]), 0.1)
    assert not sends(hear(mobile, 1.0, agent=FA2, prefix=None))
    assert not sends(hear(mobile, 1.5))  # the current agent, still there
    assert sends(hear(mobile, 2.5, agent=FA2))  # now with a prefix of its own: the node moved


def test_link_up_forgets_the_agents_and_solicits_at_once() -> None:
    _, mobile = node()
    hear(mobile, 0.0)
    actions = mobile.link(True, 5.0)
    assert not mobile.agents.all() and mobile.solicitation.next_at == 5.0
    assert [a for a in mobile.on_timer(5.0) if isinstance(a, SendIcmp)]
    assert actions is not None


def test_a_link_change_to_a_link_without_agents_leaves_the_foreign_agent_for_a_co_located_address() -> None:
    """2.4, 4.6: after the carrier came back (the node may have moved) the agent of the registration
    is forgotten like any other; with no agent heard and a co-located address on the new link, the node
    registers co-located instead of staying with an agent it no longer hears (what a restart keeps
    until the agent is heard again, but a link change does not)."""
    _, mobile = node()
    answer(mobile, request_of(sends(hear(mobile, 0.0))[0]), 0.1)
    assert mobile.registration is not None and mobile.registration.care_of_address == FA1
    mobile.link(False, 5.0)
    mobile.link(True, 5.1)
    (sent,) = sends(mobile.addresses([IPv4Interface("10.6.0.50/24")], 5.2))
    req = request_of(sent)
    assert req.care_of_address == IPv4Address("10.6.0.50") and RequestFlags.D in req.flags


def test_after_a_link_change_the_old_links_lease_waits_for_an_agent_or_a_new_lease() -> None:
    """The address held when the carrier came back may be the lease of the link left (a DHCP client
    drops it a moment later): for LINK_CHANGE_GRACE it is no care-of address, so an agent heard on the
    new link, or a new lease, wins."""
    for then in ("agent", "lease"):
        _, mobile = node()
        answer(mobile, request_of(sends(hear(mobile, 0.0))[0]), 0.1)
        assert not sends(mobile.addresses([IPv4Interface("10.2.0.50/24")], 0.2))  # a lease too: the agent stays
        mobile.link(False, 5.0)
        assert not sends(mobile.link(True, 5.1))  # the old link's lease: not yet a care-of address
        deadline = mobile.next_timer()
        assert deadline is not None and deadline <= 5.1 + LINK_CHANGE_GRACE
        if then == "agent":
            (sent,) = sends(hear(mobile, 5.3, agent=FA2))
            assert request_of(sent).care_of_address == FA2
        else:
            (sent,) = sends(mobile.addresses([IPv4Interface("10.6.0.50/24")], 5.3))
            assert request_of(sent).care_of_address == IPv4Address("10.6.0.50")


def test_after_a_carrier_blip_on_the_same_link_the_lease_is_used_after_the_grace() -> None:
    _, mobile = node(care_of="colocated")
    answer(mobile, request_of(sends(mobile.addresses([IPv4Interface("10.6.0.50/24")], 0.1))[0]), 0.2)
    mobile.link(False, 50.0)
    mobile.link(True, 50.1)
    lease = mobile.registration
    assert lease is not None
    now, sent = 50.1, []
    while not sent and now < 50.1 + 400:
        deadline = mobile.next_timer()
        assert deadline is not None
        now = deadline
        sent = [request_of(a) for a in sends(mobile.on_timer(now))]
    assert sent and sent[0].care_of_address == IPv4Address("10.6.0.50") and sent[0].lifetime > 0


def test_stop_deregisters_when_away() -> None:
    _, mobile = node()
    answer(mobile, request_of(sends(hear(mobile, 0.0))[0]), 0.1)
    (dereg,) = sends(mobile.stop(5.0))
    req = request_of(dereg)
    assert req.lifetime == 0 and req.care_of_address == FA1
    _, quiet = node(deregister_on_stop=False)
    answer(quiet, request_of(sends(hear(quiet, 0.0))[0]), 0.1)
    assert quiet.stop(5.0) == []


def test_stop_within_a_second_of_a_registration_still_deregisters() -> None:
    """The once-a-second rule defers the deregistration, it does not skip it; nothing else follows."""
    _, mobile = node()
    answer(mobile, request_of(sends(hear(mobile, 0.0))[0]), 0.05)
    assert mobile.registration is not None
    assert sends(mobile.stop(0.3)) == []  # 0.3 s after the request: not yet
    assert mobile.stop_pending and mobile.next_timer() == 1.0
    (dereg,) = sends(mobile.on_timer(1.0))
    req = request_of(dereg)
    assert (req.lifetime, req.care_of_address, dereg.destination) == (0, FA1, FA1)
    assert mobile.stop_pending  # sent, not answered yet
    later = answer(mobile, req, 1.05)
    assert not mobile.stop_pending and mobile.registration is None
    assert sends(later) == []  # still away with an agent heard, yet no new registration
    now = 1.05
    for _ in range(20):  # nor from the timers (the agent's advertisement lifetime, solicitations)
        deadline = mobile.next_timer()
        if deadline is None:
            break
        now = max(now, deadline)
        assert sends(mobile.on_timer(now)) == []
        hear(mobile, now)  # the agent keeps advertising
    assert mobile.registration is None


def test_stop_during_a_renewal_deregisters_instead_of_retransmitting_it() -> None:
    _, mobile = node(lifetime=10)
    first = request_of(sends(hear(mobile, 0.0, registration_lifetime=10))[0])
    answer(mobile, first, 0.05)
    renewal = sends(mobile.on_timer(mobile.registration.renew_at))  # type: ignore[union-attr]
    assert request_of(renewal[0]).lifetime == 10
    assert sends(mobile.stop(8.2)) == []  # 0.2 s after the renewal
    assert sends(mobile.on_timer(8.9)) == []  # the renewal's retransmission is not due nor sent
    (dereg,) = sends(mobile.on_timer(9.0))
    assert request_of(dereg).lifetime == 0
    denied = answer(mobile, request_of(dereg), 9.1, code=133)  # resynchronised: still a deregistration
    resent = sends(denied) + sends(mobile.on_timer(10.0))
    assert [request_of(s).lifetime for s in resent] == [0]
    answer(mobile, request_of(resent[0]), 10.1)
    assert not mobile.stop_pending


def test_stop_with_the_first_registration_unanswered_deregisters_it_too() -> None:
    """The home agent may have accepted the request whose reply is still on its way."""
    _, mobile = node()
    first = request_of(sends(hear(mobile, 0.0))[0])
    assert mobile.registration is None and sends(mobile.stop(0.2)) == []
    assert sends(answer(mobile, first, 0.3)) == [] and mobile.registration is None  # superseded: dropped
    (dereg,) = sends(mobile.on_timer(1.0))
    assert (request_of(dereg).lifetime, request_of(dereg).care_of_address) == (0, FA1)


def test_stop_while_not_registered_sends_nothing() -> None:
    _, mobile = node()
    mobile.start(0.0)
    assert mobile.stop(0.5) == [] and not mobile.stop_pending


def test_stop_without_deregister_on_stop_drops_a_deferred_registration() -> None:
    _, mobile = node(deregister_on_stop=False)
    first = request_of(sends(hear(mobile, 0.0))[0])
    answer(mobile, first, 0.05)
    assert sends(hear(mobile, 0.5, agent=FA2, sequence=1, prefix=16)) == []  # a move, deferred by the 1 s rule
    assert mobile.next_timer() == 1.0
    assert mobile.stop(0.6) == [] and not mobile.stop_pending
    assert sends(mobile.on_timer(1.0)) == []  # nothing is sent once stopped


def test_stop_back_home_lets_the_deferred_deregistration_go() -> None:
    _, mobile = node()
    answer(mobile, request_of(sends(hear(mobile, 0.0))[0]), 0.05)
    assert sends(hear(mobile, 0.5, agent=HA, home=True)) == []  # home: the deregistration waits for 1.0
    assert mobile.stop(0.6) == [] and mobile.stop_pending
    (dereg,) = sends(mobile.on_timer(1.0))
    assert (request_of(dereg).lifetime, request_of(dereg).care_of_address) == (0, MN)


def test_state_survives_a_restart() -> None:
    world, mobile = node()
    answer(mobile, request_of(sends(hear(mobile, 0.0))[0]), 0.1)
    stored = mobile.snapshot(0.1)
    world.now = 30.0  # the wall clock 30 s later; the new process's monotonic clock starts elsewhere
    fresh = MobileNode(mobile.settings, wall_clock=world.mn_wall, random32=lambda: 7, random=lambda: 0.5)
    fresh.restore(stored, 2.0)
    reg = fresh.registration
    assert reg is not None and reg.care_of_address == FA1 and fresh.location == "foreign-agent"
    assert 268 <= reg.expires - 2.0 <= 270.1  # about 300 - 30 s remain
    plane = fresh.plane()
    assert (plane.location, plane.agent, plane.agent_link_address) == ("foreign-agent", FA1, FA_MACS[FA1])
    next_request = request_of(sends(fresh.on_timer(reg.renew_at))[0])
    assert next_request.identification > stored.last_identification
    assert ident.high32(next_request.identification) > 0 and replace is not None


def test_home_is_known_from_the_home_agent_or_the_home_prefix() -> None:
    _, mobile = node()
    answer(mobile, request_of(sends(hear(mobile, 0.0))[0]), 0.1)
    assert mobile.location == "foreign-agent"
    # A foreign agent (no H) whose advertised prefix is the home network: the node is home.
    home_router = IPv4Address("10.1.0.254")
    actions = mobile.advertisement(advertisement(home_router, prefix=24), home_router, bytes(6), 1.5)
    assert mobile.location == "home"
    assert [request_of(s).lifetime for s in sends(actions)] == [0]  # deregistration
    _, other = node()
    other.advertisement(advertisement(FA2, prefix=16), FA2, bytes(6), 0.0)  # 10.3.0.0/16: not home
    assert other.location != "home"


def test_a_malformed_reply_is_a_counted_logged_drop() -> None:
    _, mobile = node()
    req = request_of(sends(hear(mobile, 0.0))[0])
    dropped = mobile.reply(Datagram(b"\x03\x00\x02", HA, 434, MN), 0.1)  # a reply cut off after 3 bytes
    assert [(a.event, a.fields["reason"]) for a in dropped] == [("packet.dropped", "malformed")]  # type: ignore[attr-defined]
    assert mobile.counters.dropped["malformed"] == 1 and mobile.counters.requests_received == 1
    answer(mobile, req, 0.2)
    assert mobile.registration is not None  # the attempt in flight was not disturbed
