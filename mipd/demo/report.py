"""What the demo prints: a live progress line (stderr), the per-move table and the summary line (stdout).

The summary line (mipd(8) demo; docs/interfaces.md, "The demo's summary line") is always the last
line of stdout:
``roaming: moves=N delivered=X/Y lost=L handoff_ms_median=M tcp_survived=yes|no``.
With ``--mobile-router`` the vehicle LAN host's reachability follows, the same fields with ``lan_`` before
them: ``... lan_delivered=X/Y lan_lost=L lan_handoff_ms_median=M lan_tcp_survived=yes|no``; the table
then also has the LAN host's handoff time and pings lost per move.
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


def table(moves: list[Move], lan: bool = False) -> str:
    """One row per move; ``lan``: with the vehicle LAN host's handoff time, pings lost and sent too."""
    rows: list[tuple[str, ...]] = [("move", "from", "to", "handoff ms", "lost", "sent", "registration ms")]
    if lan:
        rows[0] += ("lan handoff ms", "lan lost", "lan sent")
    for m in moves:
        cells: tuple[str, ...] = (str(m.number), STOPS[m.origin][1], STOPS[m.stop][1], _ms(m.handoff_ms),
                                  str(m.lost), str(m.sent), _ms(m.registration_ms))
        rows.append(cells + ((_ms(m.lan_handoff_ms), str(m.lan_lost), str(m.lan_sent)) if lan else ()))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i in (1, 2) else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _median(values: list[float | None]) -> float:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else 0.0


def summary(moves: list[Move], sent: int, answered: int, tcp_survived: bool,
            lan: tuple[int, int, bool] | None = None) -> str:
    """The summary line; ``lan``: the vehicle LAN host's ``(sent, answered, tcp_survived)``."""
    line = (f"roaming: moves={len(moves)} delivered={answered}/{sent} lost={sent - answered} "
            f"handoff_ms_median={_median([m.handoff_ms for m in moves]):.1f} "
            f"tcp_survived={'yes' if tcp_survived else 'no'}")
    if lan is None:
        return line
    lan_sent, lan_answered, lan_tcp = lan
    return (f"{line} lan_delivered={lan_answered}/{lan_sent} lan_lost={lan_sent - lan_answered} "
            f"lan_handoff_ms_median={_median([m.lan_handoff_ms for m in moves]):.1f} "
            f"lan_tcp_survived={'yes' if lan_tcp else 'no'}")
