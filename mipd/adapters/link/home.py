"""The home agent on its home link: proxy ARP and gratuitous ARP (RFC 5944 section 4.6).

While a node is away the home agent answers ARP for its home address with its own link-layer
address (proxy ARP: a kernel proxy-neighbour entry on the home interface only; the kernel answers
because the home agent forwards). When a node's first binding starts, gratuitous ARPs with our
address make every host on the link update its cache at once; when its last binding ends, the
proxy entry goes and gratuitous ARPs restore the node's own link-layer address, which was read
from the neighbour table before proxying began. Each announcement is repeated a few times
("a small number of times", 4.6) in case one is lost. A rejected registration changes nothing.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Sequence
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from mipd.adapters.netlink import batch as netlink_batch
from mipd.adapters.netlink import calls as netlink
from mipd.core.planes import DataPlane
from mipd.core.wire.arp import ETH_P_ARP, gratuitous_arp, mac_bytes

REPEATS = 3
SPACING = 0.5  # seconds between the repeats of one announcement


class HomeLink:
    """Proxy and gratuitous ARP for away nodes on one interface."""

    def __init__(self, interface: str, home_network: IPv4Network) -> None:
        self.interface = interface
        self.home_network = home_network
        # In the order the entries were made: the kernel chains each new proxy entry at the head of
        # one of only 16 hash chains (pneigh_create), so removing them newest first finds each at once.
        self.proxied: dict[IPv4Address, None] = {}
        self.node_macs: dict[IPv4Address, bytes] = {}
        self.sent = 0
        self.errors = 0
        self._sock: socket.socket | None = None
        self._mac = b""
        self._timers: list[asyncio.TimerHandle] = []

    def start(self) -> None:
        self._mac = mac_bytes(netlink.link_address(self.interface))
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        sock.bind((self.interface, ETH_P_ARP))
        sock.setblocking(False)
        self._sock = sock

    def reconcile(self, desired: Iterable[DataPlane]) -> None:
        """Proxy exactly the away nodes of ``desired`` (announcing any that were missing) and
        drop proxy entries for other home addresses, left by a crash; in netlink batches
        (mipd.adapters.netlink.batch). NetlinkError names the entries that could not be made."""
        away = {plane.home_address for plane in desired if plane.away}
        dumped = netlink_batch.proxies(self.interface)  # each hash chain newest first
        existing = set(dumped)
        batch: netlink_batch.Batch[IPv4Address] = netlink_batch.Batch()
        for stale in dumped:  # in dump order, each is at the head of its chain when its turn comes
            if stale not in away and stale in self.home_network:
                batch.delete_proxy(stale, stale, self.interface)
        missing = sorted(away - existing)
        for home in missing:
            batch.add_proxy(home, home, self.interface)
        failures = batch.send()
        made = [home for home in missing if home not in failures]
        self.proxied.update(dict.fromkeys(home for home in reversed(dumped) if home in away))
        self.proxied.update(dict.fromkeys(made))
        self._announce_many([(home, self._mac) for home in made])
        if failures:
            shown = "; ".join(f"{home}: {error}" for home, error in list(failures.items())[:5])
            raise netlink.NetlinkError(next(iter(failures.values())).errno,
                                       f"{len(failures)} proxy entries not made or removed: {shown}")

    def apply(self, change: DataPlane) -> None:
        error = self.apply_many([change]).get(change.home_address)
        if error is not None:
            raise error

    def apply_many(self, changes: Sequence[DataPlane]) -> dict[IPv4Address, OSError]:
        """:meth:`apply` for each of ``changes`` (one per home address), the proxy entries made
        and removed in one netlink batch, the nodes' own addresses read in one neighbour dump;
        what failed, by home address."""
        leaving = [c.home_address for c in changes if c.away and c.home_address not in self.proxied]
        returning = [c.home_address for c in changes if not c.away and c.home_address in self.proxied]
        errors: dict[IPv4Address, OSError] = {}
        if leaving:  # leaving home: remember the nodes' own addresses, then intercept (4.6)
            try:
                known = netlink_batch.neighbours(self.interface)
            except OSError as exc:
                errors.update((home, exc) for home in leaving)
                leaving = []
                known = {}
            for home in leaving:
                if home in known:
                    self.node_macs[home] = mac_bytes(known[home])
        batch: netlink_batch.Batch[IPv4Address] = netlink_batch.Batch()
        for home in leaving:
            batch.add_proxy(home, home, self.interface)
        for home in returning:  # back home (or gone): stop proxying, then give the link its address back
            batch.delete_proxy(home, home, self.interface)
        failures = batch.send()
        errors.update(failures)
        announce = []
        for home in leaving:
            if home not in failures:
                self.proxied[home] = None
                announce.append((home, self._mac))
        for home in returning:
            if home not in failures:
                self.proxied.pop(home, None)
                node_mac = self.node_macs.pop(home, None)
                if node_mac is not None:
                    announce.append((home, node_mac))
        self._announce_many(announce)
        return errors

    def _announce_many(self, announcements: list[tuple[IPv4Address, bytes]]) -> None:
        """Gratuitous ARPs for many addresses: each sent now, then repeated by one timer per repeat."""
        if not announcements:
            return
        frames = [replace(gratuitous_arp(mac, address), source_mac=self._mac).encode()
                  for address, mac in announcements]
        for frame in frames:
            self._send(frame)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for i in range(1, REPEATS):
            self._timers.append(loop.call_later(i * SPACING, self._send_all, frames))

    def _send_all(self, frames: list[bytes]) -> None:
        for frame in frames:
            self._send(frame)

    def _send(self, frame: bytes) -> None:
        if self._sock is None:
            return
        try:
            self._sock.send(frame)
            self.sent += 1
        except OSError:
            self.errors += 1  # a full queue or a downed link: the repeats may still get through

    def close(self) -> None:
        """Stop proxying for every node (mipd made those entries) and close the socket."""
        for timer in self._timers:
            timer.cancel()
        batch: netlink_batch.Batch[IPv4Address] = netlink_batch.Batch()
        for home in reversed(self.proxied):  # newest first: see __init__
            batch.delete_proxy(home, home, self.interface)
        failures = batch.send()
        self.proxied.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if failures:
            raise next(iter(failures.values()))
