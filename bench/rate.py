"""Registration rate at the home agent, in network namespaces on one machine.

Topology (namespaces ``mipb…-ha``, ``-home``, ``-gen``): the server under test in ``ha`` on
10.1.0.1 (home link ``home0``, 10.1.0.0/16, to ``home``), the load generator in ``gen`` on
10.2.0.50, a co-located care-of address one hop away (``visit0``, 10.2.0.0/24). The generator is
pinned to CPU 0 and the server to CPU 1 (when there are two).

The same load goes, one after another, to four servers on 10.1.0.1:434:

- ``c_floor``: bench/c/floor.c, a minimal C server that verifies HMAC-MD5 and answers code 0;
- ``python_floor``: bench/pyfloor.py, the tightest plain-Python loop doing the same;
- ``mipd``: ``mipd run`` (userspace tunnel backend on this kernel), events to stderr (no journald);
- ``mipd_journald``: the same with a standalone journald receiving its events.

For each: a warm-up registers every node once (closed loop; mipd's first registrations also set
up the data plane), saturation is the accepted replies/s of a closed loop with a window of
outstanding requests, then open-loop runs at 25, 50 and 90 % of that server's saturation give
latency p50/p99 (from the scheduled send time).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.build import Programs
from bench.procs import GENERATOR_CPU, SERVER_CPU, NotifyListener, Processes, cpu_seconds, rss_mib
from tests.support.journal import Journald, MountNamespace
from tests.support.netns import Topology, ip
from tests.support.tools import tool, venv_script

HA, GEN = "10.1.0.1", "10.2.0.50"
FIRST_NODE = 0x0A010100  # 10.1.1.0: home addresses from here on
FIRST_SPI = 1000
LOADS = (25, 50, 90)
PYFLOOR = Path(__file__).resolve().parent / "pyfloor.py"


@dataclass(frozen=True)
class RateConfig:
    nodes: int
    window: int
    saturation_s: float
    latency_s: float
    warmup_limit_s: float


FULL = RateConfig(nodes=5_000, window=128, saturation_s=5.0, latency_s=4.0, warmup_limit_s=90.0)
QUICK = RateConfig(nodes=200, window=64, saturation_s=1.0, latency_s=0.5, warmup_limit_s=10.0)


@dataclass
class ServerResult:
    name: str
    warmup: dict[str, Any] | None = None
    saturation: dict[str, Any] | None = None
    loads: dict[int, dict[str, Any]] = field(default_factory=dict)
    ready_s: float | None = None
    footprint: dict[str, Any] | None = None
    error: str | None = None

    @property
    def rate(self) -> float | None:
        return self.saturation["rate"] if self.saturation else None

    def latency(self, pct: int, key: str) -> float | None:
        run = self.loads.get(pct)
        return run[key] if run and run.get(key, -1) >= 0 else None

    def as_json(self) -> dict[str, Any]:
        return {"warmup": self.warmup, "saturation": self.saturation,
                "loads": {str(k): v for k, v in self.loads.items()}, "ready_s": self.ready_s,
                "footprint": self.footprint, "error": self.error}


def node_address(index: int) -> str:
    value = FIRST_NODE + index
    return ".".join(str(value >> shift & 0xFF) for shift in (24, 16, 8, 0))


def write_nodes(path: Path, count: int) -> None:
    """A mobile_nodes_file: ``home_address spi hex-key``, mode 0600 (it holds keys)."""
    lines = [f"{node_address(i)} {FIRST_SPI + i} {secrets.token_hex(16)}\n" for i in range(count)]
    path.write_text("".join(lines))
    os.chmod(path, 0o600)


def build_topology(topo: Topology) -> None:
    topo.link("ha", "home0", f"{HA}/16", "home", "eth0", "10.1.0.2/16")
    topo.link("ha", "visit0", "10.2.0.1/24", "gen", "eth0", f"{GEN}/24")
    ip("-n", topo.ns("gen"), "route", "add", "default", "via", "10.2.0.1")


def profile(work: Path, instance: str, nodes_file: Path, home_network: str = "10.1.0.0/16") -> Path:
    path = work / f"{instance}.yaml"
    path.write_text(
        "role: home-agent\ninterface: home0\n"
        f"address: {HA}\nhome_network: {home_network}\n"
        f"state_directory: {work / ('state-' + instance)}\ncontrol_socket: {work / (instance + '.sock')}\n"
        "max_lifetime: 1800\nadvertise: false\n"
        f"mobile_nodes_file: {nodes_file}\n")
    os.chmod(path, 0o600)
    return path


class Bench:
    """One topology and the processes of the rate runs (and the footprint run, which reuses it)."""

    def __init__(self, topo: Topology, work: Path, programs: Programs, processes: Processes,
                 config: RateConfig) -> None:
        self.topo = topo
        self.work = work
        self.programs = programs
        self.processes = processes
        self.config = config
        self.nodes_file = work / "nodes.txt"
        write_nodes(self.nodes_file, config.nodes)

    # --- the generator -----------------------------------------------------------------------

    def loadgen(self, mode: str, seconds: float, **options: float | int) -> dict[str, Any]:
        argv = [tool("ip"), "netns", "exec", self.topo.ns("gen"), str(self.programs.loadgen), mode,
                "--server", HA, "--source", GEN, "--home-agent", HA, "--nodes", str(self.nodes_file),
                "--seconds", str(seconds)]
        for name, value in options.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        process = self.processes.start(argv, cpu=GENERATOR_CPU, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = process.communicate(timeout=seconds + 60)
        finally:
            self.processes.stop(process)
        if process.returncode:
            raise RuntimeError(f"loadgen {mode} exited {process.returncode}: {err.decode().strip()}")
        result: dict[str, Any] = json.loads(out)
        return result

    def wait_answering(self, server: subprocess.Popen[Any], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"server exited with {server.returncode}")
            if self.loadgen("closed", 0.3, window=1, until_accepted=1)["accepted"]:
                return
        raise RuntimeError(f"server did not answer within {timeout} s")

    # --- the servers ---------------------------------------------------------------------------

    def start_floor(self, name: str) -> subprocess.Popen[Any]:
        program = [str(self.programs.floor)] if name == "c_floor" else [sys.executable, str(PYFLOOR)]
        argv = [tool("ip"), "netns", "exec", self.topo.ns("ha"), *program, HA, "434", str(self.nodes_file)]
        log = (self.work / f"{name}.stderr").open("wb")
        try:
            return self.processes.start(argv, cpu=SERVER_CPU, stderr=log)
        finally:
            log.close()

    def start_mipd(self, instance: str, namespace: MountNamespace, *, cpu: int | None = SERVER_CPU,
                   nodes_file: Path | None = None, home_network: str = "10.1.0.0/16"
                   ) -> tuple[subprocess.Popen[Any], float]:
        """``mipd run`` in the ``ha`` network namespace and ``namespace``'s mount namespace; the
        process and the seconds from its start to READY=1 on NOTIFY_SOCKET (None: no READY)."""
        path = profile(self.work, instance, nodes_file or self.nodes_file, home_network)
        listener = NotifyListener(self.work / f"{instance}.notify")
        try:
            argv = [tool("ip"), "netns", "exec", self.topo.ns("ha"), tool("nsenter"), "-t", str(namespace.pid),
                    "-m", "--", venv_script("mipd"), "run", "--profile", str(path), "--instance", instance]
            with (self.work / f"{instance}.stderr").open("wb") as log:
                started = time.monotonic()
                process = self.processes.start(argv, cpu=cpu, env=listener.env(), stderr=log)
            ready = listener.wait_ready(60.0, lambda: process.poll() is None)
        finally:
            listener.close()
        if ready is None:
            self.processes.stop(process)
            tail = (self.work / f"{instance}.stderr").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"mipd {instance} sent no READY=1: {tail}")
        return process, ready - started

    # --- one server's runs ----------------------------------------------------------------------

    def measure(self, result: ServerResult, server: subprocess.Popen[Any]) -> None:
        config = self.config
        self.wait_answering(server)
        # A smaller window: a first registration also sets up the node's data plane (mipd: several
        # ms each), and a whole window is answered after one loop turn and one commit.
        result.warmup = self.loadgen("closed", config.warmup_limit_s, window=min(config.window, 32),
                                     until_accepted=config.nodes)
        result.saturation = self.loadgen("closed", config.saturation_s, window=config.window)
        if server.poll() is not None:
            raise RuntimeError(f"{result.name} exited with {server.returncode} during the runs")
        rate = result.saturation["rate"]
        if rate <= 0:
            raise RuntimeError(f"{result.name} accepted nothing at saturation: {result.saturation}")
        for pct in LOADS:
            result.loads[pct] = self.loadgen("open", config.latency_s, rate=round(rate * pct / 100, 1))

    def idle(self, process: subprocess.Popen[Any], window: float) -> dict[str, Any]:
        """The daemon's footprint before any request: resident set, and CPU used over ``window``
        seconds of idling (no requests, no advertisements: any CPU is a wake-up for nothing)."""
        time.sleep(0.5)  # what start-up left to do (a first commit) is not idling
        rss = rss_mib(process.pid)
        before, started = cpu_seconds(process.pid), time.monotonic()
        time.sleep(window)
        cpu, elapsed = cpu_seconds(process.pid) - before, time.monotonic() - started
        if process.poll() is not None:
            raise RuntimeError(f"mipd exited with {process.returncode} while idle")
        return {"idle_rss_mib": rss, "idle_cpu_s": cpu, "window_s": elapsed, "idle_cpu_pct": 100 * cpu / elapsed,
                "nodes": self.config.nodes}

    def run_server(self, name: str, journal: MountNamespace | None, idle_window: float | None = None
                   ) -> ServerResult:
        """Start server ``name`` (a floor when ``journal`` is None, else mipd in that mount
        namespace), measure it, stop it. With ``idle_window``, mipd's footprint is measured first."""
        result = ServerResult(name)
        process: subprocess.Popen[Any] | None = None
        try:
            if journal is None:
                process = self.start_floor(name)
            else:
                process, result.ready_s = self.start_mipd(name.replace("_", "-"), journal)
                if idle_window is not None:
                    result.footprint = {"ready_s": result.ready_s, **self.idle(process, idle_window)}
            self.measure(result, process)
        except RuntimeError as exc:
            result.error = str(exc)
        finally:
            if process is not None:
                self.processes.stop(process)
        return result


def journal_received(journal: Journald, instance: str) -> bool:
    """Whether journald holds registration events from ``instance`` (it may have rotated some out)."""
    return bool(journal.entries(count=1, timeout=5.0, MIP_EVENT="registration.accepted", MIP_INSTANCE=instance))


def run_rates(bench: Bench, journal: Journald | None, quiet: MountNamespace, idle_window: float,
              progress: Callable[[str], None]) -> tuple[dict[str, ServerResult], bool]:
    """Every server in turn; whether journald received mipd's events during its run. The last
    mipd started (with journald if there is one) has its footprint measured before its load."""
    results: dict[str, ServerResult] = {}
    for name in ("c_floor", "python_floor"):
        progress(f"rate: {name}")
        results[name] = bench.run_server(name, None)
    progress("rate: mipd (no journald)" + ("" if journal else f", idle for {idle_window:.0f} s first"))
    results["mipd"] = bench.run_server("mipd", quiet, None if journal else idle_window)
    received = False
    if journal is not None:
        progress(f"rate: mipd with journald, idle for {idle_window:.0f} s first")
        results["mipd_journald"] = bench.run_server("mipd_journald", journal, idle_window)
        received = results["mipd_journald"].error is None and journal_received(journal, "mipd-journald")
    return results, received
