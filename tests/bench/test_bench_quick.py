"""``make bench-quick`` as a smoke test: the harness runs end to end and writes the JSON of docs/interfaces.md
("Benchmark results").

Nothing about speed is asserted. Null is accepted only where the quick mode honestly measures
nothing: ``bytes_per_binding_1m`` (quick mode stops at 10,000 bindings), ``expire_s_per_100k``
(no 100,000-binding run), ``restart_100k_ready_s`` (the quick restart has 2,000 bindings: in the
details, checked below) and ``ipip_kernel_mbit_s`` (one guest boot only). ``udp_tunnel_mbit_s`` is
measured: the node forces RFC 3519 UDP tunnelling and the home agent grants it. Also checks the table
parser the handoff part relies on.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bench.handoff import parse_table, percentile
from bench.report import SUMMARY_KEYS
from tests.support.tools import venv_script

REPOSITORY = Path(__file__).resolve().parents[2]
# ipip_kernel_mbit_s: the quick run boots one guest kernel only.
NULL_IN_QUICK = {"bytes_per_binding_1m", "expire_s_per_100k", "restart_100k_ready_s", "ipip_kernel_mbit_s"}


@pytest.mark.skipif(os.geteuid() != 0, reason="the benchmark needs root (namespaces, a guest kernel)")
def test_quick_bench_writes_every_key(tmp_path: Path) -> None:
    output = tmp_path / "quick.json"
    run = subprocess.run([venv_script("python"), "-m", "bench", "--quick", "--output", str(output)], cwd=REPOSITORY,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Registration rate" in run.stdout, run.stdout
    summary = json.loads(output.read_text())
    assert set(summary) == {*SUMMARY_KEYS, "machine", "journal", "handoff_breakdown_ms"}
    assert isinstance(summary["handoff_breakdown_ms"], dict), summary["handoff_breakdown_ms"]
    for key in SUMMARY_KEYS:
        value = summary[key]
        assert value is None or (isinstance(value, int | float) and not isinstance(value, bool)), (key, value)
        if key not in NULL_IN_QUICK:
            assert value is not None, (key, run.stderr[-3000:])
    assert isinstance(summary["journal"], bool)
    assert "Throughput: iperf3 TCP" in run.stdout, run.stdout
    assert "Flood (two processes" in run.stdout and "from spoofed 198.18.0.0/16" in run.stdout, run.stdout
    assert "RFC 3519 UDP tunnel, userspace backend (host kernel)  " in run.stdout, run.stdout  # a measured row
    # The guest kernel that measured route_installs_per_s is named beside the host's.
    assert set(summary["machine"]) == {"cpu", "cores", "kernel", "python", "guest_kernel"}
    assert summary["machine"]["guest_kernel"].split()[1] in ("(uml)", "(qemu-tcg)", "(qemu-kvm)"), summary["machine"]
    details = json.loads((tmp_path / "quick-details.json").read_text())
    assert details["quick"] is True
    restarted = details["restart"]  # READY with every route and proxy entry back, at the quick size
    assert restarted["routes"] >= restarted["bindings"] and restarted["proxies"] >= restarted["bindings"], restarted
    assert "Restart with 2,000 live bindings" in run.stdout, run.stdout


DEMO_OUTPUT = """\
move  from        to          handoff ms  lost  sent  registration ms
----  ----------  ----------  ----------  ----  ----  ---------------
   1  home        visited 1         79.9     7   172             46.5
   2  visited 1   co-located           -    12   180                -
roaming: moves=2 delivered=333/352 lost=19 handoff_ms_median=79.9 tcp_survived=yes
"""


def test_demo_table_is_parsed_by_column_names() -> None:
    rows = parse_table(DEMO_OUTPUT)
    assert [r["handoff ms"] for r in rows] == ["79.9", "-"]
    assert [r["to"] for r in rows] == ["visited 1", "co-located"]
    assert [r["lost"] for r in rows] == ["7", "12"]
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5


def test_throughput_table_shows_a_missing_figure_and_why() -> None:
    from bench.report import _throughput_section  # noqa: PLC0415

    lines = _throughput_section({
        "ipip_userspace": {"mbit_s": 200.0, "packets_s": 17000.0, "retransmits": 3, "seconds": 3.0},
        "udp_tunnel": {"error": "no UDP tunnel (refused)"},
        "ipip_kernel_error": "left out of the quick run",
    })
    text = "\n".join(lines)
    assert "200.0" in text and "17,000" in text
    assert "RFC 3519 UDP tunnel, userspace backend (host kernel): not measured: no UDP tunnel" in text
    assert "kernel backend (real-kernel runner): not measured: left out of the quick run" in text
    assert _throughput_section({}) == []
