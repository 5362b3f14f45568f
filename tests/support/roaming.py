"""A topology for roaming tests: bridges for the home link and three visited links, a home agent,
two foreign agents, a correspondent on the home link, and a mobile node whose link can be moved.

Namespace ``sw`` holds the bridges; every host's link is a veth whose other end is a port of one of
them. The node's link (``mnp`` in ``sw``) is moved by taking it down, changing its bridge and
bringing it up: the node sees its carrier drop and return, as with a real cable or radio.

    cn 10.1.0.2 --- br-home --- home0 10.1.0.1 [ha] v3 10.6.0.1 --- br-v3 (no agent: co-located)
                                                  wan1 10.4.0.1 --- 10.4.0.2 [fa1] visit0 10.2.0.1 --- br-v1
                                                  wan2 10.5.0.1 --- 10.5.0.2 [fa2] visit0 10.3.0.1 --- br-v2
    mn 10.1.0.10 (home address) --- mnp: one of the bridges

``home_agent_profile``, ``foreign_agent_profile`` and ``mobile_node_profile`` write the profile
texts (mip.yaml(5)) of these hosts: what is the same in every test, then the settings a test names.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.daemon import HomeAgentDaemon
from tests.support.journal import Journald
from tests.support.netns import Topology
from tests.support.tools import tool

HA, CN, MN = "10.1.0.1", "10.1.0.2", "10.1.0.10"
FA1, FA2 = "10.2.0.1", "10.3.0.1"
V3_ROUTER, COLOCATED = "10.6.0.1", "10.6.0.50"
BRIDGES = ("br-home", "br-v1", "br-v2", "br-v3")
K1 = bytes(range(1, 17)).hex()  # the mobile node's key with its home agent (spi 256)
KF1, KF2 = bytes(range(40, 56)).hex(), bytes(range(60, 76)).hex()  # the home agent's with foreign agent 1, 2


def ip(*args: str) -> None:
    out = subprocess.run([tool("ip"), *args], capture_output=True, text=True, timeout=30, check=False)
    if out.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")


def port(topo: Topology, ns: str, interface: str, address: str | None, bridge: str, sw_name: str | None = None
         ) -> None:
    """A veth from ``interface`` in ``ns`` (with ``address``) to a port of ``bridge`` in ``sw``."""
    sw = topo.ns("sw")
    a, b = f"t{uuid.uuid4().hex[:8]}", sw_name or f"p{uuid.uuid4().hex[:8]}"
    ip("link", "add", a, "type", "veth", "peer", "name", b)
    ip("link", "set", a, "netns", topo.ns(ns))
    ip("-n", topo.ns(ns), "link", "set", a, "name", interface)
    ip("link", "set", b, "netns", sw)
    ip("-n", sw, "link", "set", b, "master", bridge)
    ip("-n", sw, "link", "set", b, "up")
    if address:
        ip("-n", topo.ns(ns), "addr", "add", address, "dev", interface)
    ip("-n", topo.ns(ns), "link", "set", interface, "up")


def build(topo: Topology) -> None:
    sw = topo.ns("sw")
    for bridge in BRIDGES:
        ip("-n", sw, "link", "add", bridge, "type", "bridge")
        ip("-n", sw, "link", "set", bridge, "up")
    port(topo, "cn", "eth0", f"{CN}/24", "br-home")
    port(topo, "ha", "home0", f"{HA}/24", "br-home")
    port(topo, "ha", "v3", f"{V3_ROUTER}/24", "br-v3")
    topo.link("ha", "wan1", "10.4.0.1/24", "fa1", "wan0", "10.4.0.2/24")
    topo.link("ha", "wan2", "10.5.0.1/24", "fa2", "wan0", "10.5.0.2/24")
    port(topo, "fa1", "visit0", f"{FA1}/24", "br-v1")
    port(topo, "fa2", "visit0", f"{FA2}/24", "br-v2")
    port(topo, "mn", "eth0", f"{MN}/24", "br-home", sw_name="mnp")
    ip("-n", topo.ns("cn"), "route", "add", "default", "via", HA)
    ip("-n", topo.ns("mn"), "route", "add", "default", "via", HA)
    ip("-n", topo.ns("ha"), "route", "add", "10.2.0.0/24", "via", "10.4.0.2")
    ip("-n", topo.ns("ha"), "route", "add", "10.3.0.0/24", "via", "10.5.0.2")
    ip("-n", topo.ns("fa1"), "route", "add", "default", "via", "10.4.0.1")
    ip("-n", topo.ns("fa2"), "route", "add", "default", "via", "10.5.0.1")


def move(topo: Topology, bridge: str) -> None:
    """Move the node's link to ``bridge``: carrier down, another bridge, carrier up."""
    sw = topo.ns("sw")
    ip("-n", sw, "link", "set", "mnp", "down")
    ip("-n", sw, "link", "set", "mnp", "master", bridge)
    ip("-n", sw, "link", "set", "mnp", "up")


def lines(settings: dict[str, object]) -> str:
    """``key: value`` profile lines; a list becomes a block sequence, a bool ``true`` / ``false``."""
    out = ""
    for key, value in settings.items():
        if isinstance(value, list):
            out += f"{key}:\n" + "".join(f"  - {item}\n" for item in value)
        elif isinstance(value, bool):
            out += f"{key}: {str(value).lower()}\n"
        else:
            out += f"{key}: {value}\n"
    return out


def peer(address: str, spi: int, key: str) -> str:
    """An entry of ``foreign_agents`` or ``home_agents``: the agent at ``address`` and its security association."""
    return f'{{address: {address}, spi: {spi}, key: "{key}"}}'


def home_agent_profile(**settings: object) -> str:
    """The home agent on home0 at HA, serving the mobile node MN (spi 256, key K1), then ``settings``."""
    return (f"role: home-agent\ninterface: home0\naddress: {HA}\nhome_network: 10.1.0.0/24\n"
            f'mobile_nodes:\n  - {{home_address: {MN}, spi: 256, key: "{K1}"}}\n' + lines(settings))


def foreign_agent_profile(address: str, spi: int, key: str, **settings: object) -> str:
    """A foreign agent on visit0 with care-of address ``address``, sharing ``spi`` / ``key`` with the home agent at
    HA, then ``settings``."""
    return (f"role: foreign-agent\ninterface: visit0\ncare_of_address: {address}\n"
            + lines({"home_agents": [peer(HA, spi, key)]}) + lines(settings))


def mobile_node_profile(**settings: object) -> str:
    """The mobile node on eth0, home address MN, home agent HA (spi 256, key K1), then ``settings``."""
    return (f"role: mobile-node\ninterface: eth0\nhome_address: {MN}\nhome_network: 10.1.0.0/24\n"
            f'home_agent: {HA}\nspi: 256\nkey: "{K1}"\n' + lines(settings))


@contextmanager
def started(journal: Journald, topo: Topology, profiles: dict[str, str], instance: str,
            workdir: Callable[[str], Path], extra: str = "") -> Iterator[dict[str, HomeAgentDaemon]]:
    """A ``mipd run`` for each of ``profiles`` in turn, in the namespace its key names, as instance
    ``{instance}-{key}``, in the folder ``workdir(key)``, its profile followed by its state directory,
    its control socket and ``extra``; all are closed at the end (the last started first), also when
    one does not start."""
    daemons: dict[str, HomeAgentDaemon] = {}
    try:
        for name, text in profiles.items():
            folder = workdir(name)
            daemon = HomeAgentDaemon(journal, topo, folder, f"{instance}-{name}", namespace=name)
            daemon.write_profile(text + f"state_directory: {folder / 'state'}\ncontrol_socket: {daemon.socket}\n"
                                 + extra)
            daemon.start()
            daemons[name] = daemon
        yield daemons
    finally:
        for daemon in reversed(list(daemons.values())):
            daemon.close()
