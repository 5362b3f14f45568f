"""What the demo prints: a live progress line (stderr), the per-move table and the summary line (stdout).

The summary line (mipd(8) demo; docs/interfaces.md, "The demo's summary line") is always the last
line of stdout:
``roaming: moves=N delivered=X/Y lost=L handoff_ms_median=M tcp_survived=yes|no``.
"""

from __future__ import annotations

import statistics
import sys
from typing import TextIO

from mipd.demo.tour import STOPS, Move


class Progress:
    """One line rewritten in place on a terminal; plain lines otherwise."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last = ""

    def __call__(self, text: str) -> None:
        if text == self.last:
            return
        self.last = text
        if self.tty:
            self.stream.write("\r\033[K" + text)
        elif not text.endswith(("registering, waiting for pings", "registered, waiting for pings",
                                "registering, pings answered")):
            self.stream.write(text + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line that stays."""
        if self.tty and self.last:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        self.last = ""


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(moves: list[Move]) -> str:
    rows = [("move", "from", "to", "handoff ms", "lost", "sent", "registration ms")]
    for m in moves:
        rows.append((str(m.number), STOPS[m.origin][1], STOPS[m.stop][1], _ms(m.handoff_ms), str(m.lost),
                     str(m.sent), _ms(m.registration_ms)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i in (1, 2) else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary(moves: list[Move], sent: int, answered: int, tcp_survived: bool) -> str:
    handoffs = [m.handoff_ms for m in moves if m.handoff_ms is not None]
    median = statistics.median(handoffs) if handoffs else 0.0
    return (f"roaming: moves={len(moves)} delivered={answered}/{sent} lost={sent - answered} "
            f"handoff_ms_median={median:.1f} tcp_survived={'yes' if tcp_survived else 'no'}")
