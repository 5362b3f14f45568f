"""The ``kernel`` tunnel backend: Linux's own IP-in-IP (RFC 2003) and GRE (RFC 2784) through netlink.

Design: two *external* ("collect_md") tunnel devices shared by every binding -- ``mipip0``
(ipip) and ``mipgre0`` (gre) -- and, per away home address H, one lightweight-tunnel route

    H/32 encap ip dst <care-of> src <agent> ttl 64 tos inherit (DF) dev mipip0|mipgre0 proto 77

Why not one classic device per care-of address (``ip link add ... type ipip local A remote C``)?
- Cost, measured in UML (kernel 6.1, /proc/meminfo before/after, tests/support/kernel_checks.py
  ``route_memory`` / ``device_memory``): one encap route = ~614 bytes of slab (~725 bytes of
  MemTotal-MemFree; 10,000 routes: its fib_info, the lwtunnel state holding the outer header,
  the fib_alias and its share of the trie); one classic ipip device = ~44 KB of slab (~52 KB;
  200 devices: net_device, queues, sysfs/procfs nodes, its sysctl tree), about 70 times more.
  10,000 bindings: ~6 MB of routes rather than ~500 MB of devices.
- Names: IFNAMSIZ leaves 15 characters; naming a device after a care-of address is fragile,
  and a care-of change would mean delete + create + re-route instead of one route replace.
- Atomic moves: a care-of change, or a switch between ipip and gre, is a single RTM_NEWROUTE
  with NLM_F_REPLACE: no window in which H has no route.
- Receive: one external device per protocol takes every ipip/gre packet addressed to any of
  the host's addresses (ip_tunnel_lookup falls back to the collect_md device), so reverse
  tunnels (RFC 3024) need no per-node state.

RFC 2003 section 3.1 rules, as the kernel applies them (ip_md_tunnel_xmit reads the route's
tunnel key; an external device's own ttl/tos/pmtudisc parameters are not used):
- TOS: ``tos 1`` = inherit, copied from the inner header ("TOS ... is copied from the inner").
- DF: set on every outer header. Inner DF set means outer DF MUST be set; otherwise it MAY be.
  An inner datagram without DF that exceeds the tunnel MTU is fragmented before encapsulation
  (ip_forward against the route's MTU), so DF-always never loses it.
- TTL: 64 (IPDEFTTL), not "inherit". The outer TTL must be "appropriate for delivery ... to
  the tunnel exit point"; copying the inner TTL would make a nearly expired datagram (e.g. a
  traceroute probe) die inside the tunnel where the sender cannot see why, and couples the
  two paths. The inner TTL is decremented by forwarding, as the RFC asks.

Reverse tunnels: the external devices decapsulate whatever reaches them. ``rp_filter`` 1
(strict) on both devices accepts an inner datagram only if its source routes back through that
device -- i.e. only away home addresses (mipd.adapters.sysctl leaves mip* devices strict and
lowers ``all`` to 0, so the device value is the effective one). Residual gap: the *outer*
source is not matched to that node's registered care-of address (the userspace backend does
that); any host that can send ipip/gre to the agent can inject a datagram claiming an away home
address as its source.

Mobile networks (RFC 5177): each accepted prefix P of a mobile router registered with a
co-located care-of address gets the same kind of route, ``P encap ip dst <care-of> src <agent>
... dev mipip0|mipgre0 proto 77``; strict rp_filter then accepts reverse-tunnelled datagrams from
inside P, whose route points back through the device. Through a foreign agent's care-of address
a prefix needs two headers (RFC 5177 7: first IP-in-IP to the router's home address, then the
binding's own tunnel to the care-of address). An external device refuses to encapsulate into a
route through itself (ip_md_tunnel_xmit: "if (rt->dst.dev == dev)" counts a collision and drops),
but the inner header may go through the OTHER device, whose outer packet then follows the home
address's own encap route (both shown in tests/support/kernel_checks.py). So a GRE binding nests:
``P encap ip dst <home address> src <agent> dev mipip0``, whose packets to the home address take
``H encap ip dst <care-of> ... dev mipgre0``; reverse, mipgre0 then mipip0 decapsulate and strict
rp_filter holds (P routes through mipip0). An IP-in-IP binding nests through a classic ipip device
per router, ``mipnHHHHHHHH`` (the home address in hex; ``local <agent> remote H ttl 64 tos inherit
pmtudisc``, rp_filter strict): ``P dev mipnHHHHHHHH proto 77``; the device sends the inner header to
H, whose packet then takes H's encap route through mipip0 -- another device, so no collision.
Reverse, CoA -> HA [H -> HA [LAN]]: mipip0 (external) takes the outer header, then the inner H -> HA
matches the classic device exactly (ip_tunnel_lookup prefers remote+local over collect_md), whose
strict rp_filter accepts sources inside P; single-level tunnels from any care-of address still reach
mipip0 (tests/support/kernel_checks.py). The device is made when the binding first needs it (one
netlink call, outside the route batch: routers are few), and deleted, after the batch has moved or
removed the prefix routes, when the router deregisters, expires, drops its prefixes or moves to a
co-located care-of address or GRE; ``reconcile`` deletes every mipn* device no binding needs (after a
crash), ``close`` all of them, and ``mipd cleanup`` lists them as mipd's. So ``mobile_network_nesting``
is every encapsulation this backend carries.

Limitation: simultaneous bindings (RFC 5944 3.8.2.2 / 4.2.3: a copy to each care-of address).
IPv4 multipath routes with per-nexthop encap exist, but they pick ONE nexthop per flow (ECMP),
they do not copy; so this backend tunnels to the first endpoint only. The userspace backend
duplicates.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from mipd.adapters.netlink import batch as netlink_batch
from mipd.adapters.netlink import calls as netlink
from mipd.adapters.netlink import policy as netlink_policy
from mipd.adapters.netlink.calls import RTPROT_MIPD
from mipd.adapters.tunnel.backend import BackendError, BackendKind, home_routes
from mipd.core.planes import DataPlane, Endpoint
from mipd.core.wire.tunnel import Encapsulation

IPIP_DEVICE = "mipip0"
GRE_DEVICE = "mipgre0"
DEVICES = {Encapsulation.IPIP: IPIP_DEVICE, Encapsulation.GRE: GRE_DEVICE}
NESTING_DEVICE = re.compile(r"mipn[0-9a-f]{8}")  # one classic ipip device per nesting router (docstring)


def nesting_device(home: IPv4Address) -> str:
    """The classic ipip device (``local <agent> remote <home>``) that carries the inner header of
    mobile router ``home``'s prefixes through a foreign agent: ``mipn`` + the address in hex."""
    return f"mipn{int(home):08x}"


def device_counters(*, sent: str, received: str, received_first: bool = False) -> dict[str, int]:
    """The devices' IFLA_STATS64 counters summed: packets and bytes sent (as ``sent``,
    ``sent_bytes``) and received (``received``, ``received_bytes``), and both directions' drops;
    the received ones listed first if ``received_first`` (the order mipctl stats prints)."""
    first, second = (received, sent) if received_first else (sent, received)
    totals = {first: 0, second: 0, f"{first}_bytes": 0, f"{second}_bytes": 0, "dropped": 0}
    for device in DEVICES.values():
        stats = netlink.link_stats(device)
        totals[sent] += stats.get("tx_packets", 0)
        totals[received] += stats.get("rx_packets", 0)
        totals[f"{sent}_bytes"] += stats.get("tx_bytes", 0)
        totals[f"{received}_bytes"] += stats.get("rx_bytes", 0)
        totals["dropped"] += stats.get("tx_dropped", 0) + stats.get("rx_dropped", 0)
    return totals
OUTER_TTL = 64  # IPDEFTTL; see the module docstring
PROC = Path("/proc/sys/net/ipv4")


class KernelBackend:
    """TunnelBackend on kernel ipip/gre: two external devices plus one encap route per away node."""

    name = BackendKind.KERNEL
    encapsulations = frozenset(DEVICES)
    mobile_network_nesting = frozenset(DEVICES)  # see the module docstring

    def __init__(self, proc: Path = PROC) -> None:
        self._proc = proc
        self._local: IPv4Address | None = None
        self._routes: dict[IPv4Address, Endpoint] = {}
        self._prefixes: dict[IPv4Address, tuple[IPv4Network, ...]] = {}  # RFC 5177: routed per home address
        self._nesting: dict[IPv4Address, IPv4Address] = {}  # home -> local address of its nesting device

    def start(self, local: IPv4Address) -> None:
        """Create mipip0 and mipgre0 (external, up, rp_filter strict). Raises BackendError if
        the kernel cannot make external tunnel devices (no ipip/gre support)."""
        available, why = netlink.kernel_tunnels_available()
        if not available:
            raise BackendError(f"kernel tunnels unavailable: {why}")
        self._local = local
        netlink_batch.forget_links()
        try:
            for kind, device in DEVICES.items():
                netlink.add_external_tunnel(device, kind.value)
                (self._proc / "conf" / device / "rp_filter").write_text("1")
        except (netlink.NetlinkError, OSError) as exc:
            self.close()
            raise BackendError(f"cannot create kernel tunnel devices: {exc}") from exc

    def reconcile(self, desired: Iterable[DataPlane]) -> None:
        """Delete every mipd route (proto 77) that no away node in ``desired`` needs, then apply
        each of ``desired``, all in netlink batches (mipd.adapters.netlink.batch). Routes of other
        protocols are never touched. BackendError names the bindings that could not be installed."""
        wanted = home_routes(desired)
        needed = {IPv4Network(home) for home, change in wanted.items() if change.away}
        needed |= {prefix for change in wanted.values() if change.away for prefix in change.prefixes}
        try:
            stale = [route for route in netlink_batch.owned_routes(RTPROT_MIPD) if route.destination not in needed]
            failed = netlink_batch.delete_routes(stale)
        except netlink.NetlinkError as exc:
            raise BackendError(f"cannot remove stale mipd routes: {exc}") from exc
        if failed:
            raise BackendError(f"cannot remove stale mipd routes: {next(iter(failed.values()))}")
        nesting = {nesting_device(home) for home, change in wanted.items() if _nests_ipip(change)}
        try:
            for name in netlink_policy.link_names():
                if NESTING_DEVICE.fullmatch(name) and name not in nesting:
                    netlink.delete_link(name)
        except netlink.NetlinkError as exc:
            raise BackendError(f"cannot remove stale nesting devices: {exc}") from exc
        netlink_batch.forget_links()
        self._routes.clear()
        self._prefixes.clear()
        self._nesting.clear()
        errors = self.apply_many(list(wanted.values()))
        if errors:
            shown = "; ".join(f"{home}: {error}" for home, error in list(errors.items())[:5])
            raise BackendError(f"{len(errors)} of {len(wanted)} bindings not installed: {shown}")

    def apply(self, change: DataPlane) -> None:
        """Route ``change.home_address`` into the tunnel to its first usable endpoint, or remove
        its route when it has none (at home / deregistered)."""
        error = self.apply_many([change]).get(change.home_address)
        if error is not None:
            raise error

    def apply_many(self, changes: Sequence[DataPlane]) -> dict[IPv4Address, BackendError]:
        """:meth:`apply` for each of ``changes`` (the last word on each home address counts), the
        route changes sent in netlink batches; what failed, by home address (the rest is applied)."""
        errors: dict[IPv4Address, BackendError] = {}
        batch: netlink_batch.Batch[IPv4Address] = netlink_batch.Batch()
        installs: dict[IPv4Address, Endpoint | None] = {}
        routed: dict[IPv4Address, tuple[IPv4Network, ...]] = {}
        unnest: list[IPv4Address] = []  # nesting devices to delete once the batch has moved the prefixes
        for home, change in home_routes(changes).items():
            endpoint = next((e for e in change.endpoints if e.encapsulation in DEVICES), None)
            if endpoint is None:
                if change.endpoints:
                    errors[home] = BackendError(
                        f"{home}: no endpoint with an encapsulation this backend carries "
                        f"({', '.join(sorted(e.value for e in DEVICES))})")
                    continue
                batch.delete_route(home, home)
                for prefix in self._prefixes.get(home, ()):
                    batch.delete_route(home, prefix)
                installs[home], routed[home] = None, ()
                if home in self._nesting:
                    unnest.append(home)
                continue
            nested = not endpoint.decapsulates  # a foreign agent's care-of address: RFC 5177 7
            nests_ipip = self._prepare_nesting(change, endpoint, errors, unnest)
            prefixes = change.prefixes if nests_ipip or not _nests_ipip(change) else ()
            if self._routes.get(home) == endpoint and self._prefixes.get(home, ()) == prefixes:
                continue
            encap = netlink.Encap(destination=endpoint.care_of_address, source=endpoint.source, ttl=OUTER_TTL,
                                  tos=netlink.TOS_INHERIT, dont_fragment=True)
            batch.replace_route(home, home, device=DEVICES[endpoint.encapsulation], encap=encap)
            device: str = DEVICES[endpoint.encapsulation]
            prefix_encap: netlink.Encap | None = encap
            if nests_ipip:  # inner header to H by the classic device, outer by H's own route (mipip0)
                device, prefix_encap = nesting_device(home), None
            elif nested:  # GRE: inner header to H through mipip0, outer by H's own route (mipgre0)
                device = IPIP_DEVICE
                prefix_encap = netlink.Encap(destination=home, source=endpoint.source, ttl=OUTER_TTL,
                                             tos=netlink.TOS_INHERIT, dont_fragment=True)
            for prefix in prefixes:  # RFC 5177 6.1 step 4: the prefix via the same tunnel
                batch.replace_route(home, prefix, device=device, encap=prefix_encap)
            for prefix in self._prefixes.get(home, ()):
                if prefix not in prefixes:
                    batch.delete_route(home, prefix)
            installs[home], routed[home] = endpoint, prefixes
        failures = batch.send()
        self._unnest(unnest, errors)  # after the batch: the prefixes' routes went elsewhere first (or away)
        for home, endpoint in installs.items():
            failure = failures.get(home)
            if failure is not None:
                errors[home] = (BackendError(f"cannot remove the route of {home}: {failure}") if endpoint is None else
                                BackendError(f"cannot route {home} to {endpoint.care_of_address}: {failure}"))
                continue
            if endpoint is None:
                self._routes.pop(home, None)
            else:
                self._routes[home] = endpoint
            if routed[home]:
                self._prefixes[home] = routed[home]
            else:
                self._prefixes.pop(home, None)
        return errors

    def _prepare_nesting(self, change: DataPlane, endpoint: Endpoint, errors: dict[IPv4Address, BackendError],
                         unnest: list[IPv4Address]) -> bool:
        """Whether ``change``'s prefixes go through its nesting device, made here if missing (a
        failure is noted in ``errors``); a device no longer needed is put in ``unnest``."""
        home = change.home_address
        if not _nests_ipip(change):
            if home in self._nesting:
                unnest.append(home)
            return False
        if self._nesting.get(home) == endpoint.source:
            return True
        try:
            self._add_nesting_device(home, endpoint.source)
        except (netlink.NetlinkError, OSError) as exc:
            errors[home] = BackendError(
                f"{home}: mobile networks {', '.join(map(str, change.prefixes))} not routed: cannot create "
                f"the nesting device {nesting_device(home)}: {exc}")
            return False
        return True

    def _unnest(self, homes: list[IPv4Address], errors: dict[IPv4Address, BackendError]) -> None:
        """Delete the nesting devices of ``homes`` (the kernel deletes their routes with them)."""
        for home in homes:
            try:
                netlink.delete_link(nesting_device(home))
            except netlink.NetlinkError as exc:
                errors.setdefault(home, BackendError(f"cannot delete the nesting device {nesting_device(home)}: {exc}"))
                continue
            self._nesting.pop(home, None)
        if homes:
            netlink_batch.forget_links()

    def _add_nesting_device(self, home: IPv4Address, local: IPv4Address) -> None:
        """Create (or re-create, for a new local address) ``home``'s nesting device, up, rp_filter strict."""
        name = nesting_device(home)
        if home in self._nesting:
            netlink.delete_link(name)
            self._nesting.pop(home)
        netlink.add_ipip_tunnel(name, local=local, remote=home, ttl=OUTER_TTL)
        self._nesting[home] = local
        netlink_batch.forget_links()
        (self._proc / "conf" / name / "rp_filter").write_text("1")

    def counters(self) -> dict[str, int]:
        """Packets (and bytes) the devices sent (encapsulated) and received (decapsulated), and their drops."""
        return device_counters(sent="encapsulated", received="decapsulated")

    def close(self) -> None:
        """Delete both devices and every nesting device; the kernel deletes their routes with them."""
        nesting = {nesting_device(home) for home in self._nesting}
        with contextlib.suppress(netlink.NetlinkError):  # the ones this backend made are still deleted below
            nesting |= {name for name in netlink_policy.link_names() if NESTING_DEVICE.fullmatch(name)}
        for device in [*DEVICES.values(), *sorted(nesting)]:
            netlink.delete_link(device)
        netlink_batch.forget_links()
        self._routes.clear()
        self._prefixes.clear()
        self._nesting.clear()


def _nests_ipip(change: DataPlane) -> bool:
    """Whether ``change``'s prefixes go through a foreign agent's care-of address in IP-in-IP
    (RFC 5177 7: double tunnelling), which takes a nesting device: see the module docstring."""
    endpoint = next((e for e in change.endpoints if e.encapsulation in DEVICES), None)
    return (bool(change.prefixes) and endpoint is not None and not endpoint.decapsulates
            and endpoint.encapsulation == Encapsulation.IPIP)
