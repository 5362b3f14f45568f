"""Totals an engine keeps since start, as ``mipctl stats`` shows them (mipctl(8) JSON OUTPUT)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Counters:
    """Requests received, accepted, denied per code, dropped per reason, relayed (foreign agent)."""

    requests_received: int = 0
    accepted: int = 0
    denied: Counter[int] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    relayed: int = 0  # a foreign agent's requests relayed to home agents
