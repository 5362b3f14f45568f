"""Prometheus metrics at ``http://<metrics.listen>/metrics`` (mipd(8) METRICS, mip.yaml(5) ``metrics``).

Two sources, so that nothing is counted twice and nothing can disagree with ``mipctl``:

- the counters and gauges are read at each scrape from the same control handler ``mipctl stats``,
  ``mipctl status`` and ``mipctl visitors`` ask (:class:`ControlCollector`): whatever the control socket
  serves, the scrape shows;
- the two histograms of a mobile node are fed from the events its engine emits (:meth:`Metrics.observe`):
  ``mipd_registration_seconds`` from ``registration.sent`` to the ``registration.accepted`` that
  follows, ``mipd_handoff_seconds`` from ``movement.detected`` to the next ``registration.accepted``.

prometheus_client serves from its own thread. That thread never touches the daemon's state: each scrape
hands a coroutine to the event loop (``run_coroutine_threadsafe``) and waits for its snapshot, so state
is only read on the loop, between two of its turns, and a slow scraper never holds the loop up. The
histograms are prometheus_client's, which lock their own updates.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from ipaddress import ip_address
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from mipd.control.handler import ControlError, ControlHandler
from mipd.control.protocol import JSONObject
from mipd.core.actions import Emit

SNAPSHOT_TIMEOUT = 5.0  # a scrape gives up on a loop that does not answer (it is stopping)
REGISTRATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HANDOFF_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Sections of ``mipctl stats`` whose entries are counters, by metric name; other sections get
# ``mipd_<section>_total{counter}`` the same way.
SECTIONS = {
    "advertisements": ("mipd_advertisements", "agent advertisements and solicitations (mipctl stats advertisements)"),
    "relay": ("mipd_relay", "the foreign agent's relay socket (mipctl stats relay)"),
    "visited_link": ("mipd_visited_link", "the foreign agent's visited link (mipctl stats visited_link)"),
    "routing": ("mipd_routing", "the mobile node's routing changes (mipctl stats routing)"),
    "link": ("mipd_link", "the mobile node's link (mipctl stats link)"),
}
# data_plane entries that count tunnelled packets, by direction; ``<direction>_bytes`` counts bytes.
DIRECTIONS = ("encapsulated", "decapsulated", "reverse_tunnelled")

Snapshot = Callable[[], JSONObject | None]


class MetricsError(Exception):
    """The metrics endpoint cannot be served (the address cannot be bound)."""


async def snapshot(handler: ControlHandler) -> JSONObject:
    """What a scrape shows, read on the event loop: ``{"status", "stats", "visitors"}`` as mipctl gets them."""
    result: JSONObject = {"status": await handler.status(), "stats": await handler.stats()}
    try:
        result["visitors"] = (await handler.visitors())["visitors"]
    except ControlError:  # only a foreign agent has a visitor list
        result["visitors"] = None
    return result


def _counter(name: str, documentation: str, value: object, labels: dict[str, str] | None = None) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), float(value))  # type: ignore[arg-type]
    return family


def _gauge(name: str, documentation: str, value: float) -> Metric:
    return GaugeMetricFamily(name, documentation, value=value)


def families(data: JSONObject) -> Iterator[Metric]:
    """The metric families of one snapshot (see :func:`snapshot`); mipd(8) METRICS lists them."""
    status, counters = data["status"], data["stats"]["counters"]
    info = GaugeMetricFamily("mipd_info", "the instance: its role and tunnel backend (always 1)",
                             labels=["instance", "role", "backend"])
    info.add_metric([str(status["instance"]), str(status["role"]), str(status["backend"])], 1)
    yield info
    yield _gauge("mipd_uptime_seconds", "seconds since the instance started (mipctl status uptime)", status["uptime"])
    yield _counter("mipd_requests_received", "registration messages received: requests at an agent, replies at "
                   "a mobile node (mipctl stats requests_received)", counters["requests_received"])
    registrations = CounterMetricFamily("mipd_registrations", "registrations accepted, and denied by reply code "
                                        "(mipctl stats accepted, denied)", labels=["result", "code"])
    registrations.add_metric(["accepted", ""], counters["accepted"])
    for code, count in counters["denied"].items():
        registrations.add_metric(["denied", str(code)], count)
    yield registrations
    yield _counter("mipd_renewals", "accepted renewals that changed nothing but the lifetime, among accepted "
                   "(mipctl stats renewals)", counters.get("renewals", 0))
    dropped = CounterMetricFamily("mipd_dropped", "registration messages dropped unanswered, by reason "
                                  "(mipctl stats dropped)", labels=["reason"])
    for reason, count in counters["dropped"].items():
        dropped.add_metric([str(reason)], count)
    yield dropped
    role = status["role"]
    if role == "foreign-agent":
        yield _counter("mipd_relayed", "registration requests relayed to home agents (mipctl stats relayed)",
                       counters["relayed"])
        visitors = GaugeMetricFamily("mipd_visitors", "visitor list entries by state (mipctl visitors)",
                                     labels=["state"])
        entries = data["visitors"] or []
        for state in ("pending", "active"):
            visitors.add_metric([state], sum(1 for v in entries if v["state"] == state))
        yield visitors
    elif role == "home-agent":
        yield _gauge("mipd_bindings", "mobility bindings (mipctl status bindings)", status["bindings"])
    elif role == "mobile-node":
        yield _gauge("mipd_registered", "1 while the node holds a registration (mipctl status registered)",
                     1 if status["registered"] else 0)
        yield _gauge("mipd_away", "1 while the node is away from home (mipctl status location)",
                     1 if status["location"] == "away" else 0)
        yield _gauge("mipd_lifetime_remaining_seconds", "seconds left of the registration (mipctl status "
                     "lifetime_remaining)", status["lifetime_remaining"])
    yield from _sections(counters)


def _sections(counters: dict[str, Any]) -> Iterator[Metric]:
    for section, entries in counters.items():
        if not isinstance(entries, dict) or section in ("denied", "dropped"):
            continue
        if section == "data_plane":
            packets = CounterMetricFamily("mipd_tunnel_packets", "packets through the tunnels by direction, where "
                                          "the backend counts them (mipctl stats data_plane)", labels=["direction"])
            octets = CounterMetricFamily("mipd_tunnel_bytes", "bytes through the tunnels by direction, where the "
                                         "backend counts them (mipctl stats data_plane)", labels=["direction"])
            other = CounterMetricFamily("mipd_data_plane", "the data plane's other counts: drops, errors, ARP "
                                        "(mipctl stats data_plane)", labels=["counter"])
            for key, value in entries.items():
                if key in DIRECTIONS:
                    packets.add_metric([key], value)
                elif key.endswith("_bytes") and key.removesuffix("_bytes") in DIRECTIONS:
                    octets.add_metric([key.removesuffix("_bytes")], value)
                else:
                    other.add_metric([key], value)
            yield from (family for family in (packets, octets, other) if family.samples)
            continue
        name, documentation = SECTIONS.get(section, (f"mipd_{section}", f"mipctl stats {section}"))
        family = CounterMetricFamily(name, documentation, labels=["counter"])
        for key, value in entries.items():
            if isinstance(value, int | float) and not isinstance(value, bool):  # a setting's name is no count
                family.add_metric([key], value)
        yield family


class ControlCollector(Collector):
    """A prometheus_client collector reading each scrape's snapshot through ``take`` (on the loop)."""

    def __init__(self, take: Snapshot) -> None:
        self._take = take

    def collect(self) -> Iterable[Metric]:
        data = self._take()
        up = _gauge("mipd_up", "1 if the daemon answered this scrape, 0 if it did not in time", data is not None)
        return [up] if data is None else [up, *families(data)]


class Listening(Protocol):
    """A profile's ``metrics:`` (mipd.config.models.Metrics)."""

    listen: str


def serve(settings: Listening | None, handler: ControlHandler, loop: asyncio.AbstractEventLoop, role: str
          ) -> Metrics | None:
    """The running endpoint for a profile's ``metrics:`` (None without one); MetricsError if it cannot bind."""
    if settings is None:
        return None
    metrics = Metrics(settings.listen, handler, loop, role)
    metrics.start()
    return metrics


class Metrics:
    """One instance's metrics endpoint: its registry, its HTTP thread, its histograms."""

    def __init__(self, listen: str, handler: ControlHandler, loop: asyncio.AbstractEventLoop, role: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.listen = listen
        self.role = role
        self._handler = handler
        self._loop = loop
        self._clock = clock
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ControlCollector(self._take))
        node = self.registry if role == "mobile-node" else None  # the histograms are a mobile node's
        self.registration_seconds = Histogram(
            "mipd_registration_seconds", "a mobile node's registration round trips: request sent to reply "
            "accepted", buckets=REGISTRATION_BUCKETS, registry=node)
        self.handoff_seconds = Histogram(
            "mipd_handoff_seconds", "a mobile node's handoffs: movement detected to registration accepted",
            buckets=HANDOFF_BUCKETS, registry=node)
        self._sent_at: float | None = None
        self._moved_at: float | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve from prometheus_client's thread; MetricsError if the address cannot be bound."""
        host, _, port = self.listen.rpartition(":")
        address = str(ip_address(host.strip("[]")))
        try:
            self._server, self._thread = start_http_server(int(port), address, registry=self.registry)
        except OSError as exc:
            raise MetricsError(f"metrics endpoint {self.listen}: {exc.strerror or exc}") from exc

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_port) if self._server is not None else 0

    async def close(self) -> None:
        """Stop serving (waits for the HTTP thread in another thread, not on the loop)."""
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.shutdown)
            server.server_close()

    def _take(self) -> JSONObject | None:
        """Runs in the HTTP thread: the loop takes the snapshot; None if it does not answer in time."""
        try:
            future = asyncio.run_coroutine_threadsafe(snapshot(self._handler), self._loop)
        except RuntimeError:  # the loop is closed
            return None
        try:
            return future.result(timeout=SNAPSHOT_TIMEOUT)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError, ControlError):
            future.cancel()
            return None

    def observe(self, action: Emit) -> None:
        """Called on the loop with every event an engine emits: feeds the mobile node's histograms."""
        if self.role != "mobile-node":
            return
        event = action.event
        if event == "registration.sent":
            self._sent_at = self._clock()  # a retransmission restarts the round trip, as the demo measures it
        elif event == "movement.detected":
            if self._moved_at is None:  # a second detection before the registration is part of the same handoff
                self._moved_at = self._clock()
        elif event == "registration.denied":
            self._sent_at = None
        elif event == "registration.accepted":
            now = self._clock()
            if self._sent_at is not None:
                self.registration_seconds.observe(now - self._sent_at)
                self._sent_at = None
            if self._moved_at is not None:
                self.handoff_seconds.observe(now - self._moved_at)
                self._moved_at = None
