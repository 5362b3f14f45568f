"""The link monitor for real: carrier and IPv4 address changes of a veth, seen through rtnetlink.

    mn (mn0 10.9.0.5/24) ----- peer (peer0 10.9.0.1/24)

A LinkMonitor watches mn0 from inside ``mn`` (tests/support/mobile_link_driver.py). The test takes
the peer down and up (mn0's carrier follows), mn0 itself down and up, adds and removes addresses on
mn0 and elsewhere, and finally deletes mn0 and creates a new one under the same name. The monitor
reports each transition once, in order, and nothing for changes that are not mn0's or not changes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.foreign_link import LinkDriver
from tests.support.netns import Topology, ip, topology

DRIVER = str(Path(__file__).resolve().parents[1] / "support" / "mobile_link_driver.py")


@pytest.fixture
def monitored() -> Iterator[tuple[Topology, LinkDriver]]:
    with topology() as topo:
        topo.link("mn", "mn0", "10.9.0.5/24", "peer", "peer0", "10.9.0.1/24")
        driver = LinkDriver(topo.ns("mn"), script=DRIVER)
        try:
            start = driver("monitor", interface="mn0")
            assert start["addresses"] == ["10.9.0.5/24"]
            if not start["up"]:  # the operational state may lag the carrier by a moment
                assert wait(driver, 1) == [{"event": "link", "up": True}]
                driver.events.clear()
            yield topo, driver
        finally:
            driver.stop()


def wait(driver: LinkDriver, count: int) -> list[dict[str, Any]]:
    """The events so far once there are ``count``, after a pause that lets any extra one in."""
    deadline = time.monotonic() + 5
    while len(driver.events) < count and time.monotonic() < deadline:
        driver.wait_events("-", 1, timeout=0.05)  # no event is of kind "-": this reads lines for 50 ms
    driver.wait_events("-", 1, timeout=0.3)
    return list(driver.events)


def step(driver: LinkDriver, expected: list[dict[str, Any]], *commands: tuple[str, ...]) -> None:
    driver.events.clear()
    for command in commands:
        ip(*command)
    assert wait(driver, len(expected)) == expected


def link(up: bool) -> dict[str, Any]:
    return {"event": "link", "up": up}


def addresses(*cidrs: str) -> dict[str, Any]:
    return {"event": "addresses", "addresses": list(cidrs)}


def test_transitions_are_reported_once_each(monitored: tuple[Topology, LinkDriver]) -> None:
    topo, driver = monitored
    mn, peer = topo.ns("mn"), topo.ns("peer")
    step(driver, [link(False)], ("-n", peer, "link", "set", "peer0", "down"))  # carrier off
    step(driver, [], ("-n", mn, "link", "set", "mn0", "down"), ("-n", mn, "link", "set", "mn0", "up"))  # still off
    step(driver, [link(True)], ("-n", peer, "link", "set", "peer0", "up"))
    step(driver, [link(False)], ("-n", mn, "link", "set", "mn0", "down"))  # administratively down
    step(driver, [link(True)], ("-n", mn, "link", "set", "mn0", "up"))
    step(driver, [addresses("10.9.0.5/24", "10.8.1.7/16")], ("-n", mn, "addr", "add", "10.8.1.7/16", "dev", "mn0"))
    step(driver, [addresses("10.8.1.7/16")], ("-n", mn, "addr", "del", "10.9.0.5/24", "dev", "mn0"))
    step(driver, [],  # another interface's address, the peer's, and a lifetime update: no change of mn0's set
         ("-n", mn, "addr", "add", "127.0.0.2/8", "dev", "lo"),
         ("-n", peer, "addr", "add", "10.9.0.2/24", "dev", "peer0"),
         ("-n", mn, "addr", "change", "10.8.1.7/16", "dev", "mn0", "valid_lft", "3600", "preferred_lft", "3600"))
    step(driver, [addresses()], ("-n", mn, "addr", "flush", "dev", "mn0"))


def test_an_interface_deleted_and_created_again_is_followed_by_name(monitored: tuple[Topology, LinkDriver]) -> None:
    topo, driver = monitored
    mn = topo.ns("mn")
    step(driver, [link(False), addresses()], ("-n", mn, "link", "del", "mn0"))
    step(driver, [], ("-n", mn, "link", "add", "mn0", "type", "veth", "peer", "name", "mn1"))  # new, still down
    step(driver, [link(True)], ("-n", mn, "link", "set", "mn1", "up"), ("-n", mn, "link", "set", "mn0", "up"))
    step(driver, [addresses("10.7.0.1/24")], ("-n", mn, "addr", "add", "10.7.0.1/24", "dev", "mn0"))
