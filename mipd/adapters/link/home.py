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
from collections.abc import Iterable
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

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
        self.proxied: set[IPv4Address] = set()
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
        drop proxy entries for other home addresses, left by a crash."""
        away = {plane.home_address for plane in desired if plane.away}
        for stale in netlink.proxies(self.interface):
            if stale in self.home_network and stale not in away:
                netlink.delete_proxy(stale, self.interface)
        existing = set(netlink.proxies(self.interface))
        for home in sorted(away):
            self.proxied.add(home)
            if home not in existing:
                netlink.add_proxy(home, self.interface)
                self._announce(home, self._mac)

    def apply(self, change: DataPlane) -> None:
        home = change.home_address
        if change.away and home not in self.proxied:
            # Leaving home: remember the node's own address, then intercept (4.6).
            known = netlink.neighbor_address(home, self.interface)
            if known is not None:
                self.node_macs[home] = mac_bytes(known)
            netlink.add_proxy(home, self.interface)
            self.proxied.add(home)
            self._announce(home, self._mac)
        elif not change.away and home in self.proxied:
            # Back home (or gone): stop proxying, then give the link the node's address back.
            netlink.delete_proxy(home, self.interface)
            self.proxied.discard(home)
            node_mac = self.node_macs.pop(home, None)
            if node_mac is not None:
                self._announce(home, node_mac)

    def _announce(self, address: IPv4Address, mac: bytes) -> None:
        # The Ethernet source is always our interface, whoever's address the ARP announces.
        frame = replace(gratuitous_arp(mac, address), source_mac=self._mac).encode()
        self._send(frame)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for i in range(1, REPEATS):
            self._timers.append(loop.call_later(i * SPACING, self._send, frame))

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
        for home in sorted(self.proxied):
            netlink.delete_proxy(home, self.interface)
        self.proxied.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
