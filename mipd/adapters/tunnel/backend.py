"""The tunnel backends' common interface (issue: home agent data plane).

A backend turns the engine's :class:`~mipd.core.planes.DataPlane` desired states into real
forwarding: packets routed to an away home address leave encapsulated towards each care-of
address, and reverse-tunnelled packets from a registered care-of address are decapsulated and
forwarded (RFC 3024). Two implementations:

- ``kernel`` (mipd.adapters.tunnel.kernel): Linux's own ipip/gre through pyroute2 netlink;
- ``userspace`` (mipd.adapters.tunnel.userspace): a TUN device plus raw sockets, for kernels
  without ipip/gre (and the only one that can do minimal encapsulation, RFC 2004).

Proxy and gratuitous ARP on the home link are not a backend's business: mipd.adapters.link.home
does them the same way for both. Everything a backend creates (links, routes) is marked as
mipd's (route protocol RTPROT_MIPD of mipd.adapters.netlink.calls, link names starting ``mip``) so that
:meth:`TunnelBackend.reconcile` can remove what no binding needs after a crash, and never touches
what it did not create.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from ipaddress import IPv4Address
from typing import Protocol

from mipd.core.planes import DataPlane, VisitorPlane
from mipd.core.wire.tunnel import Encapsulation


class BackendError(Exception):
    """The backend cannot start or cannot do what was asked; the message says why."""


class BackendKind(StrEnum):
    """Which data plane runs, as daemon.started, mipctl status and STATUS= report it."""

    KERNEL = "kernel"  # Linux's own ipip/gre devices through netlink
    USERSPACE = "userspace"  # a TUN device and raw sockets
    NONE = "none"  # not started (yet)


class TunnelBackend(Protocol):
    """A data plane for one home agent (later: foreign agent, co-located mobile node)."""

    name: BackendKind
    encapsulations: frozenset[Encapsulation]  # what it can carry: never offered or accepted beyond this

    def start(self, local: IPv4Address) -> None:
        """Create its devices and sockets; ``local`` is the agent's address (outer source,
        and where reverse tunnels end). Runs inside the daemon's asyncio loop. Raises
        BackendError."""
        ...

    def reconcile(self, desired: Iterable[DataPlane]) -> None:
        """At start: make the forwarding state exactly ``desired`` (the restored bindings),
        removing every mipd-owned route or tunnel that no binding needs."""
        ...

    def apply(self, change: DataPlane) -> None:
        """Make one node's forwarding state match ``change`` (idempotent)."""
        ...

    def apply_many(self, changes: Sequence[DataPlane]) -> dict[IPv4Address, BackendError]:
        """:meth:`apply` for many nodes at once (a turn's first registrations), the netlink work in
        batches; what failed, by home address. The rest is applied."""
        ...

    def counters(self) -> dict[str, int]:
        """Packets and drops so far, e.g. encapsulated, decapsulated, dropped_not_registered."""
        ...

    def close(self) -> None:
        """Remove everything it created (routes, devices, sockets)."""
        ...


class VisitorBackend(Protocol):
    """A foreign agent's data plane (RFC 5944 4.2.2, RFC 3024): delivers what visitors' home agents
    tunnel to the care-of address, and reverse-tunnels the visitors' own packets when asked.

    Implementations: mipd.adapters.tunnel.visitor_kernel (external ipip/gre devices) and
    mipd.adapters.tunnel.visitor_userspace (a TUN device plus raw sockets); both keep their routing
    state through mipd.adapters.tunnel.visitor_routing, which documents the ownership marks."""

    name: BackendKind
    encapsulations: frozenset[Encapsulation]  # what it can receive and reverse-tunnel
    udp_tunnelling: bool  # RFC 3519 UDP tunnels through the relay socket (the userspace backend only)

    def set_udp_sender(self, send: Callable[[bytes, IPv4Address, int], bool]) -> None:
        """How UDP-tunnelled datagrams leave (the relay socket: payload, destination, port -> sent)."""
        ...

    def from_udp_tunnel(self, payload: bytes, source: IPv4Address, port: int) -> None:
        """A MIP Tunnel Data message (RFC 3519 3.3) that came to the relay socket from (source, port)."""
        ...

    def start(self, care_of_address: IPv4Address, interface: str) -> None:
        """Create devices, sockets and the fixed rules; ``interface`` is the visited link.
        Runs inside the daemon's asyncio loop. Raises BackendError."""
        ...

    def reconcile(self, desired: Iterable[VisitorPlane]) -> None:
        """Make the state exactly ``desired`` (the restored visitors), removing every mipd-owned
        route, rule and static neighbour entry that no visitor needs."""
        ...

    def apply(self, change: VisitorPlane) -> None:
        """Make one visitor's delivery match ``change`` (idempotent; delivery None removes it)."""
        ...

    def counters(self) -> dict[str, int]:
        """Packets and drops so far, e.g. decapsulated, reverse_tunnelled, dropped_not_visitor."""
        ...

    def close(self) -> None:
        """Remove everything it created (rules, routes, neighbour entries, devices, sockets)."""
        ...


def home_routes(changes: Iterable[DataPlane]) -> dict[IPv4Address, DataPlane]:
    """The last word on each home address, for backends that batch."""
    return {change.home_address: change for change in changes}
