"""``mipd demo --plot FILE.png``: a picture of the roaming, from the records the table is built from.

Left, the correspondent's ping round trips over the tour (one dot per answered echo, at the time it was
sent), a dashed line at each move (the node's carrier going down, labelled with where it went and how
many pings it lost) and a red cross for each echo of the table's moves that was never answered; right,
the registration round trip of each move, as the table's ``registration ms`` column has it. The numbers
drawn are returned and also written into the PNG's tEXt chunks (``mipd:moves``, ``mipd:lost``,
``mipd:answered``), so a test can hold the picture to the table.

Needs matplotlib (``pip install 'mipd[plot]'``; the Agg backend, no display); nothing else of the demo does.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from mipd.demo.tour import STOPS, Move
from mipd.demo.traffic import Pings

WIDTH, HEIGHT, DPI = 1400, 600, 100  # pixels of the PNG
MISSING = "mipd demo --plot needs matplotlib: pip install 'mipd[plot]' (or: pip install matplotlib)"


@dataclass(frozen=True)
class Plotted:
    """What the picture shows, counted as it was drawn."""

    moves: int  # dashed move lines
    lost: int  # red crosses: echoes sent during the table's moves, never answered
    answered: int  # dots
    registrations: int  # bars: moves with a registration round trip

    def text(self) -> dict[str, str]:
        """The PNG tEXt chunks."""
        return {"mipd:moves": str(self.moves), "mipd:lost": str(self.lost), "mipd:answered": str(self.answered),
                "mipd:registrations": str(self.registrations)}


def available() -> bool:
    """Whether matplotlib can be imported (``--plot`` is refused early when it cannot)."""
    return importlib.util.find_spec("matplotlib") is not None


def lost_during(moves: list[Move], pings: Pings, end: float) -> list[tuple[int, float]]:
    """(seq, sent) of each echo sent in one of the table's move windows ``[move.at, next move)`` (the last
    up to ``end``) that was never answered: together they are the table's ``lost`` column."""
    if not moves:
        return []
    start = moves[0].at
    return sorted((seq, sent) for seq, sent in pings.sent.items()
                  if start <= sent < end and seq not in pings.answered)


def write(path: Path, moves: list[Move], pings: Pings, end: float) -> Plotted:
    """Draw the tour into ``path`` (PNG, WIDTH x HEIGHT pixels); what was drawn."""
    import matplotlib  # noqa: PLC0415 - an optional dependency, imported only to draw

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    origin = min([*pings.sent.values(), *(m.at for m in moves)], default=0.0)
    answered = sorted((pings.sent[seq] - origin, (pings.answered[seq] - pings.sent[seq]) * 1000)
                      for seq in pings.answered if seq in pings.sent)
    lost = lost_during(moves, pings, end)

    figure = pyplot.figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    grid = figure.add_gridspec(1, 2, width_ratios=(3, 1), wspace=0.25, left=0.06, right=0.98, top=0.86,
                               bottom=0.12)
    pings_axes, registration_axes = figure.add_subplot(grid[0]), figure.add_subplot(grid[1])

    if answered:
        pings_axes.plot([t for t, _ in answered], [rtt for _, rtt in answered], ".", markersize=3,
                        color="tab:blue", label=f"ping answered ({len(answered)})")
    top = max((rtt for _, rtt in answered), default=1.0)
    pings_axes.set_ylim(0, top * 1.25)
    if lost:
        pings_axes.plot([sent - origin for _, sent in lost], [top * 1.12] * len(lost), "x", color="tab:red",
                        markersize=6, label=f"ping lost ({len(lost)})")
    for move in moves:
        at = move.at - origin
        pings_axes.axvline(at, color="tab:gray", linestyle="--", linewidth=1)
        pings_axes.annotate(f"{move.number}: {STOPS[move.stop][1]}, {move.lost} lost", (at, 1.0),
                            xycoords=("data", "axes fraction"),
                            xytext=(3, 3), textcoords="offset points", fontsize=9, rotation=0, va="bottom")
    pings_axes.set_xlabel("seconds since the first ping")
    pings_axes.set_ylabel("ping round trip (ms)")
    pings_axes.set_title("correspondent → mobile node home address: ping round trips, moves (dashed), losses",
                         fontsize=10, pad=18)
    pings_axes.grid(True, alpha=0.3)
    pings_axes.legend(loc="center right", fontsize=9, framealpha=0.9)

    labels = [f"{m.number}\n{STOPS[m.stop][1]}" for m in moves]
    values = [m.registration_ms or 0.0 for m in moves]
    bars = registration_axes.bar(range(len(moves)), values, color="tab:green")
    for bar, move in zip(bars, moves, strict=True):
        text = "-" if move.registration_ms is None else f"{move.registration_ms:.1f}"
        registration_axes.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                   xytext=(0, 2), textcoords="offset points", ha="center", fontsize=9)
    registration_axes.set_xticks(range(len(moves)), labels, fontsize=8)
    registration_axes.set_ylim(0, max(values, default=1.0) * 1.2 or 1.0)
    registration_axes.set_ylabel("registration round trip (ms)")
    registration_axes.set_title("registration round trip per move", fontsize=10, pad=18)
    registration_axes.grid(True, axis="y", alpha=0.3)

    handoffs = [m.handoff_ms for m in moves if m.handoff_ms is not None]
    figure.suptitle(f"mipd demo: {len(moves)} moves, {len(lost)} pings lost"
                    + (f", handoff {min(handoffs):.0f}-{max(handoffs):.0f} ms" if handoffs else ""), fontsize=12)
    plotted = Plotted(moves=len(moves), lost=len(lost), answered=len(answered),
                      registrations=sum(1 for m in moves if m.registration_ms is not None))
    figure.savefig(path, format="png", dpi=DPI, metadata={"Software": "mipd demo", **plotted.text()})
    pyplot.close(figure)
    return plotted
