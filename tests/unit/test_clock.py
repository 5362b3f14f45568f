"""TimeOfDay: the wall clock, never stepping back (mipd/runtime/clock.py), with clocks the test moves."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mipd.runtime.clock import STEP, TimeOfDay


@dataclass
class Clocks:
    wall: float = 1_800_000_000.0
    monotonic: float = 100.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.monotonic += seconds


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


def tod(clocks: Clocks) -> TimeOfDay:
    return TimeOfDay(wall=lambda: clocks.wall, monotonic=lambda: clocks.monotonic)


def test_follows_the_wall_clock_and_its_steps_forward(clocks: Clocks) -> None:
    time_of_day = tod(clocks)
    assert time_of_day() == clocks.wall
    clocks.advance(5)
    assert time_of_day() == clocks.wall
    clocks.wall += 7200  # a step forward is adopted at once
    assert time_of_day() == clocks.wall and time_of_day.steps_back == 0


def test_a_step_back_is_not_followed_until_the_wall_clock_is_ahead_again(clocks: Clocks) -> None:
    time_of_day = tod(clocks)
    start = time_of_day()
    clocks.wall -= 3600
    assert time_of_day() == start  # no time passed: the same instant
    clocks.advance(10)
    assert time_of_day() == start + 10  # goes on at the monotonic clock's pace
    assert time_of_day.steps_back == 1 and time_of_day.behind == pytest.approx(3600)
    clocks.advance(10)
    time_of_day()
    assert time_of_day.steps_back == 1  # still the same step
    clocks.wall += 7200  # now ahead of where we were: adopted
    assert time_of_day() == clocks.wall and time_of_day.behind == 0


def test_small_differences_are_slew_not_steps(clocks: Clocks) -> None:
    time_of_day = tod(clocks)
    first = time_of_day()
    clocks.monotonic += 1.0
    clocks.wall += 1.0 - STEP / 2  # a slewed clock runs slower than the monotonic one
    assert time_of_day() == clocks.wall  # followed (no drift away from the system clock)
    clocks.wall -= 0.1
    assert time_of_day() == first + 1.0 - STEP / 2  # never backwards, even by a little
    assert time_of_day.steps_back == 0


def test_at_least_raises_the_floor(clocks: Clocks) -> None:
    time_of_day = tod(clocks)
    time_of_day.at_least(clocks.wall + 600)  # e.g. the latest timestamp accepted before a restart
    assert time_of_day() == clocks.wall + 600
    clocks.advance(3)
    assert time_of_day() == clocks.wall + 600
    time_of_day.at_least(0)  # a floor below changes nothing
    assert time_of_day() == clocks.wall + 600
