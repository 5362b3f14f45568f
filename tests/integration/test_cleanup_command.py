"""``mipd cleanup`` in a network namespace holding what crashed instances leave, and things that are not mipd's.

What a crashed home agent, foreign agent or mobile node leaves (their TUN devices, protocol-77 routes in
any table, rules in 7600-7799 marked protocol 77, permanent protocol-77 neighbour entries) is made by hand
with ``ip``; so are look-alikes that must stay: a TUN called mipx0, routes of other protocols, rules outside
mipd's range or without its mark, a permanent neighbour entry without the mark.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.netns import Topology, ip, topology
from tests.support.tools import tool, venv_script


@pytest.fixture
def site() -> Iterator[str]:
    with topology() as topo:
        topo.link("a", "eth0", "10.1.0.1/24", "b", "eth0", "10.1.0.2/24")
        yield populate(topo)


def populate(topo: Topology) -> str:
    ns = topo.ns("a")
    for name in ("mip0", "mipv0", "mipm0", "mipprobe4242", "mipn0a010032", "mipx0", "mipn1", "vpn0"):
        ip("-n", ns, "tuntap", "add", name, "mode", "tun")
        ip("-n", ns, "link", "set", name, "up")
    for route in (
        # mipd's
        "10.1.0.10/32 dev eth0 proto 77",
        "10.1.0.11/32 dev eth0 proto 77 table 770000",
        "default dev mipv0 proto 77 table 770001",
        "default via 10.1.0.2 dev eth0 onlink proto 77 table 760000",
        "10.5.0.0/24 dev mip0 proto 77",
        # not mipd's
        "10.9.0.0/24 dev vpn0 proto static",
        "10.8.0.0/24 dev eth0 proto 78",
        "10.7.0.0/24 dev mipx0",
    ):
        ip("-n", ns, "route", "add", *route.split())
    for rule in (
        # mipd's
        "priority 7600 lookup main suppress_prefixlength 0 proto 77",
        "priority 7610 lookup 760000 proto 77",
        "priority 7700 from 10.1.0.10 iif eth0 lookup 770001 proto 77",
        "priority 7720 iif mipv0 blackhole proto 77",
        # not mipd's: no mark, or outside 7600-7799
        "priority 7750 lookup 100",
        "priority 8000 lookup 200 proto 77",
    ):
        ip("-n", ns, "rule", "add", *rule.split())
    ip("-n", ns, "neigh", "add", "10.1.0.10", "lladdr", "02:00:00:00:00:0a", "dev", "eth0", "nud", "permanent",
       "proto", "77")
    ip("-n", ns, "neigh", "add", "10.1.0.20", "lladdr", "02:00:00:00:00:14", "dev", "eth0", "nud", "permanent")
    return ns


def state(ns: str) -> dict[str, set[str]]:
    def show(*args: str) -> list[dict[str, object]]:
        out = subprocess.run([tool("ip"), "-n", ns, "-j", *args], capture_output=True, text=True, check=True,
                             timeout=30).stdout
        return list(json.loads(out or "[]"))

    return {
        "links": {str(link["ifname"]) for link in show("link", "show")},
        "routes": {f"{route.get('dst')} {route.get('dev', '')} {route.get('table', 'main')} "
                   f"{route.get('protocol', '')}" for route in show("route", "show", "table", "all")
                   if route.get("type") != "local" and route.get("table") != "local"},
        "rules": {str(rule["priority"]) for rule in show("rule", "show")},
        "neighbours": {f"{entry['dst']} {entry.get('protocol', '')}" for entry in show("neigh", "show")
                       if "PERMANENT" in list(entry.get("state", []))},
    }


def cleanup(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("ip"), "netns", "exec", ns, venv_script("mipd"), "cleanup", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_cleanup_removes_what_mipd_owns_and_nothing_else(site: str) -> None:
    before = state(site)
    assert {"mip0", "mipv0", "mipm0", "mipprobe4242", "mipn0a010032"} <= before["links"]
    assert {"7600", "7610", "7700", "7720"} <= before["rules"]
    assert "10.1.0.10 77" in before["neighbours"]

    dry = cleanup(site, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert state(site) == before, "--dry-run removed something"
    assert "would remove link mip0" in dry.stdout

    done = cleanup(site)
    assert done.returncode == 0, done.stderr
    assert done.stdout.replace("removed", "would remove") == dry.stdout
    after = state(site)

    assert after["links"] == before["links"] - {"mip0", "mipv0", "mipm0", "mipprobe4242", "mipn0a010032"}
    assert {"mipx0", "vpn0", "eth0", "lo"} <= after["links"]
    assert not [route for route in after["routes"] if route.endswith(" 77")], after["routes"]
    assert {"10.9.0.0/24 vpn0 main static", "10.8.0.0/24 eth0 main 78", "10.7.0.0/24 mipx0 main "} \
        <= after["routes"], after["routes"]
    assert after["rules"] == before["rules"] - {"7600", "7610", "7700", "7720"}
    assert {"7750", "8000"} <= after["rules"]
    assert after["neighbours"] == before["neighbours"] - {"10.1.0.10 77"}
    for line in ("removed rule 7700: from 10.1.0.10/32 iif eth0 lookup 770001",
                 "removed route 10.1.0.11/32 dev eth0 table 770000 proto 77",
                 "removed neighbour 10.1.0.10 dev eth0", "removed link mipprobe4242"):
        assert line in done.stdout.splitlines(), done.stdout

    again = cleanup(site)
    assert (again.returncode, again.stdout.strip()) == (0, "nothing of mipd's to remove")
    assert state(site) == after


def test_cleanup_without_the_privilege_says_what_it_could_not_remove(site: str) -> None:
    before = state(site)
    result = subprocess.run([tool("ip"), "netns", "exec", site, tool("setpriv"), "--reuid=65534", "--regid=65534",
                             "--clear-groups", venv_script("mipd"), "cleanup"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == ("mipd cleanup: rule 7600: lookup 254 suppress_prefixlength 0: Operation not "
                                     "permitted (mipd cleanup needs root: CAP_NET_ADMIN)"), result.stderr
    assert state(site) == before
