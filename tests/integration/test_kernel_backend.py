"""The kernel tunnel backend against a real kernel with ipip/gre, booted ONCE.

tests/support/kernel_checks.py runs under a real kernel (tests/support/realkernel.py: user-mode Linux
or QEMU; the host kernel has no ipip/gre) and prints one
JSON line per named check; each pytest test below asserts one of them, so a failure names what
broke. The runner, why it was chosen and its boot-to-result time are printed (``pytest -s``) and kept in the report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.realkernel import KernelChecks, run_checks

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
    "mobile_network_route",
    "ping_mobile_network_colocated",
    "rp_filter_accepts_the_prefix_source",
    "nested_through_one_external_device_is_a_collision",
    "nested_through_the_other_external_device_works",
    "nested_gre_binding_route",
    "ping_mobile_network_nested_through_a_gre_binding",
    "nested_ipip_binding_device",
    "ping_mobile_network_nested_through_an_ipip_binding",
    "nested_ipip_reply_accepted",
    "single_level_reverse_tunnel_beside_a_nesting_device",
    "nesting_device_removed_when_no_longer_needed",
    "reconcile_removes_stale_nesting_devices",
    "mobile_network_removed_when_no_longer_accepted",
    "deregistration_removes_route",
    "reconcile_removes_stale_mipd_routes",
    "reconcile_keeps_foreign_route",
    "batch_installs_many_bindings",
    "batch_reports_failing_bindings_only",
    "reconcile_reinstalls_many_bindings",
    "counters",
    "close_removes_devices_and_routes",
    "route_memory",
    "device_memory",
]
SCRIPT = Path(__file__).resolve().parents[1] / "support" / "kernel_checks.py"


@pytest.fixture(scope="module")
def kernel_checks() -> KernelChecks:
    return run_checks(SCRIPT, timeout=300)


@pytest.mark.parametrize("name", CHECKS)
def test_kernel_backend(kernel_checks: KernelChecks, name: str) -> None:
    kernel_checks.assert_ok(name)
