"""``mipd demo`` end to end, as a user runs it: the venv's script and the default tour.

It must finish within a minute, end with docs/interfaces.md's summary line, lose few pings, keep its TCP connection,
and leave no namespace, process or file of its own behind. The variants (``--moves 8``, ``--reverse-tunneling``,
``--registration-required``) run with every check at every location in tests/integration/test_demo_tour.py.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from mipd.demo import plot
from tests.support.png import read_png
from tests.support.tools import tool, venv_script

SUMMARY = re.compile(
    r"roaming: moves=(?P<moves>\d+) delivered=(?P<x>\d+)/(?P<y>\d+) lost=(?P<lost>\d+) "
    r"handoff_ms_median=(?P<median>\d+\.\d) tcp_survived=(?P<tcp>yes|no)"
)


def leftovers() -> list[str]:
    namespaces = subprocess.run([tool("ip"), "netns", "list"], capture_output=True, text=True, check=True).stdout
    found = [line.split()[0] for line in namespaces.splitlines() if line.startswith("mipdemo-")]
    found += [str(p) for p in Path(tempfile.gettempdir()).glob("mipd-demo-*")]
    procs = subprocess.run([tool("pgrep"), "-af", "mipd.demo.agents|/mipd-demo-"], capture_output=True, text=True,
                           check=False).stdout
    return found + procs.splitlines()


@pytest.mark.parametrize(("moves", "args"), [(4, [])], ids=["default tour"])
def test_demo_tours_and_cleans_up(moves: int, args: list[str], tmp_path: Path) -> None:
    before = leftovers()
    picture = tmp_path / "roaming.png"
    out = subprocess.run([venv_script("mipd"), "demo", *args, "--plot", str(picture)], capture_output=True,
                         text=True, timeout=240, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    last = out.stdout.splitlines()[-1]
    match = SUMMARY.fullmatch(last)
    assert match, last
    sent, answered, lost = int(match["y"]), int(match["x"]), int(match["lost"])
    assert int(match["moves"]) == moves and lost == sent - answered and sent > 0
    assert lost < 0.1 * sent, out.stdout
    assert match["tcp"] == "yes", out.stdout + out.stderr
    assert "tunnel backend:" in out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if re.match(r"\s+\d+\s", line)]  # the table
    assert len(rows) == moves
    # The picture: the size promised, drawn from the table's records (its move lines and lost crosses).
    assert f"plot: wrote {picture}" in out.stderr
    png = read_png(picture)
    assert (png.width, png.height) == (plot.WIDTH, plot.HEIGHT)
    assert png.text["mipd:moves"] == str(len(rows))
    assert png.text["mipd:lost"] == str(sum(int(row[-3]) for row in rows))
    assert leftovers() == before


def test_help_explains_the_topology() -> None:
    out = subprocess.run([venv_script("mipd"), "demo", "--help"], capture_output=True, text=True, timeout=30,
                         check=True)
    for word in ("--moves", "--interval-ms", "--reverse-tunneling", "--registration-required", "--keep", "co-located",
                 "roaming: moves="):
        assert word in out.stdout


MOBILE_ROUTER_SUMMARY = re.compile(
    SUMMARY.pattern + r" lan_delivered=(?P<lx>\d+)/(?P<ly>\d+) lan_lost=(?P<llost>\d+) "
    r"lan_handoff_ms_median=(?P<lmedian>\d+\.\d) lan_tcp_survived=(?P<ltcp>yes|no)"
)


def test_demo_mobile_router_reports_the_lan_hosts_reachability() -> None:
    """``mipd demo --mobile-router``: the tour home -> visited 1 -> co-located -> behind NAT -> home with a
    vehicle LAN behind the node; the table has the LAN host's columns, the summary line its fields."""
    before = leftovers()
    out = subprocess.run([venv_script("mipd"), "demo", "--mobile-router"], capture_output=True, text=True,
                         timeout=240, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    last = out.stdout.splitlines()[-1]
    match = MOBILE_ROUTER_SUMMARY.fullmatch(last)
    assert match, last
    assert int(match["moves"]) == 4 and match["tcp"] == "yes" and match["ltcp"] == "yes", out.stdout + out.stderr
    for sent, answered, lost in ((match["y"], match["x"], match["lost"]), (match["ly"], match["lx"], match["llost"])):
        assert int(sent) > 0 and int(lost) == int(sent) - int(answered) and int(lost) < 0.1 * int(sent), out.stdout
    header = next(line for line in out.stdout.splitlines() if line.lstrip().startswith("move"))
    assert header.endswith("lan handoff ms  lan lost  lan sent"), header
    rows = [line.split() for line in out.stdout.splitlines() if re.match(r"\s+\d+\s", line)]
    assert [row[1:3] for row in rows] == [["home", "visited"], ["visited", "1"], ["co-located", "behind"],
                                          ["behind", "NAT"]], rows
    # the table's LAN losses are those of its moves (the summary also counts the second at home before them)
    assert sum(int(row[-2]) for row in rows) <= int(match["llost"])
    assert "the LAN host saw its TCP peer as 10.8.0.2" in out.stderr and "none from another address" in out.stderr
    assert leftovers() == before
