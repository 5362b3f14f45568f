"""``python -m bench [--quick]`` (``make bench`` / ``make bench-quick``): mipd's benchmark harness.

Runs, in order: the registration rate against the C floor, the Python floor and mipd with and
without journald (bench/rate.py); the daemon's footprint (start to READY=1 over sd_notify, idle
RSS and CPU); a restart with 100,000 live bindings (bench/restart.py); binding scale at engine
level (bench/scale.py, one process per size); the kernel data path under a real kernel
(bench/kernel.py); iperf3 TCP through the home agent's tunnels (bench/throughput.py: IP-in-IP on
the userspace backend, RFC 3519's UDP tunnel, and IP-in-IP on the kernel backend under a real
kernel, which the quick run leaves out); handoff over the demo tour (bench/handoff.py); two
processes flooding a home agent with forged requests, from one source and from spoofed ones
(bench/flood.py).
Writes the JSON of docs/interfaces.md ("Benchmark results") to bench/results/latest.json (quick:
quick.json), the per-part details next to it (``*-details.json``), and prints a readable table.
Needs root (namespaces, a guest kernel).

Everything it creates -- namespaces, processes, journald, the guest kernel, its work directory --
is removed when it ends, also on failure, Ctrl-C or SIGTERM. A part that fails is reported and
its numbers are null; the others still run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from bench import flood, handoff, kernel, rate, restart, throughput
from bench.build import Programs, compile_all
from bench.procs import Processes
from bench.report import SUMMARY_KEYS, machine, number, render
from tests.support.journal import private_namespace, running_journald
from tests.support.netns import Topology

RESULTS = Path(__file__).resolve().parent / "results"
# The footprint is measured with the rate.
PARTS = frozenset({"rate", "restart", "scale", "kernel", "handoff", "throughput"})


class Plan:
    """What a full and a quick run measure."""

    def __init__(self, quick: bool, parts: frozenset[str] = PARTS) -> None:
        self.quick = quick
        self.parts = parts
        self.rate = rate.QUICK if quick else rate.FULL
        self.scale_sizes = (5_000,) if quick else (10_000, 100_000, 1_000_000)
        self.kernel_routes = 20 if quick else 200
        self.restart_bindings = restart.QUICK if quick else restart.FULL
        self.moves = 1 if quick else 20
        self.idle_window_s = 2.0 if quick else 30.0
        self.iperf_seconds = 3 if quick else 10
        self.kernel_throughput = not quick  # a second guest boot: too slow for the quick run
        self.flood_seconds = 2.0 if quick else 10.0


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def scale_run(size: int, timeout: float) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.scale", str(size)], capture_output=True, text=True,
                         timeout=timeout, check=False, cwd=Path(__file__).resolve().parents[1])
    if out.returncode:
        raise RuntimeError(f"bench.scale {size}: {out.stderr.strip()[-1500:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def attempt(details: dict[str, Any], key: str, work: Callable[[], Any]) -> Any:
    """Run one part; a failure is recorded under ``<key>_error`` and the run goes on."""
    started = time.monotonic()
    try:
        value = work()
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
        log(f"{key} failed: {exc}")
        details[f"{key}_error"] = str(exc)
        return None
    finally:
        details.setdefault("part_seconds", {})[key] = round(time.monotonic() - started, 1)
    details[key] = value
    return value


def run(plan: Plan, processes: Processes, stack: contextlib.ExitStack) -> tuple[dict[str, Any], dict[str, Any]]:
    details: dict[str, Any] = {"quick": plan.quick, "rate_nodes": plan.rate.nodes}
    work = Path(tempfile.mkdtemp(prefix="mipd-bench-"))
    stack.callback(shutil.rmtree, work, ignore_errors=True)
    log("compiling bench/c (gcc) and checking its HMAC-MD5 against Python's")
    programs = compile_all(work)

    if plan.parts & {"rate", "restart"}:
        namespaced(plan, details, processes, programs, work=work, stack=stack)
    stack.close()  # namespaces and journald are no longer needed

    scale: list[dict[str, Any]] = []
    for size in plan.scale_sizes if "scale" in plan.parts else ():
        log(f"scale: {size:,} bindings")
        if attempt(details, "scale_last", lambda size=size: scale_run(size, 600)) is None:  # type: ignore[misc]
            break
        scale.append(details.pop("scale_last"))
    details["scale"] = scale

    if "kernel" in plan.parts:
        log(f"kernel: a real kernel (user-mode Linux or QEMU), {plan.kernel_routes} routes")
        attempt(details, "kernel", lambda: kernel.run(plan.kernel_routes, dataplane=not plan.quick))
    if "throughput" in plan.parts:
        measure_throughput(plan, details)
    if "handoff" in plan.parts:
        log(f"handoff: mipd demo --moves {plan.moves} --interval-ms 10")
        attempt(details, "handoff", lambda: handoff.run(processes, plan.moves))
    return summarize(details), details


def measure_throughput(plan: Plan, details: dict[str, Any]) -> None:
    """iperf3 TCP through the home agent's tunnels (bench/throughput.py): IP-in-IP on the userspace backend
    and on the kernel backend (under a real kernel), and RFC 3519's UDP tunnel (userspace)."""
    seconds = plan.iperf_seconds
    log(f"throughput: iperf3 -t {seconds} through the userspace IP-in-IP tunnel")
    attempt(details, "ipip_userspace", lambda: throughput.on_host(seconds, udp=False))
    log(f"throughput: iperf3 -t {seconds} through the UDP tunnel (nat_traversal: force)")
    attempt(details, "udp_tunnel", lambda: throughput.on_host(seconds, udp=True))
    if plan.kernel_throughput:
        log(f"throughput: iperf3 -t {seconds} through the kernel IP-in-IP tunnel, under a real kernel")
        attempt(details, "ipip_kernel", lambda: throughput.in_kernel(seconds))
    else:
        details["ipip_kernel_error"] = "left out of the quick run (it would boot a second guest kernel)"


def namespaced(plan: Plan, details: dict[str, Any], processes: Processes, programs: Programs, *, work: Path,
               stack: contextlib.ExitStack) -> None:
    """The parts that run in network namespaces: the rate runs, and the footprint with them."""
    topo = Topology(prefix="mipb" + uuid.uuid4().hex[:6])
    stack.callback(topo.close)
    rate.build_topology(topo)
    quiet = stack.enter_context(private_namespace(work))
    journal = None
    try:
        journal = stack.enter_context(running_journald(work))
    except RuntimeError as exc:
        details["journald_error"] = str(exc)
    if "rate" in plan.parts:
        bench = rate.Bench(topo, work, programs, processes, plan.rate)
        started = time.monotonic()
        results, received = rate.run_rates(bench, journal, quiet, plan.idle_window_s, log)
        details["rate"] = {name: r.as_json() for name, r in results.items()}
        details["journal"] = received
        details["footprint"] = next((r.footprint for r in results.values() if r.footprint), None)
        details.setdefault("part_seconds", {})["rate"] = round(time.monotonic() - started, 1)
    if "restart" in plan.parts:
        attempt(details, "restart", lambda: restart.run(topo, work=work, programs=programs, processes=processes,
                                                        quiet=quiet, config=plan.rate, count=plan.restart_bindings,
                                                        progress=log))
    if journal is None:
        details["flood_error"] = "no journald to receive the home agent's events"
        return
    if "rate" in plan.parts:
        log(f"flood: two processes flooding forged requests for {plan.flood_seconds:g} s, one source then spoofed")
        attempt(details, "flood", lambda: flood.run(journal, work, plan.flood_seconds))


def summarize(details: dict[str, Any]) -> dict[str, Any]:
    rates = details.get("rate") or {}

    def sat(name: str) -> Any:
        r = rates.get(name) or {}
        return (r.get("saturation") or {}).get("rate") if not r.get("error") else None

    headline = "mipd_journald" if details.get("journal") else "mipd"
    at50 = ((rates.get(headline) or {}).get("loads") or {}).get("50") or {}
    at90 = ((rates.get(headline) or {}).get("loads") or {}).get("90") or {}
    floods = details.get("flood") or {}
    scale = {s["bindings"]: s for s in details.get("scale") or []}
    kern = details.get("kernel") or {}
    hand = details.get("handoff") or {}
    foot = details.get("footprint") or {}
    restarted = details.get("restart") or {}
    values = {
        "registrations_per_s": sat(headline),
        "c_floor_per_s": sat("c_floor"),
        "python_floor_per_s": sat("python_floor"),
        "p50_ms_at_50pct": at50.get("p50_ms") if at50.get("accepted") else None,
        "p99_ms_at_50pct": at50.get("p99_ms") if at50.get("accepted") else None,
        "p99_ms_at_90pct": at90.get("p99_ms") if at90.get("accepted") else None,
        "flood_legit_answered_pct": (floods.get("one_source") or {}).get("legit_answered_pct"),
        "flood_spoofed_legit_answered_pct": (floods.get("spoofed") or {}).get("legit_answered_pct"),
        "flood_discard_per_s": (floods.get("one_source") or {}).get("discard_per_s"),
        "bytes_per_binding_1m": (scale.get(1_000_000) or {}).get("bytes_per_binding"),
        "expire_s_per_100k": (scale.get(100_000) or {}).get("expire_s"),
        "route_installs_per_s": kern.get("tunnel_install_per_s"),
        "first_registrations_per_s": ((rates.get(headline) or {}).get("warmup") or {}).get("rate")
        if not (rates.get(headline) or {}).get("error") else None,
        # Only a run of 100,000 bindings (the quick run restarts with 2,000: in the details and the table).
        "restart_100k_ready_s": restarted.get("ready_s") if restarted.get("bindings") == restart.FULL else None,
        "handoff_ms_median": hand.get("handoff_ms_median"),
        "handoff_ms_p95": hand.get("handoff_ms_p95"),
        "lost_per_move_max": hand.get("lost_per_move_max"),
        "ready_s": foot.get("ready_s"),
        "idle_rss_mib": foot.get("idle_rss_mib"),
        "idle_cpu_pct": foot.get("idle_cpu_pct"),
        "udp_tunnel_mbit_s": (details.get("udp_tunnel") or {}).get("mbit_s"),
        "ipip_userspace_mbit_s": (details.get("ipip_userspace") or {}).get("mbit_s"),
        "ipip_kernel_mbit_s": (details.get("ipip_kernel") or {}).get("mbit_s"),
    }
    summary: dict[str, Any] = {key: number(values[key]) for key in SUMMARY_KEYS}
    summary["machine"] = machine()
    if kern.get("guest_kernel"):
        summary["machine"]["guest_kernel"] = kern["guest_kernel"]
    summary["journal"] = bool(details.get("journal"))
    summary["handoff_breakdown_ms"] = hand.get("breakdown")
    return summary


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the smoke-test run: small sizes, short windows")
    parser.add_argument("--parts", default=",".join(sorted(PARTS)),
                        help="comma-separated parts to run (default all): " + ", ".join(sorted(PARTS)))
    parser.add_argument("--output", type=Path, help="where to write the JSON (default bench/results/...)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("python -m bench: needs root (network namespaces, journald, a guest kernel)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    parts = frozenset(p.strip() for p in args.parts.split(",") if p.strip())
    if parts - PARTS:
        parser.error(f"unknown parts: {', '.join(sorted(parts - PARTS))}")
    plan = Plan(args.quick, parts)
    output = args.output or RESULTS / ("quick.json" if plan.quick else "latest.json")
    started = time.monotonic()
    processes = Processes()
    with contextlib.ExitStack() as stack:
        stack.callback(processes.close)
        try:
            summary, details = run(plan, processes, stack.enter_context(contextlib.ExitStack()))
        except KeyboardInterrupt:
            log("interrupted: cleaning up")
            return 130
    details["seconds"] = time.monotonic() - started
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(summary, indent=2) + "\n")
    output.with_name(output.stem + "-details.json").write_text(json.dumps(details, indent=2) + "\n")
    print(render(summary, details))
    print(f"\nwrote {output} in {details['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
