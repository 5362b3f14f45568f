"""The results: the JSON of docs/interfaces.md, "Benchmark results" (exact keys plus ``machine`` and
``journal``), and a readable table."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SUMMARY_KEYS = (
    "registrations_per_s", "c_floor_per_s", "python_floor_per_s", "p50_ms_at_50pct", "p99_ms_at_50pct",
    "bytes_per_binding_1m", "expire_s_per_100k", "route_installs_per_s", "handoff_ms_median", "handoff_ms_p95",
    "lost_per_move_max", "ready_s", "idle_rss_mib", "idle_cpu_pct", "udp_tunnel_mbit_s", "ipip_userspace_mbit_s",
    "ipip_kernel_mbit_s", "p99_ms_at_90pct", "flood_legit_answered_pct", "flood_spoofed_legit_answered_pct",
    "flood_discard_per_s", "first_registrations_per_s", "restart_100k_ready_s",
)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version()}


def number(value: Any) -> float | int | None:
    """A finite number, rounded for the record, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value if isinstance(value, int) else round(value, 4)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _ratio(a: Any, b: Any) -> str:
    return f"{a / b:.0%}" if isinstance(a, int | float) and isinstance(b, int | float) and b else "-"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                               enumerate(zip(row, widths, strict=True))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _rate_section(summary: dict[str, Any], details: dict[str, Any]) -> list[str]:
    rates = details.get("rate") or {}
    if not rates:
        return []
    c_floor, py_floor = summary["c_floor_per_s"], summary["python_floor_per_s"]
    out = ["", f"Registration rate ({details['rate_nodes']:,} nodes, HMAC-MD5, fresh timestamps; "
               "server on 1 core, C load generator on the other)"]
    rows: list[tuple[str, ...]] = [("server", "accepted/s", "vs C floor", "vs Py floor", "p50/p99 ms @25%",
                                    "p50/p99 ms @50%", "p50/p99 ms @90%", "first reg/s")]
    labels = {"c_floor": "C floor (bench/c/floor.c)", "python_floor": "Python floor (bench/pyfloor.py)",
              "mipd": "mipd run, no journald", "mipd_journald": "mipd run, journald receiving"}
    for name, label in labels.items():
        r = rates.get(name)
        if r is None:
            continue
        if r.get("error"):
            rows.append((label, "failed", "-", "-", "-", "-", "-", "-"))
            continue
        rate = r["saturation"]["rate"]
        cells = [label, _fmt(rate, 0), _ratio(rate, c_floor), _ratio(rate, py_floor)]
        for pct in ("25", "50", "90"):
            run = r["loads"].get(pct) or {}
            lat = f"{_fmt(run.get('p50_ms'), 2)} / {_fmt(run.get('p99_ms'), 2)}"
            if run.get("sent") and run.get("lost", 0) > 0.01 * run["sent"]:
                lat += f" ({run['lost'] / run['sent']:.0%} lost)"
            cells.append(lat)
        cells.append(_fmt((r.get("warmup") or {}).get("rate"), 0))
        rows.append(tuple(cells))
    out += _table(rows)
    out += [f"  {name} failed: {r['error'][:300]}" for name, r in rates.items() if r.get("error")]
    out.append(f"journald received mipd's events during its run: {'yes' if summary['journal'] else 'no'}")
    return out


def _scale_section(details: dict[str, Any]) -> list[str]:
    scale = details.get("scale") or []
    if not scale:
        error = details.get("scale_last_error")
        return ["", f"Binding scale: failed: {error[:500]}"] if error else []
    out = ["", "Binding scale, engine level (mipd.core.home_agent; memory = RSS growth over N)"]
    rows: list[tuple[str, ...]] = [("bindings", "bytes/binding", "register µs/binding", "register s",
                                    "expire µs/binding", "expire s")]
    for s in scale:
        rows.append((f"{s['bindings']:,}", _fmt(s["bytes_per_binding"], 0), _fmt(s["register_us_per_binding"]),
                     _fmt(s["register_s"], 2), _fmt(s["expire_us_per_binding"]), _fmt(s["expire_s"], 2)))
    out += _table(rows)
    if len(scale) > 1:
        a, b = scale[0], scale[-1]
        out.append(f"growth {a['bindings']:,} -> {b['bindings']:,} (x{b['bindings'] / a['bindings']:,.0f}): "
                   f"register time per binding x{b['register_us_per_binding'] / a['register_us_per_binding']:.2f}, "
                   f"expire time per binding x{b['expire_us_per_binding'] / a['expire_us_per_binding']:.2f} "
                   f"(log2 n grows x{math.log2(b['bindings']) / math.log2(a['bindings']):.2f})")
    return out


def _kernel_section(details: dict[str, Any]) -> list[str]:
    kernel = details.get("kernel")
    if not kernel:
        error = details.get("kernel_error")
        return ["", f"Kernel data path: not measured: {error[:500]}"] if error else []
    out = ["", f"Kernel data path under {kernel.get('runner', 'a real kernel')}, Linux {kernel.get('guest_kernel')} "
               f"({kernel['count']} home addresses, kernel backend via pyroute2; the guest's system calls are "
               "slow: compare with ip -batch)"]
    rows: list[tuple[str, ...]] = [("operation", "per second")]
    for key, label in (("tunnel_install_per_s", "tunnel route install (KernelBackend.apply)"),
                       ("tunnel_move_per_s", "care-of change (route replace)"),
                       ("tunnel_remove_per_s", "tunnel route removal"),
                       ("dataplane_install_per_s", "whole HA data plane, node leaves home"),
                       ("dataplane_remove_per_s", "whole HA data plane, node returns"),
                       ("ip_batch_install_per_s", "same routes by one `ip -batch` (the guest kernel's pace)")):
        if key in kernel:
            rows.append((label, _fmt(kernel[key], 0)))
    return out + _table(rows)


def _handoff_section(details: dict[str, Any]) -> list[str]:
    handoff = details.get("handoff")
    if not handoff:
        error = details.get("handoff_error")
        return ["", f"Handoff: not measured: {error[:500]}"] if error else []
    return ["", f"Handoff ({handoff['moves']} moves of the demo tour, pings every {handoff['interval_ms']} ms)",
            f"median {_fmt(handoff['handoff_ms_median'])} ms, p95 {_fmt(handoff['handoff_ms_p95'])} ms, "
            f"pings lost per move max {handoff['lost_per_move_max']} "
            f"(all moves: {handoff['lost']}/{handoff['sent']}), "
            f"tcp survived: {'yes' if handoff['tcp_survived'] else 'no'}", *_breakdown(handoff.get("breakdown"))]


# The stages of mipd/demo/breakdown.py, in the order a handoff passes them.
_STAGES = (("link_change_ms", "link change (the demo's ip link set down, master, up)"),
           ("discovery_ms", "carrier up -> agent heard (netlink, solicitation, advertisement)"),
           ("decision_ms", "agent heard -> registration decided"),
           ("node_request_ms", "node: commit, request sent -> foreign agent (or home agent)"),
           ("foreign_agent_relay_ms", "foreign agent relays -> home agent decides"),
           ("home_agent_ms", "home agent: commit, data plane, reply -> foreign agent (or node)"),
           ("foreign_agent_reply_ms", "foreign agent: commit, delivery, reply -> node"),
           ("node_accept_ms", "node: commit, routes -> first ping answered"))


def _breakdown(medians: dict[str, Any] | None) -> list[str]:
    """The handoff's stages (medians over the moves that have them) and each role's commit time."""
    if not medians:
        return []
    rows: list[tuple[str, ...]] = [("handoff stage (median)", "ms")]
    rows += [(label, _fmt(medians[key], 2)) for key, label in _STAGES if key in medians]
    commits = medians.get("commit_ms") or {}
    rows += [(f"one group commit of {role}", _fmt(value, 2)) for role, value in sorted(commits.items())]
    return _table(rows)


def _throughput_section(details: dict[str, Any]) -> list[str]:
    parts = (("ipip_userspace", "IP-in-IP, userspace backend (host kernel)"),
             ("ipip_kernel", "IP-in-IP, kernel backend (real-kernel runner)"),
             ("udp_tunnel", "RFC 3519 UDP tunnel, userspace backend (host kernel)"))
    if not any(details.get(key) or details.get(f"{key}_error") for key, _ in parts):
        return []
    out = ["", "Throughput: iperf3 TCP, correspondent on the home link -> home agent -> co-located mobile node "
               "(packets/s: tunnelled packets the home agent sent)"]
    rows: list[tuple[str, ...]] = [("tunnel", "Mbit/s", "packets/s", "retransmits", "seconds")]
    notes = []
    for key, label in parts:
        result = details.get(key) or {}
        if "mbit_s" in result:
            rows.append((label, _fmt(result["mbit_s"]), _fmt(result.get("packets_s"), 0),
                         _fmt(result.get("retransmits")), _fmt(result.get("seconds"))))
        else:
            rows.append((label, "-", "-", "-", "-"))
            why = result.get("error") or details.get(f"{key}_error") or "not run"
            notes.append(f"  {label}: not measured: {why[:300]}")
    kernel = details.get("ipip_kernel") or {}
    if kernel.get("runner"):
        notes.append(f"  the kernel backend ran under {kernel['runner']}, Linux {kernel.get('guest_kernel')}: "
                     "a guest kernel, not comparable with the host rows")
    return out + _table(rows) + notes


def _footprint_section(summary: dict[str, Any], details: dict[str, Any]) -> list[str]:
    foot = details.get("footprint")
    if not foot:
        return []
    return ["", f"Footprint (mipd run, home agent, {foot['nodes']:,} nodes, no advertisements, before any request)",
            f"start to READY=1 {_fmt(summary['ready_s'], 3)} s, idle RSS {_fmt(summary['idle_rss_mib'])} MiB, "
            f"idle CPU {_fmt(summary['idle_cpu_pct'], 3)} % of one core over {foot['window_s']:.0f} s"]


def _flood_section(details: dict[str, Any]) -> list[str]:
    floods = details.get("flood")
    if not floods:
        return ["", f"Flood: failed: {details['flood_error'][:300]}"] if details.get("flood_error") else []
    out = ["", "Flood (two processes sending forged requests as fast as they go; a node re-registering every 50 ms)"]
    rows: list[tuple[str, ...]] = [("flood", "flood/s", "discarded/s", "legit answered <1 s", "legit p50 ms",
                                    "131 sent")]
    for name, label in (("one_source", "from one source"), ("spoofed", "from spoofed 198.18.0.0/16")):
        r = floods.get(name) or {}
        rows.append((label, _fmt(r.get("flood_per_s"), 0), _fmt(r.get("discard_per_s"), 0),
                     f"{_fmt(r.get('legit_answered_pct'))} % of {r.get('legit_sent', '-')}",
                     _fmt(r.get("legit_p50_ms")), _fmt(r.get("denied_131"), 0)))
    return out + _table(rows)


def _restart_section(details: dict[str, Any]) -> list[str]:
    result = details.get("restart")
    if not result:
        error = details.get("restart_error")
        return ["", f"Restart with live bindings: not measured: {error[:500]}"] if error else []
    first = result.get("first_registrations") or {}
    floor = result.get("kernel_floor") or {}
    return ["", f"Restart with {result['bindings']:,} live bindings ({result['backend']} backend, host kernel; "
                "netlink in batches)",
            f"start to READY=1 {_fmt(result['ready_s'], 2)} s with {result['routes']:,} routes and "
            f"{result['proxies']:,} proxy entries back (empty state: {_fmt(result['empty_ready_s'], 2)} s); "
            f"their first registrations: {_fmt(first.get('rate'), 0)}/s",
            f"of which the kernel's own share, measured alone: {_fmt(floor.get('routes_s'), 2)} s for the routes, "
            f"{_fmt(floor.get('proxies_s'), 2)} s for the proxy entries (its proxy-neighbour table is 16 hash chains)"]


def render(summary: dict[str, Any], details: dict[str, Any]) -> str:
    """The readable table of one run."""
    m = summary["machine"]
    out = [f"machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}"
           f"{' (quick mode)' if details.get('quick') else ''}"]
    out += _rate_section(summary, details)
    out += _scale_section(details)
    out += _kernel_section(details)
    out += _throughput_section(details)
    out += _handoff_section(details)
    out += _flood_section(details)
    out += _footprint_section(summary, details)
    out += _restart_section(details)
    return "\n".join(out)
