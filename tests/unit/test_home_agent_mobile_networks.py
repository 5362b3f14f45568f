"""The home agent engine as a mobile router's home agent: RFC 5177 section 6, rule by rule."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from mipd.core.actions import Emit, PersistNode, ReplayState
from mipd.core.home_agent import HomeAgent, NodeRecord
from mipd.core.planes import DataPlane
from mipd.core.wire.auth import verify
from mipd.core.wire.codes import ReplyCode
from mipd.core.wire.mobile_network import MobileNetworkAcknowledgement, MobileNetworkRequest
from mipd.core.wire.registration import RegistrationReply, RequestFlags
from mipd.core.wire.tunnel import Encapsulation
from tests.support.registration import (
    COA,
    COA2,
    FA,
    FA_KEY,
    HA,
    KEY,
    MN,
    MN2,
    Clock,
    datagram,
    engine,
    events,
    only_reply,
    request,
)

F = RequestFlags
LAN = IPv4Network("192.168.50.0/24")
LAN2 = IPv4Network("192.168.60.0/24")
OTHER = IPv4Network("172.16.9.0/24")
SUCCESS, INVALID_LENGTH, UNAUTHORIZED, FORWARDING_FAILED = 0, 1, 2, 3
EXPLICIT, IMPLICIT = 1, 2


@pytest.fixture
def clock() -> Clock:
    return Clock(now=100.0)


def router(clock: Clock, *prefixes: IPv4Network, **overrides: object) -> HomeAgent:
    """A home agent whose node MN may serve ``prefixes`` (default: LAN and LAN2)."""
    return engine(clock, mobile_networks={MN: prefixes or (LAN, LAN2)}, **overrides)


def ask(*networks: IPv4Network | tuple[int, str]) -> tuple[MobileNetworkRequest, ...]:
    out = []
    for n in networks:
        length, prefix = (n.prefixlen, str(n.network_address)) if isinstance(n, IPv4Network) else n
        out.append(MobileNetworkRequest(length, IPv4Address(prefix)))
    return tuple(out)


def register(ha: HomeAgent, clock: Clock, *networks: IPv4Network | tuple[int, str], source: IPv4Address = COA,
             **kwargs: object) -> RegistrationReply:
    clock.now += 1
    kwargs.setdefault("flags", F.D | F.T)
    reply = only_reply(ha.receive(datagram(request(clock, before=ask(*networks), **kwargs), source), clock.now))[1]
    return reply


def acks(reply: RegistrationReply) -> list[tuple[int, int, str]]:
    """(sub-type, code, prefix/length) of each acknowledgement, in order."""
    return [(e.sub_type, e.code, f"{e.prefix}/{e.prefix_length}") for e in reply.extensions
            if isinstance(e, MobileNetworkAcknowledgement)]


def routed(ha: HomeAgent) -> dict[IPv4Address, tuple[IPv4Network, ...]]:
    return {plane.home_address: plane.prefixes for plane in ha.data_plane()}


# --- explicit mode (6.3) ---

def test_explicit_mode_each_requested_prefix_is_acknowledged_and_routed(clock: Clock) -> None:
    ha = router(clock)
    reply = register(ha, clock, LAN, LAN2)
    assert reply.code == 0
    assert acks(reply) == [(EXPLICIT, SUCCESS, "192.168.50.0/24"), (EXPLICIT, SUCCESS, "192.168.60.0/24")]
    binding = ha.bindings.get(MN, COA)
    assert binding is not None and binding.prefixes == (LAN, LAN2)  # 6.2.1: stored with the binding
    assert routed(ha) == {MN: (LAN, LAN2)}  # 6.1 step 4: routed via the tunnel


def test_acknowledgements_precede_the_mn_ha_authenticator_which_covers_them(clock: Clock) -> None:
    reply = register(router(clock), clock, LAN)
    types = [e.type for e in reply.extensions]
    assert types == [148, 32]
    assert verify(reply, 1, KEY, "hmac-md5")  # type: ignore[arg-type]


def test_a_prefix_inside_a_configured_one_is_authorised(clock: Clock) -> None:
    reply = register(router(clock), clock, IPv4Network("192.168.50.128/25"))
    assert acks(reply) == [(EXPLICIT, SUCCESS, "192.168.50.128/25")]


def test_an_unconfigured_prefix_is_mobnet_unauthorized_and_not_routed(clock: Clock) -> None:
    ha = router(clock)
    reply = register(ha, clock, LAN, OTHER, IPv4Network("192.168.48.0/22"))
    assert reply.code == 0
    assert acks(reply) == [(EXPLICIT, SUCCESS, "192.168.50.0/24"), (EXPLICIT, UNAUTHORIZED, "172.16.9.0/24"),
                           (EXPLICIT, UNAUTHORIZED, "192.168.48.0/22")]  # wider than the configured /24
    assert routed(ha) == {MN: (LAN,)}


@pytest.mark.parametrize("length", [0, 33, 255])
def test_prefix_length_zero_or_above_32_is_mobnet_invalid_prefix_len(clock: Clock, length: int) -> None:
    reply = register(router(clock), clock, LAN, (length, "192.168.50.0"))
    assert acks(reply)[1] == (EXPLICIT, INVALID_LENGTH, f"192.168.50.0/{length}")
    assert reply.code == 0


def test_a_prefix_holding_the_care_of_address_is_mobnet_fwding_setup_failed(clock: Clock) -> None:
    ha = router(clock, LAN, IPv4Network("10.5.0.0/16"))  # COA is 10.5.0.5
    reply = register(ha, clock, LAN, IPv4Network("10.5.0.0/16"))
    assert acks(reply) == [(EXPLICIT, SUCCESS, "192.168.50.0/24"), (EXPLICIT, FORWARDING_FAILED, "10.5.0.0/16")]
    assert routed(ha) == {MN: (LAN,)}


def test_every_prefix_failing_is_147_with_the_acknowledgements_and_no_binding(clock: Clock) -> None:
    ha = router(clock)
    reply = register(ha, clock, OTHER, (0, "0.0.0.0"))
    assert reply.code == ReplyCode.HA_MOBNET_ERROR == 147
    assert reply.lifetime == 0
    assert acks(reply) == [(EXPLICIT, UNAUTHORIZED, "172.16.9.0/24"), (EXPLICIT, INVALID_LENGTH, "0.0.0.0/0")]
    assert verify(reply, 2, KEY, "hmac-md5")  # type: ignore[arg-type]
    assert ha.bindings.get(MN, COA) is None and routed(ha) == {}
    assert ha.counters.denied[147] == 1


def test_147_leaves_the_current_binding_and_its_prefixes(clock: Clock) -> None:
    ha = router(clock)
    register(ha, clock, LAN)
    assert register(ha, clock, OTHER).code == 147
    binding = ha.bindings.get(MN, COA)
    assert binding is not None and binding.prefixes == (LAN,)


def test_prefixes_from_a_node_that_is_no_mobile_router_are_148(clock: Clock) -> None:
    ha = engine(clock)  # no mobile_networks for anyone
    reply = register(ha, clock, LAN)
    assert reply.code == ReplyCode.HA_MOBNET_DISALLOWED == 148
    assert acks(reply) == []
    assert ha.bindings.get(MN, COA) is None


def test_148_concerns_only_the_node_without_prefixes(clock: Clock) -> None:
    ha = engine(clock, mobile_networks={MN2: (LAN,)})  # MN2 is a router, MN is not
    assert register(ha, clock, LAN).code == 148


def test_host_bits_in_a_requested_prefix_are_cleared_and_the_ack_repeats_it(clock: Clock) -> None:
    ha = router(clock)
    reply = register(ha, clock, (24, "192.168.50.7"))
    assert acks(reply) == [(EXPLICIT, SUCCESS, "192.168.50.7/24")]
    assert routed(ha) == {MN: (LAN,)}


def test_a_prefix_requested_twice_is_acknowledged_twice_and_routed_once(clock: Clock) -> None:
    ha = router(clock)
    assert [a[1] for a in acks(register(ha, clock, LAN, LAN))] == [SUCCESS, SUCCESS]
    assert routed(ha) == {MN: (LAN,)}


def test_prefix_extensions_after_the_mn_ha_authenticator_are_not_the_nodes(clock: Clock) -> None:
    ha = router(clock)
    clock.now += 1
    req = request(clock, flags=F.D | F.T, after=ask(OTHER))  # after MN-HA: not covered by it
    reply = only_reply(ha.receive(datagram(req), clock.now))[1]
    assert reply.code == 0 and acks(reply) == [(IMPLICIT, SUCCESS, "192.168.50.0/24"),
                                               (IMPLICIT, SUCCESS, "192.168.60.0/24")]


# --- implicit mode (6.3, 6.1) ---

def test_implicit_mode_routes_every_configured_prefix_with_implicit_acknowledgements(clock: Clock) -> None:
    ha = router(clock)
    reply = register(ha, clock)
    assert reply.code == 0
    assert acks(reply) == [(IMPLICIT, SUCCESS, "192.168.50.0/24"), (IMPLICIT, SUCCESS, "192.168.60.0/24")]
    assert routed(ha) == {MN: (LAN, LAN2)}


def test_implicit_mode_with_no_usable_prefix_is_147(clock: Clock) -> None:
    ha = router(clock, IPv4Network("10.5.0.0/16"))
    reply = register(ha, clock)
    assert reply.code == 147 and acks(reply) == [(IMPLICIT, FORWARDING_FAILED, "10.5.0.0/16")]


def test_an_ordinary_node_gets_no_acknowledgement(clock: Clock) -> None:
    reply = register(engine(clock, mobile_networks={MN2: (LAN,)}), clock)
    assert reply.code == 0 and acks(reply) == []


# --- re-registration, deregistration, expiry (6.3, 6.7) ---

def test_re_registration_drops_prefixes_no_longer_requested(clock: Clock) -> None:
    ha = router(clock)
    register(ha, clock, LAN, LAN2)
    clock.now += 1
    actions = ha.receive(datagram(request(clock, flags=F.D | F.T, before=ask(LAN2))), clock.now)
    assert [a.prefixes for a in actions if isinstance(a, DataPlane)] == [(LAN2,)]
    binding = ha.bindings.get(MN, COA)
    assert binding is not None and binding.prefixes == (LAN2,)
    renewed = next(a for a in actions if isinstance(a, Emit) and a.event == "binding.renewed")
    assert renewed.fields["mobile_networks"] == "192.168.60.0/24"
    assert renewed.priority <= 6  # a change of prefixes is no pure renewal: info, not debug


def test_deregistration_ignores_prefix_extensions_and_removes_all(clock: Clock) -> None:
    ha = router(clock)
    register(ha, clock, LAN)
    reply = register(ha, clock, OTHER, lifetime=0, coa=MN)  # 6.7: the extensions are ignored
    assert reply.code == 0 and acks(reply) == []
    assert ha.bindings.of(MN) == () and routed(ha) == {}


def test_deregistration_of_a_node_that_is_no_router_ignores_its_prefixes(clock: Clock) -> None:
    ha = engine(clock)
    assert register(ha, clock, LAN, lifetime=0, coa=MN).code == 0


def test_expiry_removes_the_prefixes(clock: Clock) -> None:
    ha = router(clock)
    register(ha, clock, LAN, lifetime=30)
    clock.now += 31
    actions = ha.on_timer(clock.now)
    assert [a for a in actions if isinstance(a, DataPlane)] == [DataPlane(MN, (), ())]
    expired = next(a for a in actions if isinstance(a, Emit) and a.event == "binding.expired")
    assert expired.fields["mobile_networks"] == "192.168.50.0/24"
    assert routed(ha) == {}


def test_a_move_keeps_the_prefixes_on_the_new_binding(clock: Clock) -> None:
    ha = router(clock)
    register(ha, clock, LAN)
    register(ha, clock, LAN, coa=COA2, source=COA2)
    assert ha.bindings.get(MN, COA) is None
    assert [(p.endpoints[0].care_of_address, p.prefixes) for p in ha.data_plane()] == [(COA2, (LAN,))]


def test_a_duplicate_request_is_answered_with_the_same_acknowledgements(clock: Clock) -> None:
    ha = router(clock)
    clock.now += 1
    req = request(clock, flags=F.D | F.T, before=ask(LAN, OTHER))
    first = only_reply(ha.receive(datagram(req), clock.now))[1]
    again = only_reply(ha.receive(datagram(req), clock.now + 1))[1]
    assert acks(again) == acks(first) and again.code == 0


# --- events, persistence, restore ---

def test_binding_events_carry_the_prefixes(clock: Clock) -> None:
    ha = router(clock)
    clock.now += 1
    actions = ha.receive(datagram(request(clock, flags=F.D | F.T, before=ask(LAN, LAN2))), clock.now)
    added = next(a for a in actions if isinstance(a, Emit) and a.event == "binding.added")
    assert added.fields["mobile_networks"] == "192.168.50.0/24,192.168.60.0/24"
    assert events(actions) == ["binding.added", "registration.accepted"]
    persist = next(a for a in actions if isinstance(a, PersistNode))
    assert persist.bindings[0].prefixes == (LAN, LAN2)


def test_an_ordinary_binding_event_has_no_prefix_field(clock: Clock) -> None:
    ha = engine(clock)
    clock.now += 1
    actions = ha.receive(datagram(request(clock, flags=F.D)), clock.now)
    added = next(a for a in actions if isinstance(a, Emit) and a.event == "binding.added")
    assert "mobile_networks" not in added.fields


def test_restore_brings_back_the_prefixes_in_the_data_plane(clock: Clock) -> None:
    ha = router(clock)
    register(ha, clock, LAN)
    stored = ha.bindings.get(MN, COA)
    assert stored is not None
    wall = stored.expires + clock.wall_offset
    fresh = router(clock)
    fresh.restore([NodeRecord(MN, (replace(stored, expires=wall),), ReplayState())], clock.now)
    assert routed(fresh) == {MN: (LAN,)}


def test_a_mobile_routers_renewal_never_takes_the_fast_path(clock: Clock) -> None:
    ha = router(clock)
    register(ha, clock)  # implicit
    clock.now += 1
    reply = only_reply(ha.receive(datagram(request(clock, flags=F.D | F.T)), clock.now))[1]
    assert acks(reply) == [(IMPLICIT, SUCCESS, "192.168.50.0/24"), (IMPLICIT, SUCCESS, "192.168.60.0/24")]
    assert ha.counters.renewals == 1


def test_the_home_agents_own_address_can_never_be_in_a_routed_prefix(clock: Clock) -> None:
    ha = router(clock, LAN, IPv4Network("10.0.0.0/8"))  # holds HA (10.1.0.1): mipd check refuses it anyway
    reply = register(ha, clock, IPv4Network("10.0.0.0/8"), LAN, coa=IPv4Address("172.20.0.2"),
                     source=IPv4Address("172.20.0.2"))
    assert acks(reply)[0] == (EXPLICIT, FORWARDING_FAILED, "10.0.0.0/8")
    assert HA in IPv4Network("10.0.0.0/8")


def test_without_nesting_a_foreign_agent_care_of_address_gets_mobnet_fwding_setup_failed(clock: Clock) -> None:
    # A backend that nests through GRE only: 6.3, forwarding setup fails for IP-in-IP (both of mipd's nest through any).
    ha = router(clock, mobile_network_nesting=frozenset({Encapsulation.GRE}),
                encapsulations=frozenset({Encapsulation.IPIP, Encapsulation.GRE}))
    reply = register(ha, clock, LAN, flags=F.T, coa=FA, source=FA, fa_ha=(300, FA_KEY))
    assert reply.code == 147 and acks(reply) == [(EXPLICIT, FORWARDING_FAILED, "192.168.50.0/24")]
    reply = register(ha, clock, LAN, flags=F.T | F.G, coa=FA, source=FA, fa_ha=(300, FA_KEY))
    assert reply.code == 0 and acks(reply) == [(EXPLICIT, SUCCESS, "192.168.50.0/24")]  # GRE to the FA: nests
    assert register(ha, clock, LAN).code == 0  # co-located: no nesting needed


def test_with_nesting_a_foreign_agent_care_of_address_is_served(clock: Clock) -> None:
    ha = router(clock)
    reply = register(ha, clock, LAN, flags=F.T, coa=FA, source=FA, fa_ha=(300, FA_KEY))
    assert reply.code == 0 and acks(reply) == [(EXPLICIT, SUCCESS, "192.168.50.0/24")]
    plane = ha.data_plane()[0]
    assert plane.prefixes == (LAN,) and not plane.endpoints[0].decapsulates


def test_a_reload_applies_the_prefix_table_to_the_next_registration(clock: Clock) -> None:
    ha = router(clock)
    register(ha, clock, LAN, LAN2)
    ha.reconfigure(replace(ha.settings, mobile_networks={MN: (LAN2,)}))
    binding = ha.bindings.get(MN, COA)
    assert binding is not None and binding.prefixes == (LAN, LAN2)  # bindings stay as they are
    reply = register(ha, clock, LAN, LAN2)
    assert acks(reply) == [(EXPLICIT, UNAUTHORIZED, "192.168.50.0/24"), (EXPLICIT, SUCCESS, "192.168.60.0/24")]
    assert routed(ha) == {MN: (LAN2,)}
    ha.reconfigure(replace(ha.settings, mobile_networks={}))
    assert register(ha, clock, LAN2).code == 148
    reply = register(ha, clock)  # no longer a router: an ordinary renewal, its prefixes dropped
    assert reply.code == 0 and acks(reply) == [] and routed(ha) == {MN: ()}
