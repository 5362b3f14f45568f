"""Three roles as real ``mipd run`` processes: a mobile node roams home -> visited 1 -> visited 2
-> home -> a visited link with no agent (co-located), moved at link level between bridges. At each
step its ``mipctl status``, the home agent's bindings, the foreign agents' visitors and the journal
agree, and a correspondent on the home link reaches the node's home address."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from tests.support import journal as journal_support
from tests.support import roaming, waiting
from tests.support.journal import Journald
from tests.support.netns import Topology, topology
from tests.support.tools import tool

journald = journal_support.journald


wait_for = partial(waiting.wait_for, timeout=15.0, every=0.2)


def ping(topo: Topology, ns: str, target: str, count: int = 3) -> bool:
    out = subprocess.run([tool("ip"), "netns", "exec", topo.ns(ns), tool("ping"), "-n", "-c", str(count), "-i",
                          "0.2", "-W", "2", target], capture_output=True, text=True, timeout=60, check=False)
    return out.returncode == 0


@pytest.fixture(scope="module")
def world(journald: Journald, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with topology() as topo:
        roaming.build(topo)
        adverts = {"advertisement_interval": 0.5, "advertisement_lifetime": 3}
        profiles = {
            "ha": roaming.home_agent_profile(
                **adverts, foreign_agents=[roaming.peer(roaming.FA1, 500, roaming.KF1),
                                           roaming.peer(roaming.FA2, 501, roaming.KF2)],
                tunnel="{backend: userspace}"),
            "fa1": roaming.foreign_agent_profile(roaming.FA1, 500, roaming.KF1, **adverts,
                                                 tunnel="{backend: userspace}"),
            "fa2": roaming.foreign_agent_profile(roaming.FA2, 501, roaming.KF2, **adverts,
                                                 tunnel="{backend: userspace}"),
            "mn": roaming.mobile_node_profile(lifetime=120, care_of="auto", reverse_tunneling=True),
        }
        with roaming.started(journald, topo, profiles, "roam", tmp_path_factory.mktemp) as daemons:
            yield {"topo": topo, **daemons}


def status(world: dict[str, Any]) -> dict[str, Any]:
    return world["mn"].json("status")  # type: ignore[no-any-return]


def binding(world: dict[str, Any]) -> dict[str, Any] | None:
    found = [b for b in world["ha"].json("bindings")["bindings"] if b["home_address"] == roaming.MN]
    return found[0] if found else None


def test_starts_at_home(world: dict[str, Any]) -> None:
    wait_for(lambda: status(world)["location"] == "home", what="the node to know it is home")
    assert status(world)["registered"] is False and binding(world) is None
    assert ping(world["topo"], "cn", roaming.MN)


@pytest.mark.parametrize(("bridge", "agent", "other"), [("br-v1", roaming.FA1, "fa1"), ("br-v2", roaming.FA2, "fa2")])
def test_registers_through_the_foreign_agent_where_it_lands(world: dict[str, Any], journald: Journald,
                                                            bridge: str, agent: str, other: str) -> None:
    roaming.move(world["topo"], bridge)
    state = wait_for(lambda: (s := status(world))["registered"] and s["care_of_address"] == agent and s,
                     what=f"registration through {agent}")
    assert (state["location"], state["agent"]) == ("away", agent) and 0 < state["lifetime_remaining"] <= 120
    wait_for(lambda: (b := binding(world)) is not None and b["care_of_address"] == agent, what="the binding")
    visitors = world[other].json("visitors")["visitors"]
    assert any(v["home_address"] == roaming.MN and v["state"] == "active" for v in visitors)
    for event in ("agent.discovered", "movement.detected", "registration.sent", "registration.accepted"):
        assert journald.entries(MIP_EVENT=event, MIP_INSTANCE="roam-mn"), event
    assert journald.entries(MIP_EVENT="visitor.added", MIP_INSTANCE=f"roam-{other}")
    assert wait_for(lambda: ping(world["topo"], "cn", roaming.MN), what="pings through the tunnel")


def test_returns_home_and_deregisters(world: dict[str, Any], journald: Journald) -> None:
    roaming.move(world["topo"], "br-home")
    wait_for(lambda: status(world)["location"] == "home" and binding(world) is None, what="deregistration")
    assert journald.entries(MIP_EVENT="home.returned", MIP_INSTANCE="roam-mn")
    assert journald.entries(MIP_EVENT="binding.removed", MIP_INSTANCE="roam-ha", MIP_REASON="deregistered")
    assert wait_for(lambda: ping(world["topo"], "cn", roaming.MN), what="pings at home")


def test_colocated_where_no_agent_advertises(world: dict[str, Any]) -> None:
    topo = world["topo"]
    roaming.move(topo, "br-v3")
    roaming.ip("-n", topo.ns("mn"), "addr", "add", f"{roaming.COLOCATED}/24", "dev", "eth0")  # as DHCP would
    state = wait_for(lambda: (s := status(world))["registered"] and s["care_of_address"] == roaming.COLOCATED and s,
                     timeout=20, what="a co-located registration")
    assert state["agent"] is None and state["location"] == "away"
    def colocated_binding() -> dict[str, Any] | None:
        found = binding(world)
        return found if found is not None and found["care_of_address"] == roaming.COLOCATED else None

    b = wait_for(colocated_binding, what="the co-located binding")
    assert b["care_of_address"] == roaming.COLOCATED and "D" in b["flags"]
    assert wait_for(lambda: ping(topo, "cn", roaming.MN), what="pings to the co-located node")


def node_routing(topo: Topology) -> list[str]:
    """The node's own routing state: its policy rules (7600-7699), the routes of its tables, its links."""
    def run(*args: str) -> list[str]:
        out = subprocess.run([tool("ip"), "-n", topo.ns("mn"), *args], capture_output=True, text=True,
                             check=True).stdout
        return [" ".join(line.split()) for line in out.splitlines()]
    rules = [r for r in run("rule") if r.startswith("76")]
    routes = run("route", "show", "table", "all", "proto", "77")
    links = [line.split(":")[1].strip() for line in run("-o", "link") if ": mip" in line]
    return sorted(rules + routes + links)


def test_kill_9_keeps_the_registration(world: dict[str, Any], journald: Journald) -> None:
    before = status(world)
    assert before["registered"] and before["care_of_address"] == roaming.COLOCATED
    routing = node_routing(world["topo"])
    assert any(r.startswith("76") for r in routing), routing  # the co-located node's rules are there
    sent_before = len(journald.entries(count=0, MIP_EVENT="registration.sent", MIP_INSTANCE="roam-mn", timeout=0))
    load = subprocess.Popen(  # traffic through the node's tunnel while it dies and comes back
        [tool("ip"), "netns", "exec", world["topo"].ns("cn"), tool("ping"), "-n", "-q", "-i", "0.01", "-w", "6",
         roaming.MN], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        world["mn"].kill9()
        world["mn"].start()
        after = status(world)  # at once: from the state file, not from a new registration
    finally:
        load.wait(timeout=30)
    assert after["registered"] and after["care_of_address"] == roaming.COLOCATED
    assert 0 < after["lifetime_remaining"] <= before["lifetime_remaining"]
    assert len(journald.entries(count=0, MIP_EVENT="registration.sent", MIP_INSTANCE="roam-mn",
                                timeout=0)) == sent_before
    assert node_routing(world["topo"]) == routing  # re-installed as it was, nothing twice
    assert wait_for(lambda: ping(world["topo"], "cn", roaming.MN), what="pings after the restart")


def test_sigterm_deregisters(world: dict[str, Any], journald: Journald) -> None:
    removed = len(journald.entries(count=0, MIP_EVENT="binding.removed", MIP_INSTANCE="roam-ha",
                                   MIP_REASON="deregistered", timeout=0))
    world["mn"].signal(signal.SIGTERM)
    assert world["mn"].wait() == 0
    assert binding(world) is None  # deregister_on_stop (default true)
    assert len(journald.entries(count=removed + 1, MIP_EVENT="binding.removed", MIP_INSTANCE="roam-ha",
                                MIP_REASON="deregistered")) > removed
