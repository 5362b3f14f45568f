"""Rate limits (mipd(8) JOURNAL) with an injected clock: only two events are limited."""

from __future__ import annotations

import pytest

from mipd.obs.ratelimit import DEFAULT_BURST, DEFAULT_RATE, RATE_LIMITED_EVENTS, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_defaults_are_the_documented_ones() -> None:
    assert {"packet.dropped", "registration.denied"} == RATE_LIMITED_EVENTS
    assert (DEFAULT_BURST, DEFAULT_RATE) == (10, 10.0)


@pytest.mark.parametrize("event", sorted(RATE_LIMITED_EVENTS))
def test_a_burst_passes_then_the_rest_is_suppressed_and_counted(event: str) -> None:
    clock = Clock()
    limiter = RateLimiter(burst=10, rate=10.0, clock=clock)
    results = [limiter.admit(event) for _ in range(25)]
    assert results[:10] == [0] * 10
    assert results[10:] == [None] * 15
    assert limiter.pending(event) == 15
    clock.now += 0.1  # one token back at 10/s
    assert limiter.admit(event) == 15  # the entry after the burst carries the count
    assert limiter.admit(event) is None
    clock.now += 0.1
    assert limiter.admit(event) == 1
    assert limiter.pending(event) == 0


def test_tokens_refill_up_to_the_burst_only() -> None:
    clock = Clock()
    limiter = RateLimiter(burst=3, rate=1.0, clock=clock)
    assert [limiter.admit("packet.dropped") for _ in range(4)] == [0, 0, 0, None]
    clock.now += 3600
    assert [limiter.admit("packet.dropped") for _ in range(4)] == [1, 0, 0, None]


def test_sustained_flood_passes_at_the_configured_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(burst=10, rate=10.0, clock=clock)
    passed = suppressed = 0
    for _ in range(10_000):  # 10 s at 1000/s
        clock.now += 0.001
        result = limiter.admit("packet.dropped")
        if result is None:
            continue
        passed += 1
        suppressed += result
    assert 105 <= passed <= 111  # burst 10 + 10/s for 10 s
    assert passed + suppressed + limiter.pending("packet.dropped") == 10_000


def test_each_limited_event_has_its_own_bucket() -> None:
    limiter = RateLimiter(burst=1, rate=1.0, clock=Clock())
    assert limiter.admit("packet.dropped") == 0
    assert limiter.admit("packet.dropped") is None
    assert limiter.admit("registration.denied") == 0


@pytest.mark.parametrize(
    "event",
    ["binding.added", "binding.renewed", "binding.removed", "binding.expired",
     "visitor.pending", "visitor.added", "visitor.renewed", "visitor.removed", "visitor.expired",
     "registration.accepted", "daemon.started"],
)
def test_other_events_are_never_suppressed_even_at_10k_per_second(event: str) -> None:
    clock = Clock()
    limiter = RateLimiter(burst=1, rate=0.001, clock=clock)
    for _ in range(10_000):
        clock.now += 0.0001
        assert limiter.admit(event) == 0


def test_binding_and_visitor_events_cannot_be_configured_as_limited() -> None:
    with pytest.raises(ValueError, match="never rate-limited"):
        RateLimiter(events={"packet.dropped", "binding.added"})
    with pytest.raises(ValueError, match="never rate-limited"):
        RateLimiter(events={"visitor.added"})


def test_a_clock_going_backwards_does_not_mint_tokens() -> None:
    clock = Clock()
    limiter = RateLimiter(burst=1, rate=1.0, clock=clock)
    assert limiter.admit("packet.dropped") == 0
    clock.now -= 100
    assert limiter.admit("packet.dropped") is None
