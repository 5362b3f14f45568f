"""The kernel tunnel backend against a real kernel with ipip/gre: user-mode Linux, booted ONCE.

tests/support/kernel_checks.py runs inside UML (the host kernel has no ipip/gre) and prints one
JSON line per named check; each pytest test below asserts one of them, so a failure names what
broke. The boot-to-result time is printed (``pytest -s``) and kept in the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.uml import run_in_uml, uml_available

CHECKS = [
    "topology",
    "probe_available",
    "start_creates_external_devices",
    "apply_ipip_route",
    "ping_through_ipip",
    "outer_header_ipip",
    "reverse_ipip_decapsulated",
    "rp_filter_drops_spoofed_inner_source",
    "care_of_change_replaces_route",
    "ping_through_gre",
    "outer_header_gre",
    "simultaneous_bindings_use_first_endpoint",
    "deregistration_removes_route",
    "reconcile_removes_stale_mipd_routes",
    "reconcile_keeps_foreign_route",
    "counters",
    "close_removes_devices_and_routes",
    "route_memory",
    "device_memory",
]
SCRIPT = Path(__file__).resolve().parents[1] / "support" / "kernel_checks.py"


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
def test_kernel_backend(uml_results: dict[str, dict[str, Any]], name: str) -> None:
    entry = uml_results.get(name)
    assert entry is not None, f"check {name!r} never ran; stderr:\n{uml_results['_stderr']['detail']}"
    assert entry["ok"], f"{name}: {entry['detail']}"
