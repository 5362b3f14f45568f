"""The foreign agent's ``kernel`` data plane: Linux's ipip (RFC 2003) and gre (RFC 2784) devices.

The same two external ("collect_md") devices as the home agent's kernel backend, ``mipip0`` and
``mipgre0`` (a namespace holds only one external device per kind, so the names are shared; see
"Limits" below). They receive every ipip/gre packet addressed to this host -- in particular what
home agents tunnel to the care-of address -- and decapsulate it; the inner datagram is then
routed as if received on the device:

- to a visitor: rule 7710 finds ``H/32 dev IF`` in table 770000, and the static neighbour entry
  gives the visitor's MAC (mipd.adapters.tunnel.visitor_routing);
- to anything else: rule 7720 ``iif mipip0|mipgre0 blackhole`` discards it silently (4.2.2: no
  ICMP; an ``unreachable`` rule would send one).

Reverse tunnels (RFC 3024): the visitor's table holds one lightweight-tunnel route

    default encap ip dst <home agent> src <care-of> ttl 64 tos inherit (DF) dev mipip0|mipgre0 proto 77

(outer header as in mipd.adapters.tunnel.kernel, which explains TTL 64 / TOS inherit / DF).

rp_filter: the home agent's backend keeps these devices strict (1), because what it decapsulates
comes *from* away home addresses, which route back through them. Here the opposite holds: a
decapsulated datagram comes from a correspondent anywhere, and the route back to it goes out of
the uplink, never through mipip0 -- strict filtering would drop every one (IPReversePathFilter).
Loose (2) is no way out either: the external devices have no IPv4 address, and for such a device
``__fib_validate_source`` rejects any source not routed through it whenever rp_filter is on. So
the FA sets 0 on both devices, and the host needs ``net.ipv4.conf.all.rp_filter`` = 0 (the kernel
uses max(all, device); the runtime's host settings lower ``all`` as the home agent's do). What
the filter would have protected is covered by rule 7720: decapsulated datagrams reach visitors
and nothing else.

Limits:
- The kernel does not check that the outer source is the visitor's home agent (an external device
  accepts any endpoint; the rule selectors cannot see the tunnel's outer addresses). The
  userspace backend checks it. Anyone who can send ipip/gre to the care-of address can therefore
  reach a visitor -- which plain IP routing would allow anyway -- but nothing else (rule 7720).
- Drops of non-visitor datagrams are silent in the kernel: no per-reason counter. ``counters``
  reports the devices' packet counts.
- Minimal encapsulation (RFC 2004) has no kernel implementation.
- A home agent and a foreign agent kernel backend cannot share a network namespace: they need
  opposite rp_filter values on the same devices, rule 7720 would discard the home agent's
  reverse-tunnelled traffic, and each deletes the devices at close.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from ipaddress import IPv4Address
from pathlib import Path

from mipd.adapters.netlink import calls as netlink
from mipd.adapters.tunnel.backend import BackendError, BackendKind
from mipd.adapters.tunnel.kernel import DEVICES, OUTER_TTL, device_counters
from mipd.adapters.tunnel.visitor_routing import DEFAULT, VisitorRouting
from mipd.core.planes import Delivery, VisitorPlane

PROC = Path("/proc/sys/net/ipv4")


class VisitorKernelBackend:
    """VisitorBackend on kernel ipip/gre: two external devices, rules, one encap route per reverse visitor."""

    name = BackendKind.KERNEL
    encapsulations = frozenset(DEVICES)
    udp_tunnelling = False  # Linux has no kernel tunnel with the RFC 3519 header: the userspace backend's

    def __init__(self, proc: Path = PROC) -> None:
        self._proc = proc
        self.routing: VisitorRouting | None = None
        self.udp_dropped = 0

    def set_udp_sender(self, send: Callable[[bytes, IPv4Address, int], bool]) -> None:
        """Nothing to send: no UDP tunnel is ever offered with this backend."""

    def from_udp_tunnel(self, payload: bytes, source: IPv4Address, port: int) -> None:
        self.udp_dropped += 1  # never offered: a type-4 message is not ours to deliver

    def start(self, care_of_address: IPv4Address, interface: str) -> None:
        """Create mipip0 and mipgre0 (external, up, rp_filter 0) and the fixed rules. Raises
        BackendError if the kernel cannot make external tunnel devices."""
        available, why = netlink.kernel_tunnels_available()
        if not available:
            raise BackendError(f"kernel tunnels unavailable: {why}")
        self.routing = VisitorRouting(interface, DEVICES.values(), self._reverse_route)
        try:
            for kind, device in DEVICES.items():
                netlink.add_external_tunnel(device, kind.value)
                (self._proc / "conf" / device / "rp_filter").write_text("0")
            self.routing.start()
        except (OSError, BackendError) as exc:
            self.close()
            raise BackendError(f"cannot set up the kernel visitor backend: {exc}") from exc

    def _reverse_route(self, delivery: Delivery, table: int) -> None:
        device = DEVICES.get(delivery.encapsulation)
        if device is None:
            raise BackendError(f"visitor {delivery.home_address}: {delivery.encapsulation} is not carried by the "
                               f"kernel backend ({', '.join(sorted(e.value for e in DEVICES))})")
        encap = netlink.Encap(destination=delivery.home_agent, source=delivery.care_of_address, ttl=OUTER_TTL,
                              tos=netlink.TOS_INHERIT, dont_fragment=True)
        netlink.replace_encap_route(DEFAULT, encap, device=device, table=table)

    def _routing(self) -> VisitorRouting:
        if self.routing is None:
            raise BackendError("the visitor backend is not started")
        return self.routing

    def apply(self, change: VisitorPlane) -> None:
        """Make one visitor's neighbour entry, host route, rule and reverse route match ``change``."""
        self._routing().apply(change)

    def reconcile(self, desired: Iterable[VisitorPlane]) -> None:
        """Exactly ``desired``; stale owned routes, rules and neighbour entries are removed."""
        self._routing().reconcile(desired)

    def counters(self) -> dict[str, int]:
        """What the devices received (decapsulated, visitor or not) and sent (reverse_tunnelled)."""
        totals = device_counters(sent="reverse_tunnelled", received="decapsulated", received_first=True)
        totals["dropped_udp_not_visitor"] = self.udp_dropped
        return totals

    def close(self) -> None:
        """Remove every owned rule, route and neighbour entry, then both devices. Idempotent."""
        try:
            if self.routing is not None:
                self.routing.close()
        finally:
            self.routing = None
            for device in DEVICES.values():
                netlink.delete_link(device)
