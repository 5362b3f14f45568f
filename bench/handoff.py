"""Handoff: the roaming demo's tour (``mipd demo --moves N --interval-ms 10 --breakdown F``), its table parsed.

The demo prints a per-move table (columns found by their header names, cells by the header's
underline of dashes, so added columns do not break the parse) and its summary line (docs/interfaces.md).
Per move: handoff ms (link change to the first ping answered over the new path) and pings lost; and
where the time went (the demo's ``--breakdown`` JSON, mipd/demo/breakdown.py): the median of each stage
over the moves, and of each role's group commit, as ``breakdown`` (the bench's ``handoff_breakdown_ms``).
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.procs import Processes
from tests.support.tools import venv_script

SUMMARY = re.compile(r"^roaming: moves=(\d+) delivered=(\d+)/(\d+) lost=(\d+) handoff_ms_median=([\d.]+) "
                     r"tcp_survived=(yes|no)")


def parse_table(text: str) -> list[dict[str, str]]:
    """The rows of the table whose header has ``handoff ms``, as {header: cell}."""
    lines = text.splitlines()
    for n, line in enumerate(lines[:-1]):
        if "handoff ms" in line and re.fullmatch(r"[- ]+", lines[n + 1].strip() or "x"):
            spans = [m.span() for m in re.finditer(r"-+", lines[n + 1])]
            spans = [(start, spans[i + 1][0] if i + 1 < len(spans) else 10_000) for i, (start, _) in
                     enumerate(spans)]
            headers = [line[a:b].strip() for a, b in spans]
            rows = []
            for row in lines[n + 2:]:
                if not row.strip() or not row.strip()[0].isdigit():
                    break
                # right-aligned numbers may start left of their column: split on two or more spaces
                cells = re.split(r"\s{2,}", row.strip())
                if len(cells) != len(headers):
                    cells = [row[a:b].strip() for a, b in spans]
                rows.append(dict(zip(headers, cells, strict=True)))
            return rows
    raise ValueError("no table with a 'handoff ms' column in the demo's output")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def run(processes: Processes, moves: int, interval_ms: int = 10, timeout: float = 300.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mipd-bench-handoff-") as work:
        found = Path(work) / "breakdown.json"
        argv = [venv_script("mipd"), "demo", "--moves", str(moves), "--interval-ms", str(interval_ms),
                "--breakdown", str(found)]
        process = processes.start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = process.communicate(timeout=timeout)
        finally:
            processes.stop(process, timeout=60)  # the demo removes its namespaces on SIGTERM
        breakdown = json.loads(found.read_text()) if found.is_file() else {}
    text = out.decode(errors="replace")
    summary = next((m for line in text.splitlines() if (m := SUMMARY.match(line))), None)
    if process.returncode or summary is None:
        raise RuntimeError(f"mipd demo exited {process.returncode}: {err.decode(errors='replace')[-1500:]}")
    rows = parse_table(text)
    handoffs = [float(r["handoff ms"]) for r in rows if r["handoff ms"] not in ("-", "")]
    lost = [int(r["lost"]) for r in rows]
    return {
        "moves": int(summary.group(1)), "delivered": int(summary.group(2)), "sent": int(summary.group(3)),
        "lost": int(summary.group(4)), "tcp_survived": summary.group(6) == "yes",
        "handoff_ms": handoffs, "lost_per_move": lost, "interval_ms": interval_ms,
        "handoff_ms_median": statistics.median(handoffs) if handoffs else None,
        "handoff_ms_p95": percentile(handoffs, 0.95) if handoffs else None,
        "lost_per_move_max": max(lost) if lost else None,
        "moves_without_handoff": len(rows) - len(handoffs),
        "breakdown": breakdown.get("median_ms"), "breakdown_moves": breakdown.get("moves"),
    }
