"""``mipd demo --plot``'s picture (mipd/demo/plot.py), drawn from records made here as the demo makes them:
a valid PNG of the promised size, whose move lines and lost-ping crosses are the table's moves and lost
pings (their counts are returned and written into its tEXt chunks)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.image
import pytest

from mipd.demo import plot, report
from mipd.demo.tour import Move, measure
from mipd.demo.traffic import Pings
from tests.support.png import read_png

START = 1_800_000_000.0
INTERVAL = 0.02


def records(lost_per_move: list[int]) -> tuple[list[Move], Pings, float, list[dict[str, object]]]:
    """A tour: a second of pings at home, then one move every 1.5 s with the given losses right after it."""
    pings, events, moves = Pings(), [], []
    stops = ["v1", "v2", "home", "colocated"]
    seq, now = 0, START
    for number, lost in enumerate([0, *lost_per_move]):
        if number:
            origin = "home" if number == 1 else stops[(number - 2) % 4]
            moves.append(Move(number, origin, stops[(number - 1) % 4], now))
            events += [{"MIP_EVENT": "registration.sent", "time": now + 0.01},
                       {"MIP_EVENT": "registration.accepted", "time": now + 0.01 + 0.005 * number}]
        for index in range(50 if not number else 75):
            pings.sent[seq] = now
            if index >= lost:
                pings.answered[seq] = now + 0.0004 + 0.0001 * (seq % 7)
            seq, now = seq + 1, now + INTERVAL
    return moves, pings, now, events


def table_counts(table: str) -> tuple[int, int]:
    rows = [line.split() for line in table.splitlines()[2:]]
    assert all(re.fullmatch(r"\d+", row[0]) for row in rows)
    return len(rows), sum(int(row[-3]) for row in rows)


@pytest.mark.parametrize("lost_per_move", [[3, 7, 2, 5], [0, 0, 0, 0], [1, 0, 12, 4, 0, 2, 9, 0]])
def test_the_picture_shows_the_tables_moves_and_losses(tmp_path: Path, lost_per_move: list[int]) -> None:
    moves, pings, end, events = records(lost_per_move)
    for _ in range(3):  # pings lost at home before the first move are no move's: not drawn as the table's
        pings.answered.pop(min(pings.answered))
    measure(moves, pings, events, end)  # as the demo fills the table's columns
    table_moves, table_lost = table_counts(report.table(moves))
    assert (table_moves, table_lost) == (len(lost_per_move), sum(lost_per_move))

    path = tmp_path / "roaming.png"
    drawn = plot.write(path, moves, pings, end)

    assert (drawn.moves, drawn.lost) == (table_moves, table_lost)
    assert drawn.answered == len(pings.answered)
    assert drawn.registrations == sum(1 for m in moves if m.registration_ms is not None) == table_moves
    png = read_png(path)
    assert (png.width, png.height) == (plot.WIDTH, plot.HEIGHT)
    assert png.text["mipd:moves"] == str(table_moves) and png.text["mipd:lost"] == str(table_lost)
    assert png.text["mipd:answered"] == str(drawn.answered)
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (plot.HEIGHT, plot.WIDTH)
    red = ((pixels[..., 0] > 0.7) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)).sum()
    assert (red > 0) == (table_lost > 0)  # the crosses are tab:red; nothing else is


def test_the_png_reader_refuses_a_damaged_file(tmp_path: Path) -> None:
    moves, pings, end, _ = records([1, 2])
    path = tmp_path / "roaming.png"
    plot.write(path, moves, pings, end)
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="CRC"):
        read_png(path)
