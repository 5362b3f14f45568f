"""Prometheus metrics of real ``mipd run`` daemons (mipd(8) METRICS): a home agent, a foreign agent and a
mobile node in network namespaces, each with ``metrics: {listen: 127.0.0.1}`` (the default port, 9434, on
its namespace's own loopback).

A scrape shows every counter ``mipctl stats --json`` shows with the same value (read just before and just
after it: bounds for counters that move on their own, such as advertisements); a registration moves the
home agent's, the foreign agent's and the node's numbers; promtool accepts what each serves; a real
Prometheus server scrapes the home agent and answers a query for it; a listen address the host does not
have stops ``mipd run``. Everything is stopped and removed at the end, also on failure.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import journal as journal_support
from tests.support import roaming, waiting
from tests.support.daemon import HomeAgentDaemon
from tests.support.journal import Journald
from tests.support.netns import entered, topology
from tests.support.tools import tool

journald = journal_support.journald
PORT = 9434  # the default, as mip.yaml(5) documents it
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

PROFILES = {
    "ha": roaming.home_agent_profile(advertisement_interval=0.5,
                                     foreign_agents=[roaming.peer(roaming.FA1, 500, roaming.KF1)],
                                     tunnel="{backend: userspace}"),
    "fa1": roaming.foreign_agent_profile(roaming.FA1, 500, roaming.KF1, advertisement_interval=0.5,
                                         tunnel="{backend: userspace}"),
    "mn": roaming.mobile_node_profile(lifetime=120),
}


wait_for = partial(waiting.wait_for, timeout=20.0, every=0.1)


def http_get(ns: str, url: str) -> str:
    """GET ``url`` from inside namespace ``ns`` (no proxy: the address is the namespace's own)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with entered(ns), opener.open(url, timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


def scrape_text(ns: str) -> str:
    return http_get(ns, f"http://127.0.0.1:{PORT}/metrics")


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def scrape(ns: str) -> Samples:
    return samples(scrape_text(ns))


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def expected_samples(counters: dict[str, Any]) -> dict[tuple[str, frozenset[tuple[str, str]]], int]:
    """Where mipd(8) METRICS says each counter of ``mipctl stats --json`` appears."""
    def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
        return name, frozenset(labels.items())

    out = {key("mipd_requests_received_total"): counters["requests_received"],
           key("mipd_registrations_total", result="accepted", code=""): counters["accepted"]}
    out |= {key("mipd_registrations_total", result="denied", code=c): n for c, n in counters["denied"].items()}
    out |= {key("mipd_dropped_total", reason=r): n for r, n in counters["dropped"].items()}
    for section, entries in counters.items():
        if not isinstance(entries, dict) or section in ("denied", "dropped"):
            continue
        for name, count in entries.items():
            if not isinstance(count, int | float) or isinstance(count, bool):
                continue  # a setting (state.durability), not a count: not a metric
            if section != "data_plane":
                out[key(f"mipd_{section}_total", counter=name)] = count
            elif name in ("encapsulated", "decapsulated", "reverse_tunnelled"):
                out[key("mipd_tunnel_packets_total", direction=name)] = count
            elif name.endswith("_bytes"):
                out[key("mipd_tunnel_bytes_total", direction=name.removesuffix("_bytes"))] = count
            else:
                out[key("mipd_data_plane_total", counter=name)] = count
    return out


@pytest.fixture(scope="module")
def world(journald: Journald, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with topology() as topo:
        roaming.build(topo)
        with roaming.started(journald, topo, PROFILES, "metrics", tmp_path_factory.mktemp,
                             extra="metrics: {listen: 127.0.0.1}\n") as daemons:
            yield {"topo": topo, **daemons}


def assert_agrees_with_mipctl(daemon: HomeAgentDaemon, ns: str) -> Samples:
    """Every counter of mipctl stats, read before and after the scrape, bounds the scraped value."""
    before = expected_samples(daemon.json("stats")["counters"])
    found = scrape(ns)
    after = expected_samples(daemon.json("stats")["counters"])
    assert set(before) == set(after)
    missing = sorted(name for name, _ in set(before) - set(found))
    assert not missing, f"mipctl stats shows {missing}, the scrape does not"
    for sample, low in before.items():
        assert low <= found[sample] <= after[sample], (sample, low, found[sample], after[sample])
    return found


@pytest.mark.parametrize("name", ["ha", "fa1", "mn"])
def test_every_role_serves_what_mipctl_stats_shows(world: dict[str, Any], name: str) -> None:
    daemon, ns = world[name], world["topo"].ns(name)
    found = assert_agrees_with_mipctl(daemon, ns)
    role = daemon.json("status")["role"]
    assert value(found, "mipd_up") == 1
    assert value(found, "mipd_info", instance=f"metrics-{name}", role=role, backend=daemon.json("status")["backend"]
                 ) == 1
    assert all(sample[0].startswith("mipd_") for sample in found)
    assert (("mipd_registration_seconds_count", frozenset()) in found) == (role == "mobile-node")


def test_a_stalled_scraper_does_not_stall_the_daemon(world: dict[str, Any]) -> None:
    ha, ns = world["ha"], world["topo"].ns("ha")
    with entered(ns):
        idle = socket.create_connection(("127.0.0.1", PORT), timeout=5)  # connects, never sends a request
    with idle:
        started = time.monotonic()
        assert ha.mipctl("status").returncode == 0
        assert value(scrape(ns), "mipd_up") == 1
        assert time.monotonic() - started < 5


def test_a_registration_moves_the_numbers(world: dict[str, Any]) -> None:
    topo = world["topo"]
    wait_for(lambda: world["mn"].json("status")["location"] == "home", what="the node at home")
    ha0, fa0, mn0 = scrape(topo.ns("ha")), scrape(topo.ns("fa1")), scrape(topo.ns("mn"))
    assert value(ha0, "mipd_bindings") == 0 and value(mn0, "mipd_registered") == 0
    roaming.move(topo, "br-v1")
    wait_for(lambda: (s := world["mn"].json("status"))["registered"] and s["care_of_address"] == roaming.FA1,
             what="the registration through foreign agent 1")
    wait_for(lambda: world["ha"].json("bindings")["bindings"], what="the binding")
    ha1, fa1, mn1 = scrape(topo.ns("ha")), scrape(topo.ns("fa1")), scrape(topo.ns("mn"))

    accepted = ("mipd_registrations_total", {"result": "accepted", "code": ""})
    assert value(ha1, accepted[0], **accepted[1]) >= value(ha0, accepted[0], **accepted[1]) + 1
    assert value(ha1, "mipd_requests_received_total") > value(ha0, "mipd_requests_received_total")
    assert value(ha1, "mipd_bindings") == 1
    assert value(fa1, "mipd_relayed_total") >= value(fa0, "mipd_relayed_total") + 1
    assert value(fa1, "mipd_visitors", state="active") == 1 and value(fa1, "mipd_visitors", state="pending") == 0
    assert value(mn1, "mipd_registered") == 1 and value(mn1, "mipd_away") == 1
    assert 0 < value(mn1, "mipd_lifetime_remaining_seconds") <= 120
    for histogram in ("mipd_registration_seconds", "mipd_handoff_seconds"):
        count = value(mn1, f"{histogram}_count") - value(mn0, f"{histogram}_count")
        total = value(mn1, f"{histogram}_sum") - value(mn0, f"{histogram}_sum")
        assert count >= 1 and 0 < total < 20 * count, (histogram, count, total)
    for name in ("ha", "fa1", "mn"):
        assert_agrees_with_mipctl(world[name], topo.ns(name))


@pytest.mark.parametrize("name", ["ha", "fa1", "mn"])
def test_promtool_accepts_what_every_role_serves(world: dict[str, Any], name: str) -> None:
    text = scrape_text(world["topo"].ns(name))
    out = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "" and out.stderr.strip() == "", out.stdout + out.stderr  # not even a lint warning


def free_port(ns: str) -> int:
    with entered(ns), socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_prometheus_server_scrapes_the_home_agent(world: dict[str, Any]) -> None:
    ns = world["topo"].ns("ha")
    expected = world["ha"].json("stats")["counters"]["accepted"]
    assert expected >= 1  # the registration of the test before
    directory = Path(tempfile.mkdtemp(prefix="mipd-prometheus-"))
    port = free_port(ns)
    config = directory / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                      "scrape_configs:\n"
                      f"  - job_name: mipd\n    static_configs: [{{targets: ['127.0.0.1:{PORT}']}}]\n")
    log = (directory / "prometheus.log").open("wb")
    server = subprocess.Popen(
        [tool("ip"), "netns", "exec", ns, tool("prometheus"), f"--config.file={config}",
         f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        def query(promql: str) -> list[dict[str, Any]]:
            if server.poll() is not None:
                raise AssertionError(f"prometheus exited {server.returncode}: "
                                     f"{(directory / 'prometheus.log').read_text()[-2000:]}")
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
            try:
                answer = json.loads(http_get(ns, url))
            except OSError:
                return []  # not listening yet
            assert answer["status"] == "success", answer
            return answer["data"]["result"]  # type: ignore[no-any-return]

        result = wait_for(lambda: query('mipd_registrations_total{job="mipd",result="accepted"}'), timeout=60,
                          what="Prometheus to scrape mipd")
        assert len(result) == 1 and result[0]["metric"]["instance"] == f"127.0.0.1:{PORT}"
        assert float(result[0]["value"][1]) == expected
        up = query('up{job="mipd"}')
        assert [float(r["value"][1]) for r in up] == [1.0]
        assert [float(r["value"][1]) for r in query("mipd_bindings")] == [1.0]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_an_address_the_host_does_not_have_stops_mipd_run(world: dict[str, Any], journald: Journald,
                                                          tmp_path: Path) -> None:
    topo = world["topo"]
    topo.link("lone", "eth0", "10.9.0.1/24", "lone-peer", "eth0", "10.9.0.2/24")  # a link of its own
    daemon = HomeAgentDaemon(journald, topo, tmp_path, "metrics-bad", namespace="lone")
    daemon.write_profile("role: home-agent\ninterface: eth0\naddress: 10.9.0.1\nhome_network: 10.9.0.0/24\n"
                         f"tunnel: {{backend: userspace}}\nstate_directory: {tmp_path / 'state'}\n"
                         f"control_socket: {daemon.socket}\nmetrics: {{listen: '192.0.2.1:9434'}}\n")
    try:
        daemon.start(wait=False)
        assert daemon.wait(timeout=30) == 1
        assert "metrics endpoint 192.0.2.1:9434: Cannot assign requested address" in daemon.stderr.read_text()
    finally:
        daemon.close()


def test_a_reload_keeps_the_endpoint_and_says_a_new_one_needs_a_restart(world: dict[str, Any]) -> None:
    fa, ns = world["fa1"], world["topo"].ns("fa1")
    original = fa.profile.read_text()
    try:
        fa.write_profile(original.replace("metrics: {listen: 127.0.0.1}", "metrics: {listen: 127.0.0.1:9435}"))
        answer = fa.json("reload")
        assert answer["restart_needed"] == ["metrics"], answer
        assert value(scrape(ns), "mipd_up") == 1  # still on 9434
    finally:
        fa.write_profile(original)
        assert fa.json("reload")["restart_needed"] == []
