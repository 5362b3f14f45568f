"""The foreign agent's kernel data plane against a real kernel with ipip/gre: user-mode Linux, booted ONCE.

tests/support/visitor_kernel_checks.py runs inside UML (the host kernel has no ipip/gre) and prints
one JSON line per named check; each pytest test below asserts one of them, so a failure names what
broke: delivery of IP-in-IP and GRE tunnelled traffic to a visitor and its reverse tunnel (RFC 5944
4.2.2, RFC 3024), removal, reconciliation and close.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.uml import run_in_uml, uml_available

CHECKS = [
    "topology",
    "start_devices_and_fixed_rules",
    "ipip_delivery_and_reverse_tunnel",
    "gre_delivery_and_reverse_tunnel",
    "static_neighbours",
    "counters",
    "non_visitor_discarded_silently",
    "no_arp_for_home_addresses",
    "delivery_none_removes",
    "reconcile_removes_stale_keeps_foreign",
    "close_removes_everything",
]
SCRIPT = Path(__file__).resolve().parents[1] / "support" / "visitor_kernel_checks.py"


@pytest.fixture(scope="module")
def uml_results() -> dict[str, dict[str, Any]]:
    why = uml_available()
    if why:
        pytest.skip(why)
    result = run_in_uml(SCRIPT, timeout=120)
    print(f"\nUML boot-to-result: {result.seconds:.1f} s")
    if result.returncode is None:
        pytest.fail(f"UML did not finish the checks in time\nconsole tail:\n{result.console[-2000:]}\n"
                    f"stderr:\n{result.stderr[-2000:]}")
    checks = {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            checks[entry["check"]] = entry
    checks["_stderr"] = {"detail": result.stderr[-2000:]}
    return checks


@pytest.mark.parametrize("name", CHECKS)
def test_visitor_kernel_backend(uml_results: dict[str, dict[str, Any]], name: str) -> None:
    entry = uml_results.get(name)
    assert entry is not None, f"check {name!r} never ran; stderr:\n{uml_results['_stderr']['detail']}"
    assert entry["ok"], f"{name}: {entry['detail']}"
