"""The structlog pipeline: level filtering, Emit actions, rate limits, one entry per event."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
import structlog

import mipd.obs
from mipd.core.actions import Emit, Priority
from mipd.obs.journal import EventLog
from mipd.obs.ratelimit import RateLimiter
from mipd.obs.sink import EntrySink


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class FakeJournal:
    """Stands in for journald: keeps what it is sent."""

    def __init__(self) -> None:
        self.entries: list[dict[str, str]] = []

    def __call__(self, fields: Mapping[str, str]) -> None:
        self.entries.append(dict(fields))

    def events(self) -> list[str]:
        return [entry["MIP_EVENT"] for entry in self.entries]


@pytest.fixture
def journal() -> FakeJournal:
    return FakeJournal()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def events(journal: FakeJournal, clock: Clock) -> EventLog:
    return EventLog("ha1", "home-agent", "info", limiter=RateLimiter(clock=clock), sink=EntrySink(send=journal))


@pytest.fixture
def reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    mipd.obs.journal._current = None


def binding_added(number: int = 0) -> Emit:
    return Emit("binding.added", f"binding {number}", Priority.INFO,
                {"home_address": "10.1.0.10", "care_of_address": "10.2.0.1", "lifetime": 600, "spi": 256})


def dropped() -> Emit:
    return Emit("packet.dropped", "dropped a malformed request", Priority.NOTICE, {"reason": "malformed"})


def test_an_emit_action_becomes_one_entry(events: EventLog, journal: FakeJournal) -> None:
    events.emit(binding_added())
    assert journal.entries == [{
        "MESSAGE": "binding 0", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "mipd", "MIP_INSTANCE": "ha1",
        "MIP_ROLE": "home-agent", "MIP_EVENT": "binding.added", "MIP_HOME_ADDRESS": "10.1.0.10",
        "MIP_CARE_OF_ADDRESS": "10.2.0.1", "MIP_LIFETIME": "600", "MIP_SPI": "256",
    }]


def test_a_key_in_an_emit_action_is_stripped(events: EventLog, journal: FakeJournal) -> None:
    events.emit(Emit("binding.added", "b", fields={"home_address": "10.1.0.10", "key": "00112233445566778899aabb"}))
    (entry,) = journal.entries
    assert "MIP_KEY" not in entry and "00112233" not in "".join(entry.values())


@pytest.mark.parametrize(("method", "priority"), [("debug", 7), ("info", 6), ("notice", 5), ("warning", 4),
                                                  ("error", 3)])
def test_logger_methods_write_their_priority(events: EventLog, journal: FakeJournal, method: str,
                                             priority: int) -> None:
    events.set_level("debug")
    getattr(events.logger(), method)("daemon.started", message="m", reason="userspace backend: no ipip")
    (entry,) = journal.entries
    assert entry["PRIORITY"] == str(priority)
    assert entry["MIP_EVENT"] == "daemon.started"
    assert entry["MIP_REASON"] == "userspace backend: no ipip"


def test_bound_context_is_on_every_entry(events: EventLog, journal: FakeJournal) -> None:
    log = events.logger(home_agent="10.1.0.1").bind(home_address="10.1.0.10")
    log.info("registration.accepted", message="ok")
    assert journal.entries[0]["MIP_HOME_AGENT"] == "10.1.0.1"
    assert journal.entries[0]["MIP_HOME_ADDRESS"] == "10.1.0.10"


def test_exceptions_are_logged_with_their_traceback(events: EventLog, journal: FakeJournal) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        events.logger().exception("daemon.stopping", message="unexpected error")
    (entry,) = journal.entries
    assert entry["PRIORITY"] == "3"
    assert "RuntimeError: boom" in entry["MIP_EXCEPTION"]


def test_default_level_info_writes_binding_events_not_debug(events: EventLog, journal: FakeJournal) -> None:
    events.emit(Emit("packet.trace", "trace", Priority.DEBUG))
    events.logger().debug("debug.detail")
    events.emit(binding_added())
    events.emit(Emit("visitor.added", "v", Priority.INFO, {"home_address": "10.1.0.10"}))
    assert journal.events() == ["binding.added", "visitor.added"]


def test_level_filters_and_can_change_at_run_time(events: EventLog, journal: FakeJournal) -> None:
    events.set_level("warning")
    events.emit(dropped())  # notice
    events.emit(Emit("registration.accepted", "ok", Priority.INFO))
    events.emit(Emit("config.rejected", "bad profile", Priority.WARNING))
    events.logger().error("daemon.failed")
    assert journal.events() == ["config.rejected", "daemon.failed"]
    events.set_level("debug")
    events.emit(Emit("packet.trace", "trace", Priority.DEBUG))
    assert journal.events()[2:] == ["packet.trace"]


def test_binding_and_visitor_events_are_written_at_any_level(events: EventLog, journal: FakeJournal) -> None:
    """They are the audit trail of who was where: neither the level nor a rate limit hides them."""
    events.set_level("error")
    events.emit(binding_added())
    events.emit(Emit("visitor.expired", "v", Priority.INFO, {"home_address": "10.1.0.10"}))
    events.logger().info("binding.removed", home_address="10.1.0.10")
    events.emit(dropped())
    assert journal.events() == ["binding.added", "visitor.expired", "binding.removed"]
    with pytest.raises(ValueError, match="unknown log level"):
        events.set_level("loud")


def test_a_renewal_at_debug_priority_is_written_only_at_level_debug(events: EventLog, journal: FakeJournal) -> None:
    """A renewal that changes nothing but the lifetime is emitted at debug: not part of the audit trail."""
    fields = {"home_address": "10.1.0.10"}
    events.emit(Emit("binding.renewed", "pure", Priority.DEBUG, fields))
    events.logger().debug("visitor.renewed", home_address="10.1.0.10")
    events.emit(Emit("binding.renewed", "flags changed", Priority.INFO, fields))
    assert journal.events() == ["binding.renewed"]
    events.set_level("error")
    events.emit(Emit("binding.renewed", "flags changed", Priority.INFO, fields))
    events.emit(Emit("binding.renewed", "pure", Priority.DEBUG, fields))
    assert journal.events() == ["binding.renewed"] * 2
    events.set_level("debug")
    events.emit(Emit("binding.renewed", "pure", Priority.DEBUG, fields))
    assert [e["PRIORITY"] for e in journal.entries] == ["6", "6", "7"]


def test_a_flood_of_drops_is_limited_and_the_next_entry_carries_the_count(
    events: EventLog, journal: FakeJournal, clock: Clock
) -> None:
    for _ in range(100):
        events.emit(dropped())
    assert len(journal.entries) == 10
    assert all("MIP_SUPPRESSED" not in entry for entry in journal.entries)
    clock.now += 0.1
    events.emit(dropped())
    assert len(journal.entries) == 11
    assert journal.entries[-1]["MIP_SUPPRESSED"] == "90"
    assert journal.entries[-1]["MIP_EVENT"] == "packet.dropped"


def test_denials_are_limited_through_the_logger_too(events: EventLog, journal: FakeJournal, clock: Clock) -> None:
    log = events.logger()
    for _ in range(30):
        log.notice("registration.denied", code=131)
    clock.now += 1.0
    log.notice("registration.denied", code=131)
    assert len(journal.entries) == 11
    assert journal.entries[-1]["MIP_SUPPRESSED"] == "20"


def test_binding_events_are_never_suppressed_during_a_flood(
    events: EventLog, journal: FakeJournal, clock: Clock
) -> None:
    for number in range(10_000):  # 10k/s of each, interleaved, for one second
        clock.now += 0.0001
        events.emit(binding_added(number))
        events.emit(dropped())
        events.emit(Emit("visitor.expired", "gone", Priority.INFO, {"home_address": "10.1.0.10"}))
    counts = {event: journal.events().count(event) for event in ("binding.added", "visitor.expired")}
    assert counts == {"binding.added": 10_000, "visitor.expired": 10_000}
    assert 10 <= journal.events().count("packet.dropped") <= 21
    assert not any("MIP_SUPPRESSED" in e for e in journal.entries if e["MIP_EVENT"] != "packet.dropped")


def test_configure_makes_structlog_write_entries(journal: FakeJournal, reset_structlog: None) -> None:
    log = mipd.obs.get_logger()  # taken before configure, as a module-level logger would be
    mipd.obs.configure("fa1", "foreign-agent", "notice", sink=EntrySink(send=journal))
    log.info("registration.relayed", home_address="10.1.0.10")
    mipd.obs.emit(Emit("registration.relayed", "relayed", Priority.INFO))
    structlog.get_logger().warning("daemon.reloaded", message="reloaded")
    assert journal.events() == ["daemon.reloaded"]
    mipd.obs.set_level("info")
    log.info("visitor.added", home_address="10.1.0.10")
    mipd.obs.emit(Emit("registration.relayed", "relayed", Priority.INFO))
    assert journal.events() == ["daemon.reloaded", "visitor.added", "registration.relayed"]
    assert {entry["MIP_INSTANCE"] for entry in journal.entries} == {"fa1"}
    assert {entry["MIP_ROLE"] for entry in journal.entries} == {"foreign-agent"}
