"""A real ``mipd run`` home agent on the kernel tunnel backend under a real kernel, booted ONCE.

tests/support/kernel_daemon_checks.py runs under a real kernel (tests/support/realkernel.py: user-mode
Linux or QEMU; the host kernel has no ipip/gre): it
writes a profile with ``tunnel: {backend: kernel}``, starts ``mipd run``, registers nodes over
UDP 434 (scapy + hmac), pings the home address from a correspondent through the kernel tunnels,
kills and restarts the daemon and stops it, printing one JSON line per named check; each pytest
test below asserts one of them. The runner and its boot-to-result time are printed (``pytest -s``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.realkernel import KernelChecks, run_checks

CHECKS = [
    "topology",
    "daemon_started_with_kernel_backend",
    "registration_accepted_and_ipip_route",
    "ping_through_ipip",
    "gre_registration_moves_route_to_mipgre0",
    "ping_through_gre",
    "care_of_change_updates_route",
    "ping_after_care_of_change",
    "udp_tunnel_routes_into_mipu0_and_answers_keepalives",
    "udp_to_ipip_moves_route_back_to_mipip0",
    "ping_after_udp_tunnel",
    "mobile_router_prefix_routed_pinged_and_removed",
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
def kernel_checks() -> KernelChecks:
    return run_checks(SCRIPT, modules=("ipip", "ip_gre", "veth", "bridge", "tun"), timeout=600)


@pytest.mark.parametrize("name", CHECKS)
def test_kernel_daemon(kernel_checks: KernelChecks, name: str) -> None:
    kernel_checks.assert_ok(name)
