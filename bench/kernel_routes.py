"""Inside a real kernel (bench/kernel.py boots one): tunnel and route installs per second through
mipd's kernel backend (mipd.adapters.tunnel.kernel over pyroute2, mipd.adapters.netlink.calls).

    python bench/kernel_routes.py COUNT [--tunnels-only]

Phases, each over COUNT home addresses, timed around the backend calls only:

- ``tunnel_install``: KernelBackend.apply for a node that goes away: one new lightweight-tunnel
  route ``H/32 encap ip dst C src A ... dev mipip0``;
- ``tunnel_move``: the node moves: the route replaced with a new care-of address (one RTM_NEWROUTE
  with NLM_F_REPLACE);
- ``tunnel_remove``: the node comes home: its route deleted;
- ``ip_batch_install``: the same routes by one ``ip -batch`` process, for the guest kernel's own pace;
- ``dataplane_install`` / ``dataplane_remove``: the home agent's whole per-binding data plane
  (mipd.runtime.home_plane.HomeAgentDataPlane.apply: the tunnel route, proxy ARP for the home
  address on the home link, gratuitous ARP, broadcast forwarding state) for a node leaving home
  and coming back.

Prints one JSON object. Runs as root in a throwaway kernel: it changes that kernel's routes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network

from mipd.adapters.netlink import calls as netlink
from mipd.adapters.netlink.calls import RTPROT_MIPD
from mipd.adapters.tunnel.kernel import KernelBackend
from mipd.core.planes import DataPlane, Endpoint
from mipd.runtime.home_plane import HomeAgentDataPlane

HOME_AGENT = IPv4Address("10.1.0.1")
HOME_NETWORK = IPv4Network("10.1.0.0/16")
FIRST_HOME = int(IPv4Address("10.1.1.0"))
CARE_OF = (int(IPv4Address("10.2.0.0")), int(IPv4Address("10.3.0.0")))


def home(index: int) -> IPv4Address:
    return IPv4Address(FIRST_HOME + index)


def away(index: int, move: int) -> DataPlane:
    return DataPlane(home(index), (Endpoint(IPv4Address(CARE_OF[move] + 1 + index % 250), HOME_AGENT),))


def timed(count: int, step: Callable[[int], object]) -> float:
    """Calls per second of ``step(i)`` for i < count."""
    started = time.perf_counter()
    for index in range(count):
        step(index)
    return count / (time.perf_counter() - started)


def ip_batch(count: int) -> float:
    """The same routes installed by one ``ip -batch`` (no Python, one netlink socket): how fast this
    kernel itself takes them. Removed again with ``ip route flush proto 77``."""
    lines = "".join(f"route add {home(i)}/32 encap ip dst {IPv4Address(CARE_OF[0] + 1 + i % 250)} src {HOME_AGENT} "
                    f"ttl 64 tos 1 dev mipip0 proto {RTPROT_MIPD}\n" for i in range(count))
    started = time.perf_counter()
    subprocess.run(["ip", "-batch", "-"], input=lines, text=True, check=True)
    rate = count / (time.perf_counter() - started)
    subprocess.run(["ip", "route", "flush", "proto", str(RTPROT_MIPD)], check=True)
    return rate


def routes() -> int:
    return len(netlink.owned_routes(RTPROT_MIPD))


async def measure(count: int, dataplane: bool) -> None:
    """In a running event loop: the home agent's data plane forwards broadcasts from it."""
    subprocess.run(["ip", "link", "add", "home0", "type", "veth", "peer", "name", "home1"], check=True)
    subprocess.run(["ip", "addr", "add", f"{HOME_AGENT}/16", "dev", "home0"], check=True)
    for link in ("home0", "home1"):
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
    result: dict[str, float | int] = {"count": count}

    started = time.monotonic()
    backend = KernelBackend()
    backend.start(HOME_AGENT)
    result["start_s"] = time.monotonic() - started
    result["tunnel_install_per_s"] = timed(count, lambda i: backend.apply(away(i, 0)))
    result["routes_after_install"] = routes()
    result["tunnel_move_per_s"] = timed(count, lambda i: backend.apply(away(i, 1)))
    result["tunnel_remove_per_s"] = timed(count, lambda i: backend.apply(DataPlane(home(i), ())))
    result["routes_after_remove"] = routes()
    result["ip_batch_install_per_s"] = ip_batch(count)
    backend.close()
    if not dataplane:
        print(json.dumps(result))
        return

    plane = HomeAgentDataPlane("kernel", "home0", HOME_NETWORK)
    plane.start(HOME_AGENT, lambda _payload, _destination, _port: False)  # no UDP tunnel in this run
    errors: list[str] = []
    result["dataplane_install_per_s"] = timed(count, lambda i: errors.extend(plane.apply([away(i, 0)])))
    result["proxied_after_install"] = len(netlink.proxies("home0"))
    result["dataplane_remove_per_s"] = timed(count, lambda i: errors.extend(plane.apply([DataPlane(home(i), ())])))
    result["dataplane_errors"] = len(errors)
    plane.close()
    netlink.close()
    print(json.dumps(result))


def main() -> None:
    asyncio.run(measure(int(sys.argv[1]), "--tunnels-only" not in sys.argv[2:]))


if __name__ == "__main__":
    main()
