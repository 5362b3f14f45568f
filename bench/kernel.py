"""The kernel data path under a real kernel: one boot of tests/support/realkernel.py's runner
(user-mode Linux where it boots, else QEMU) running bench/kernel_routes.py.

The runner owns the guest: on a timeout, an error or Ctrl-C its whole process group is killed and
its temporary directory removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.realkernel import json_lines, kernel_unavailable, run_in_kernel

SCRIPT = Path(__file__).resolve().parent / "kernel_routes.py"
MODULES = ("ipip", "ip_gre", "veth")


def run(count: int, *, dataplane: bool = True, timeout: float = 600.0) -> dict[str, Any]:
    """Boot once, measure ``count`` routes (and the whole home-agent data plane unless ``dataplane``
    is false); the script's JSON plus ``boot_s`` (boot to power-off), ``runner`` (which kernel ran
    it and why) and ``guest_kernel`` (its release)."""
    why = kernel_unavailable()
    if why is not None:
        raise RuntimeError(f"no real Linux kernel: {why}")
    args = [str(count)] if dataplane else [str(count), "--tunnels-only"]
    result = run_in_kernel(SCRIPT, args, modules=MODULES, timeout=timeout)
    lines = json_lines(result.stdout)
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"the kernel script failed under {result.runner} (exit {result.returncode}): "
                           f"{result.stderr[-1500:] or result.console[-1500:]}")
    measured: dict[str, Any] = lines[-1]
    measured.update(boot_s=round(result.seconds, 1), runner=f"{result.runner} ({result.why})",
                    guest_kernel=f"{result.kernel} ({result.runner})")
    return measured
