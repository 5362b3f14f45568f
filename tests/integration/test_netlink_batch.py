"""Netlink in batches (mipd.adapters.netlink.batch), for real, in a network namespace: one batch
installs N routes and N proxy entries; a batch in which some requests fail reports exactly those
(by the tag of the binding they belong to) and installs the rest; deletes of absent entries are no
error; the home link makes a turn's proxy entries in one batch. The kernel's state is read back
with ``ip -j`` in tests/support/netlink_batch_driver.py, which runs inside the namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.netns import Topology, ip
from tests.support.tools import tool

REPOSITORY = Path(__file__).resolve().parents[2]
DRIVER = REPOSITORY / "tests" / "support" / "netlink_batch_driver.py"
COUNT = 3000  # more than one chunk of requests per sendmsg for the smallest receive buffer


@pytest.fixture(scope="module")
def report() -> Iterator[dict[str, Any]]:
    topology = Topology()
    try:
        ns = topology.ns("nl")
        ip("-n", ns, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
        ip("-n", ns, "link", "set", "up0", "up")
        ip("-n", ns, "link", "set", "up1", "up")
        ip("-n", ns, "link", "add", "down0", "type", "veth", "peer", "name", "down1")
        out = subprocess.run([tool("ip"), "netns", "exec", ns, sys.executable, str(DRIVER), str(COUNT)],
                             capture_output=True, text=True, timeout=120, check=False, cwd=REPOSITORY,
                             env={**os.environ, "PYTHONPATH": str(REPOSITORY)})
        assert out.returncode == 0, out.stderr
        yield json.loads(out.stdout)
    finally:
        topology.close()


def expected(count: int) -> list[str]:
    return sorted(f"10.50.{i // 256}.{i % 256}" for i in range(count))


def test_one_batch_installs_every_route_and_proxy_entry(report: dict[str, Any]) -> None:
    assert report["install_failures"] == {}
    assert report["routes"] == expected(COUNT)
    assert report["proxies"] == expected(COUNT)


def test_a_batch_reports_exactly_the_failing_requests_and_installs_the_rest(report: dict[str, Any]) -> None:
    failures = report["mixed_failures"]
    assert sorted(failures) == ["down", "missing", "proxy-missing"]
    assert failures["down"][0] == 100  # ENETDOWN, from the kernel, matched by sequence number
    assert failures["missing"][0] == 19 and failures["proxy-missing"][0] == 19  # ENODEV
    assert report["mixed_routes"] == ["10.60.0.1", "10.60.0.5"]


def test_a_batch_deletes_everything_and_absent_entries_are_no_error(report: dict[str, Any]) -> None:
    assert report["delete_failures"] == {}
    assert report["routes_after_delete"] == 0
    assert report["proxies_after_delete"] == 0


def test_the_home_link_makes_a_turns_proxy_entries_in_one_batch(report: dict[str, Any]) -> None:
    assert report["home_link_errors"] == {}
    assert report["home_link_proxies"] == COUNT
    assert report["home_link_proxies_after_close"] == 0
