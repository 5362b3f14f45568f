"""The mobile node asks for GRE (or minimal encapsulation) as its tunnel.encapsulations prefer,
where it may (co-located, or through an agent that advertises it), and falls back to IP-in-IP
after 139 / 72 without asking again (RFC 5944 3.3, 2.1.1, 3.4; mip.yaml(5))."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Interface

import pytest

from mipd.core.actions import SendDatagram
from mipd.core.planes import Endpoint, MobilePlane
from mipd.core.wire.icmp import AdvertisementFlags
from mipd.core.wire.registration import RequestFlags
from mipd.core.wire.tunnel import Encapsulation
from tests.support.scenario import FA1, HA, Network, build
from tests.unit.test_mobile_node import answer, hear, node, request_of, sends

IPIP, GRE, MINIMAL = Encapsulation.IPIP, Encapsulation.GRE, Encapsulation.MINIMAL
COLOCATED = IPv4Interface("10.9.0.5/24")
ENCAPSULATION_FLAGS = RequestFlags.G | RequestFlags.M


@pytest.mark.parametrize(("preference", "flag"), [
    ((GRE, IPIP), RequestFlags.G),
    ((GRE, MINIMAL, IPIP), RequestFlags.G),
    ((MINIMAL, GRE, IPIP), RequestFlags.M),
    ((IPIP, GRE), RequestFlags(0)),  # IP-in-IP preferred: neither bit
    ((IPIP,), RequestFlags(0)),
])
def test_colocated_asks_for_the_first_preferred_encapsulation(preference: tuple[Encapsulation, ...],
                                                               flag: RequestFlags) -> None:
    _, mobile = node(colocated=COLOCATED, encapsulations=preference)
    (send,) = sends(mobile.start(0.0))
    req = request_of(send)
    assert req.flags & RequestFlags.D and req.care_of_address == COLOCATED.ip
    assert req.flags & ENCAPSULATION_FLAGS == flag


def test_through_a_foreign_agent_only_what_it_advertises() -> None:
    _, mobile = node(encapsulations=(GRE, IPIP))
    (send,) = sends(hear(mobile, 0.0, flags=AdvertisementFlags.F))  # no G: it cannot decapsulate GRE
    assert not request_of(send).flags & ENCAPSULATION_FLAGS
    _, mobile = node(encapsulations=(MINIMAL, GRE, IPIP))
    (send,) = sends(hear(mobile, 0.0, flags=AdvertisementFlags.F | AdvertisementFlags.G))
    assert request_of(send).flags & ENCAPSULATION_FLAGS == RequestFlags.G  # minimal skipped: not advertised


def test_deregistration_asks_for_no_encapsulation() -> None:
    _, mobile = node(colocated=COLOCATED, encapsulations=(GRE, IPIP))
    answer(mobile, request_of(sends(mobile.start(0.0))[0]), 0.1)
    (dereg,) = sends(mobile.stop(5.0))
    assert request_of(dereg).lifetime == 0 and not request_of(dereg).flags & ENCAPSULATION_FLAGS


def test_granted_gre_is_the_co_located_reverse_tunnels_encapsulation() -> None:
    _, mobile = node(colocated=COLOCATED, encapsulations=(GRE, IPIP), reverse_tunneling=True)
    actions = mobile.start(0.0)
    (before,) = [a for a in actions if isinstance(a, MobilePlane)]
    assert before.encapsulation is IPIP  # not granted yet
    accepted = answer(mobile, request_of(sends(actions)[0]), 0.1)
    (plane,) = [a for a in accepted if isinstance(a, MobilePlane)]
    assert (plane.location, plane.encapsulation, plane.reverse) == ("colocated", GRE, True)
    assert mobile.plane().encapsulation is GRE


def test_139_falls_back_to_ip_in_ip_and_does_not_ask_again() -> None:
    _, mobile = node(colocated=COLOCATED, encapsulations=(GRE, IPIP), lifetime=10)
    first = request_of(sends(mobile.start(0.0))[0])
    assert first.flags & RequestFlags.G
    assert sends(answer(mobile, first, 0.1, code=139)) == []  # the once-a-second rule
    (retry,) = sends(mobile.on_timer(1.0))
    second = request_of(retry)
    assert not second.flags & ENCAPSULATION_FLAGS and second.flags & RequestFlags.D
    accepted = answer(mobile, second, 1.1)
    assert mobile.registration is not None
    assert [a.encapsulation for a in accepted if isinstance(a, MobilePlane)] == [IPIP]
    renew_at = mobile.registration.renew_at
    (renewal,) = sends(mobile.on_timer(renew_at))
    assert not request_of(renewal).flags & ENCAPSULATION_FLAGS  # 139 remembered: no loop
    assert mobile.counters.denied == {139: 1}


def test_139_without_g_or_m_is_not_retried_at_once() -> None:
    _, mobile = node(colocated=COLOCATED)
    first = request_of(sends(mobile.start(0.0))[0])
    assert sends(answer(mobile, first, 0.1, code=139)) == []
    sent_at = []
    now = 0.1
    while (deadline := mobile.next_timer()) is not None and deadline < 40.0:
        now = max(now, deadline)
        sent_at += [now for _ in sends(mobile.on_timer(now))]
    assert sent_at and sent_at[0] >= 30.0  # the ordinary wait after a denial, not a loop


def test_72_from_the_foreign_agent_falls_back_for_that_agent() -> None:
    _, mobile = node(encapsulations=(GRE, IPIP))
    first = request_of(sends(hear(mobile, 0.0, flags=AdvertisementFlags.F | AdvertisementFlags.G))[0])
    assert first.flags & RequestFlags.G
    answer(mobile, first, 0.1, code=72, mn_ha=False)
    (retry,) = sends(mobile.on_timer(1.0))
    assert request_of(retry).care_of_address == FA1 and not request_of(retry).flags & ENCAPSULATION_FLAGS


@pytest.mark.parametrize(("offered", "granted"), [(frozenset({IPIP}), IPIP), (frozenset({IPIP, GRE}), GRE)])
def test_with_the_real_home_agent_engine(offered: frozenset[Encapsulation], granted: Encapsulation) -> None:
    world, mobile, fas, ha = build(colocated=COLOCATED, encapsulations=(GRE, IPIP))
    ha.settings = replace(ha.settings, encapsulations=offered)
    net = Network(world, mobile, fas, ha)
    net.deliver(mobile.start(world.now), mobile)
    net.run_until(5.0)
    (binding,) = ha.bindings.of(mobile.settings.home_address)
    endpoint = Endpoint.for_request(binding.care_of_address, HA, binding.flags)
    assert (binding.care_of_address, endpoint.encapsulation) == (COLOCATED.ip, granted)
    assert net.planes[-1].encapsulation is granted and net.planes[-1].care_of_address == COLOCATED.ip
    requests = [a for a in world.log if isinstance(a, SendDatagram) and a.destination == HA]
    assert len(requests) == (1 if granted is GRE else 2)  # one fallback, no loop
