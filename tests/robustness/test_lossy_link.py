"""Packet loss on a visited link (netem, under a real kernel): the node's retransmissions converge.

tests/support/lossy_link_checks.py runs under a real kernel (tests/support/realkernel.py; the host
kernel has no netem): a home agent, a foreign
agent and a mobile node as real ``mipd run`` processes; netem drops every datagram the node sends for its
first 2.5 s on the visited link and 30 % of what either end sends after that. The node must register
through the foreign agent all the same (after several requests) and the correspondent must reach it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.realkernel import KernelChecks, run_checks

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "lossy_link_checks.py"
CHECKS = ["registers_through_the_lossy_link", "requests_were_retransmitted", "correspondent_reaches_the_node"]


@pytest.fixture(scope="module")
def results() -> KernelChecks:
    checks = run_checks(SCRIPT, ["30%"], modules=("ipip", "ip_gre", "veth", "bridge", "sch_netem"), timeout=600,
                        memory="1G")
    print(json.dumps(checks.entries.get(CHECKS[0], {}).get("detail")))
    return checks


@pytest.mark.parametrize("name", CHECKS)
def test_lossy_visited_link(results: KernelChecks, name: str) -> None:
    results.assert_ok(name)
