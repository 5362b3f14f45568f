"""A home agent restarted with many live bindings: seconds from ``mipd run`` to READY=1 with every
route and proxy entry back in place (``restart_100k_ready_s``), and the first registrations that
made those bindings (``first_registrations_at_scale``, in the details).

In the rate bench's namespaces (bench/rate.py: ``ha`` with home link ``home0``, the C load generator
in ``gen``), with its own N-node mobile_nodes_file and state directory:

1. ``mipd run`` (the userspace tunnel backend: the host kernel has no ipip); the load generator
   registers all N nodes for the first time (closed loop), so that N bindings are live in the state
   file and N host routes (``proto 77 dev mip0``) and N proxy entries (``home0``) exist;
2. SIGTERM: the daemon stops and removes its routes and proxy entries (the TUN device goes, and
   the home link's proxies with it) -- the bindings stay on record;
3. ``mipd run`` again, timed from the process start to READY=1 (sd_notify; the daemon signals it
   after restoring the bindings and reinstalling their data plane); then the routes and proxy entries
   are counted, and must be N each.

Why the userspace backend: the kernel backend needs ipip/gre, which only the guest kernel of
bench/kernel.py has, and a user-mode Linux guest takes minutes to register 100,000 nodes; both
backends reinstall through the same netlink batches (mipd.adapters.netlink.batch), and the kernel
backend's encap routes are measured there (``route_installs_per_s``, tests/support/kernel_checks.py).
"""

from __future__ import annotations

import ast
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from bench import rate
from bench.build import Programs
from bench.procs import Processes
from tests.support.journal import MountNamespace
from tests.support.netns import Topology
from tests.support.tools import tool

FULL = 100_000
QUICK = 2_000
# 100,000 home addresses do not fit the rate bench's 10.1.0.0/16 from 10.1.1.0 on: this run's home
# network is 10.0.0.0/15 (the agent's 10.1.0.1 inside it), its nodes from 10.0.1.0 on, 10.1.0.0/24 skipped.
HOME_NETWORK = "10.0.0.0/15"
# A clean stop removes every proxy entry, which for 100,000 costs the kernel itself ~10 s (see
# kernel_floor): wait for it, or the next start would find the entries left and have less to do.
STOP_TIMEOUT = 180.0


def write_nodes(path: Path, count: int) -> None:
    """A mobile_nodes_file of ``count`` nodes in HOME_NETWORK (mode 0600: it holds keys)."""
    first, skip = int(IPv4Address("10.0.1.0")), IPv4Network("10.1.0.0/24")
    addresses = (IPv4Address(first + i) for i in range(count + 256))
    chosen = [a for a in addresses if a not in skip][:count]
    path.write_text("".join(f"{a} {rate.FIRST_SPI + i} {secrets.token_hex(16)}\n" for i, a in enumerate(chosen)))
    os.chmod(path, 0o600)


def _count(ns: str, *args: str) -> int:
    out = subprocess.run([tool("ip"), "-n", ns, *args], capture_output=True, text=True, timeout=120, check=True)
    return len(out.stdout.splitlines())


_FLOOR = """
import sys, time
from ipaddress import IPv4Address
from mipd.adapters.netlink import batch
count, first = int(sys.argv[1]), int(IPv4Address("10.0.1.0"))
out = {}
for name, add in (("routes_s", lambda b, a: b.replace_route(a, a, device="fl0")),
                  ("proxies_s", lambda b, a: b.add_proxy(a, a, "fl0"))):
    b = batch.Batch()
    for i in range(count):
        add(b, IPv4Address(first + i))
    started = time.perf_counter()
    failed = b.send()
    out[name] = time.perf_counter() - started
    assert not failed, failed
print(out)
"""


def kernel_floor(count: int) -> dict[str, float]:
    """Seconds for ``count`` host routes and ``count`` proxy entries by one netlink batch each, in a
    namespace of their own: this kernel's own share of the restart (its proxy-neighbour table hashes
    into 16 buckets of linked lists, so each entry costs time proportional to the entries already there)."""
    topo = Topology()
    try:
        ns = topo.ns("floor")
        subprocess.run([tool("ip"), "-n", ns, "link", "add", "fl0", "type", "veth", "peer", "name", "fl1"], check=True)
        subprocess.run([tool("ip"), "-n", ns, "link", "set", "fl0", "up"], check=True)
        out = subprocess.run([tool("ip"), "netns", "exec", ns, sys.executable, "-c", _FLOOR, str(count)],
                             capture_output=True, text=True, timeout=600, check=True)
        result: dict[str, float] = ast.literal_eval(out.stdout.strip())
        return result
    finally:
        topo.close()


def installed(topo: Topology) -> tuple[int, int]:
    """mipd's routes and the proxy entries on the home link, in the ``ha`` namespace."""
    ns = topo.ns("ha")
    return _count(ns, "route", "show", "proto", "77"), _count(ns, "neigh", "show", "proxy", "dev", "home0")


def run(topo: Topology, *, work: Path, programs: Programs, processes: Processes, quiet: MountNamespace,
        config: rate.RateConfig, count: int, progress: Callable[[str], None]) -> dict[str, Any]:
    here = work / "restart"
    here.mkdir(exist_ok=True)
    bench = rate.Bench(topo, here, programs, processes, replace(config, nodes=1, window=256))
    write_nodes(bench.nodes_file, count)
    # First, while no other proxy entries exist: the kernel's proxy-neighbour table is one for all
    # namespaces, so entries left anywhere slow every insert.
    progress(f"restart: this kernel's own time for {count:,} routes and proxy entries")
    floor = kernel_floor(count)
    progress(f"restart: registering {count:,} nodes for the first time")
    process, first_ready = bench.start_mipd("mipd-restart", quiet, home_network=HOME_NETWORK)
    try:
        bench.wait_answering(process)
        first = bench.loadgen("closed", max(60.0, count / 500), window=256, until_accepted=count)
        # A reply can be counted twice (a retransmission answered after its timeout): go round again
        # until every node has its binding, i.e. its route (at most three more rounds of renewals).
        for _ in range(3):
            if installed(topo)[0] >= count:
                break
            bench.loadgen("closed", max(60.0, count / 500), window=256, until_accepted=count)
        live = installed(topo)
    finally:
        processes.stop(process, timeout=STOP_TIMEOUT)
    if live[0] < count or live[1] < count:
        raise RuntimeError(f"only {live[0]} routes and {live[1]} proxy entries for {count} nodes: {first}")
    left = installed(topo)
    progress(f"restart: mipd run with {count:,} live bindings in its state file")
    process, ready_s = bench.start_mipd("mipd-restart", quiet, home_network=HOME_NETWORK)
    try:
        routes, proxies = installed(topo)
    finally:
        processes.stop(process, timeout=STOP_TIMEOUT)
    if routes < count or proxies < count:
        raise RuntimeError(f"READY after {ready_s:.2f} s with {routes} routes and {proxies} proxy entries "
                           f"of {count}")
    return {"kernel_floor": floor, "bindings": count, "ready_s": ready_s, "empty_ready_s": first_ready,
            "routes": routes, "proxies": proxies, "left_after_stop": {"routes": left[0], "proxies": left[1]},
            "first_registrations": first, "backend": "userspace"}
