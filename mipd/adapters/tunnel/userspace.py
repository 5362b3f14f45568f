"""The ``userspace`` tunnel backend: a TUN device plus raw sockets, for kernels without ipip/gre.

How the pieces fit (RFC 5944 4.2.3, RFC 3024):

- **Forward.** For each away node a host route ``H/32 dev mip0 proto 77`` (through
  mipd.adapters.netlink.calls) makes the kernel forward packets for the home address H into the TUN
  device ``mip0``, decrementing their TTL as for any forwarded packet. We read each one from
  the TUN descriptor, encapsulate it once per registered endpoint (outer source = the
  endpoint's Home Agent address, 4.2.3) and send it with a raw ``IPPROTO_RAW`` socket
  (IP_HDRINCL) to the care-of address; the kernel routes the outer packet normally.
- **Reverse.** Raw sockets for protocols 4, 47 and 55, bound to our address, receive every
  tunnel packet addressed to us. A decapsulated datagram is accepted only if its outer source is
  a care-of address registered with T for the inner source's home address (RFC 3024); it is
  then written to ``mip0``, so the kernel receives it there and forwards it (strict rp_filter on
  ``mip0`` holds: the route back to H is the same /32 through ``mip0``).

- **Mobile networks (RFC 5177).** A mobile router's accepted prefixes get a route ``P dev mip0
  proto 77`` too. A packet to a host in P is encapsulated to each co-located (or UDP) care-of
  address as it is; towards a foreign agent's care-of address it is first encapsulated IP-in-IP
  to the router's home address (outer source our address), and that packet then as any packet to
  the home address: the foreign agent delivers it to the router, which decapsulates it. These
  routes carry an MTU 20 bytes smaller for the second header. Reverse: a datagram from inside an
  accepted prefix is accepted from the router's care-of address (co-located), or, nested, as
  IP-in-IP from the home address to us inside the tunnel from the care-of address (foreign
  agent); a source neither the home address nor inside the node's prefixes is dropped
  (``dropped_foreign_source``). Strict rp_filter on ``mip0`` holds for them as well: the route back
  to P is through ``mip0``.

Every packet is counted: what was sent, and every drop under its reason (see :data:`COUNTERS`).
The decisions live in :class:`TunnelTable`, which does no I/O and is unit-tested alone.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from mipd.adapters.netlink import batch as netlink_batch
from mipd.adapters.netlink import calls as netlink
from mipd.adapters.tunnel.backend import BackendError, BackendKind, home_routes
from mipd.adapters.tunnel.prefix_owners import PrefixOwners
from mipd.core.planes import DataPlane, Endpoint
from mipd.core.wire import ipv4
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.ipv4 import Protocol
from mipd.core.wire.tunnel import Decapsulated, DropReason, Encapsulation, TunnelRefused, decapsulate, encapsulate

DEVICE = "mip0"
BATCH = 256  # packets drained per wake-up and descriptor, so one busy socket cannot starve the rest
MAX_PACKET = 65535
# The largest header we add is 24 bytes (GRE: 20 + 4; minimal adds at most 12): with a 1500-byte
# path the inner datagram must fit 1476, and the kernel answers bigger DF packets with "fragmentation
# needed" itself (path MTU discovery through the tunnel, RFC 2003 5.1).
TUN_MTU = 1476
NESTED_MTU = TUN_MTU - 20  # a mobile network's route: one more IP-in-IP header (RFC 5177, FA care-of address)
_TUNSETIFF = 0x400454CA  # linux/if_tun.h: _IOW('T', 202, int)
_IFF_TUN, _IFF_NO_PI = 0x0001, 0x1000
_SIOCSIFMTU = 0x8922
PROC = Path("/proc/sys/net/ipv4")

COUNTERS = (
    "encapsulated",  # tunnel packets sent towards a care-of address
    "decapsulated",  # reverse-tunnelled datagrams handed to the kernel
    "dropped_no_binding",  # read from mip0 for a home address with no endpoint (route raced a deregistration)
    "dropped_malformed",  # not a well-formed datagram / tunnel packet (DecodeError)
    "dropped_not_registered",  # tunnelled to us from an outer source that is no registered care-of address
    "dropped_not_reverse",  # from a registered care-of address whose binding did not ask for T
    "dropped_foreign_source",  # nested from a mobile router: inner source outside its accepted prefixes (RFC 5177)
    *(f"dropped_{reason}" for reason in DropReason),  # RFC 2003 / 2004 refusals; unsupported_protocol
    "ignored_other_destination",  # a tunnel packet to another of this host's addresses: not ours
    "send_errors",
    "write_errors",
)


def decapsulate_counted(packet: bytes, counts: Counter[str]) -> Decapsulated | None:
    """``decapsulate(packet)``, a refusal or a malformed packet counted in ``counts`` as
    ``dropped_<reason>`` / ``dropped_malformed`` instead (drops are counted, never raised)."""
    try:
        return decapsulate(packet)
    except DecodeError:
        counts["dropped_malformed"] += 1
    except TunnelRefused as refused:
        counts[f"dropped_{refused.reason}"] += 1
    return None


def drain_into_tun(receiver: socket.socket, tun: int | None, decide: Callable[[bytes], bytes | None],
                   counts: Counter[str]) -> None:
    """Read up to BATCH tunnel packets from ``receiver``; write to the TUN device each inner packet
    ``decide`` lets through (the kernel then forwards or delivers it). Write errors are counted."""
    for _ in range(BATCH):
        try:
            packet = receiver.recv(MAX_PACKET)
        except (BlockingIOError, InterruptedError):
            return
        write_into_tun(tun, decide(packet), counts)


def read_tun(tun: int) -> Iterator[bytes]:
    """The packets the kernel has queued on the TUN device ``tun``: at most :data:`BATCH` of them per
    call, so that one busy device does not hold the event loop."""
    for _ in range(BATCH):
        try:
            yield os.read(tun, MAX_PACKET)
        except (BlockingIOError, InterruptedError):
            return


def write_into_tun(tun: int | None, inner: bytes | None, counts: Counter[str], errors: str = "write_errors") -> None:
    """Write ``inner`` (a packet let through, or None) to the TUN device, if open, for the kernel to
    forward or deliver; a failed write is counted as ``errors``, never raised."""
    if inner is None or tun is None:
        return
    try:
        os.write(tun, inner)
    except OSError:
        counts[errors] += 1


def close_raw_sockets(loop: asyncio.AbstractEventLoop | None, send: socket.socket | None,
                      receivers: list[socket.socket]) -> None:
    """Stop reading ``receivers`` and close them (the list is emptied) and the ``send`` socket."""
    for receiver in receivers:
        if loop is not None:
            loop.remove_reader(receiver.fileno())
        receiver.close()
    receivers.clear()
    if send is not None:
        send.close()


def close_tun(loop: asyncio.AbstractEventLoop | None, tun: int) -> None:
    """Stop reading the TUN descriptor and close it, which deletes the device and its routes."""
    if loop is not None:
        loop.remove_reader(tun)
    os.close(tun)


class TunnelTable:
    """The endpoints of every away node and the per-packet decisions, without I/O."""

    def __init__(self, local: IPv4Address) -> None:
        self.local = local
        self.endpoints: dict[IPv4Address, tuple[Endpoint, ...]] = {}
        self.routers = PrefixOwners()  # RFC 5177: the routers' accepted prefixes
        self.counts: Counter[str] = Counter()
        self._identification = 0

    def set(self, change: DataPlane) -> tuple[IPv4Network, ...]:
        """Adopt the node's endpoints and prefixes; return the prefixes it no longer has."""
        home = change.home_address
        if change.away:
            self.endpoints[home] = change.endpoints
        else:
            self.endpoints.pop(home, None)
        return self.routers.set(home, change.prefixes if change.away else ())

    def clear(self) -> None:
        self.endpoints.clear()
        self.routers.clear()

    def _next_identification(self) -> int:
        self._identification = (self._identification + 1) & 0xFFFF
        return self._identification

    def forward(self, datagram: bytes) -> list[tuple[bytes, IPv4Address]]:
        """The tunnel packets (and their care-of addresses) that carry ``datagram`` to its node."""
        try:
            header, _ = ipv4.parse(datagram)
        except DecodeError:
            self.counts["dropped_malformed"] += 1
            return []
        home = header.destination
        endpoints = self.endpoints.get(home, ())
        via_home = False
        if not endpoints and (router := self.routers.owner(home)) is not None:
            home, endpoints, via_home = router, self.endpoints.get(router, ()), True
        if not endpoints:
            self.counts["dropped_no_binding"] += 1
            return []
        out = []
        for endpoint in endpoints:
            try:
                inner = datagram
                if via_home and not endpoint.decapsulates:
                    # RFC 5177 with a foreign agent's care-of address: first to the router's home address.
                    inner = encapsulate(datagram, endpoint.source, home, Encapsulation.IPIP,
                                        self._next_identification(), local_addresses=(self.local,))
                packet = encapsulate(inner, endpoint.source, endpoint.care_of_address, endpoint.encapsulation,
                                     self._next_identification(),
                                     local_addresses=(self.local,) if inner is datagram else ())  # ours: nested
            except TunnelRefused as refused:
                self.counts[f"dropped_{refused.reason}"] += 1
                continue
            out.append((packet, endpoint.care_of_address))
        return out

    def reverse(self, packet: bytes) -> bytes | None:
        """The inner datagram of a reverse-tunnelled ``packet``, or None if it must be dropped."""
        if packet[16:20] != self.local.packed:  # raw sockets see every tunnel packet to this host
            self.counts["ignored_other_destination"] += 1
            return None
        taken = decapsulate_counted(packet, self.counts)
        if taken is None:
            return None
        # RFC 3024: only from the care-of address of a binding of the inner source's home address
        # (RFC 5177 6.5: or of the mobile router whose accepted prefix holds the inner source).
        inner = taken.inner
        home = IPv4Address(inner[12:16])
        if home in self.routers.prefixes and inner[9] == Protocol.IPIP and inner[16:20] == self.local.packed:
            # A mobile router's LAN packet, nested in IP-in-IP from its home address (FA care-of address).
            nested = decapsulate_counted(inner, self.counts)
            if nested is None:
                return None
            if self.routers.owner(IPv4Address(nested.inner[12:16])) != home:
                self.counts["dropped_foreign_source"] += 1
                return None
            inner = nested.inner
        elif home not in self.endpoints and (router := self.routers.owner(home)) is not None:
            home = router  # co-located: the LAN packet tunnelled straight from the care-of address
        matching = [e for e in self.endpoints.get(home, ()) if e.care_of_address == taken.source]
        if not matching:
            self.counts["dropped_not_registered"] += 1
            return None
        if not any(e.reverse for e in matching):
            self.counts["dropped_not_reverse"] += 1
            return None
        self.counts["decapsulated"] += 1
        return inner


def open_tun(name: str, mtu: int = TUN_MTU) -> int:
    """A non-blocking descriptor of a new layer-3 TUN device ``name`` (no packet information
    header), with ``mtu``. The device disappears when the descriptor is closed."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", name.encode(), _IFF_TUN | _IFF_NO_PI))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
            fcntl.ioctl(control, _SIOCSIFMTU, struct.pack("16si20x", name.encode(), mtu))
    except OSError:
        os.close(fd)
        raise
    return fd


def ipv4_only(proc: Path, device: str) -> None:
    """Turn IPv6 off on the TUN device ``device`` (``proc`` is ``/proc/sys/net/ipv4``), before it comes up.

    A tunnel device only ever carries IPv4; with IPv6 on, the kernel sends its own router
    solicitations (RFC 4861 6.3.7) out of it, which the reader would take for tunnel traffic and
    count as malformed drops. No effect where the kernel has no IPv6."""
    switch = proc.parent / "ipv6" / "conf" / device / "disable_ipv6"
    if switch.exists():
        switch.write_text("1")


def open_raw_sockets(local: IPv4Address) -> tuple[socket.socket, list[socket.socket]]:
    """Non-blocking raw sockets: one ``IPPROTO_RAW`` sender (IP_HDRINCL: we write the outer
    header) and one receiver per tunnel protocol (4, 47, 55) bound to ``local``, so that the
    kernel hands them only tunnel packets addressed to ``local``. Raises OSError."""
    sockets: list[socket.socket] = []
    try:
        send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        sockets.append(send)
        for protocol in (Protocol.IPIP, Protocol.GRE, Protocol.MINIMAL):
            receiver = socket.socket(socket.AF_INET, socket.SOCK_RAW, protocol)
            sockets.append(receiver)
            receiver.bind((str(local), 0))
        for sock in sockets:
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets[0], sockets[1:]


class UserspaceBackend:
    """TunnelBackend over TUN + raw sockets; the only one that can do minimal encapsulation."""

    name = BackendKind.USERSPACE
    encapsulations = frozenset(Encapsulation)
    mobile_network_nesting = frozenset(Encapsulation)  # RFC 5177 7, via a foreign agent: any outer tunnel

    def __init__(self, device: str = DEVICE, proc: Path = PROC) -> None:
        self.device = device
        self.proc = proc
        self.table = TunnelTable(IPv4Address(0))
        self._tun: int | None = None
        self._send: socket.socket | None = None
        self._receivers: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, local: IPv4Address) -> None:
        """Create ``mip0``, bring it up, open the raw sockets and start reading (in the running loop)."""
        self.table.local = local
        self._loop = asyncio.get_running_loop()
        try:
            self._tun = open_tun(self.device)
            ipv4_only(self.proc, self.device)
            netlink.set_link_up(self.device)
            # Strict reverse-path filtering on the tunnel device (the sysctl module's policy): only
            # datagrams from away home addresses, whose /32 route points back here, come out of it.
            (self.proc / "conf" / self.device / "rp_filter").write_text("1")
            self._send, self._receivers = open_raw_sockets(local)
        except OSError as exc:
            self.close()
            raise BackendError(f"userspace tunnel backend cannot start: {exc}") from exc
        self._loop.add_reader(self._tun, self._drain_tun)
        for receiver in self._receivers:
            self._loop.add_reader(receiver.fileno(), self._drain_tunnel, receiver)

    def apply(self, change: DataPlane) -> None:
        """Update the node's endpoints and its host route through ``mip0`` (idempotent)."""
        error = self.apply_many([change]).get(change.home_address)
        if error is not None:
            raise error

    def apply_many(self, changes: Sequence[DataPlane]) -> dict[IPv4Address, BackendError]:
        """:meth:`apply` for each of ``changes`` (the last word on each home address counts), the
        host routes sent in netlink batches; what failed, by home address (the rest is applied)."""
        batch: netlink_batch.Batch[IPv4Address] = netlink_batch.Batch()
        for home, change in home_routes(changes).items():
            for gone in self.table.set(change):
                batch.delete_route(home, gone, device=self.device)
            if change.away:
                batch.replace_route(home, home, device=self.device)
                for prefix in change.prefixes:  # RFC 5177 6.1 step 4: the prefix via the tunnel
                    batch.replace_route(home, prefix, device=self.device, mtu=NESTED_MTU)
            else:
                batch.delete_route(home, home, device=self.device)
        return {home: BackendError(f"route {home}/32 dev {self.device}: {failure}")
                for home, failure in batch.send().items()}

    def reconcile(self, desired: Iterable[DataPlane]) -> None:
        """Routes on ``mip0`` exactly for the away nodes of ``desired``: stale mipd routes (protocol
        77) there are deleted, routes of other protocols or devices are left alone; in netlink
        batches. BackendError names the bindings that could not be installed."""
        wanted = {home: change for home, change in home_routes(desired).items() if change.away}
        try:
            netlink_batch.forget_links()
            index = netlink_batch.link_index(self.device)
            prefixes = {p for change in wanted.values() for p in change.prefixes}
            stale = [route for route in netlink_batch.owned_routes(oif=index) if route.destination not in prefixes and (
                route.destination.prefixlen != 32 or route.destination.network_address not in wanted)]
            failed = netlink_batch.delete_routes(stale)
        except OSError as exc:
            raise BackendError(f"cannot list mipd routes: {exc}") from exc
        if failed:
            raise BackendError(f"cannot remove stale mipd routes on {self.device}: {next(iter(failed.values()))}")
        self.table.clear()
        errors = self.apply_many(list(wanted.values()))
        if errors:
            shown = "; ".join(f"{home}: {error}" for home, error in list(errors.items())[:5])
            raise BackendError(f"{len(errors)} of {len(wanted)} bindings not installed: {shown}")

    def counters(self) -> dict[str, int]:
        """Every counter of :data:`COUNTERS`, zero or not."""
        return {name: self.table.counts[name] for name in COUNTERS}

    def _drain_tun(self) -> None:
        assert self._tun is not None and self._send is not None
        for datagram in read_tun(self._tun):
            for packet, care_of_address in self.table.forward(datagram):
                try:
                    self._send.sendto(packet, (str(care_of_address), 0))
                except OSError:  # unreachable care-of address, EMSGSIZE, full buffer: counted, not fatal
                    self.table.counts["send_errors"] += 1
                else:
                    self.table.counts["encapsulated"] += 1

    def _drain_tunnel(self, receiver: socket.socket) -> None:
        drain_into_tun(receiver, self._tun, self.table.reverse, self.table.counts)

    def close(self) -> None:
        """Stop reading, close the sockets and the TUN descriptor. Closing it deletes ``mip0``, and
        the kernel removes every route through a deleted device with it."""
        close_raw_sockets(self._loop, self._send, self._receivers)
        self._send = None
        if self._tun is not None:
            close_tun(self._loop, self._tun)
            self._tun = None
        self.table.clear()
