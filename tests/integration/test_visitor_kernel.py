"""The foreign agent's kernel data plane against a real kernel with ipip/gre, booted ONCE.

tests/support/visitor_kernel_checks.py runs under a real kernel (tests/support/realkernel.py;
the host kernel has no ipip/gre) and prints
one JSON line per named check; each pytest test below asserts one of them, so a failure names what
broke: delivery of IP-in-IP and GRE tunnelled traffic to a visitor and its reverse tunnel (RFC 5944
4.2.2, RFC 3024), removal, reconciliation and close.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.realkernel import KernelChecks, run_checks

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
def kernel_checks() -> KernelChecks:
    return run_checks(SCRIPT, timeout=300)


@pytest.mark.parametrize("name", CHECKS)
def test_visitor_kernel_backend(kernel_checks: KernelChecks, name: str) -> None:
    kernel_checks.assert_ok(name)
