"""Which tunnel backend runs: ``tunnel.backend`` (auto, kernel, userspace) and what the kernel offers.

``auto`` probes the kernel: with ipip/gre available it uses the kernel backend, else the userspace
one (TUN + raw sockets). The choice and the reason go into daemon.started. The home agent's
backends and the foreign agent's visitor backends are chosen alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from mipd.adapters.netlink import calls as netlink
from mipd.adapters.tunnel.backend import BackendError, TunnelBackend, VisitorBackend
from mipd.adapters.tunnel.kernel import KernelBackend
from mipd.adapters.tunnel.userspace import UserspaceBackend
from mipd.adapters.tunnel.visitor_kernel import VisitorKernelBackend
from mipd.adapters.tunnel.visitor_userspace import VisitorUserspaceBackend

B = TypeVar("B")


def choose(requested: str, kernel: Callable[[], B], userspace: Callable[[], B]) -> tuple[B, str]:
    """The backend for ``tunnel.backend`` and why it was chosen (BackendError if impossible)."""
    if requested == "userspace":
        return userspace(), "tunnel.backend is userspace: TUN device and raw sockets"
    available, why = netlink.kernel_tunnels_available()
    if requested == "kernel":
        if not available:
            raise BackendError(f"tunnel.backend is kernel, but {why}")
        return kernel(), f"tunnel.backend is kernel: {why}"
    if available:
        return kernel(), f"auto: {why}"
    return userspace(), f"auto: {why}; using the userspace backend (TUN device and raw sockets)"


def home_agent_backend(requested: str) -> tuple[TunnelBackend, str]:
    """A home agent's tunnel backend."""
    return choose(requested, KernelBackend, UserspaceBackend)


def visitor_backend(requested: str) -> tuple[VisitorBackend, str]:
    """A foreign agent's visitor data plane."""
    return choose(requested, VisitorKernelBackend, VisitorUserspaceBackend)
