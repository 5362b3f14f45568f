"""``mipd demo --mobile-router``'s pieces that need no network: its tour, its table and summary line, and
how the traffic helpers' reports are read (a reply from another address is no answer; the TCP peer's
address as the server saw it)."""

from __future__ import annotations

import io
import re
import subprocess
import threading
from typing import cast

from mipd.demo.processes import Child
from mipd.demo.report import summary, table
from mipd.demo.session import Options
from mipd.demo.tour import Move, plan
from mipd.demo.traffic import Pings, Tcp

SUMMARY = re.compile(
    r"roaming: moves=(?P<moves>\d+) delivered=(?P<x>\d+)/(?P<y>\d+) lost=(?P<lost>\d+) "
    r"handoff_ms_median=(?P<median>\d+\.\d) tcp_survived=(?P<tcp>yes|no)"
)


def child(lines: list[str]) -> Child:
    """A helper's report lines as the demo collected them (only its lines are read here: no process)."""
    return Child("helper", cast("subprocess.Popen[str]", None), io.StringIO(),
                 [(float(n), line) for n, line in enumerate(lines)], threading.Lock())


def moves() -> list[Move]:
    made = []
    for number, (origin, stop) in enumerate([("home", "v1"), ("v1", "colocated"), ("colocated", "nat"),
                                             ("nat", "home")], start=1):
        move = Move(number, origin, stop, at=100.0 * number, first_answer=100.0 * number + 0.05,
                    sent=50, answered=48, lan_first_answer=100.0 * number + 0.08, lan_sent=50, lan_answered=47)
        made.append(move)
    return made


def test_the_mobile_router_tour_goes_through_every_kind_of_place_and_home() -> None:
    assert plan(4, mobile_router=True) == ["v1", "colocated", "nat", "home"]
    assert plan(6, nat=True, mobile_router=True)[4:] == ["v1", "colocated"]
    assert plan(4) == ["v1", "v2", "home", "colocated"]  # the default tour is unchanged


def test_a_mobile_router_sets_t_and_ends_behind_the_nat() -> None:
    options = Options(mobile_router=True)
    assert options.reverse_tunneling and options.nat
    assert not Options().reverse_tunneling and not Options().nat


def test_the_summary_line_keeps_its_format_and_goes_on_with_the_lan_host() -> None:
    made = moves()
    plain = summary(made, 200, 192, True)
    assert SUMMARY.fullmatch(plain), plain
    line = summary(made, 200, 192, True, (200, 188, True))
    assert line.startswith(plain + " ")
    assert line.endswith(" lan_delivered=188/200 lan_lost=12 lan_handoff_ms_median=80.0 lan_tcp_survived=yes"), line


def test_the_table_gains_the_lan_host_columns_only_for_a_mobile_router() -> None:
    made = moves()
    assert "lan" not in table(made)
    shown = table(made, lan=True).splitlines()
    assert shown[0].endswith("registration ms  lan handoff ms  lan lost  lan sent"), shown[0]
    rows = [line.split() for line in shown[2:]]
    assert [row[-3:] for row in rows] == [["80.0", "3", "50"]] * 4


def test_a_reply_from_another_address_is_no_answer() -> None:
    pings = Pings.parse(child(["S 1 10.0", "R 1 10.1", "S 2 10.2", "W 2 10.1.0.10 10.3", "S 3 10.4"]))
    assert pings.sent == {1: 10.0, 2: 10.2, 3: 10.4}
    assert pings.answered == {1: 10.1}
    assert pings.wrong_source == {2: "10.1.0.10"}


def test_the_tcp_server_reports_its_peer_as_it_saw_it() -> None:
    server = child(["L 1.0", "A 10.8.0.2 2.0", "D 100 3.0", "D 200 5.0"])
    tcp = Tcp.parse(server, child(["C 1.5"]))
    assert tcp.peer == "10.8.0.2" and tcp.accepted == 2.0
    assert tcp.survived([2.5, 4.0], 6.0)
    assert not tcp.survived([2.5, 3.5, 4.0], 6.0)  # nothing delivered between 3.5 and 4.0
    assert Tcp.parse(child(["A 2.0"]), child([])).peer is None  # the older report, without the peer
