"""Admission under a flood of forged requests from spoofed sources: known sources first.

The per-source budget (mipd/core/budget.py) sheds a source that keeps failing authentication, but a
flood whose every datagram carries another forged source address never runs one out: each forged
request is read, its authenticator computed and found wrong. Past what the home agent can check in
a second, the kernel's receive queue overflows and drops datagrams blindly — a legitimate node's
with the same odds as the forger's.

So the home agent measures the authentication failures it sees over windows of :data:`WINDOW`
seconds. When, allowing for what is already sampled away, they exceed :data:`UNKNOWN_PER_S` a
second, it asks the kernel (a socket filter, mipd/adapters/udp.py) to pass every datagram from the
sources it accepted a registration from most recently (at most :data:`KNOWN` of them: co-located
nodes, foreign agents, NATs) and only a random ``fraction`` of all others, chosen so that about
:data:`UNKNOWN_PER_S` of them a second still arrive. An unknown legitimate node keeps at least the
chance it had in the overflowing queue, a known one is no longer lost in it; once the estimated
failures fall below half of :data:`UNKNOWN_PER_S`, everything is admitted again.

Pure: the clock comes in as ``now`` (monotonic seconds); sources are dotted-quad text.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

WINDOW = 0.25  # seconds over which failures are counted
UNKNOWN_PER_S = 10_000.0  # failures a second the agent still reads from unknown sources under a flood
KNOWN = 128  # sources of the most recently accepted registrations, always admitted under a flood
MIN_FRACTION = 1 / 4096  # of the unknown sources' datagrams, the least still admitted


@dataclass(frozen=True, slots=True)
class Admission:
    """What the kernel admits: everything (``fraction`` 1.0), or ``known`` and that share of others."""

    known: tuple[str, ...] = ()
    fraction: float = 1.0


ADMIT_ALL = Admission()


class FloodGuard:
    """Known sources, the failure rate, and the admission that follows from them."""

    def __init__(self, unknown_per_s: float = UNKNOWN_PER_S, window: float = WINDOW, known: int = KNOWN) -> None:
        if unknown_per_s <= 0 or window <= 0 or known < 1:
            raise ValueError("unknown_per_s and window must be > 0, known >= 1")
        self.unknown_per_s, self.window, self.max_known = unknown_per_s, window, known
        self.admission = ADMIT_ALL
        self._known: OrderedDict[str, None] = OrderedDict()  # least recently accepted first
        self._failures = 0
        self._window_end: float | None = None  # set while failures are being counted

    def accepted(self, source: str) -> None:
        """A registration from ``source`` was accepted: it is known."""
        known = self._known
        if source in known:
            known.move_to_end(source)
            return
        if len(known) >= self.max_known:
            known.popitem(last=False)
        known[source] = None

    def failed(self, now: float) -> None:
        """One more authentication failure seen (from any source)."""
        self._failures += 1
        if self._window_end is None:
            self._window_end = now + self.window

    def next_tick(self) -> float | None:
        """When :meth:`tick` must run: the end of the window being counted, or None."""
        return self._window_end

    def tick(self, now: float) -> Admission | None:
        """Close the window if it is over; the new admission if it changed, else None."""
        if self._window_end is None or now < self._window_end:
            return None
        elapsed = self.window + (now - self._window_end)
        estimated = self._failures / elapsed / self.admission.fraction  # as if nothing were sampled away
        self._failures = 0
        flooded = estimated > self.unknown_per_s or (self.admission is not ADMIT_ALL
                                                     and estimated > self.unknown_per_s / 2)
        # Under a flood, keep counting even if no failure arrives: that is how it ends.
        self._window_end = now + self.window if flooded or self.admission is not ADMIT_ALL else None
        if flooded:
            fraction = max(MIN_FRACTION, min(1.0, self.unknown_per_s / estimated))
            admission = Admission(tuple(self._known), fraction)
        else:
            admission = ADMIT_ALL
        if admission == self.admission:
            return None
        self.admission = admission
        return admission
