"""Rate limits on the two events that may be limited (mipd(8) JOURNAL).

Only ``packet.dropped`` and ``registration.denied`` may be limited: a flood of bad packets must
not flood the journal. Each of those event names has its own token bucket (default: a burst of
:data:`DEFAULT_BURST` entries, refilled at :data:`DEFAULT_RATE` per second). An event that finds
its bucket empty is suppressed and counted; the next entry of that event that is written carries
the count (``MIP_SUPPRESSED``). Every other event, binding and visitor events above all, passes
untouched, whatever the rate. The clock is injected so tests can drive time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mipd.core.names import AUDIT_TRAIL, EventName, always_written

RATE_LIMITED_EVENTS = frozenset({EventName.PACKET_DROPPED, EventName.REGISTRATION_DENIED})
DEFAULT_BURST = 10  # entries written back to back before limiting starts
DEFAULT_RATE = 10.0  # entries per second in a sustained flood
# The families of the audit-trail events (never suppressed, mipd(8) JOURNAL), as the docs name them;
# what is never limited is decided by the event name itself (EventName.always_written).
NEVER_LIMITED_PREFIXES = tuple(sorted({f"{name.partition('.')[0]}." for name in AUDIT_TRAIL}))

Clock = Callable[[], float]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float
    suppressed: int = 0


class RateLimiter:
    """Token buckets per event name for the rate-limited events; thread-safe."""

    def __init__(
        self,
        *,
        events: Iterable[str] = RATE_LIMITED_EVENTS,
        burst: int = DEFAULT_BURST,
        rate: float = DEFAULT_RATE,
        clock: Clock = time.monotonic,
    ) -> None:
        self.events = frozenset(events)
        refused = sorted(e for e in self.events if always_written(e))
        if refused:
            raise ValueError(f"binding and visitor events are never rate-limited: {', '.join(refused)}")
        if burst < 1 or rate <= 0:
            raise ValueError("burst must be >= 1 and rate > 0")
        self.burst = burst
        self.rate = rate
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def admit(self, event: str) -> int | None:
        """None if this ``event`` entry is to be suppressed; else how many were suppressed before it."""
        if event not in self.events:
            return 0
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(event)
            if bucket is None:
                bucket = self._buckets[event] = _Bucket(tokens=float(self.burst), stamp=now)
            else:
                elapsed = max(0.0, now - bucket.stamp)
                bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
                bucket.stamp = now
            if bucket.tokens < 1.0:
                bucket.suppressed += 1
                return None
            bucket.tokens -= 1.0
            suppressed, bucket.suppressed = bucket.suppressed, 0
            return suppressed

    def pending(self, event: str) -> int:
        """How many ``event`` entries were suppressed and not yet reported."""
        with self._lock:
            bucket = self._buckets.get(event)
            return 0 if bucket is None else bucket.suppressed
