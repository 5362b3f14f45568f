"""mipd.adapters.netlink.calls on the host kernel, in a fresh network namespace (no ipip needed).

The functions act on the namespace of the process, so the checks run in a child started with
``ip netns exec`` (one child for the whole module) that prints one JSON result per check --
inside a running asyncio loop, as the daemon calls them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.netns import ip
from tests.support.tools import tool

_CHILD = r"""
import asyncio, json
from ipaddress import IPv4Address as A, IPv4Network as N
from mipd.adapters.netlink import calls as nl

def check(name, value):
    print(json.dumps({"check": name, "value": value}), flush=True)

async def main():
    check("link_index", nl.link_index("va") > 0)
    check("link_address", nl.link_address("va") == "02:00:00:00:00:0a")
    nl.set_link_up("va")
    try:
        nl.link_index("nosuch")
        check("missing_link", "no error")
    except nl.NetlinkError as exc:
        check("missing_link", exc.errno)
    nl.replace_route(N("10.9.0.0/24"), device="va")
    nl.replace_route(N("10.9.0.0/24"), device="va")
    nl.replace_route(N("10.9.1.5/32"), device="va", protocol=4)
    check("owned_routes", [[str(n), d] for n, d in nl.owned_routes()])
    nl.delete_route(N("10.9.0.0/24"))
    nl.delete_route(N("10.9.0.0/24"))
    check("delete_route", [[str(n), d] for n, d in nl.owned_routes()])
    check("foreign_route_kept", [[str(n), d] for n, d in nl.owned_routes(4)])
    nl.replace_route(N("10.9.2.0/24"), device="va", table=100)
    nl.replace_route(N("10.9.3.0/24"), device="va")
    nl.delete_route(N("10.9.2.0/24"))  # the main table only: the route in table 100 stays
    nl.delete_route(N("10.9.3.0/24"), device="lo")  # another device: stays
    check("delete_route_in_one_table", [[str(n), d] for n, d in nl.owned_routes()])
    nl.delete_route(N("10.9.2.0/24"), table=None)
    nl.delete_route(N("10.9.3.0/24"), device="va")
    check("delete_route_in_any_table", [[str(n), d] for n, d in nl.owned_routes()])
    nl.add_proxy(A("10.9.0.7"), "va"); nl.add_proxy(A("10.9.0.7"), "va"); nl.add_proxy(A("10.9.0.8"), "va")
    check("proxies", sorted(str(a) for a in nl.proxies("va")))
    nl.delete_proxy(A("10.9.0.7"), "va"); nl.delete_proxy(A("10.9.0.7"), "va")
    check("delete_proxy", [str(a) for a in nl.proxies("va")])
    check("neighbor_address", [nl.neighbor_address(A("10.9.0.9"), "va"), nl.neighbor_address(A("10.9.0.10"), "va")])
    check("link_stats", sorted(nl.link_stats("va"))[:3])
    check("probe_without_ipip", list(nl.kernel_tunnels_available()))

asyncio.run(main())
nl.close()
"""


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, Any]]:
    ns = f"mipnl{uuid.uuid4().hex[:6]}"
    ip("netns", "add", ns)
    try:
        ip("-n", ns, "link", "add", "va", "address", "02:00:00:00:00:0a", "type", "veth", "peer", "name", "vb")
        ip("-n", ns, "link", "set", "vb", "up")
        ip("-n", ns, "neigh", "add", "10.9.0.9", "lladdr", "02:00:00:00:00:09", "dev", "va")
        out = subprocess.run([tool("ip"), "netns", "exec", ns, sys.executable, "-c", _CHILD],
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        yield {entry["check"]: entry["value"] for entry in map(json.loads, out.stdout.splitlines())}
    finally:
        subprocess.run([tool("ip"), "netns", "del", ns], check=False, capture_output=True, timeout=30)


@pytest.mark.parametrize(("name", "expected"), [
    ("link_index", True),
    ("link_address", True),
    ("missing_link", 19),  # ENODEV
    ("owned_routes", [["10.9.0.0/24", "va"]]),
    ("delete_route", []),
    ("foreign_route_kept", [["10.9.1.5/32", "va"]]),
    ("delete_route_in_one_table", [["10.9.2.0/24", "va"], ["10.9.3.0/24", "va"]]),
    ("delete_route_in_any_table", []),
    ("proxies", ["10.9.0.7", "10.9.0.8"]),
    ("delete_proxy", ["10.9.0.8"]),
    ("neighbor_address", ["02:00:00:00:00:09", None]),
    ("link_stats", ["collisions", "multicast", "rx_bytes"]),
])
def test_netlink(results: dict[str, Any], name: str, expected: Any) -> None:
    assert results[name] == expected


def test_probe_reports_why_kernel_tunnels_are_missing(results: dict[str, Any]) -> None:
    available, reason = results["probe_without_ipip"]
    if available:
        pytest.skip("this kernel has ipip: the probe's negative answer cannot be seen here")
    assert "external ipip" in reason and "errno" in reason
