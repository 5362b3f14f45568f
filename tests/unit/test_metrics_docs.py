"""mipd(8) METRICS names every metric family mipd/obs/metrics.py can serve, for each role, and the
Grafana dashboard in docs/ asks only for those."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from mipd.control.shapes import stats_json, status_json
from mipd.core.counters import Counters
from mipd.obs.metrics import Metrics, families
from tests.unit.test_docs import plain, sections

REPO = Path(__file__).resolve().parents[2]
STATUS = {"home-agent": {"bindings": 2}, "foreign-agent": {"visitors": 1},
          "mobile-node": {"location": "away", "registered": True, "lifetime_remaining": 60}}
SECTIONS = {"data_plane": {"encapsulated": 1, "decapsulated": 2, "encapsulated_bytes": 3, "decapsulated_bytes": 4,
                           "reverse_tunnelled": 5, "reverse_tunnelled_bytes": 6, "dropped_no_binding": 7},
            "advertisements": {"sent": 1}, "relay": {"sent": 1}, "visited_link": {"received": 1},
            "routing": {"routes_added": 1}, "link": {"received": 1}}


def served(role: str) -> set[str]:
    counters = Counters(requests_received=3, accepted=2)
    counters.denied[130] += 1
    counters.dropped["no-sa"] += 1
    stats = stats_json(counters, relayed=1)
    stats["counters"].update(SECTIONS)
    data = {"status": status_json(role=role, instance="x", uptime=5, backend="kernel", **STATUS[role]),
            "stats": stats, "visitors": [{"state": "active"}] if role == "foreign-agent" else None}
    names = {family.name + ("_total" if family.type == "counter" else "") for family in families(data)}
    if role == "mobile-node":  # the histograms, fed from events (served by the integration test)
        loop = asyncio.new_event_loop()
        try:
            metrics = Metrics("127.0.0.1:1", handler=None, loop=loop, role=role)  # type: ignore[arg-type]
            for histogram in (metrics.registration_seconds, metrics.handoff_seconds):
                names |= {family.name for family in histogram.collect()}
        finally:
            loop.close()
    return names | {"mipd_up"}


def documented() -> str:
    return plain(sections("mipd.8")["METRICS"])


@pytest.mark.parametrize("role", sorted(STATUS))
def test_mipd_8_names_every_metric_a_role_serves(role: str) -> None:
    text = documented()
    names = served(role)
    assert {"mipd_registrations_total", "mipd_dropped_total", "mipd_tunnel_bytes_total"} <= names
    missing = sorted(name for name in names if not re.search(rf"(?<![\w]){name}(?![\w])", text))
    assert not missing, f"mipd(8) METRICS does not name {missing}"


def test_the_dashboard_asks_only_for_documented_metrics() -> None:
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {re.sub(r"_(bucket|count|sum)$", "", name) for expr in exprs for name in re.findall(r"mipd_\w+", expr)}
    assert used and not sorted(used - set().union(*(served(role) for role in STATUS)))
