"""The home agent's mobility binding list (RFC 5944 section 3.8.1).

Lookup by home address is a dict access. Expiry goes through one min-heap of deadlines, so the
engine's single timer is always the earliest expiry and expiring costs O(log n) per binding.
Entries superseded by a renewal or a removal stay in the heap until they surface, and are then
skipped (lazy deletion); the heap is rebuilt when such stale entries outnumber live ones.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from mipd.core.planes import UdpTunnelEndpoint
from mipd.core.wire.registration import RequestFlags


@dataclass(frozen=True, slots=True)
class Binding:
    """One mobility binding: where the node with ``home_address`` is reachable, until when.

    ``expires`` is on the engine's monotonic clock (``math.inf`` for an infinite lifetime).
    ``foreign_agent`` is the IP source of a request relayed by a foreign agent, else None.
    ``outer`` is set when the binding is UDP-tunnelled (RFC 3519): the request's IP source address
    and UDP source port, the NAT's mapping. ``prefixes`` are the Mobile Network Prefixes accepted
    for a mobile router by this registration (RFC 5177 6.2.1: stored in the registration entry),
    in order, each once.
    """

    home_address: IPv4Address
    care_of_address: IPv4Address
    lifetime_granted: int
    expires: float
    identification: int
    flags: RequestFlags
    spi: int
    foreign_agent: IPv4Address | None = None
    outer: UdpTunnelEndpoint | None = None
    prefixes: tuple[IPv4Network, ...] = ()

    def remaining(self, now: float) -> int:
        """Whole seconds of lifetime left (0xffff for infinity), as control output shows it."""
        if math.isinf(self.expires):
            return 0xFFFF
        return max(0, math.ceil(self.expires - now - 1e-9))


class BindingTable:
    """Bindings per home address; several per node only with simultaneous bindings."""

    __slots__ = ("_by_home", "_count", "_heap", "_sequence")

    def __init__(self) -> None:
        self._by_home: dict[IPv4Address, dict[IPv4Address, Binding]] = {}
        self._heap: list[tuple[float, int, Binding]] = []
        self._count = 0
        self._sequence = itertools.count()  # breaks ties between equal deadlines

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Binding]:
        for per_node in self._by_home.values():
            yield from per_node.values()

    def of(self, home_address: IPv4Address) -> tuple[Binding, ...]:
        """The node's bindings, oldest first."""
        per_node = self._by_home.get(home_address)
        return tuple(per_node.values()) if per_node else ()

    def get(self, home_address: IPv4Address, care_of_address: IPv4Address) -> Binding | None:
        per_node = self._by_home.get(home_address)
        return per_node.get(care_of_address) if per_node else None

    def put(self, binding: Binding) -> Binding | None:
        """Add or replace the binding for (home address, care-of address); return the old one."""
        per_node = self._by_home.setdefault(binding.home_address, {})
        old = per_node.pop(binding.care_of_address, None)
        per_node[binding.care_of_address] = binding
        if old is None:
            self._count += 1
        if not math.isinf(binding.expires):
            heapq.heappush(self._heap, (binding.expires, next(self._sequence), binding))
            self._compact()
        return old

    def remove(self, home_address: IPv4Address, care_of_address: IPv4Address) -> Binding | None:
        per_node = self._by_home.get(home_address)
        if not per_node or care_of_address not in per_node:
            return None
        old = per_node.pop(care_of_address)
        if not per_node:
            del self._by_home[home_address]
        self._count -= 1
        return old

    def remove_all(self, home_address: IPv4Address) -> tuple[Binding, ...]:
        per_node = self._by_home.pop(home_address, None)
        if not per_node:
            return ()
        self._count -= len(per_node)
        return tuple(per_node.values())

    def next_expiry(self) -> float | None:
        """The earliest deadline of a live binding, or None."""
        heap = self._heap
        while heap and not self._is_live(heap[0][2]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def expire(self, now: float) -> list[Binding]:
        """Remove and return every binding whose deadline is at or before ``now``."""
        expired: list[Binding] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            binding = heapq.heappop(heap)[2]
            if self._is_live(binding):
                self.remove(binding.home_address, binding.care_of_address)
                expired.append(binding)
        return expired

    def _is_live(self, binding: Binding) -> bool:
        per_node = self._by_home.get(binding.home_address)
        return per_node is not None and per_node.get(binding.care_of_address) is binding

    def _compact(self) -> None:
        if len(self._heap) > 2 * self._count + 1024:
            self._heap = [entry for entry in self._heap if self._is_live(entry[2])]
            heapq.heapify(self._heap)
