"""The foreign agent's visitor list (RFC 5944 section 3.7.1).

For each pending or current registration the foreign agent keeps what 3.7.1 lists: the node's
link-layer source address, the IP source and destination of its request, the UDP source port,
the home agent, the Identification, the requested and the remaining lifetime. A node has at most
one current (``active``) entry and a few ``pending`` ones; a new request from a node that has an
entry is kept apart as pending, and the current entry "SHOULD NOT be deleted or modified" until a
successful reply arrives (3.7.1, 3.7.2).

Deadlines (pending timeouts and visitor expiry) go through one min-heap with lazy deletion, as
the home agent's bindings do, so the engine has a single timer.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass
from ipaddress import IPv4Address

from mipd.core.names import VisitorState
from mipd.core.wire.registration import RequestFlags
from mipd.core.wire.tunnel import Encapsulation


@dataclass(frozen=True, slots=True)
class Visitor:
    """A pending or current registration of one node at this foreign agent.

    ``expires`` is on the engine's monotonic clock: the pending timeout while pending, the end of
    the granted lifetime once active (``math.inf`` for an infinite one).
    """

    home_address: IPv4Address
    home_agent: IPv4Address
    care_of_address: IPv4Address
    link_address: bytes
    source: IPv4Address  # IP source of the request (home address, or a co-located care-of address)
    destination: IPv4Address  # IP destination of the request (us, or 224.0.0.11)
    source_port: int
    identification: int
    lifetime_requested: int
    lifetime_granted: int
    expires: float
    flags: RequestFlags
    state: VisitorState = VisitorState.PENDING
    udp_tunnel_requested: bool = False  # we added a UDP Tunnel Request when relaying (RFC 3519 4.5)
    udp_tunnel: bool = False  # the home agent assented: data to and from it over UDP 434 (RFC 3519 3.2)
    keepalive_interval: int = 0  # seconds, from the UDP Tunnel Reply (RFC 3519 4.9); 0 without UDP tunnel

    def remaining(self, now: float) -> int:
        if math.isinf(self.expires):
            return 0xFFFF
        return max(0, math.ceil(self.expires - now - 1e-9))

    @property
    def encapsulation(self) -> Encapsulation:
        if self.flags & RequestFlags.G:
            return Encapsulation.GRE
        if self.flags & RequestFlags.M:
            return Encapsulation.MINIMAL
        return Encapsulation.IPIP

    @property
    def reverse(self) -> bool:
        return bool(self.flags & RequestFlags.T)


class VisitorList:
    """Current visitors by home address, pending requests per node, one heap of deadlines."""

    __slots__ = ("_active", "_heap", "_pending", "_sequence")

    def __init__(self) -> None:
        self._active: dict[IPv4Address, Visitor] = {}
        self._pending: dict[IPv4Address, list[Visitor]] = {}
        self._heap: list[tuple[float, int, Visitor]] = []
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._active)

    def active(self, home_address: IPv4Address) -> Visitor | None:
        return self._active.get(home_address)

    def pending(self, home_address: IPv4Address) -> list[Visitor]:
        return list(self._pending.get(home_address, ()))

    def all_active(self) -> list[Visitor]:
        return list(self._active.values())

    def all_pending(self) -> list[Visitor]:
        return [v for entries in self._pending.values() for v in entries]

    def add_pending(self, visitor: Visitor) -> None:
        self._pending.setdefault(visitor.home_address, []).append(visitor)
        self._push(visitor)

    def take_pending(self, home_address: IPv4Address, low32: int) -> Visitor | None:
        """Remove and return the pending entry whose Identification's low 32 bits match."""
        entries = self._pending.get(home_address, [])
        for i, visitor in enumerate(entries):
            if visitor.identification & 0xFFFF_FFFF == low32:
                del entries[i]
                if not entries:
                    del self._pending[home_address]
                return visitor
        return None

    def set_active(self, visitor: Visitor) -> Visitor | None:
        """Make ``visitor`` the node's current entry; returns the one it replaces."""
        old = self._active.get(visitor.home_address)
        self._active[visitor.home_address] = visitor
        self._push(visitor)
        return old

    def remove_active(self, home_address: IPv4Address) -> Visitor | None:
        return self._active.pop(home_address, None)

    def remove_node(self, home_address: IPv4Address) -> tuple[Visitor | None, list[Visitor]]:
        """Drop the node's current entry and every pending one (``mipctl flush``)."""
        return self._active.pop(home_address, None), self._pending.pop(home_address, [])

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and not self._is_live(heap[0][2]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def due(self, now: float) -> list[Visitor]:
        """Remove and return every entry (pending or active) whose deadline has come."""
        out: list[Visitor] = []
        while self._heap and self._heap[0][0] <= now:
            visitor = heapq.heappop(self._heap)[2]
            if not self._is_live(visitor):
                continue
            if visitor.state == VisitorState.ACTIVE:
                del self._active[visitor.home_address]
            else:
                entries = self._pending[visitor.home_address]
                entries.remove(visitor)
                if not entries:
                    del self._pending[visitor.home_address]
            out.append(visitor)
        return out

    def _push(self, visitor: Visitor) -> None:
        if not math.isinf(visitor.expires):
            heapq.heappush(self._heap, (visitor.expires, next(self._sequence), visitor))

    def _is_live(self, visitor: Visitor) -> bool:
        if visitor.state == VisitorState.ACTIVE:
            return self._active.get(visitor.home_address) is visitor
        return any(v is visitor for v in self._pending.get(visitor.home_address, ()))
