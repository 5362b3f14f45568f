"""Run INSIDE a network namespace by tests/integration/test_netlink_batch.py: drives
mipd.adapters.netlink.batch and the home link's batched proxy entries against the namespace's real
netlink and prints one JSON object of what the kernel then holds (read back with ``ip -j``).

The namespace has ``up0`` (a veth, up) and ``down0`` (a veth, left down: the kernel refuses a
scope-link route through it, ENETDOWN, "Device for nexthop is not up").
"""

from __future__ import annotations

import json
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network

from mipd.adapters.link.home import HomeLink
from mipd.adapters.netlink import batch
from mipd.core.planes import DataPlane, Endpoint
from mipd.core.wire.tunnel import Encapsulation
from tests.support.tools import tool


def ip_json(*args: str) -> list[dict[str, object]]:
    out = subprocess.run([tool("ip"), "-j", *args], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout or "[]")  # type: ignore[no-any-return]


def address(i: int) -> IPv4Address:
    return IPv4Address(int(IPv4Address("10.50.0.0")) + i)


def main() -> int:
    count = int(sys.argv[1])
    report: dict[str, object] = {}
    homes = [address(i) for i in range(count)]

    # 1. N routes and N proxy entries in one batch.
    many: batch.Batch[IPv4Address] = batch.Batch()
    for home in homes:
        many.replace_route(home, IPv4Network(home), device="up0")
        many.add_proxy(home, home, "up0")
    report["install_failures"] = {str(k): str(v) for k, v in many.send().items()}
    report["routes"] = sorted(r["dst"] for r in ip_json("route", "show", "proto", "77"))  # type: ignore[misc]
    report["proxies"] = sorted(n["dst"] for n in ip_json("neigh", "show", "proxy", "dev", "up0"))  # type: ignore[misc]

    # 2. A batch where some fail: a missing device, a device that is down; the rest goes in.
    mixed: batch.Batch[str] = batch.Batch()
    mixed.replace_route("good-1", IPv4Network("10.60.0.1/32"), device="up0")
    mixed.replace_route("missing", IPv4Network("10.60.0.2/32"), device="nosuch0")
    mixed.replace_route("down", IPv4Network("10.60.0.3/32"), device="down0")
    mixed.add_proxy("proxy-missing", IPv4Address("10.60.0.4"), "nosuch0")
    mixed.replace_route("good-2", IPv4Network("10.60.0.5/32"), device="up0")
    mixed.add_proxy("good-2", IPv4Address("10.60.0.5"), "up0")
    failures = mixed.send()
    report["mixed_failures"] = {tag: [error.errno, error.strerror] for tag, error in failures.items()}
    report["mixed_routes"] = sorted(r["dst"] for r in ip_json("route", "show", "root", "10.60.0.0/24", "proto", "77"))  # type: ignore[misc]

    # 3. Deleting everything in one batch; deleting what is absent is no error.
    gone: batch.Batch[IPv4Address] = batch.Batch()
    for home in [*homes, IPv4Address("10.60.0.1"), IPv4Address("10.60.0.5"), IPv4Address("10.70.0.1")]:
        gone.delete_route(home, IPv4Network(home), device="up0")
        gone.delete_proxy(home, home, "up0")
    report["delete_failures"] = {str(k): str(v) for k, v in gone.send().items()}
    report["routes_after_delete"] = len(ip_json("route", "show", "proto", "77"))
    report["proxies_after_delete"] = len(ip_json("neigh", "show", "proxy", "dev", "up0"))

    # 4. The home link: a turn's first registrations make their proxy entries in one batch.
    link = HomeLink("up0", IPv4Network("10.50.0.0/16"))
    link.start()
    coa = Endpoint(IPv4Address("192.0.2.1"), IPv4Address("10.50.255.254"), Encapsulation.IPIP)
    errors = link.apply_many([DataPlane(home, (coa,)) for home in homes])
    report["home_link_errors"] = {str(k): str(v) for k, v in errors.items()}
    report["home_link_proxies"] = len(ip_json("neigh", "show", "proxy", "dev", "up0"))
    link.close()
    report["home_link_proxies_after_close"] = len(ip_json("neigh", "show", "proxy", "dev", "up0"))
    batch.close()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
