"""The advertiser (RFC 5944 2.1, 2.3, 2.3.2) with an explicit clock and injected randomness."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface

import pytest

from mipd.core.actions import SendIcmp
from mipd.core.advertiser import Advertiser, AdvertiserConfig
from mipd.core.wire.addresses import LIMITED_BROADCAST
from mipd.core.wire.icmp import (
    ALL_SYSTEMS,
    AdvertisementCode,
    AdvertisementFlags,
    AgentAdvertisement,
    MobilityAgentExtension,
    PrefixLengthsExtension,
    RouterAddress,
    decode_icmp,
)

A = AdvertisementFlags
HA_CONFIG = AdvertiserConfig(routers=(IPv4Interface("10.1.0.1/24"),), flags=A.H | A.T, registration_lifetime=900,
                             lifetime=3, code=AdvertisementCode.ROUTES_COMMON_TRAFFIC, interval=1.0)
COA = IPv4Address("10.2.0.2")
FA_CONFIG = AdvertiserConfig(routers=(IPv4Interface("10.2.0.2/16"),), flags=A.F | A.R | A.G, care_of_addresses=(COA,),
                             registration_lifetime=600, destination=LIMITED_BROADCAST, interval=0.5, lifetime=2)
SOURCE = IPv4Address("10.1.0.50")


class Random:
    """Returns the given values in turn (then the last one forever)."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def __call__(self) -> float:
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


def decoded(actions: list[SendIcmp]) -> list[AgentAdvertisement]:
    out = []
    for action in actions:
        message = decode_icmp(action.payload)
        assert isinstance(message, AgentAdvertisement)
        out.append(message)
    return out


def sequences(actions: list[SendIcmp]) -> list[int]:
    return [m.mobility.sequence for m in decoded(actions) if m.mobility is not None]


# --- the message (2.1, 2.1.1, 2.1.2) ---

def test_home_agent_advertisement_decodes_back() -> None:
    [action] = Advertiser(HA_CONFIG, random=Random(0.5)).start(10.0)
    assert action.destination == ALL_SYSTEMS and action.ttl == 1
    message = decode_icmp(action.payload)
    assert message == AgentAdvertisement(
        lifetime=3, code=AdvertisementCode.ROUTES_COMMON_TRAFFIC,
        addresses=(RouterAddress(IPv4Address("10.1.0.1"), 0),),
        extensions=(MobilityAgentExtension(0, 900, A.H | A.T, ()), PrefixLengthsExtension((24,))),
    )


def test_foreign_agent_advertisement_carries_its_care_of_address() -> None:
    [action] = Advertiser(FA_CONFIG, random=Random(0.5)).start(0.0)
    assert action.destination == LIMITED_BROADCAST
    [message] = decoded([action])
    assert message.code == AdvertisementCode.MOBILITY_AGENT_ONLY
    assert message.mobility == MobilityAgentExtension(0, 600, A.F | A.R | A.G, (COA,))
    assert message.prefix_lengths == PrefixLengthsExtension((16,))


def test_prefix_lengths_extension_can_be_left_out() -> None:
    config = replace(HA_CONFIG, prefix_lengths_extension=False)
    [message] = decoded(Advertiser(config, random=Random(0.5)).start(0.0))
    assert message.prefix_lengths is None and message.mobility is not None


@pytest.mark.parametrize(("changes", "complaint"), [
    ({"flags": A.F}, "no care-of address"),
    ({"flags": A.H, "care_of_addresses": (COA,)}, "without F"),
    ({"flags": A.T}, "at least one of F and H"),
    ({"flags": A.H | A.B}, "B must not be set without F"),
    ({"flags": A.H | A.R}, "R must not be set without F"),
    ({"flags": A.H | A.r}, "reserved"),
    ({"destination": IPv4Address("224.0.0.11")}, "neither 224.0.0.1"),
    ({"registration_lifetime": 0x10000}, "16 bits"),
    ({"lifetime": 0}, "advertisement lifetime"),
    ({"interval": 0.0}, "positive"),
    ({"jitter": 1.0}, "jitter"),
])
def test_flag_and_field_constraints(changes: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        replace(HA_CONFIG, **changes)  # type: ignore[arg-type]


def test_busy_and_registration_required_are_fine_with_f() -> None:
    replace(FA_CONFIG, flags=A.F | A.B | A.R | A.H | A.T | A.M)


# --- schedule (2.3; RFC 1256 4.1) ---

def test_interval_is_an_upper_bound_with_jitter_below_it() -> None:
    config = replace(HA_CONFIG, interval=2.0, jitter=0.25)
    advertiser = Advertiser(config, random=Random(0.0, 0.999999, 0.5))
    assert advertiser.next_timer() is None  # nothing before start
    advertiser.start(100.0)
    assert advertiser.next_timer() == pytest.approx(102.0)  # random 0: the full interval
    assert advertiser.on_timer(101.9) == []  # not yet due
    assert len(advertiser.on_timer(102.0)) == 1
    deadline = advertiser.next_timer()
    assert deadline is not None and deadline == pytest.approx(102.0 + 1.5, abs=1e-5)  # random ~1: 0.75 * interval
    advertiser.on_timer(deadline)
    assert advertiser.next_timer() == pytest.approx(deadline + 1.75)  # random 0.5


def test_gaps_stay_within_the_jitter_bounds() -> None:
    import random  # noqa: PLC0415

    rng = random.Random(5)
    advertiser = Advertiser(replace(HA_CONFIG, interval=1.0, jitter=0.2), random=rng.random)
    now = 0.0
    advertiser.start(now)
    gaps = []
    for _ in range(500):
        deadline = advertiser.next_timer()
        assert deadline is not None
        gaps.append(deadline - now)
        now = deadline
        assert len(advertiser.on_timer(now)) == 1
    assert all(0.8 <= gap <= 1.0 for gap in gaps)
    assert max(gaps) - min(gaps) > 0.15  # really randomized


# --- sequence numbers (2.3.2) ---

def test_sequence_starts_at_zero_and_wraps_from_ffff_to_256() -> None:
    advertiser = Advertiser(replace(HA_CONFIG, interval=1.0, jitter=0.0), random=Random(0.0))
    sent = advertiser.start(0.0)
    for i in range(1, 0x10000 + 5):
        sent += advertiser.on_timer(float(i))
    # The extension's Sequence field: after the 8-byte ICMP header, one router entry, Type and Length.
    numbers = [int.from_bytes(a.payload[18:20], "big") for a in sent]
    assert numbers[:3] == [0, 1, 2]
    at = numbers.index(0xFFFF)
    assert numbers[at - 1: at + 3] == [0xFFFE, 0xFFFF, 256, 257]
    assert sequences(sent[:3]) == [0, 1, 2] and sequences(sent[at: at + 2]) == [0xFFFF, 256]


def test_solicited_advertisements_take_the_next_sequence_number() -> None:
    advertiser = Advertiser(HA_CONFIG, random=Random(0.0))
    sent = advertiser.start(0.0) + advertiser.solicited(SOURCE, 0.5) + advertiser.on_timer(1.0)
    assert sequences(sent) == [0, 1, 2]


# --- solicitations and the rate limit (2.3) ---

def test_a_solicitation_is_answered_at_once_by_multicast() -> None:
    advertiser = Advertiser(HA_CONFIG, random=Random(0.0))
    advertiser.start(0.0)
    [answer] = advertiser.solicited(SOURCE, 0.4)
    assert answer.destination == ALL_SYSTEMS and answer.ttl == 1
    assert advertiser.counters.solicitations == 1 and advertiser.counters.solicited == 1


def test_answers_before_start_too() -> None:
    advertiser = Advertiser(HA_CONFIG, random=Random(0.0))
    assert sequences(advertiser.solicited(SOURCE, 5.0)) == [0]


def test_a_flood_is_coalesced_to_the_rate_limit() -> None:
    config = replace(HA_CONFIG, interval=100.0, lifetime=300, max_response_rate=4.0)
    advertiser = Advertiser(config, random=Random(0.0))
    advertiser.start(0.0)
    sent: list[SendIcmp] = []
    now = 1.0
    while now < 3.0:  # 2 s of solicitations every millisecond, with the timer run as a daemon would
        deadline = advertiser.next_timer()
        if deadline is not None and deadline <= now:
            sent += advertiser.on_timer(now)
        sent += advertiser.solicited(SOURCE, now)
        now = round(now + 0.001, 6)
    assert 8 <= len(sent) <= 9  # 4 per second over 2 s (+ the first at once)
    assert advertiser.counters.solicitations == 2000
    assert advertiser.counters.solicited == len(sent)
    assert advertiser.counters.coalesced == 2000 - 1  # all but the first found an answer pending or due


def test_a_coalesced_solicitation_is_answered_when_the_limit_allows() -> None:
    advertiser = Advertiser(replace(HA_CONFIG, max_response_rate=10.0), random=Random(0.0))
    advertiser.start(0.0)
    assert len(advertiser.solicited(SOURCE, 0.30)) == 1
    assert advertiser.solicited(SOURCE, 0.35) == []  # too soon: pending
    assert advertiser.solicited(SOURCE, 0.36) == []  # joins the pending answer
    assert advertiser.next_timer() == pytest.approx(0.40)
    assert len(advertiser.on_timer(0.40)) == 1
    assert advertiser.next_timer() == pytest.approx(1.0)  # back to the periodic schedule
    assert advertiser.counters.coalesced == 2


def test_a_periodic_advertisement_answers_a_pending_solicitation() -> None:
    advertiser = Advertiser(replace(HA_CONFIG, max_response_rate=1.0), random=Random(0.0))
    advertiser.start(0.0)
    advertiser.solicited(SOURCE, 0.5)
    assert advertiser.solicited(SOURCE, 0.9) == []  # pending until 1.5
    assert len(advertiser.on_timer(1.0)) == 1  # the periodic one, due first
    assert advertiser.next_timer() == pytest.approx(2.0)  # nothing pending any more
    assert advertiser.on_timer(1.5) == []


# --- reconfiguration ---

def test_reconfigure_keeps_the_sequence_and_applies_a_shorter_interval() -> None:
    advertiser = Advertiser(replace(HA_CONFIG, interval=10.0, lifetime=30), random=Random(0.0))
    sent = advertiser.start(0.0)
    advertiser.reconfigure(replace(HA_CONFIG, flags=A.H | A.G, interval=1.0))
    assert advertiser.next_timer() == pytest.approx(1.0)
    sent += advertiser.on_timer(1.0)
    assert sequences(sent) == [0, 1]
    last = decoded(sent)[-1].mobility
    assert last is not None and last.flags == A.H | A.G
