"""Packet loss on a visited link (netem, under user-mode Linux): the node's retransmissions converge.

tests/support/lossy_link_checks.py runs inside UML (the host kernel has no netem): a home agent, a foreign
agent and a mobile node as real ``mipd run`` processes; netem drops every datagram the node sends for its
first 2.5 s on the visited link and 30 % of what either end sends after that. The node must register
through the foreign agent all the same (after several requests) and the correspondent must reach it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.uml import run_in_uml, uml_available

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "lossy_link_checks.py"
CHECKS = ["registers_through_the_lossy_link", "requests_were_retransmitted", "correspondent_reaches_the_node"]


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    why = uml_available()
    if why:
        pytest.skip(why)
    result = run_in_uml(SCRIPT, ["30%"], modules=("ipip", "ip_gre", "veth", "bridge", "sch_netem"), timeout=300,
                        memory="1G")
    checks = {e["check"]: e for e in (json.loads(line) for line in result.stdout.splitlines() if line.startswith("{"))}
    print(f"\nUML boot-to-result {result.seconds:.1f} s; {json.dumps(checks.get(CHECKS[0], {}).get('detail'))}")
    if result.returncode != 0 or not checks:
        pytest.fail(f"the UML script failed (rc {result.returncode})\nstdout:\n{result.stdout[-2000:]}\n"
                    f"stderr:\n{result.stderr[-3000:]}\nconsole:\n{result.console[-1500:]}")
    return checks


@pytest.mark.parametrize("name", CHECKS)
def test_lossy_visited_link(results: dict[str, dict[str, Any]], name: str) -> None:
    assert name in results, f"check {name!r} never ran"
    assert results[name]["ok"], f"{name}: {results[name]['detail']}"
