"""Kernel-backend checks, run as a script INSIDE a real kernel (tests/support/realkernel.py).

The guest's root network namespace plays the home agent (HA): home link 10.1.0.0/24 to a correspondent
(namespace ``cn``, 10.1.0.10, routing the home address H = 10.1.0.50 via the HA), and two visited
links to nodes at care-of addresses 10.2.0.2 (``mn1``, decapsulating with a kernel ipip device)
and 10.3.0.2 (``mn2``, with a gre device). Each node holds H on its tunnel device and sends
everything back through it (reverse tunnel, RFC 3024). KernelBackend runs in the HA namespace.

Prints one JSON line per named check: {"check": name, "ok": bool, "detail": ...}; every check
runs even when an earlier one failed, so the pytest side can report each on its own.

Mobile networks (RFC 5177): ``mn1`` also holds a LAN host address 192.168.50.7 (its router's prefix
192.168.50.0/24, routed by ``cn`` via the HA) on its tunnel device; the backend routes the prefix
through the co-located care-of address, strict rp_filter on ``mipip0`` accepts the LAN host's
replies; through a foreign agent's care-of address the prefix is nested: for a GRE binding the inner
IP-in-IP header through mipip0, the outer by the home address's route through mipgre0; for an
IP-in-IP one the inner header through a classic ipip device (local HA, remote H), the outer by the
home address's route through mipip0 -- never both through one external device, which the kernel
refuses as a collision (shown, counted).
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from mipd.adapters.netlink import calls as netlink
from mipd.adapters.tunnel.kernel import KernelBackend, nesting_device
from mipd.core.planes import DataPlane, Endpoint
from mipd.core.wire.tunnel import Encapsulation
from tests.support.tools import tool

HA = IPv4Address("10.1.0.1")
HOME = IPv4Address("10.1.0.50")
COA1, COA2 = IPv4Address("10.2.0.2"), IPv4Address("10.3.0.2")
LAN, LAN_HOST = IPv4Network("192.168.50.0/24"), IPv4Address("192.168.50.7")
NAMESPACES = ("cn", "mn1", "mn2", "mem")
BATCHED = 2_000  # bindings in the batch checks (several sendmsg chunks)
ROUTES_MEASURED = 2_000  # 10,000 gave the same per-route figure but costs ~7 s of guest time
results: dict[str, dict[str, object]] = {}


def batched(i: int) -> IPv4Address:
    return IPv4Address(int(IPv4Address("10.200.0.0")) + i)


def ip(*args: str, check: bool = True) -> str:
    out = subprocess.run([tool("ip"), *args], capture_output=True, text=True, timeout=60, check=False)
    if check and out.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def record(name: str, ok: bool, detail: object = "") -> None:
    results[name] = {"check": name, "ok": bool(ok), "detail": detail}
    print(json.dumps(results[name]), flush=True)


def run(name: str, body: Callable[[], tuple[bool, object]]) -> None:
    try:
        ok, detail = body()
    except Exception as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    record(name, ok, detail)


def veth(ha_if: str, ha_addr: str, ns: str, ns_if: str, ns_addr: str) -> None:
    ip("link", "add", ha_if, "type", "veth", "peer", "name", ns_if)
    ip("link", "set", ns_if, "netns", ns)
    ip("addr", "add", ha_addr, "dev", ha_if)
    ip("link", "set", ha_if, "up")
    ip("-n", ns, "addr", "add", ns_addr, "dev", ns_if)
    ip("-n", ns, "link", "set", ns_if, "up")


def build() -> None:
    for ns in NAMESPACES:
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
    Path("/proc/sys/net/ipv4/conf/all/rp_filter").write_text("0")
    veth("ha-h", "10.1.0.1/24", "cn", "eth0", "10.1.0.10/24")
    ip("-n", "cn", "route", "add", f"{HOME}/32", "via", str(HA))
    ip("-n", "cn", "route", "add", str(LAN), "via", str(HA))
    for ns, ha_if, ha_addr, coa, kind in (("mn1", "ha-v1", "10.2.0.1/24", COA1, "ipip"),
                                          ("mn2", "ha-v2", "10.3.0.1/24", COA2, "gre")):
        gateway = ha_addr.split("/")[0]
        veth(ha_if, ha_addr, ns, "eth0", f"{coa}/24")
        ip("-n", ns, "link", "add", "tun", "type", kind, "local", str(coa), "remote", str(HA), "ttl", "64")
        ip("-n", ns, "addr", "add", f"{HOME}/32", "dev", "tun")
        ip("-n", ns, "link", "set", "tun", "up")
        ip("-n", ns, "route", "add", f"{HA}/32", "via", gateway)
        ip("-n", ns, "route", "add", "default", "dev", "tun", "src", str(HOME))
    ip("-n", "mn1", "addr", "add", f"{LAN_HOST}/32", "dev", "tun")  # the router's LAN host, behind it


def ping(ns: str, target: IPv4Address, *extra: str) -> tuple[bool, str]:
    out = subprocess.run([tool("ip"), "netns", "exec", ns, tool("ping"), "-c", "2", "-i", "0.2", "-W", "3",
                          *extra, str(target)], capture_output=True, text=True, timeout=30, check=False)
    return out.returncode == 0, out.stdout.strip().splitlines()[-2:] if out.stdout else out.stderr.strip()


def route_text(destination: str) -> str:
    return ip("-d", "route", "show", destination).strip()


def netstat(counter: str) -> int:
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        fields = dict(zip(names.split()[1:], values.split()[1:], strict=False))
        if counter in fields:
            return int(fields[counter])
    return -1


def outer_headers(interface: str, proto: int) -> Callable[[], list[tuple[int, int, bool, str, str]]]:
    """Start capturing on ``interface`` (HA side); the returned function lists the outer IPv4
    headers seen with protocol ``proto``: (tos, ttl, df, source, destination)."""
    # ETH_P_ALL: a socket bound to one ethertype sees only received frames, not sent ones.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.bind((interface, 0))
    sock.setblocking(False)

    def collect() -> list[tuple[int, int, bool, str, str]]:
        seen = []
        while True:
            try:
                frame = sock.recv(2048)
            except BlockingIOError:
                break
            header = frame[14:34]
            if frame[12:14] == b"\x08\x00" and len(header) == 20 and header[9] == proto:
                frag = struct.unpack("!H", header[6:8])[0]
                seen.append((header[1], header[8], bool(frag & 0x4000), socket.inet_ntoa(header[12:16]),
                             socket.inet_ntoa(header[16:20])))
        sock.close()
        return seen
    return collect


def nested_headers(interface: str) -> Callable[[], list[tuple[str, ...]]]:
    """Start capturing on ``interface``; the returned function lists, for each IP-in-IP frame seen,
    the source and destination of each of its headers (outer first) down to the first non-IPIP one."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.bind((interface, 0))
    sock.setblocking(False)

    def collect() -> list[tuple[str, ...]]:
        seen = []
        while True:
            try:
                frame = sock.recv(2048)
            except BlockingIOError:
                break
            if frame[12:14] != b"\x08\x00" or len(frame) < 34 or frame[23] != 4:
                continue
            chain, offset = [], 14
            while len(frame) >= offset + 20:
                header = frame[offset:offset + 20]
                chain += [socket.inet_ntoa(header[12:16]), socket.inet_ntoa(header[16:20])]
                if header[9] != 4:
                    break
                offset += (header[0] & 0x0F) * 4
            seen.append(tuple(chain))
        sock.close()
        return seen
    return collect


def checks(backend: KernelBackend) -> None:
    ipip = Endpoint(COA1, HA, Encapsulation.IPIP, reverse=True)
    gre = Endpoint(COA2, HA, Encapsulation.GRE, reverse=True)
    run("probe_available", netlink.kernel_tunnels_available)

    def start() -> tuple[bool, object]:
        backend.start(HA)
        details = ip("-d", "link", "show", "type", "ipip") + ip("-d", "link", "show", "type", "gre")
        rp = [Path(f"/proc/sys/net/ipv4/conf/{d}/rp_filter").read_text().strip() for d in ("mipip0", "mipgre0")]
        return details.count("external") == 2 and rp == ["1", "1"], {"rp_filter": rp, "links": details}
    run("start_creates_external_devices", start)

    def route_ipip() -> tuple[bool, object]:
        backend.apply(DataPlane(HOME, (ipip,)))
        text = route_text(str(HOME))
        return all(p in text for p in ("encap ip", f"dst {COA1}", f"src {HA}", "ttl 64", "tos 1",
                                       "dev mipip0", "proto 77")), text
    run("apply_ipip_route", route_ipip)

    def ping_ipip() -> tuple[bool, object]:
        capture = outer_headers("ha-v1", 4)
        rp_before = netstat("IPReversePathFilter")
        ok, out = ping("cn", HOME, "-Q", "0x20", "-M", "do")
        headers = [h for h in capture() if h[3] == str(HA)]  # what the HA sent, not the replies
        record("outer_header_ipip", len(headers) >= 2 and all(
            h == (0x20, 64, True, str(HA), str(COA1)) for h in headers), headers)
        stats = netlink.link_stats("mipip0")
        record("reverse_ipip_decapsulated", stats.get("rx_packets", 0) >= 2 and ok, stats)
        # A spoofed inner source (not an away home address) must be dropped by rp_filter.
        ip("-n", "mn1", "addr", "add", "10.1.0.77/32", "dev", "tun")
        ping("mn1", IPv4Address("10.1.0.10"), "-I", "10.1.0.77", "-c", "1", "-W", "1")
        rp_after = netstat("IPReversePathFilter")
        record("rp_filter_drops_spoofed_inner_source", rp_after > rp_before, {"before": rp_before, "after": rp_after})
        return ok, out
    run("ping_through_ipip", ping_ipip)

    def move_to_gre() -> tuple[bool, object]:
        backend.apply(DataPlane(HOME, (gre,)))
        text = route_text(str(HOME))
        ok_route = text.count("\n") == 0 and f"dst {COA2}" in text and "dev mipgre0" in text
        record("care_of_change_replaces_route", ok_route, text)
        capture = outer_headers("ha-v2", 47)
        ok, out = ping("cn", HOME, "-Q", "0x20")
        headers = [h for h in capture() if h[3] == str(HA)]
        record("outer_header_gre", len(headers) >= 2 and all(
            h == (0x20, 64, True, str(HA), str(COA2)) for h in headers), headers)
        return ok, out
    run("ping_through_gre", move_to_gre)

    def simultaneous() -> tuple[bool, object]:
        backend.apply(DataPlane(HOME, (ipip, gre)))
        text = route_text(str(HOME))
        return f"dst {COA1}" in text and "dev mipip0" in text and "nexthop" not in text, text
    run("simultaneous_bindings_use_first_endpoint", simultaneous)

    colocated = Endpoint(COA1, HA, Encapsulation.IPIP, reverse=True, decapsulates=True)

    def mobile_network() -> tuple[bool, object]:
        backend.apply(DataPlane(HOME, (colocated,), (LAN,)))
        text = route_text(str(LAN))
        record("mobile_network_route", all(p in text for p in ("encap ip", f"dst {COA1}", f"src {HA}",
                                                               "dev mipip0", "proto 77")), text)
        rp_before = netstat("IPReversePathFilter")
        ok, out = ping("cn", LAN_HOST)  # the reply from 192.168.50.7 passes strict rp_filter on mipip0
        record("rp_filter_accepts_the_prefix_source", ok and netstat("IPReversePathFilter") == rp_before,
               {"before": rp_before, "after": netstat("IPReversePathFilter")})
        return ok, out
    run("ping_mobile_network_colocated", mobile_network)

    def nested_same_device() -> tuple[bool, object]:
        """What the backend does not do, shown: the prefix encapsulated to the home address through
        mipip0 while the home address's own route is through mipip0 is dropped as a collision."""
        before = netlink.link_stats("mipip0").get("collisions", 0)
        ip("route", "replace", str(LAN), "encap", "ip", "dst", str(HOME), "src", str(HA), "ttl", "64",
           "dev", "mipip0", "proto", "77")
        ok, out = ping("cn", LAN_HOST, "-c", "1", "-W", "1")
        after = netlink.link_stats("mipip0").get("collisions", 0)
        ip("route", "del", str(LAN), "proto", "77")
        return not ok and after > before, {"ping": out, "collisions": [before, after]}
    run("nested_through_one_external_device_is_a_collision", nested_same_device)

    def nested_other_device() -> tuple[bool, object]:
        """What does work in the kernel, for the record (docs: the kernel backend module): the inner
        header through the OTHER external device (GRE from the HA to the home address via mipgre0),
        whose outer packet then follows the home address's own encap route (IP-in-IP via mipip0 to
        the care-of address). The router decapsulates both (here: mn1's ipip ``tun`` and a gre
        ``tun2`` from the HA to its home address) and answers back nested the same way, which
        strict rp_filter accepts on mipgre0, the prefix's device. The backend does not use it: the
        inner header is GRE, not the IP-in-IP a router expects (RFC 5177 section 7, docs)."""
        backend.apply(DataPlane(HOME, (colocated,)))
        ip("-n", "mn1", "link", "add", "tun2", "type", "gre", "local", str(HOME), "remote", str(HA), "ttl", "64")
        ip("-n", "mn1", "link", "set", "tun2", "up")
        ip("-n", "mn1", "route", "add", "10.1.0.10/32", "dev", "tun2", "src", str(LAN_HOST))
        ip("route", "replace", str(LAN), "encap", "ip", "dst", str(HOME), "src", str(HA), "ttl", "64",
           "dev", "mipgre0", "proto", "77")
        try:
            capture = outer_headers("ha-v1", 4)
            ok, out = ping("cn", LAN_HOST)
            sent = [h for h in capture() if h[3] == str(HA)]
        finally:
            ip("route", "del", str(LAN), "proto", "77", check=False)
            ip("-n", "mn1", "route", "del", "10.1.0.10/32", check=False)
            ip("-n", "mn1", "link", "del", "tun2", check=False)
        return ok and bool(sent) and all(h[4] == str(COA1) for h in sent), {"ping": out, "outer": sent[:2]}
    run("nested_through_the_other_external_device_works", nested_other_device)

    def nested_gre_binding() -> tuple[bool, object]:
        """The backend's own nesting (RFC 5177 7) for a GRE binding to a foreign agent's care-of
        address, 10.3.0.2 (``mn2`` plays agent and router: its gre ``tun`` takes the outer header, an
        ipip ``tun2`` from the HA to the home address the inner one; LAN host 192.168.50.8)."""
        lan_host = IPv4Address("192.168.50.8")
        ip("-n", "mn2", "addr", "add", f"{lan_host}/32", "dev", "tun")
        ip("-n", "mn2", "link", "add", "tun2", "type", "ipip", "local", str(HOME), "remote", str(HA), "ttl", "64")
        ip("-n", "mn2", "link", "set", "tun2", "up")
        ip("-n", "mn2", "route", "add", "10.1.0.10/32", "dev", "tun2", "src", str(lan_host))
        try:
            errors = backend.apply_many([DataPlane(HOME, (gre,), (LAN,))])
            text = route_text(str(LAN))
            capture = outer_headers("ha-v2", 47)
            ok, out = ping("cn", lan_host)
            sent = [h for h in capture() if h[3] == str(HA)]
        finally:
            ip("-n", "mn2", "route", "del", "10.1.0.10/32", check=False)
            ip("-n", "mn2", "link", "del", "tun2", check=False)
            ip("-n", "mn2", "addr", "del", f"{lan_host}/32", "dev", "tun", check=False)
        record("nested_gre_binding_route", not errors and f"dst {HOME}" in text and "dev mipip0" in text,
               {"route": text, "errors": {str(k): str(v) for k, v in errors.items()}})
        return ok and bool(sent) and all(h[4] == str(COA2) for h in sent), {"ping": out, "outer": sent[:2]}
    run("ping_mobile_network_nested_through_a_gre_binding", nested_gre_binding)

    def nested_ipip_binding() -> tuple[bool, object]:
        """The backend's nesting (RFC 5177 7) for an IP-in-IP binding to a foreign agent's care-of
        address, 10.2.0.2: a classic ipip device ``local HA remote H`` carries the prefix's inner
        header, whose packets to H take H's own encap route through mipip0 (two devices, no
        collision). ``mn1`` plays agent and router: its ipip ``tun`` (care-of address <-> HA) takes
        the outer header, an ipip ``tun2`` (home address <-> HA) the inner one; the LAN host's reply
        goes back nested, the inner header H -> HA sent through ``tun`` (what a reverse-tunnelling
        agent does), so the HA sees CoA -> HA [H -> HA [LAN host -> cn]]."""
        device = nesting_device(HOME)
        ip("-n", "mn1", "link", "add", "tun2", "type", "ipip", "local", str(HOME), "remote", str(HA), "ttl", "64")
        ip("-n", "mn1", "link", "set", "tun2", "up")
        ip("-n", "mn1", "route", "add", "10.1.0.10/32", "dev", "tun2", "src", str(LAN_HOST))
        ip("-n", "mn1", "rule", "add", "from", str(HOME), "table", "100", "priority", "100")
        ip("-n", "mn1", "route", "add", "default", "dev", "tun", "table", "100")
        try:
            errors = backend.apply_many([DataPlane(HOME, (ipip,), (LAN,))])  # ipip: D clear, a FA care-of address
            text = route_text(str(LAN))
            link = ip("-d", "link", "show", device, check=False)
            rp = Path(f"/proc/sys/net/ipv4/conf/{device}/rp_filter").read_text().strip() if link else ""
            record("nested_ipip_binding_device", not errors and f"dev {device}" in text and "proto 77" in text
                   and "encap" not in text and f"remote {HOME} local {HA}" in link and rp == "1"
                   and f"dst {COA1}" in route_text(str(HOME)),
                   {"route": text, "link": link, "rp_filter": rp,
                    "errors": {str(k): str(v) for k, v in errors.items()}})
            capture = nested_headers("ha-v1")
            rp_before, rx_before = netstat("IPReversePathFilter"), netlink.link_stats(device).get("rx_packets", 0)
            ok, out = ping("cn", LAN_HOST)
            seen = capture()
            rp_after, rx_after = netstat("IPReversePathFilter"), netlink.link_stats(device).get("rx_packets", 0)
        finally:
            ip("-n", "mn1", "route", "del", "default", "table", "100", check=False)
            ip("-n", "mn1", "rule", "del", "priority", "100", check=False)
            ip("-n", "mn1", "route", "del", "10.1.0.10/32", check=False)
            ip("-n", "mn1", "link", "del", "tun2", check=False)
        sent = [c for c in seen if c[0] == str(HA)]
        back = [c for c in seen if c[0] == str(COA1)]
        record("nested_ipip_reply_accepted", ok and rp_after == rp_before and rx_after >= rx_before + 2
               and bool(back) and all(c[:6] == (str(COA1), str(HA), str(HOME), str(HA), str(LAN_HOST), "10.1.0.10")
                                      for c in back),
               {"rp_filter_drops": [rp_before, rp_after], "rx": [rx_before, rx_after], "received": back[:2]})
        return ok and len(sent) >= 2 and all(c[:6] == (str(HA), str(COA1), str(HA), str(HOME), "10.1.0.10",
                                                       str(LAN_HOST)) for c in sent), {"ping": out, "sent": sent[:2]}
    run("ping_mobile_network_nested_through_an_ipip_binding", nested_ipip_binding)

    def single_level_beside_nesting() -> tuple[bool, object]:
        """Another node's plain reverse tunnel from the same care-of address still reaches mipip0:
        the nesting device (remote H) takes only IP-in-IP from H."""
        other = IPv4Address("10.1.0.51")
        ip("-n", "mn1", "addr", "add", f"{other}/32", "dev", "tun")
        ip("-n", "cn", "route", "add", f"{other}/32", "via", str(HA))
        try:
            backend.apply_many([DataPlane(HOME, (ipip,), (LAN,)), DataPlane(other, (ipip,))])
            rx_before = netlink.link_stats("mipip0").get("rx_packets", 0)
            nest_before = netlink.link_stats(nesting_device(HOME)).get("rx_packets", 0)
            ok, out = ping("mn1", IPv4Address("10.1.0.10"), "-I", str(other))
            rx_after = netlink.link_stats("mipip0").get("rx_packets", 0)
            nest_after = netlink.link_stats(nesting_device(HOME)).get("rx_packets", 0)
        finally:
            backend.apply(DataPlane(other, ()))
            ip("-n", "cn", "route", "del", f"{other}/32", check=False)
            ip("-n", "mn1", "addr", "del", f"{other}/32", "dev", "tun", check=False)
        return ok and rx_after >= rx_before + 2 and nest_after == nest_before, {
            "ping": out, "mipip0_rx": [rx_before, rx_after], "nesting_rx": [nest_before, nest_after]}
    run("single_level_reverse_tunnel_beside_a_nesting_device", single_level_beside_nesting)

    def nesting_device_follows_the_binding() -> tuple[bool, object]:
        """The nesting device goes when the router moves to a co-located care-of address or to GRE
        (its prefix routes move first), and at deregistration."""
        device = nesting_device(HOME)
        steps = {}
        backend.apply(DataPlane(HOME, (ipip,), (LAN,)))
        steps["fa_ipip"] = netlink.link_exists(device)
        backend.apply(DataPlane(HOME, (colocated,), (LAN,)))
        steps["colocated"] = netlink.link_exists(device), "dev mipip0" in route_text(str(LAN))
        backend.apply(DataPlane(HOME, (ipip,), (LAN,)))
        steps["fa_ipip_again"] = netlink.link_exists(device), f"dev {device}" in route_text(str(LAN))
        backend.apply(DataPlane(HOME, (gre,), (LAN,)))
        steps["fa_gre"] = netlink.link_exists(device), f"dst {HOME}" in route_text(str(LAN))
        backend.apply(DataPlane(HOME, (ipip,), (LAN,)))
        backend.apply(DataPlane(HOME, (ipip,)))
        steps["prefix_dropped"] = netlink.link_exists(device), route_text(str(LAN))
        backend.apply(DataPlane(HOME, (ipip,), (LAN,)))
        backend.apply(DataPlane(HOME, ()))
        steps["deregistered"] = netlink.link_exists(device), route_text(str(LAN))
        ok = (steps["fa_ipip"] and steps["colocated"] == (False, True) and steps["fa_ipip_again"] == (True, True)
              and steps["fa_gre"] == (False, True) and steps["prefix_dropped"] == (False, "")
              and steps["deregistered"] == (False, ""))
        return ok, steps
    run("nesting_device_removed_when_no_longer_needed", nesting_device_follows_the_binding)

    def reconcile_nesting() -> tuple[bool, object]:
        """After a crash: a fresh backend's reconcile deletes nesting devices no binding needs (and
        keeps the one a restored binding needs)."""
        backend.apply(DataPlane(HOME, (ipip,), (LAN,)))
        stale = nesting_device(IPv4Address("10.1.0.70"))
        netlink.add_ipip_tunnel(stale, local=HA, remote=IPv4Address("10.1.0.70"), ttl=64)
        fresh = KernelBackend()
        fresh.reconcile([DataPlane(HOME, (ipip,), (LAN,))])
        kept = netlink.link_exists(nesting_device(HOME)) and f"dev {nesting_device(HOME)}" in route_text(str(LAN))
        gone = not netlink.link_exists(stale)
        fresh.reconcile([DataPlane(HOME, (colocated,))])
        after = netlink.link_exists(nesting_device(HOME))
        backend.reconcile([])
        return kept and gone and not after, {"kept": kept, "stale_gone": gone, "after_colocated": after}
    run("reconcile_removes_stale_nesting_devices", reconcile_nesting)

    def prefix_removed() -> tuple[bool, object]:
        backend.apply(DataPlane(HOME, (colocated,), (LAN,)))
        had = route_text(str(LAN)) != ""
        backend.apply(DataPlane(HOME, (colocated,)))  # re-registered without it
        return had and route_text(str(LAN)) == "", route_text(str(LAN))
    run("mobile_network_removed_when_no_longer_accepted", prefix_removed)

    def deregister() -> tuple[bool, object]:
        backend.apply(DataPlane(HOME, (colocated,), (LAN,)))
        backend.apply(DataPlane(HOME, ()))
        backend.apply(DataPlane(HOME, ()))  # idempotent
        return route_text(str(HOME)) == "" and netlink.owned_routes() == [], netlink.owned_routes()
    run("deregistration_removes_route", deregister)

    def reconcile() -> tuple[bool, object]:
        backend.apply(DataPlane(IPv4Address("10.1.0.60"), (ipip,)))
        ip("route", "add", "10.1.0.99/32", "dev", "mipip0", "proto", "77")
        ip("route", "add", "10.1.0.98/32", "dev", "mipip0", "proto", "static")
        backend.reconcile([DataPlane(HOME, (gre,)), DataPlane(IPv4Address("10.1.0.61"), ()),
                           DataPlane(IPv4Address("10.1.0.60"), (ipip,))])
        owned = sorted(str(n) for n, _ in netlink.owned_routes())
        record("reconcile_keeps_foreign_route", "10.1.0.98" in route_text("10.1.0.98/32"), route_text("10.1.0.98/32"))
        return owned == ["10.1.0.50/32", "10.1.0.60/32"], owned
    run("reconcile_removes_stale_mipd_routes", reconcile)

    def batch_many() -> tuple[bool, object]:
        """One apply_many: BATCHED bindings' encap routes, every one in place, in netlink batches."""
        planes = [DataPlane(batched(i), (ipip if i % 2 else gre,)) for i in range(BATCHED)]
        errors = backend.apply_many(planes)
        text = ip("route", "show", "root", "10.200.0.0/16", "proto", "77")
        lines = text.splitlines()
        ok = (not errors and len(lines) == BATCHED and sum(f"dst {COA1}" in line and "dev mipip0" in line
                                                           for line in lines) == BATCHED // 2)
        return ok, {"errors": {str(k): str(v) for k, v in errors.items()}, "routes": len(lines)}
    run("batch_installs_many_bindings", batch_many)

    def batch_partial() -> tuple[bool, object]:
        """With mipgre0 down the kernel refuses the gre bindings' routes (ENETDOWN): exactly those
        are reported, by home address; the ipip ones of the same batch are installed."""
        ip("link", "set", "mipgre0", "down")
        try:
            planes = [DataPlane(batched(BATCHED + i), (ipip if i % 2 else gre,)) for i in range(20)]
            errors = backend.apply_many(planes)
        finally:
            ip("link", "set", "mipgre0", "up")
        wanted_failed = sorted(str(batched(BATCHED + i)) for i in range(20) if i % 2 == 0)
        this_batch = {str(batched(BATCHED + i)) for i in range(20)}  # (the link going down flushed its routes)
        installed = sorted(word for line in ip("route", "show", "proto", "77").splitlines()
                           if (word := line.split()[0]) in this_batch)
        wanted_installed = sorted(str(batched(BATCHED + i)) for i in range(20) if i % 2)
        return sorted(str(k) for k in errors) == wanted_failed and installed == wanted_installed, {
            "errors": {str(k): str(v) for k, v in list(errors.items())[:3]}, "installed": installed}
    run("batch_reports_failing_bindings_only", batch_partial)

    def reconcile_many() -> tuple[bool, object]:
        """A restart's reinstall: reconcile with the batched bindings (routes flushed first)."""
        ip("route", "flush", "proto", "77")
        planes = [DataPlane(batched(i), (ipip,)) for i in range(BATCHED)]
        started = time.monotonic()
        backend.reconcile(planes)
        seconds = time.monotonic() - started
        count = len(ip("route", "show", "proto", "77").splitlines())
        backend.reconcile([])
        left = len(ip("route", "show", "proto", "77").splitlines())
        return count == BATCHED and left == 0, {"routes": count, "after_empty_reconcile": left,
                                                "seconds": round(seconds, 3)}
    run("reconcile_reinstalls_many_bindings", reconcile_many)

    run("counters", lambda: (all(isinstance(v, int) for v in backend.counters().values())
                             and backend.counters()["encapsulated"] > 0, backend.counters()))

    def close() -> tuple[bool, object]:
        backend.apply(DataPlane(HOME, (ipip,), (LAN,)))  # with a nesting device
        backend.close()
        backend.close()  # idempotent
        left = [d for d in ("mipip0", "mipgre0", nesting_device(HOME)) if netlink.link_exists(d)]
        return not left and netlink.owned_routes() == [], {"left": left, "routes": netlink.owned_routes()}
    run("close_removes_devices_and_routes", close)


def route_memory() -> tuple[bool, object]:
    """Slab growth for ROUTES_MEASURED encap routes on one external device (in netns ``mem``)."""
    ip("-n", "mem", "link", "add", "mipm0", "type", "ipip", "external")
    ip("-n", "mem", "link", "set", "mipm0", "up")
    batch = Path("/run/routes.batch")
    batch.write_text("".join(
        f"route add 10.{100 + i // 65536}.{i // 256 % 256}.{i % 256}/32 encap ip dst 172.16.{i // 256 % 256}.{i % 256}"
        f" src 10.1.0.1 ttl 64 tos 1 dev mipm0 proto 77\n" for i in range(ROUTES_MEASURED)))
    before = meminfo()
    started = time.monotonic()
    ip("-n", "mem", "-batch", str(batch))
    seconds = time.monotonic() - started
    after = meminfo()
    count = ip("-n", "mem", "route", "show", "proto", "77").count("\n")
    per_route = {key: round((after[key] - before[key]) / ROUTES_MEASURED) for key in ("Slab", "MemUsed")}
    return count == ROUTES_MEASURED and per_route["Slab"] > 0, {
        "routes": count, "bytes_per_route": per_route, "ip_batch_seconds": round(seconds, 2)}


def meminfo() -> dict[str, int]:
    fields = {k: int(v.split()[0]) * 1024 for k, v in
              (line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())}
    fields["MemUsed"] = fields["MemTotal"] - fields["MemFree"]
    return fields


def device_memory() -> tuple[bool, object]:
    """For comparison: the cost of one classic ipip device per care-of address (in netns ``mem``)."""
    devices = 50
    batch = Path("/run/links.batch")
    batch.write_text("".join(f"link add mipt{i} type ipip local 10.1.0.1 remote 172.17.{i // 256}.{i % 256}\n"
                             f"link set mipt{i} up\n" for i in range(devices)))
    before = meminfo()
    ip("-n", "mem", "-batch", str(batch))
    after = meminfo()
    per_device = {key: round((after[key] - before[key]) / devices) for key in ("Slab", "MemUsed")}
    return per_device["Slab"] > 0, {"devices": devices, "bytes_per_device": per_device}


def main() -> int:
    started = time.monotonic()
    backend = KernelBackend()
    try:
        run("topology", lambda: (build(), (True, ""))[1])
        checks(backend)
        run("route_memory", route_memory)
        run("device_memory", device_memory)
    finally:
        backend.close()
        netlink.close()
        for ns in NAMESPACES:
            ip("netns", "del", ns, check=False)
    record("script_seconds", True, round(time.monotonic() - started, 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
