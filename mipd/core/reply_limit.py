"""A rate limit on the home agent's failure replies (131 and 133), per node and per source.

A forged Registration Request that names a configured SPI costs the home agent an HMAC to find
that its authenticator is wrong (131); a replayed one, that its Identification is stale (133).
Answering each would also cost a signed reply, a state commit and, with nonces, a new nonce, and
would make the agent a reflector towards whatever source the forger wrote. So each such reply
spends a token of two buckets: the node's (the SA's home address) and the source address's,
each holding :data:`BURST` tokens refilled at :data:`REFILL_PER_S` a second. A denial that finds
either bucket empty is not answered: it changes no state, sends nothing, and is counted
(``reply-rate-limited``, mipd(8) JOURNAL). Accepted registrations never spend tokens.

A node with a wrong key or a skewed clock retransmits with backoff (RFC 5944 3.6.3), about once a
second at first, so it always gets its 131 or 133; a node whose SPI a forger floods with gets its
own answer within ``1 / REFILL_PER_S`` seconds of the flood ending. The source table holds at
most :data:`MAX_KEYS` keys (the least recently limited forgotten first), so spoofed sources
bound memory. Pure: the clock comes in as ``now`` (monotonic seconds).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

BURST = 10  # failure replies a node, or a source, may get back to back
REFILL_PER_S = 2.0  # failure replies per second a node, or a source, gets in a sustained flood
MAX_KEYS = 4096  # nodes and sources remembered at once, each table


class _Buckets:
    """Token buckets keyed by node or source: [tokens, stamp], at most ``max_keys`` of them."""

    def __init__(self, burst: float, refill_per_s: float, max_keys: int) -> None:
        self.burst, self.refill_per_s, self.max_keys = burst, refill_per_s, max_keys
        self._table: OrderedDict[Hashable, list[float]] = OrderedDict()  # least recently spent first (O(1) eviction)

    def __len__(self) -> int:
        return len(self._table)

    def tokens(self, key: Hashable, now: float) -> float:
        bucket = self._table.get(key)
        if bucket is None:
            return self.burst
        return min(self.burst, bucket[0] + max(0.0, now - bucket[1]) * self.refill_per_s)

    def spend(self, key: Hashable, now: float) -> None:
        tokens = self.tokens(key, now) - 1.0
        bucket = self._table.get(key)
        if bucket is None:
            if len(self._table) >= self.max_keys:
                self._table.popitem(last=False)
            self._table[key] = [tokens, now]
        else:
            bucket[0], bucket[1] = tokens, now
            self._table.move_to_end(key)


class ReplyLimit:
    """Whether a 131 or 133 reply may be sent now (see the module docstring)."""

    def __init__(self, burst: int = BURST, refill_per_s: float = REFILL_PER_S, max_keys: int = MAX_KEYS) -> None:
        if burst < 1 or refill_per_s <= 0 or max_keys < 1:
            raise ValueError("burst and max_keys must be >= 1, refill_per_s > 0")
        self.burst, self.refill_per_s = burst, refill_per_s
        self._nodes = _Buckets(float(burst), refill_per_s, max_keys)
        self._sources = _Buckets(float(burst), refill_per_s, max_keys)

    def allows(self, node: Hashable, source: Hashable, now: float) -> bool:
        """Whether a failure reply for ``node`` to ``source`` may be sent now; spends nothing."""
        return self._nodes.tokens(node, now) >= 1.0 and self._sources.tokens(source, now) >= 1.0

    def take(self, node: Hashable, source: Hashable, now: float) -> bool:
        """Spend one token of each bucket if both have one: True, the reply may be sent."""
        if not self.allows(node, source, now):
            return False
        self._nodes.spend(node, now)
        self._sources.spend(source, now)
        return True
