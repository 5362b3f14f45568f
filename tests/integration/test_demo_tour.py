"""The roaming demo's tour with every check at every location (tests/support/demo_tour.py), on this machine
(userspace backend) and once under a real kernel with kernel tunnels (tests/support/realkernel.py).

Each host tour runs :class:`mipd.demo.session.Session` in this process with its daemons logging to a
journald of its own (tests/support/journal.py); the checks are those of tests/support/demo_tour.py: at every
location pings answered over the new path, the node's status, the home agent's bindings and the foreign
agents' visitors as ``mipctl --json`` shows them, an advertisement's R bit where an agent advertises; at the
end the TCP connection survived every move and the journal holds the binding and visitor events in order.
The full tour asserts them all; each variant asserts the same checks plus what makes it different (the
NAT variant, ``mipd demo --nat``, runs on the host only: the real-kernel tour checks the kernel tunnels).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from mipd.demo.session import Options
from mipd.demo.topology import COLOCATED, FA1, FA2, LEASES, NAT_LEASE, NAT_OUTSIDE
from tests.support import demo_tour
from tests.support.journal import running_journald
from tests.support.realkernel import json_lines, kernel_unavailable, run_in_kernel

SUMMARY = re.compile(
    r"roaming: moves=(?P<moves>\d+) delivered=(?P<x>\d+)/(?P<y>\d+) lost=(?P<lost>\d+) "
    r"handoff_ms_median=(?P<median>\d+\.\d) tcp_survived=(?P<tcp>yes|no)"
)
SCRIPT = Path(demo_tour.__file__)
KERNEL_MODULES = ("ipip", "ip_gre", "veth", "bridge", "tun")


def run_tour(**options: Any) -> dict[str, Any]:
    with running_journald() as journal:
        result = demo_tour.tour(Options(**options), journal)
    assert demo_tour.leftovers(result["prefix"], result["directory"]) == [], "the tour left something behind"
    print(f"\n{result.get('summary')} ({result['seconds']} s)")
    return result


def assert_tour(result: dict[str, Any], moves: int, backend: str, summary: re.Pattern[str] = SUMMARY) -> None:
    """What every tour must show: no failed check, every move checked, the summary line (``summary``, which
    has the groups of :data:`SUMMARY`), the backend."""
    details = {k: v for k, v in result.items() if k in ("summary", "per_move", "tcp", "daemon_tails", "backend")}
    assert result["problems"] == [], "\n".join(result["problems"]) + "\n" + json.dumps(details, indent=1)[:8000]
    assert result["checked_moves"] == moves
    match = summary.fullmatch(result["summary"])
    assert match, result["summary"]
    sent, lost = int(match["y"]), int(match["lost"])
    assert int(match["moves"]) == moves and match["tcp"] == "yes" and sent > 0 and lost < 0.1 * sent
    started = result["journal"]["started"]
    for agent in ("ha", "fa1", "fa2"):
        assert str(started[agent]).startswith(f"backend {backend}"), started


def bindings(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for m in result["moves"] for b in m["seen"]["bindings"]]


def test_full_tour_every_check_at_every_location() -> None:
    result = run_tour()
    assert_tour(result, 4, "userspace")
    assert [m["stop"] for m in result["moves"]] == ["v1", "v2", "home", "colocated"]
    assert [b["care_of_address"] for b in bindings(result)] == [FA1, FA2, COLOCATED]
    # The agent left behind keeps the node active until its lifetime ends (nothing tells it otherwise).
    at_v2 = result["moves"][1]["seen"]
    assert at_v2["visitors_fa1"][0]["state"] == "active" and at_v2["visitors_fa2"][0]["state"] == "active"
    assert result["journal"]["story"]["ha"][0] == ["binding.added", FA1, None]


def test_registration_required_keeps_the_node_with_the_agents() -> None:
    result = run_tour(registration_required=True)
    assert_tour(result, 4, "userspace")
    by_stop = {m["stop"]: m["seen"] for m in result["moves"]}
    for stop, agent in (("v1", FA1), ("v2", FA2)):
        seen = by_stop[stop]
        assert seen["advertisement_flags"] & demo_tour.R_BIT, seen  # the agent advertises R
        lease = LEASES[f"br-{stop}"][0]
        assert f"{lease}/24" in seen["node_addresses"]  # the node could go co-located here...
        assert [b["care_of_address"] for b in seen["bindings"]] == [agent]  # ...but registers through the agent
        assert seen["status"]["agent"] == agent
    assert [b["care_of_address"] for b in by_stop["colocated"]["bindings"]] == [COLOCATED]  # no agent: co-located
    leases = {LEASES[f"br-{stop}"][0] for stop in ("v1", "v2")}
    assert not [e for e in result["journal"]["events"]["ha"] if e[1] in leases]  # never bound to a lease


def test_eight_moves_with_reverse_tunneling() -> None:
    """``--moves 8`` and ``--reverse-tunneling`` in one tour (one tour less for ``make test``'s time)."""
    result = run_tour(moves=8, reverse_tunneling=True)
    assert_tour(result, 8, "userspace")
    # Reverse tunneling: every binding and visitor entry has T (the node asked, the agents offer it).
    found = bindings(result)
    assert len(found) == 6 and all("T" in b["flags"] for b in found), found
    visitors = [v for m in result["moves"] for name in ("fa1", "fa2") for v in m["seen"][f"visitors_{name}"]]
    assert visitors and all("T" in v["flags"] for v in visitors), visitors
    # Eight moves: the node returns to agents that still hold its entry (renewed, not added: a renewal
    # that changes nothing but the lifetime, so its visitor.renewed is a debug entry, not written at
    # info), and makes co-located -> visited 1, which the four-move tour never makes: the co-located
    # binding is replaced.
    events = result["journal"]["story"]
    for name, address in (("fa1", FA1), ("fa2", FA2)):
        assert [e[0] for e in events[name]] == ["visitor.pending", "visitor.added", "visitor.pending"], events[name]
        assert {e[1] for e in events[name]} == {address}
    assert events["ha"][5:7] == [["binding.removed", COLOCATED, "replaced"], ["binding.added", FA1, None]]


def test_nat_tour_tunnels_over_udp_behind_the_nat() -> None:
    """``mipd demo --nat``: on from the co-located link to a visited network behind a real NAT (nftables
    masquerade); there, and only there, the node and the home agent show the UDP tunnel (RFC 3519)."""
    result = run_tour(nat=True, moves=5)
    assert_tour(result, 5, "userspace")
    assert [m["stop"] for m in result["moves"]] == ["v1", "v2", "home", "colocated", "nat"]
    assert [b["care_of_address"] for b in bindings(result)] == [FA1, FA2, COLOCATED, NAT_LEASE]
    at_nat = result["moves"][4]["seen"]
    assert at_nat["status"]["udp_tunnel"] is True and at_nat["status"]["care_of_address"] == NAT_LEASE
    binding = at_nat["bindings"][0]
    assert binding["udp_tunnel"] is True and binding["outer_address"] == NAT_OUTSIDE, binding
    assert isinstance(binding["outer_port"], int), binding
    assert not [m for m in result["moves"][:4] if m["seen"]["status"]["udp_tunnel"]]
    journal = result["journal"]
    assert journal["nat"]["nat_detected"] == [["nat.detected", NAT_LEASE, "nat"]], journal["nat"]
    assert journal["story"]["ha"][-2:] == [["binding.removed", COLOCATED, "replaced"],
                                           ["binding.added", NAT_LEASE, None]]


@pytest.fixture(scope="module")
def kernel_tour() -> dict[str, Any]:
    """The tour under a real kernel with kernel tunnels, or {"failure": why} when it gave no result."""
    why = kernel_unavailable()
    if why:
        return {"failure": f"no real Linux kernel to run the tour under: {why}"}
    # Pings every 50 ms: every system call costs more in a guest kernel, and the checks are the same.
    result = run_in_kernel(SCRIPT, ["--guest", "--interval-ms", "50"], modules=KERNEL_MODULES, memory="1536M",
                           timeout=600)
    print(f"\n{result.describe()}")
    lines = json_lines(result.stdout)
    if result.returncode is None or not lines:
        return {"failure": f"the tour under {result.runner} gave no result (exit {result.returncode})\nconsole:\n"
                           f"{result.console[-2000:]}\nstdout:\n{result.stdout[-2000:]}\n"
                           f"stderr:\n{result.stderr[-4000:]}"}
    tour: dict[str, Any] = lines[-1]
    print(f"{tour.get('summary')} (tour {tour['seconds']} s: {tour.get('phases_s')})")
    return tour


def test_tour_under_a_real_kernel_with_kernel_tunnels(kernel_tour: dict[str, Any]) -> None:
    assert "failure" not in kernel_tour, kernel_tour.get("failure")
    assert_tour(kernel_tour, 4, "kernel")
    assert [b["care_of_address"] for b in bindings(kernel_tour)] == [FA1, FA2, COLOCATED]
