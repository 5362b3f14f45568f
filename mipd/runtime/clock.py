"""The time of day the engines see: the system's wall clock, except that it never steps backwards.

The engines time lifetimes on the event loop's monotonic clock; the wall clock serves Identification
timestamps (RFC 5944 5.7.1) and expiry times stored across restarts. 5.7.1 accepts a timestamp only if it
is close to the home agent's time of day *and* greater than every timestamp accepted before. If the home
agent's clock stepped back (an NTP step, an operator's ``date -s``) by more than the replay window, every
node would then be refused with 133 until the clock caught up with the last accepted timestamps, even
after resynchronising to the agent's time as 5.7.1 tells it to: 133 carries the agent's (stepped-back)
time. So a step back is not followed: time goes on from where it was, at the monotonic clock's pace,
and a later wall clock that is ahead again is adopted. Steps forward are adopted at once (nodes
resynchronise with one 133). A restart starts from the wall clock, raised to the latest timestamp the
agent had accepted (:meth:`TimeOfDay.at_least`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

# A wall clock behind our own by more than this stepped back; less is slewing or jitter, and is only kept
# from going backwards (held for a moment), so that a slewed clock is never drifted away from.
STEP = 1.0


class TimeOfDay:
    """A callable ``() -> seconds since the epoch`` that never decreases; counts the steps back it held."""

    def __init__(self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic
                 ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._last: tuple[float, float] | None = None  # (what we returned, monotonic time then)
        self.steps_back = 0
        self.behind = 0.0  # how far the system clock is behind what we return (0 when it is not)

    def at_least(self, floor: float) -> None:
        """Do not return less than ``floor`` from now on (it advances with the monotonic clock)."""
        now = self()
        if floor > now:
            self._last = (floor, self._monotonic())
            self.behind = floor - self._wall()

    def __call__(self) -> float:
        wall, monotonic = self._wall(), self._monotonic()
        if self._last is not None:
            continued = self._last[0] + (monotonic - self._last[1])
            if wall < continued - STEP:
                if self.behind == 0.0:
                    self.steps_back += 1
                self.behind = continued - wall
                wall = continued
            else:
                self.behind = 0.0
                wall = max(wall, self._last[0])
        self._last = (wall, monotonic)
        return wall
