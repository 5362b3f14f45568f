"""A mobile node stopped (SIGTERM, as ``systemctl stop`` does) right after it registered still
deregisters: its request pacing (at most one registration message a second, RFC 5944 2.4.2 / 3.6.3)
delays the deregistration, it does not drop it (``deregister_on_stop`` in mip.yaml(5)).

A real home agent and mobile node (``mipd run``) in the roaming topology of tests/support/roaming.py;
the node is on the visited link without an agent (br-v3) and registers co-located the moment its
care-of address appears, and is stopped as soon as the home agent lists the binding.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from mipd.control import client
from mipd.control.protocol import Request
from tests.support import journal as journal_support
from tests.support import roaming, waiting
from tests.support.journal import Journald
from tests.support.netns import topology

journald = journal_support.journald


wait_for = partial(waiting.wait_for, timeout=15.0, every=0.02)


@pytest.fixture
def world(journald: Journald, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with topology() as topo:
        roaming.build(topo)
        roaming.move(topo, "br-v3")  # away from the start, no agent there, no care-of address yet
        profiles = {
            "ha": roaming.home_agent_profile(tunnel="{backend: userspace}"),
            "mn": roaming.mobile_node_profile(lifetime=600, care_of="auto"),
        }
        with roaming.started(journald, topo, profiles, "stop", tmp_path_factory.mktemp) as daemons:
            yield {"topo": topo, **daemons}


def binding(world: dict[str, Any]) -> dict[str, Any] | None:
    """The node's binding as ``mipctl --json bindings`` on the home agent lists it."""
    found = [b for b in world["ha"].json("bindings")["bindings"] if b["home_address"] == roaming.MN]
    return found[0] if found else None


def binding_now(world: dict[str, Any]) -> dict[str, Any] | None:
    """The same, asked on the control socket from this process: fast enough to poll while the
    second after the registration runs (a mipctl process takes a good part of it to start)."""
    response = client.call(world["ha"].socket, Request("bindings"))
    assert response.ok and response.result is not None, response
    found = [b for b in response.result["bindings"] if b["home_address"] == roaming.MN]
    return found[0] if found else None


def when(entry: dict[str, Any]) -> float:
    return int(entry["__REALTIME_TIMESTAMP"]) / 1e6


def test_stopped_right_after_registering_it_deregisters(world: dict[str, Any], journald: Journald) -> None:
    topo = world["topo"]
    assert binding(world) is None
    roaming.ip("-n", topo.ns("mn"), "addr", "add", f"{roaming.COLOCATED}/24", "dev", "eth0")  # as DHCP would
    found = wait_for(lambda: binding_now(world), what="the co-located binding")
    world["mn"].signal(signal.SIGTERM)
    assert found["care_of_address"] == roaming.COLOCATED and found["lifetime_remaining"] > 500

    assert world["mn"].wait() == 0
    # The binding is gone when the node has exited, not when its 600 s run out.
    assert binding(world) is None
    (removed,) = journald.entries(MIP_EVENT="binding.removed", MIP_INSTANCE="stop-ha")
    assert removed["MIP_REASON"] == "deregistered"
    # The stop did come within a second of the registration (else the pacing was not exercised),
    # and the deregistration was sent after that second was over.
    # (A deregistration retransmitted on a slow machine adds more "0" entries.)
    sent = journald.entries(count=2, MIP_EVENT="registration.sent", MIP_INSTANCE="stop-mn")
    lifetimes = [e["MIP_LIFETIME"] for e in sent]
    assert lifetimes[0] == "600" and len(lifetimes) >= 2 and set(lifetimes[1:]) == {"0"}, lifetimes
    (stopping,) = journald.entries(MIP_EVENT="daemon.stopping", MIP_INSTANCE="stop-mn")
    assert when(stopping) - when(sent[0]) < 1.0, "the node was not stopped within a second of registering"
    # Once a second at most (journald's receipt times, so a little jitter is allowed).
    assert when(sent[1]) >= when(stopping) and when(sent[1]) - when(sent[0]) >= 0.9
    accepted = journald.entries(count=2, MIP_EVENT="registration.accepted", MIP_INSTANCE="stop-mn")
    assert [e["MIP_LIFETIME"] for e in accepted] == ["600", "0"]
