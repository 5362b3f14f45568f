"""The home agent's data plane as the daemon drives it: host settings, a tunnel backend, the
home link's ARP and broadcast forwarding, started and stopped together.

``tunnel.backend`` picks the backend (mipd.adapters.tunnel.choose); the choice and the reason go
into daemon.started. What the running backend cannot carry is neither advertised nor accepted:
the engine is given only the profile's encapsulations that the backend can do, and answers others
with 139.

UDP-tunnelled bindings (RFC 3519) always go through the userspace UDP tunnel plane
(mipd.adapters.tunnel.udp_tunnel), whichever backend runs: each DataPlane is split, its classic
endpoints to the backend and its UDP ones to that plane, which then owns the home address's route
(into ``mipu0`` instead of the backend's device). A host without TUN devices runs without that
plane: the engine then handles UDP Tunnel Requests as with ``nat_traversal: off``.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network

from mipd.adapters.link.home import HomeLink
from mipd.adapters.sysctl import HostSettings
from mipd.adapters.tunnel.backend import BackendError, BackendKind, TunnelBackend
from mipd.adapters.tunnel.broadcast import BroadcastForwarder
from mipd.adapters.tunnel.choose import home_agent_backend
from mipd.adapters.tunnel.udp_tunnel import SendUdp, UdpTunnelPlane
from mipd.core.planes import DataPlane
from mipd.core.wire.tunnel import Encapsulation


def _distinct_runs(planes: list[DataPlane]) -> list[list[DataPlane]]:
    """``planes`` cut, in order, into runs in which no home address appears twice (a batch applies
    one change per node; a second change for a node waits for the next run)."""
    runs: list[list[DataPlane]] = []
    seen: set[IPv4Address] = set()
    for plane in planes:
        if not runs or plane.home_address in seen:
            runs.append([])
            seen = set()
        runs[-1].append(plane)
        seen.add(plane.home_address)
    return runs


class HomeAgentDataPlane:
    """Everything that makes bindings carry traffic, for one home agent."""

    def __init__(self, requested_backend: str, interface: str, home_network: IPv4Network) -> None:
        self.requested = requested_backend
        self.interface = interface
        self.home_network = home_network
        self.host = HostSettings()
        self.home_link = HomeLink(interface, home_network)
        self.broadcast = BroadcastForwarder()
        self.backend: TunnelBackend | None = None
        self.udp = UdpTunnelPlane()
        self._classic: set[IPv4Address] = set()  # home addresses whose route the backend holds
        self.udp_unavailable = ""  # why the UDP tunnel plane could not start ("" when it runs)
        self.reason = ""
        self.host_report = ""
        self.failures = 0

    @property
    def name(self) -> BackendKind:
        return self.backend.name if self.backend is not None else BackendKind.NONE

    @property
    def mobile_network_nesting(self) -> frozenset[Encapsulation]:
        """The encapsulations through which the running backend routes mobile networks to a foreign
        agent's care-of address (nested IP-in-IP, RFC 5177 7): both backends: every encapsulation they carry."""
        return frozenset(getattr(self.backend, "mobile_network_nesting", frozenset()))

    def encapsulations(self, wanted: Iterable[Encapsulation]) -> frozenset[Encapsulation]:
        """The profile's encapsulations that the running backend can carry."""
        can = self.backend.encapsulations if self.backend is not None else frozenset()
        return frozenset(wanted) & can

    def start(self, address: IPv4Address, send_udp: SendUdp) -> None:
        """Host settings, backend, UDP tunnel plane (sending with ``send_udp``), home link, broadcasts;
        BackendError or OSError if impossible."""
        self.host_report = self.host.apply(self.interface)
        self.backend, self.reason = home_agent_backend(self.requested)
        self.backend.start(address)
        try:
            self.udp.start(send_udp, address)
        except BackendError as exc:  # e.g. no TUN device: the rest still works, without RFC 3519
            self.udp_unavailable = str(exc)
        self.home_link.start()
        self.broadcast.start(self.interface, self.home_network)

    def reconcile(self, desired: list[DataPlane]) -> None:
        assert self.backend is not None
        parts = [plane.split() for plane in desired]
        self.backend.reconcile([classic for classic, _ in parts])
        self._classic = {classic.home_address for classic, _ in parts if classic.away}
        if not self.udp_unavailable:  # else restored UDP bindings carry nothing until they re-register
            self.udp.reconcile([udp for _, udp in parts])
        self.home_link.reconcile(desired)
        for classic, _ in parts:
            self.broadcast.update(classic)

    def _apply_tunnels(self, planes: list[DataPlane], errors: dict[IPv4Address, list[str]]) -> None:
        """The backend's part (one batch), then the UDP plane's. A backend is told about a node it held
        a route for and no longer does, never about one whose route the UDP plane holds (it would
        delete it). A node whose backend part failed goes no further."""
        assert self.backend is not None
        parts = [(plane, *plane.split()) for plane in planes]
        to_backend = [classic for plane, classic, udp in parts
                      if classic.away or plane.home_address in self._classic or not udp.away]
        failed = self.backend.apply_many(to_backend)
        udp_parts = []
        for plane, classic, udp in parts:
            home = plane.home_address
            if home in failed:
                errors[home].append(f"{home}: {failed[home]}")
                continue
            if classic.away:
                self._classic.add(home)
            else:
                self._classic.discard(home)
            if not self.udp_unavailable:
                udp_parts.append(udp)
            elif udp.away:
                errors[home].append(f"{home}: no UDP tunnel plane for {home}: {self.udp_unavailable}")
        for home, error in self.udp.apply_many(udp_parts).items():
            errors[home].append(f"{home}: {error}")

    def apply(self, planes: Iterable[DataPlane]) -> list[str]:
        """Apply changes in order, the netlink work of each run of distinct home addresses in one
        batch (a turn's first registrations); a failure is reported per binding
        ("<home_address>: <error>"), never raised (the next change, and the next start's
        reconciliation, still run)."""
        assert self.backend is not None
        out: list[str] = []
        for run in _distinct_runs(list(planes)):
            errors: dict[IPv4Address, list[str]] = {plane.home_address: [] for plane in run}
            self._apply_tunnels(run, errors)
            try:
                linked = self.home_link.apply_many(run)
            except OSError as exc:  # not per node: every node of the run
                linked = {plane.home_address: exc for plane in run}
            for plane in run:
                home = plane.home_address
                if home in linked:
                    errors[home].append(f"{home}: {linked[home]}")
                self.broadcast.update(plane.split()[0])  # home-link broadcasts: classic tunnels only (B, 4.3)
                out += errors[home]
        self.failures += len(out)
        return out

    def counters(self) -> dict[str, int]:
        counters = dict(self.backend.counters()) if self.backend is not None else {}
        counters.update(self.udp.counters())
        counters["arp_sent"] = self.home_link.sent
        counters["failures"] = self.failures
        return counters

    def close(self) -> None:
        """Remove everything mipd made, then put the host settings back."""
        for part in (self.broadcast.close, self.home_link.close, self.udp.close,
                     self.backend.close if self.backend is not None else None, self.host.restore):
            if part is None:
                continue
            try:
                part()
            except (OSError, BackendError):
                self.failures += 1
