"""A real ``mipd run`` home agent on the kernel tunnel backend: user-mode Linux, booted ONCE.

tests/support/kernel_daemon_checks.py runs inside UML (the host kernel has no ipip/gre): it
writes a profile with ``tunnel: {backend: kernel}``, starts ``mipd run``, registers nodes over
UDP 434 (scapy + hmac), pings the home address from a correspondent through the kernel tunnels,
kills and restarts the daemon and stops it, printing one JSON line per named check; each pytest
test below asserts one of them. The boot-to-result time is printed (``pytest -s``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.uml import run_in_uml, uml_available

CHECKS = [
    "topology",
    "daemon_started_with_kernel_backend",
    "registration_accepted_and_ipip_route",
    "ping_through_ipip",
    "gre_registration_moves_route_to_mipgre0",
    "ping_through_gre",
    "care_of_change_updates_route",
    "ping_after_care_of_change",
    "short_lifetime_expires_silently",
    "restart_after_kill_9_reconciles_routes",
    "ping_after_restart",
    "wall_clock_back_1h_resync_is_accepted",
    "wall_clock_forward_2h_accepted_and_nothing_expires",
    "sigterm_exits_0_and_removes_everything",
    "no_error_events",
]
SCRIPT = Path(__file__).resolve().parents[1] / "support" / "kernel_daemon_checks.py"


@pytest.fixture(scope="module")
def uml_results() -> dict[str, dict[str, Any]]:
    why = uml_available()
    if why:
        pytest.skip(why)
    result = run_in_uml(SCRIPT, timeout=180)
    script = next((json.loads(line)["detail"] for line in result.stdout.splitlines()
                   if line.startswith('{"check": "script_seconds"')), None)
    print(f"\nUML boot-to-result: {result.seconds:.1f} s (script inside UML: {script} s)")
    if result.returncode is None:
        pytest.fail(f"UML did not finish the checks in time\nconsole tail:\n{result.console[-2000:]}\n"
                    f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-3000:]}")
    checks = {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            checks[entry["check"]] = entry
    checks["_stderr"] = {"detail": result.stderr[-3000:]}
    return checks


@pytest.mark.parametrize("name", CHECKS)
def test_kernel_daemon(uml_results: dict[str, dict[str, Any]], name: str) -> None:
    entry = uml_results.get(name)
    assert entry is not None, f"check {name!r} never ran; stderr:\n{uml_results['_stderr']['detail']}"
    assert entry["ok"], f"{name}: {entry['detail']}"
