"""The per-source budget of authentication failures (mipd/core/budget.py), and the home agent
shedding a source over it before any HMAC (mipd(8) JOURNAL, source-over-budget)."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from mipd.core.actions import Emit
from mipd.core.budget import BURST, MAX_SOURCES, REFILL_PER_S, SourceBudget
from mipd.core.reply_limit import BURST as REPLY_BURST
from tests.support.registration import COA, KEY2, Clock, datagram, engine, replies, request

ATTACKER = IPv4Address("192.0.2.66")


@pytest.fixture
def clock() -> Clock:
    return Clock(now=100.0)


SOURCE, OTHER = str(ATTACKER), str(COA)


def test_a_source_may_fail_a_burst_then_is_over_budget() -> None:
    budget = SourceBudget(burst=5, refill_per_s=10.0)
    exhausted = [budget.failed(SOURCE, 0.0) for _ in range(5)]
    assert exhausted == [False, False, False, False, True]
    assert not budget.admits(SOURCE, 0.0)
    assert budget.admits(OTHER, 0.0)  # another source is not affected


def test_the_budget_decays_back_one_token_per_refill_interval_and_then_is_forgotten() -> None:
    budget = SourceBudget(burst=5, refill_per_s=10.0)
    for _ in range(5):
        budget.failed(SOURCE, 0.0)
    assert not budget.admits(SOURCE, 0.05)
    assert budget.admits(SOURCE, 0.1)  # one token back after 1 / refill_per_s
    assert budget.failed(SOURCE, 0.1)  # and spent again: over budget at once
    assert not budget.admits(SOURCE, 0.15)
    assert budget.admits(SOURCE, 0.7) and len(budget) == 0  # full again after burst / refill: forgotten


def test_the_table_is_bounded_and_forgets_the_least_recently_failed() -> None:
    budget = SourceBudget(burst=2, refill_per_s=1.0, max_sources=3)
    sources = [f"10.9.0.{i}" for i in range(1, 5)]
    for source in sources[:3]:
        budget.failed(source, 0.0)
        budget.failed(source, 0.0)
    assert not budget.admits(sources[0], 0.0)
    budget.failed(sources[0], 0.0)  # the first fails again: now the most recent
    budget.failed(sources[3], 0.0)  # a fourth source evicts the least recently failed, the second
    assert len(budget) == 3
    assert budget.admits(sources[1], 0.0)
    assert not budget.admits(sources[0], 0.0) and not budget.admits(sources[2], 0.0)


def test_many_spoofed_sources_stay_within_the_cap() -> None:
    budget = SourceBudget()
    for i in range(3 * MAX_SOURCES):
        budget.failed(str(IPv4Address(0x0A000000 + i)), i * 1e-6)
    assert len(budget) == MAX_SOURCES


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="burst"):
        SourceBudget(burst=0)


def forged(clock: Clock, spi: int = 256) -> bytes:
    return request(clock, spi=spi, key=KEY2).encode()  # the configured SPI, the wrong key: 131


def test_the_home_agent_sheds_a_source_that_keeps_failing_and_serves_a_legitimate_one(clock: Clock) -> None:
    ha = engine(clock)
    answered = [bool(replies(ha.receive(datagram(forged(clock), ATTACKER), clock.now))) for _ in range(BURST + 30)]
    # 131 while the source's reply budget lasts (mipd/core/reply_limit.py), then unanswered, then unread.
    assert answered == [True] * REPLY_BURST + [False] * (BURST + 30 - REPLY_BURST)
    assert ha.counters.denied[131] == REPLY_BURST
    assert ha.counters.dropped["reply-rate-limited"] == BURST - REPLY_BURST
    assert ha.counters.dropped["source-over-budget"] == 30
    # The nospi kind spends the same budget.
    clock.now += 1.0
    assert not replies(ha.receive(datagram(forged(clock, spi=0x7FFF0001), ATTACKER), clock.now))
    assert ha.counters.dropped["no-sa"] == 1
    # A legitimate node from another address is answered, accepted.
    actions = ha.receive(datagram(request(clock), COA), clock.now)
    [(_, reply)] = replies(actions)
    assert reply.code == 0


def test_running_out_is_one_packet_dropped_entry_not_one_per_datagram(clock: Clock) -> None:
    ha = engine(clock)
    emitted = []
    for _ in range(BURST + 100):
        emitted += [a for a in ha.receive(datagram(forged(clock), ATTACKER), clock.now)
                    if isinstance(a, Emit) and a.event == "packet.dropped"]
    assert [e.fields["reason"] for e in emitted] == ["source-over-budget"]


def test_a_source_that_stops_failing_is_served_again_within_the_refill_interval(clock: Clock) -> None:
    ha = engine(clock)
    for _ in range(BURST + 5):
        ha.receive(datagram(forged(clock), ATTACKER), clock.now)
    assert not replies(ha.receive(datagram(request(clock), ATTACKER), clock.now))  # shed, even signed
    clock.now += 1.01 / REFILL_PER_S  # (a hair more: float arithmetic on the clock)
    actions = ha.receive(datagram(request(clock, coa=ATTACKER), ATTACKER), clock.now)
    [(_, reply)] = replies(actions)
    assert reply.code == 0


def test_mipd_8_states_the_budget_as_the_code_has_it() -> None:
    text = Path(__file__).resolve().parents[2].joinpath("man", "mipd.8").read_text()
    section = text[text.index('.SS "Overload protection"'):]
    section = section[:section.index("\n.S")]
    assert f"may fail {BURST} times back to back" in section
    assert f"refills at {REFILL_PER_S:g} failures a second" in section
    assert f"within {1 / REFILL_PER_S:g}\nseconds" in section and f"within {BURST / REFILL_PER_S:g} seconds" in section
    assert f"at most {MAX_SOURCES} sources" in section
