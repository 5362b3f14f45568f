"""The demo's network: namespaces joined by veths and bridges, built and removed with ``ip``.

    cn 10.1.0.2 --- br-home --- home0 10.1.0.1 [ha] v3 10.6.0.1 --- br-v3 (no agent: co-located)
                                                  wan1 10.4.0.1 --- 10.4.0.2 [fa1] visit0 10.2.0.1 --- br-v1
                                                  wan2 10.5.0.1 --- 10.5.0.2 [fa2] visit0 10.3.0.1 --- br-v2
    mn 10.1.0.10 (home address) --- mnp: a port of one of the bridges

Namespace ``sw`` holds the bridges. Every veth is created inside a namespace (never in the caller's), so
deleting the namespaces removes every link. The node's link is moved by taking its bridge port down,
changing its bridge and bringing it up: the node sees its carrier drop and return.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field

HA, CN, MN = "10.1.0.1", "10.1.0.2", "10.1.0.10"
FA1, FA2 = "10.2.0.1", "10.3.0.1"
V3_ROUTER, COLOCATED = "10.6.0.1", "10.6.0.50"
HOME_NETWORK = "10.1.0.0/24"
BRIDGES = ("br-home", "br-v1", "br-v2", "br-v3")
ROLES = ("sw", "cn", "ha", "fa1", "fa2", "mn")
NODE_PORT = "mnp"


class TopologyError(RuntimeError):
    """An ``ip`` command failed."""


def ip_path() -> str:
    found = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        raise TopologyError("the ip command (iproute2) is not installed")
    return found


def ip(*args: str, check: bool = True) -> str:
    """Run ``ip ARGS``; raises :class:`TopologyError` with its stderr if it fails and ``check``."""
    out = subprocess.run([ip_path(), *args], capture_output=True, text=True, timeout=30, check=False)
    if out.returncode and check:
        raise TopologyError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


@dataclass
class Topology:
    """Namespaces ``<prefix>-<role>``; :meth:`close` deletes them (and so their links)."""

    prefix: str = field(default_factory=lambda: "mipdemo-" + uuid.uuid4().hex[:6])
    created: list[str] = field(default_factory=list)
    bridge: str = "br-home"

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
        self._port("ha", "home0", f"{HA}/24", "br-home", "hap")
        self._port("ha", "v3", f"{V3_ROUTER}/24", "br-v3", "hav3p")
        for n, (wan, visit) in enumerate((("10.4.0", FA1), ("10.5.0", FA2)), start=1):
            self._veth(self.ns("ha"), f"wan{n}", self.ns(f"fa{n}"), "wan0")
            self._up(self.ns("ha"), f"wan{n}", f"{wan}.1/24")
            self._up(self.ns(f"fa{n}"), "wan0", f"{wan}.2/24")
            self._port(f"fa{n}", "visit0", f"{visit}/24", f"br-v{n}", f"fa{n}p")
            ip("-n", self.ns("ha"), "route", "add", f"{visit.rsplit('.', 1)[0]}.0/24", "via", f"{wan}.2")
            ip("-n", self.ns(f"fa{n}"), "route", "add", "default", "via", f"{wan}.1")
        self._port("mn", "eth0", f"{MN}/24", "br-home", NODE_PORT)
        ip("-n", self.ns("cn"), "route", "add", "default", "via", HA)
        ip("-n", self.ns("mn"), "route", "add", "default", "via", HA)

    def move(self, bridge: str) -> float:
        """Move the node's link to ``bridge``: carrier down, another bridge, carrier up.

        Returns the time (``time.time()``) the carrier was down: nothing sent after it takes the old path.
        """
        sw = self.ns("sw")
        ip("-n", sw, "link", "set", NODE_PORT, "down")
        down = time.time()
        ip("-n", sw, "link", "set", NODE_PORT, "master", bridge)
        ip("-n", sw, "link", "set", NODE_PORT, "up")
        self.bridge = bridge
        return down

    def dhcp_colocated(self) -> None:
        """What a DHCP client would do on the no-agent link: an address and a default route."""
        mn = self.ns("mn")
        ip("-n", mn, "addr", "add", f"{COLOCATED}/24", "dev", "eth0")
        ip("-n", mn, "route", "replace", "default", "via", V3_ROUTER, "dev", "eth0")

    def dhcp_release(self) -> None:
        """Leaving the no-agent link: the lease goes, the home router is the default route again."""
        mn = self.ns("mn")
        ip("-n", mn, "addr", "del", f"{COLOCATED}/24", "dev", "eth0", check=False)
        ip("-n", mn, "route", "replace", "default", "via", HA, "dev", "eth0", "onlink")

    def pids(self) -> list[int]:
        """Processes still inside any of the namespaces."""
        found: list[int] = []
        for name in self.created:
            found += [int(p) for p in ip("netns", "pids", name, check=False).split() if p.isdigit()]
        return found

    def close(self) -> None:
        for name in reversed(self.created):
            ip("netns", "del", name, check=False)
        self.created.clear()
