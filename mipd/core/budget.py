"""A decaying per-source budget of authentication failures: overload protection before any HMAC.

A source address whose Registration Requests keep failing authentication (an invalid Mobile-Home
authenticator, or an SPI no security association has) spends a token bucket: :data:`BURST`
failures back to back, refilled at :data:`REFILL_PER_S` a second. While a source's bucket holds
less than one token, its datagrams are dropped unread — before they are decoded or any
authenticator is computed — and counted (``source-over-budget``, mipd(8) JOURNAL). Dropped
datagrams spend nothing, so an exhausted source is let through again :data:`REFILL_PER_S` times a
second (each failure exhausting it anew) and, once it stops failing, is served within
``1 / REFILL_PER_S`` seconds, its whole budget back within ``BURST / REFILL_PER_S``: nothing
legitimate is refused for longer than that. A node retransmitting a failed request (about once a
second) never exhausts it.

The table holds at most :data:`MAX_SOURCES` sources, so spoofed sources cannot exhaust memory:
when it is full, the source that failed least recently is forgotten (it starts again with a full
budget). A source whose bucket has refilled is the same as one never seen, and is dropped from
the table when next looked at.

Sources are named by their dotted-quad text, as a socket's ``recvfrom`` gives them, so that the
UDP adapter can ask before it builds anything of a datagram (mipd/adapters/udp.py). When a source
runs out, the home agent also asks the kernel to drop its datagrams until it has a token again
(:meth:`SourceBudget.release`; a socket filter, mipd/adapters/udp.py), so that a persistent
offender costs not even a read: the same decay, enforced earlier. Pure: the clock comes in as
``now`` (monotonic seconds).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

BURST = 20  # authentication failures a source may have back to back
REFILL_PER_S = 10.0  # failures per second a source may have in the long run
MAX_SOURCES = 4096  # sources remembered at once


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float
    until: float = 0.0  # while over budget: when the next token is back (so the shed path only compares)
    told: bool = False  # whether running out was reported since the source was last forgotten


class SourceBudget:
    """The authentication-failure budget of each source address (see the module docstring)."""

    def __init__(self, burst: int = BURST, refill_per_s: float = REFILL_PER_S,
                 max_sources: int = MAX_SOURCES) -> None:
        if burst < 1 or refill_per_s <= 0 or max_sources < 1:
            raise ValueError("burst and max_sources must be >= 1, refill_per_s > 0")
        self.burst = float(burst)
        self.refill_per_s = refill_per_s
        self.max_sources = max_sources
        # Least recently failed first. An OrderedDict, not a dict: evicting the oldest of a dict
        # (next(iter(...))) scans past every slot deleted before it, which a flood from spoofed
        # sources made the cost of each datagram; popitem(last=False) is O(1).
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _refilled(self, source: str, now: float) -> _Bucket | None:
        """The source's bucket brought up to ``now``; None (and forgotten) once it is full again."""
        bucket = self._buckets.get(source)
        if bucket is None:
            return None
        bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.stamp) * self.refill_per_s)
        bucket.stamp = now
        if bucket.tokens >= self.burst:
            del self._buckets[source]
            return None
        return bucket

    def admits(self, source: str, now: float) -> bool:
        """Whether a datagram from ``source`` may be processed now (False: over budget, drop it)."""
        bucket = self._buckets.get(source)
        if bucket is None:  # the common case, a source that has not failed: one lookup
            return True
        if now < bucket.until:  # over budget: the datagram flood's path, kept to one comparison
            return False
        bucket = self._refilled(source, now)
        return bucket is None or bucket.tokens >= 1.0

    def over(self, source: str, now: float) -> bool:
        """``not admits(source, now)``, the cheapest way: the UDP adapter asks it per datagram."""
        bucket = self._buckets.get(source)
        return bucket is not None and (now < bucket.until or not self.admits(source, now))

    def release(self, source: str) -> float:
        """When an over-budget ``source`` has a token again (0.0 for a source not over budget)."""
        bucket = self._buckets.get(source)
        return 0.0 if bucket is None else bucket.until

    def first_time(self, source: str) -> bool:
        """Whether ``source`` ran out for the first time since it was last forgotten (the journal
        says so once per episode, not each time a persistent offender runs out again); asking
        answers True once."""
        bucket = self._buckets.get(source)
        if bucket is None or bucket.told:
            return False
        bucket.told = True
        return True

    def failed(self, source: str, now: float) -> bool:
        """Spend one token for an authentication failure of ``source``; True when this failure
        leaves it over budget (its next datagrams are dropped unverified)."""
        bucket = self._refilled(source, now)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)  # the least recently failed
            bucket = _Bucket(self.burst, now)
            self._buckets[source] = bucket
        else:
            self._buckets.move_to_end(source)  # the most recently failed
        bucket.tokens -= 1.0
        if bucket.tokens < 1.0:
            bucket.until = now + (1.0 - bucket.tokens) / self.refill_per_s
            return True
        return False
