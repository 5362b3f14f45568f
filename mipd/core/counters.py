"""Totals an engine keeps since start, as ``mipctl stats`` shows them (mipctl(8) JSON OUTPUT)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class Counters:
    """Requests received, accepted, denied per code, dropped per reason, relayed (foreign agent),
    renewals (accepted, changing nothing but the lifetime; counted among ``accepted`` too)."""

    requests_received: int = 0
    accepted: int = 0
    denied: Counter[int] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    relayed: int = 0  # a foreign agent's requests relayed to home agents
    renewals: int = 0  # accepted renewals that changed nothing but the lifetime (mipd(8) JOURNAL)



class DropReport:
    """Which data-plane drops to put in the journal now: the growth of each ``dropped_<reason>``
    counter of a backend since it was last reported, each reason at most once per ``every`` seconds.

    Tunnel packets are too many to log one by one; their counters have each drop, and this says
    in the journal that they happen, and why, promptly but at a bounded rate. The reason comes
    back in the journal's spelling (``unsupported-protocol``), as ``packet.dropped`` carries it."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._reported: dict[str, int] = {}  # counter -> its value when last reported
        self._last: dict[str, float] = {}  # counter -> when it was last reported

    def due(self, counters: Mapping[str, int], now: float) -> list[tuple[str, int]]:
        """(reason, packets dropped since its last report) for each reason due now."""
        out = []
        for name, count in sorted(counters.items()):
            grown = count - self._reported.get(name, 0)
            if not name.startswith("dropped_") or grown <= 0:
                continue
            if name in self._last and now - self._last[name] < self.every:
                continue
            out.append((name.removeprefix("dropped_").replace("_", "-"), grown))
            self._reported[name] = count
            self._last[name] = now
        return out
