"""The flood guard (mipd/core/flood_guard.py): under a flood of forged requests from spoofed
sources the home agent has the kernel admit its known sources and a sample of the rest, sized to
what it still reads; without a flood it asks for nothing; when the flood ends it admits all again."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from mipd.core.actions import AdmitSources
from mipd.core.flood_guard import ADMIT_ALL, KNOWN, MIN_FRACTION, UNKNOWN_PER_S, WINDOW, FloodGuard
from tests.support.registration import COA, KEY2, Clock, datagram, engine, request


def fail(guard: FloodGuard, per_s: float, start: float, seconds: float) -> None:
    """``per_s`` failures a second (as seen after sampling) from ``start`` for ``seconds``."""
    count = int(per_s * seconds)
    for i in range(count):
        guard.failed(start + i * seconds / count)


def test_failures_below_the_rate_ask_for_nothing() -> None:
    guard = FloodGuard()
    fail(guard, UNKNOWN_PER_S / 2, 0.0, WINDOW)
    assert guard.tick(WINDOW) is None and guard.admission == ADMIT_ALL
    assert guard.next_tick() is None  # nothing counted, nothing to wake up for


def test_a_flood_admits_the_known_sources_and_a_sample_sized_to_the_rate() -> None:
    guard = FloodGuard()
    guard.accepted("10.5.0.5")
    guard.accepted("10.2.0.1")
    guard.accepted("10.5.0.5")  # accepted again: the most recent
    fail(guard, 8 * UNKNOWN_PER_S, 0.0, WINDOW)
    admission = guard.tick(WINDOW)
    assert admission is not None and admission.known == ("10.2.0.1", "10.5.0.5")
    assert admission.fraction == pytest.approx(1 / 8)
    # The next window sees only the sample; the estimate allows for it and the fraction holds.
    fail(guard, UNKNOWN_PER_S, WINDOW, WINDOW)
    again = guard.tick(2 * WINDOW)
    assert again is None or again.fraction == pytest.approx(1 / 8, rel=0.01)


def test_when_the_flood_ends_everything_is_admitted_again() -> None:
    guard = FloodGuard()
    fail(guard, 100 * UNKNOWN_PER_S, 0.0, WINDOW)
    assert guard.tick(WINDOW) is not None
    assert guard.next_tick() == pytest.approx(2 * WINDOW)  # counting on while flooded, failures or not
    assert guard.tick(2 * WINDOW) == ADMIT_ALL  # no failure in that window
    assert guard.tick(3 * WINDOW) is None and guard.next_tick() is None


def test_the_fraction_has_a_floor_and_the_known_sources_a_cap() -> None:
    guard = FloodGuard(unknown_per_s=1.0)
    for i in range(KNOWN + 10):
        guard.accepted(f"10.9.{i // 250}.{i % 250}")
    fail(guard, 40_000, 0.0, WINDOW)  # 40,000 times the rate: below the floor
    admission = guard.tick(WINDOW)
    assert admission is not None and admission.fraction == MIN_FRACTION and len(admission.known) == KNOWN
    with pytest.raises(ValueError):
        FloodGuard(unknown_per_s=0)


def test_the_home_agent_asks_the_kernel_to_admit_its_known_sources_under_a_flood() -> None:
    clock = Clock(now=100.0)
    ha = engine(clock)
    assert ha.receive(datagram(request(clock), COA), clock.now)  # accepted: COA is known
    forged = request(clock, key=KEY2).encode()
    for i in range(int(4 * UNKNOWN_PER_S * WINDOW)):  # from 4 x as many spoofed sources
        ha.receive(datagram(forged, source=IPv4Address(0xC6120000 + i)), clock.now)
    wake = ha.next_timer()
    assert wake is not None and wake <= clock.now + WINDOW
    clock.now = wake
    [admit] = [a for a in ha.on_timer(clock.now) if isinstance(a, AdmitSources)]
    assert admit.known == (COA,) and admit.fraction < 0.5


def test_mipd_8_states_the_guard_as_the_code_has_it() -> None:
    text = Path(__file__).resolve().parents[2].joinpath("man", "mipd.8").read_text()
    section = text[text.index('.SS "Overload protection"'):]
    section = section[:section.index("\n.S")]
    assert f"{UNKNOWN_PER_S:,.0f} authentication failures a second" in section
    assert f"the {KNOWN} sources" in section and f"{WINDOW:g} seconds" in section
