"""Foreign-agent kernel-backend checks, run as a script INSIDE a real kernel
(tests/support/realkernel.py).

The guest's root namespace plays the foreign agent: uplink ``up0`` 10.0.0.2 (the care-of address) to
namespace ``ha`` (the home agent 10.0.0.1, with a correspondent address 10.9.0.10 on lo and kernel
tunnels ``t4`` ipip and ``t47`` gre towards the care-of address), and the visited link ``visit0``
10.2.0.1 to namespace ``mn``, a visitor holding two home addresses as /32s (H1 via ipip, H2 via
gre) with a default route via 10.2.0.1 onlink. The correspondent pings H1 and H2 through the home
agent's tunnels; the visitor's replies must come back through the FA's reverse tunnels.

Prints one JSON line per named check: {"check": name, "ok": bool, "detail": ...}.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from mipd.adapters.netlink import calls as netlink
from mipd.adapters.tunnel.visitor_kernel import VisitorKernelBackend
from mipd.core.planes import Delivery, VisitorPlane
from mipd.core.wire.tunnel import Encapsulation
from tests.support.tools import tool

HA, COA, CN = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"), IPv4Address("10.9.0.10")
H1, H2 = IPv4Address("10.1.0.50"), IPv4Address("10.1.0.51")
results: dict[str, dict[str, object]] = {}


def ip(*args: str, check: bool = True) -> str:
    out = subprocess.run([tool("ip"), *args], capture_output=True, text=True, timeout=60, check=False)
    if check and out.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def ipj(*args: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(ip("-j", *args) or "[]")
    return found


def record(name: str, ok: bool, detail: object = "") -> None:
    results[name] = {"check": name, "ok": bool(ok), "detail": detail}
    print(json.dumps(results[name]), flush=True)


def run(name: str, body: Callable[[], tuple[bool, object]]) -> None:
    try:
        ok, detail = body()
    except Exception as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    record(name, ok, detail)


def build() -> None:
    for ns in ("ha", "mn"):
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
    Path("/proc/sys/net/ipv4/conf/all/rp_filter").write_text("0")
    for fa_if, fa_addr, ns, ns_if in (("up0", f"{COA}/24", "ha", "up0"), ("visit0", "10.2.0.1/24", "mn", "visit0")):
        ip("link", "add", fa_if, "type", "veth", "peer", "name", "peer0")
        ip("link", "set", "peer0", "netns", ns)
        ip("-n", ns, "link", "set", "peer0", "name", ns_if)
        ip("addr", "add", fa_addr, "dev", fa_if)
        ip("link", "set", fa_if, "up")
        ip("-n", ns, "link", "set", ns_if, "up")
    ip("route", "add", "default", "via", str(HA))
    ip("-n", "ha", "addr", "add", f"{HA}/24", "dev", "up0")
    ip("-n", "ha", "addr", "add", f"{CN}/32", "dev", "lo")
    for name, kind, home in (("t4", "ipip", H1), ("t47", "gre", H2)):
        ip("-n", "ha", "link", "add", name, "type", kind, "local", str(HA), "remote", str(COA), "ttl", "64")
        ip("-n", "ha", "link", "set", name, "up")
        ip("-n", "ha", "route", "add", f"{home}/32", "dev", name, "src", str(CN))
    for home in (H1, H2):
        ip("-n", "mn", "addr", "add", f"{home}/32", "dev", "visit0")
    ip("-n", "mn", "route", "add", "default", "via", "10.2.0.1", "dev", "visit0", "onlink")


def ping(target: IPv4Address) -> tuple[bool, str]:
    out = subprocess.run([tool("ip"), "netns", "exec", "ha", tool("ping"), "-c", "2", "-i", "0.2", "-W", "2",
                          "-I", str(CN), str(target)], capture_output=True, text=True, timeout=30, check=False)
    return out.returncode == 0, (out.stdout.strip().splitlines() or [out.stderr.strip()])[-1]


def mac() -> bytes:
    return bytes.fromhex(ipj("-n", "mn", "link", "show", "visit0")[0]["address"].replace(":", ""))


def plane(home: IPv4Address, encapsulation: Encapsulation | None) -> VisitorPlane:
    if encapsulation is None:
        return VisitorPlane(home, None)
    return VisitorPlane(home, Delivery(home, mac(), HA, COA, encapsulation, reverse=True))


def owned() -> dict[str, list[str]]:
    return {
        "rules": sorted(f"{r['priority']} {r.get('src', '')} {r.get('table', r.get('action', ''))}"
                        for r in ipj("rule") if 7700 <= r["priority"] < 7800),
        "routes": sorted(f"{r['dst']} {r.get('table', 'main')}" for r in ipj("route", "show", "table", "all")
                         if r.get("protocol") == "77"),
        "neighbours": sorted(n["dst"] for n in ipj("neigh", "show", "nud", "permanent")),
    }


def arp_watch() -> Callable[[], tuple[list[str], int]]:
    """The targets of the ARP requests the FA sends on visit0 from now on, and how many ARP replies
    it sent (proof that the capture works; ETH_P_ALL sees sent frames too)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.bind(("visit0", 0))
    sock.setblocking(False)

    def collect() -> tuple[list[str], int]:
        requests, replies = [], 0
        while True:
            try:
                frame, address = sock.recvfrom(2048)
            except BlockingIOError:
                break
            if frame[12:14] != b"\x08\x06" or address[2] != socket.PACKET_OUTGOING:
                continue
            if frame[20:22] == b"\x00\x01":
                requests.append(socket.inet_ntoa(frame[38:42]))
            replies += frame[20:22] == b"\x00\x02"
        sock.close()
        return requests, replies
    return collect


def checks(backend: VisitorKernelBackend) -> None:
    def start() -> tuple[bool, object]:
        backend.start(COA, "visit0")
        links = ip("-d", "link", "show", "type", "ipip") + ip("-d", "link", "show", "type", "gre")
        rp = [Path(f"/proc/sys/net/ipv4/conf/{d}/rp_filter").read_text().strip() for d in ("mipip0", "mipgre0")]
        rules = owned()["rules"]
        fixed = ["7710 all 770000", "7720 all blackhole", "7720 all blackhole"]
        return links.count("external") == 2 and rp == ["0", "0"] and rules == fixed, {"rp": rp, "rules": rules}
    run("start_devices_and_fixed_rules", start)
    arps = arp_watch()

    def deliver(home: IPv4Address, encapsulation: Encapsulation, device: str) -> Callable[[], tuple[bool, object]]:
        def body() -> tuple[bool, object]:
            backend.apply(plane(home, encapsulation))
            table = next(r["table"] for r in ipj("rule") if r.get("src") == str(home))
            route = ip("-d", "route", "show", "table", str(table)).strip()
            ok_route = all(p in route for p in (f"encap ip id 0 src {COA} dst {HA}", f"dev {device}", "proto 77")) \
                or all(p in route for p in ("encap ip", f"dst {HA}", f"src {COA}", f"dev {device}", "proto 77"))
            ok, out = ping(home)
            return ok and ok_route, {"ping": out, "route": route}
        return body
    run("ipip_delivery_and_reverse_tunnel", deliver(H1, Encapsulation.IPIP, "mipip0"))
    run("gre_delivery_and_reverse_tunnel", deliver(H2, Encapsulation.GRE, "mipgre0"))
    run("static_neighbours", lambda: (owned()["neighbours"] == [str(H1), str(H2)],
                                     ip("neigh", "show", "nud", "permanent")))
    run("counters", lambda: (backend.counters()["decapsulated"] >= 4 and backend.counters()["reverse_tunnelled"] >= 4,
                             backend.counters()))

    def discard() -> tuple[bool, object]:
        # Tunnelled to the care-of address for 10.2.0.99, on the visited link but no visitor: rule 7720
        # discards it silently (4.2.2). Without it the FA would ARP for 10.2.0.99 and forward it.
        ip("-n", "ha", "route", "add", "10.2.0.99/32", "dev", "t4", "src", str(CN))
        ok, out = ping(IPv4Address("10.2.0.99"))
        return not ok and "Unreachable" not in out, out
    run("non_visitor_discarded_silently", discard)
    requests, replies = arps()
    run("no_arp_for_home_addresses", lambda: (not {str(H1), str(H2), "10.2.0.99"} & set(requests) and replies > 0,
                                              {"requests": requests, "replies": replies}))

    def remove() -> tuple[bool, object]:
        backend.apply(plane(H1, None))
        backend.apply(plane(H1, None))
        state = owned()
        ok, out = ping(H1)
        return not ok and not [v for values in state.values() for v in values if str(H1) in v], {"ping": out, **state}
    run("delivery_none_removes", remove)

    def reconcile() -> tuple[bool, object]:
        for args in (("route", "add", "10.1.0.77/32", "dev", "visit0", "table", "770000", "proto", "77"),
                     ("rule", "add", "from", "10.1.0.77", "iif", "visit0", "lookup", "770009", "prio", "7700",
                      "proto", "77"),
                     ("route", "add", "default", "dev", "visit0", "table", "770009", "proto", "77"),
                     ("neigh", "replace", "10.1.0.77", "lladdr", "02:00:00:00:00:77", "dev", "visit0", "nud",
                      "permanent", "proto", "77"),
                     ("route", "add", "10.1.0.78/32", "dev", "visit0", "table", "770000", "proto", "static"),
                     ("rule", "add", "from", "10.1.0.78", "lookup", "100", "prio", "7701"),
                     ("neigh", "replace", "10.1.0.79", "lladdr", "02:00:00:00:00:79", "dev", "visit0", "nud",
                      "permanent")):
            ip(*args)
        backend.reconcile([plane(H2, Encapsulation.GRE), plane(IPv4Address("10.1.0.80"), None)])
        state = owned()
        stale_gone = not [v for values in state.values() for v in values if "10.1.0.77" in v or "770009" in v]
        foreign = ("10.1.0.78" in ip("route", "show", "table", "770000") and "7701" in ip("rule")
                   and "10.1.0.79" in ip("neigh", "show", "nud", "permanent"))
        ok, out = ping(H2)
        return stale_gone and foreign and ok, {"ping": out, "foreign_kept": foreign, **state}
    run("reconcile_removes_stale_keeps_foreign", reconcile)

    def close() -> tuple[bool, object]:
        backend.close()
        backend.close()
        state = owned()
        left = [d for d in ("mipip0", "mipgre0") if netlink.link_exists(d)]
        foreign_only = {"rules": ["7701 10.1.0.78 100"], "routes": [], "neighbours": ["10.1.0.79"]}
        return not left and state == foreign_only, {"left": left, **state}
    run("close_removes_everything", close)


def main() -> int:
    started = time.monotonic()
    backend = VisitorKernelBackend()
    try:
        def topology() -> tuple[bool, object]:
            build()
            return True, ""
        run("topology", topology)
        checks(backend)
    finally:
        backend.close()
        netlink.close()
        for ns in ("ha", "mn"):
            ip("netns", "del", ns, check=False)
    record("script_seconds", True, round(time.monotonic() - started, 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
