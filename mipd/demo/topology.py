"""The demo's network: namespaces joined by veths and bridges, built and removed with ``ip``.

    cn 10.1.0.2 --- br-home --- home0 10.1.0.1 [ha] v3 10.6.0.1 --- br-v3 (no agent: co-located)
                                                  wan1 10.4.0.1 --- 10.4.0.2 [fa1] visit0 10.2.0.1 --- br-v1
                                                  wan2 10.5.0.1 --- 10.5.0.2 [fa2] visit0 10.3.0.1 --- br-v2
                                                  wan4 10.7.0.1 --- 10.7.0.2 [nat] lan0 192.168.4.1 --- br-v4
    mn 10.1.0.10 (home address) --- mnp: a port of one of the bridges

With ``mobile_router=True`` (``mipd demo --mobile-router``; implies ``nat``) the node is a mobile router
(RFC 5177) with a vehicle LAN behind it, and a second correspondent sits beyond the home agent:

    far 10.8.0.2 --- far0 10.8.0.1 [ha]           (the correspondent of the LAN host)
    mn lan0 192.168.50.1, 192.168.60.1 --- lan 192.168.50.10, 192.168.60.10 (the vehicle LAN's host)

192.168.50.0/24 is the mobile prefix the home agent serves for the node; 192.168.60.0/24 is on the LAN too
but not configured at the home agent (a node that asks for it is refused, code 2). The node forwards
(``ip_forward=1``); at home the home agent reaches the LAN by the operator's ordinary route via the node's
home address with metric 100 (:data:`AT_HOME_METRIC`), which mipd never touches: while the node is away,
mipd's own route for the prefix (metric 0) wins over it (mip.yaml(5), mobile_networks).

The ``nat`` namespace and ``br-v4`` are there only with ``nat=True`` (``mipd demo --nat``): a visited network
behind a real Linux NAT, nftables masquerading 192.168.4.0/24 out of ``wan0``; the home agent has no route
into it, as on the Internet, so a node there is reachable only through the NAT's mappings (RFC 3519).

Namespace ``sw`` holds the bridges. Every veth is created inside a namespace (never in the caller's), so
deleting the namespaces removes every link. The node's link is moved by taking its bridge port down,
changing its bridge and bringing it up: the node sees its carrier drop and return. Where the demo plays
DHCP (:meth:`Topology.dhcp`), the node gets the link's lease (:data:`LEASES`) and a default route via the
link's router.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HA, CN, MN = "10.1.0.1", "10.1.0.2", "10.1.0.10"
FA1, FA2 = "10.2.0.1", "10.3.0.1"
V3_ROUTER, COLOCATED = "10.6.0.1", "10.6.0.50"
NAT_ROUTER, NAT_LEASE, NAT_OUTSIDE = "192.168.4.1", "192.168.4.50", "10.7.0.2"
HOME_NETWORK = "10.1.0.0/24"
BRIDGES = ("br-home", "br-v1", "br-v2", "br-v3")
NAT_BRIDGE = "br-v4"
# bridge -> (the address a DHCP server on that visited link would lease the node, the link's router)
LEASES = {"br-v1": ("10.2.0.50", FA1), "br-v2": ("10.3.0.50", FA2), "br-v3": (COLOCATED, V3_ROUTER),
          NAT_BRIDGE: (NAT_LEASE, NAT_ROUTER)}
ROLES = ("sw", "cn", "ha", "fa1", "fa2", "mn")
# The mobile router's vehicle LAN (mobile_router=True)
LAN_PREFIX, LAN_ROUTER, LAN_HOST = "192.168.50.0/24", "192.168.50.1", "192.168.50.10"
REFUSED_PREFIX, REFUSED_ROUTER, REFUSED_HOST = "192.168.60.0/24", "192.168.60.1", "192.168.60.10"
FAR, FAR_ROUTER = "10.8.0.2", "10.8.0.1"  # the correspondent beyond the home agent, and the agent's side
AT_HOME_METRIC = 100  # the operator's route to the LAN via the node's home address (mipd's own: metric 0)
NODE_PORT = "mnp"
# How long a move waits for the node's side to report the carrier down (see Topology.move).
CARRIER_WAIT = 0.2
_RTMGRP_LINK, _RTM_NEWLINK, _IFF_LOWER_UP = 0x1, 16, 0x10000
_NLMSG_IFINFO = struct.Struct("=IHHIIBxHiII")  # nlmsghdr, then ifinfomsg: family, type, index, flags, change
# The NAT's ruleset (nft -f): masquerade whatever leaves for the outside; the mappings it makes are the
# only way in. A home router does the same.
NAT_RULESET = """table ip mipdemo_nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" masquerade
    }
}
"""


CLONE_NEWNET = 0x40000000
SIOCETHTOOL, ETHTOOL_STXCSUM = 0x8946, 0x17  # <linux/sockios.h>, <linux/ethtool.h>


class TopologyError(RuntimeError):
    """An ``ip`` command failed."""


def software_checksums(namespace: str, interface: str) -> None:
    """Turn off transmit checksum offload on ``interface`` in ``namespace`` (``ethtool -K IF tx off``).

    A veth hands a TCP segment on with its checksum still to be filled in (CHECKSUM_PARTIAL) when its
    sender offloads it; the kernel finishes it wherever the packet leaves through real hardware or goes
    into a TUN device, but a kernel ip-in-ip tunnel forwards it unfinished, and a node that decapsulates in
    userspace (co-located, reading a raw socket) would then hand a segment with a wrong checksum to its
    TCP, which drops it. On the wire between machines this cannot happen; the demo's correspondent computes
    its checksums itself, as if it were one.
    """
    def offload_off() -> None:
        value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            fcntl.ioctl(sock, SIOCETHTOOL, struct.pack("16sP", interface.encode(), ctypes.addressof(value)))

    try:
        in_namespace(namespace, offload_off)
    except OSError as error:
        raise TopologyError(f"{namespace} {interface}: transmit checksum offload stays on: {error}") from error


def in_namespace(namespace: str, action: Callable[[], None]) -> None:
    """Run ``action`` in a thread that has entered network namespace ``namespace`` (only it moves)."""
    failure: list[BaseException] = []

    def inside() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {namespace}")
            finally:
                os.close(fd)
            action()
        except OSError as error:
            failure.append(error)

    thread = threading.Thread(target=inside)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(1 << 16)
        except BlockingIOError:
            return


def _await_carrier_down(sock: socket.socket, index: int, deadline: float) -> bool:
    """Whether a link notification for ``index`` without IFF_LOWER_UP came before ``deadline``."""
    while (left := deadline - time.time()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return False
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            continue
        offset = 0
        while offset + _NLMSG_IFINFO.size <= len(data):
            length, kind, _, _, _, _, _, found, flags, _ = _NLMSG_IFINFO.unpack_from(data, offset)
            if kind == _RTM_NEWLINK and found == index and not flags & _IFF_LOWER_UP:
                return True
            offset += max((length + 3) & ~3, _NLMSG_IFINFO.size)
    return False


def ip_path() -> str:
    found = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        raise TopologyError("the ip command (iproute2) is not installed")
    return found


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def nft_path() -> str:
    found = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if found is None:
        raise TopologyError("the nft command (nftables) is not installed: mipd demo --nat needs it")
    return found


def ip(*args: str, check: bool = True, stdin: str | None = None) -> str:
    """Run ``ip ARGS`` (``stdin``: for ``-batch -``); raises :class:`TopologyError` with its stderr if it
    fails and ``check``."""
    out = subprocess.run([ip_path(), *args], capture_output=True, text=True, timeout=30, check=False,
                         input=stdin)
    if out.returncode and check:
        raise TopologyError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


@dataclass
class Topology:
    """Namespaces ``<prefix>-<role>``; :meth:`close` deletes them (and so their links)."""

    prefix: str = field(default_factory=lambda: "mipdemo-" + uuid.uuid4().hex[:6])
    created: list[str] = field(default_factory=list)
    bridge: str = "br-home"
    up_at: float | None = None  # when the last move brought the carrier up (time.time())
    # rtnetlink link notifications in the node's namespace, and its eth0's index (see move)
    _carrier: tuple[socket.socket, int] | None = field(default=None, repr=False)
    nat: bool = False  # also the visited network behind a NAT (br-v4)
    mobile_router: bool = False  # the node routes a vehicle LAN; a correspondent beyond the home agent

    def __post_init__(self) -> None:
        self.nat = self.nat or self.mobile_router  # the mobile router's tour ends behind the NAT

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def _add_ns(self, role: str) -> None:
        name = self.ns(role)
        ip("netns", "add", name)
        self.created.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def _veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
        ip("-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)

    def _up(self, ns: str, interface: str, address: str | None = None) -> None:
        if address:
            ip("-n", ns, "addr", "add", address, "dev", interface)
        ip("-n", ns, "link", "set", interface, "up")

    def _port(self, role: str, interface: str, address: str | None, bridge: str, port: str) -> None:
        sw = self.ns("sw")
        self._veth(sw, port, self.ns(role), interface)
        ip("-n", sw, "link", "set", port, "master", bridge)
        self._up(sw, port)
        self._up(self.ns(role), interface, address)

    def build(self) -> None:
        for role in ROLES:
            self._add_ns(role)
        sw = self.ns("sw")
        for bridge in BRIDGES:
            ip("-n", sw, "link", "add", bridge, "type", "bridge")
            ip("-n", sw, "link", "set", bridge, "up")
        self._port("cn", "eth0", f"{CN}/24", "br-home", "cnp")
        software_checksums(self.ns("cn"), "eth0")
        self._port("ha", "home0", f"{HA}/24", "br-home", "hap")
        self._port("ha", "v3", f"{V3_ROUTER}/24", "br-v3", "hav3p")
        for n, (wan, visit) in enumerate((("10.4.0", FA1), ("10.5.0", FA2)), start=1):
            self._veth(self.ns("ha"), f"wan{n}", self.ns(f"fa{n}"), "wan0")
            self._up(self.ns("ha"), f"wan{n}", f"{wan}.1/24")
            self._up(self.ns(f"fa{n}"), "wan0", f"{wan}.2/24")
            self._port(f"fa{n}", "visit0", f"{visit}/24", f"br-v{n}", f"fa{n}p")
            ip("-n", self.ns("ha"), "route", "add", f"{visit.rsplit('.', 1)[0]}.0/24", "via", f"{wan}.2")
            ip("-n", self.ns(f"fa{n}"), "route", "add", "default", "via", f"{wan}.1")
        if self.nat:
            self._build_nat()
        self._port("mn", "eth0", f"{MN}/24", "br-home", NODE_PORT)
        ip("-n", self.ns("cn"), "route", "add", "default", "via", HA)
        ip("-n", self.ns("mn"), "route", "add", "default", "via", HA)
        if self.mobile_router:
            self._build_vehicle_lan()

    def _build_vehicle_lan(self) -> None:
        """The LAN behind the node (namespace ``lan``), the correspondent beyond the home agent (``far``)
        and the operator's at-home route for the mobile prefix on the home agent."""
        self._add_ns("lan")
        self._add_ns("far")
        ha, mn, lan, far = self.ns("ha"), self.ns("mn"), self.ns("lan"), self.ns("far")
        self._veth(mn, "lan0", lan, "eth0")
        for address in (f"{LAN_ROUTER}/24", f"{REFUSED_ROUTER}/24"):
            ip("-n", mn, "addr", "add", address, "dev", "lan0")
        self._up(mn, "lan0")
        for address in (f"{LAN_HOST}/24", f"{REFUSED_HOST}/24"):
            ip("-n", lan, "addr", "add", address, "dev", "eth0")
        self._up(lan, "eth0")
        ip("-n", lan, "route", "add", "default", "via", LAN_ROUTER)
        in_namespace(mn, lambda: _write(Path("/proc/sys/net/ipv4/ip_forward"), "1"))  # a router
        self._veth(ha, "far0", far, "eth0")
        self._up(ha, "far0", f"{FAR_ROUTER}/24")
        self._up(far, "eth0", f"{FAR}/24")
        ip("-n", far, "route", "add", "default", "via", FAR_ROUTER)
        # The operator's route that serves the router at home; mipd's (metric 0) wins while it is away.
        ip("-n", ha, "route", "add", LAN_PREFIX, "via", MN, "dev", "home0", "metric", str(AT_HOME_METRIC))
        # Hosts that compute their checksums themselves, as on a wire (see software_checksums).
        software_checksums(far, "eth0")
        software_checksums(lan, "eth0")

    def _build_nat(self) -> None:
        """The NAT: ``wan0`` towards the home agent, ``lan0`` on ``br-v4``, forwarding and masquerade."""
        nft = nft_path()  # before anything is built: a clear error if nftables is missing
        self._add_ns("nat")
        ha, nat, sw = self.ns("ha"), self.ns("nat"), self.ns("sw")
        ip("-n", sw, "link", "add", NAT_BRIDGE, "type", "bridge")
        ip("-n", sw, "link", "set", NAT_BRIDGE, "up")
        self._veth(ha, "wan4", nat, "wan0")
        self._up(ha, "wan4", "10.7.0.1/24")
        self._up(nat, "wan0", f"{NAT_OUTSIDE}/24")
        self._port("nat", "lan0", f"{NAT_ROUTER}/24", NAT_BRIDGE, "natp")
        ip("-n", nat, "route", "add", "default", "via", "10.7.0.1")
        in_namespace(nat, lambda: _write(Path("/proc/sys/net/ipv4/ip_forward"), "1"))
        out = subprocess.run([ip_path(), "netns", "exec", nat, nft, "-f", "-"], input=NAT_RULESET,
                             capture_output=True, text=True, timeout=30, check=False)
        if out.returncode:
            raise TopologyError(f"nft -f (the NAT's ruleset): {out.stderr.strip()}")

    def move(self, bridge: str) -> float:
        """Move the node's link to ``bridge``: carrier down, another bridge, carrier up.

        Returns the time (``time.time()``) the carrier was down: nothing sent after it takes the old path.
        """
        sw = self.ns("sw")
        carrier = self._carrier_socket()
        _drain(carrier[0])
        ip("-n", sw, "link", "set", NODE_PORT, "down")
        down = time.time()
        # The kernel reports a carrier change from a work queue: down and up again before it ran would
        # be one notification, "up", and the node would never know it moved. Wait until the node's
        # namespace was told (every subscriber gets the same message), as a real link change would be.
        _await_carrier_down(*carrier, down + CARRIER_WAIT)
        # One ip(8) for both (a process start is milliseconds of the handoff), the bridge before the carrier.
        ip("-n", sw, "-batch", "-", stdin=f"link set {NODE_PORT} master {bridge}\nlink set {NODE_PORT} up\n")
        self.up_at = time.time()  # the carrier is up again (mipd/demo/breakdown.py)
        self.bridge = bridge
        return down

    def dhcp(self, bridge: str) -> None:
        """What a DHCP client would do on visited link ``bridge``: its lease and a default route."""
        mn, (address, router) = self.ns("mn"), LEASES[bridge]
        ip("-n", mn, "-batch", "-", stdin=f"addr add {address}/24 dev eth0\n"
                                         f"route replace default via {router} dev eth0\n")

    def dhcp_release(self, bridge: str) -> None:
        """Leaving visited link ``bridge``: the lease goes, the home router is the default route again."""
        mn, (address, _) = self.ns("mn"), LEASES[bridge]
        ip("-n", mn, "addr", "del", f"{address}/24", "dev", "eth0", check=False)
        ip("-n", mn, "route", "replace", "default", "via", HA, "dev", "eth0", "onlink")

    def pids(self) -> list[int]:
        """Processes still inside any of the namespaces."""
        found: list[int] = []
        for name in self.created:
            found += [int(p) for p in ip("netns", "pids", name, check=False).split() if p.isdigit()]
        return found

    def _carrier_socket(self) -> tuple[socket.socket, int]:
        if self._carrier is None:
            made: list[tuple[socket.socket, int]] = []

            def subscribe() -> None:
                sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
                sock.bind((0, _RTMGRP_LINK))
                sock.setblocking(False)
                made.append((sock, socket.if_nametoindex("eth0")))

            in_namespace(self.ns("mn"), subscribe)
            self._carrier = made[0]
        return self._carrier

    def close(self) -> None:
        if self._carrier is not None:
            self._carrier[0].close()
            self._carrier = None
        for name in reversed(self.created):
            ip("netns", "del", name, check=False)
        self.created.clear()
