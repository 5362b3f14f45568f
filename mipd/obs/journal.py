"""structlog as mipd's logging API, rendered to journald (mipd(8) JOURNAL).

Use::

    events = configure(instance="home-agent", role="home-agent", level="info")
    log = get_logger()
    log.info(EventName.DAEMON_STARTED, message="home agent ready", reason="kernel backend: ipip available")
    events.emit(action)            # an Emit from an engine (or the module-level emit(action))
    set_level("debug")             # mipctl log-level

The structlog event is the ``MIP_EVENT`` name; ``message=`` gives ``MESSAGE``; every other keyword
is a journal field in lower case (``home_address=`` -> ``MIP_HOME_ADDRESS``). The logger's methods
are the profile's log levels: ``debug``, ``info``, ``notice``, ``warning``, ``error``, each writing
that syslog priority. The processor chain, in order: drop what is below the current level, format
an exception, apply the rate limits (ratelimit.py), render the journal fields (fields.py); the
wrapped "logger" then hands the entry to an :class:`~mipd.obs.sink.EntrySink`.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, cast

import structlog

from mipd.core.actions import Emit, Priority
from mipd.core.names import EventName, always_written
from mipd.obs.fields import journal_fields
from mipd.obs.levels import METHOD_PRIORITY, PRIORITY_METHOD, parse_level
from mipd.obs.ratelimit import RateLimiter
from mipd.obs.sink import EntrySink

_PRIORITY_KEY = "_mip_priority"  # carried from the level filter to the renderer
class MipLogger(structlog.BoundLoggerBase):
    """A bound logger whose methods are mipd's log levels; ``event`` is the MIP_EVENT name."""

    def debug(self, event: EventName, **fields: Any) -> None:
        """Log ``event`` at priority 7 (debug)."""
        self._proxy_to_logger("debug", event, **fields)

    def info(self, event: EventName, **fields: Any) -> None:
        """Log ``event`` at priority 6 (info): bindings, visitors, registrations."""
        self._proxy_to_logger("info", event, **fields)

    def notice(self, event: EventName, **fields: Any) -> None:
        """Log ``event`` at priority 5 (notice)."""
        self._proxy_to_logger("notice", event, **fields)

    def warning(self, event: EventName, **fields: Any) -> None:
        """Log ``event`` at priority 4 (warning)."""
        self._proxy_to_logger("warning", event, **fields)

    def error(self, event: EventName, **fields: Any) -> None:
        """Log ``event`` at priority 3 (err)."""
        self._proxy_to_logger("error", event, **fields)

    def exception(self, event: EventName, **fields: Any) -> None:
        """Log ``event`` at priority 3 with the current exception's traceback (``MIP_EXCEPTION``)."""
        fields.setdefault("exc_info", True)
        self._proxy_to_logger("error", event, **fields)

    def log(self, priority: Priority, event: EventName, **fields: Any) -> None:
        """Log ``event`` at ``priority``."""
        self._proxy_to_logger(PRIORITY_METHOD[priority], event, **fields)


class _SinkLogger:
    """structlog's "wrapped logger": every level method hands the rendered entry to the sink."""

    def __init__(self, sink: EntrySink) -> None:
        self._sink = sink

    def _write(self, **entry: str) -> None:
        self._sink.write(entry)

    debug = info = notice = warning = error = _write


EventDict = MutableMapping[str, Any]


class EventLog:
    """One instance's event log: level, rate limits, rendering and sink, plus its structlog processors.

    ``limiter`` and ``sink`` are injectable (a test clock, a fake journal); by default a
    :class:`~mipd.obs.ratelimit.RateLimiter` with the documented limits and an
    :class:`~mipd.obs.sink.EntrySink` to journald with stderr fallback.
    """

    def __init__(
        self,
        instance: str,
        role: str,
        level: str | Priority = "info",
        *,
        limiter: RateLimiter | None = None,
        sink: EntrySink | None = None,
    ) -> None:
        self.instance = instance
        self.role = role
        self.level = parse_level(level)
        self.limiter = limiter if limiter is not None else RateLimiter()
        self.sink = sink if sink is not None else EntrySink()
        self.processors: list[Any] = [
            self._filter_level,
            structlog.processors.format_exc_info,
            self._rate_limit,
            self._render,
        ]
        self.output = _SinkLogger(self.sink)
        self._logger = self.logger()

    def set_level(self, level: str | Priority) -> None:
        """Change the level at run time; entries less urgent than it are not written."""
        self.level = parse_level(level)

    def enabled(self, priority: Priority) -> bool:
        """Whether an entry of ``priority`` would be written at the current level."""
        return priority <= self.level

    def logger(self, **context: Any) -> MipLogger:
        """A new bound logger writing to this event log, with ``context`` fields on every entry."""
        return cast(
            MipLogger,
            structlog.wrap_logger(
                self.output, processors=self.processors, wrapper_class=MipLogger, cache_logger_on_first_use=True,
                **context,
            ),
        )

    def emit(self, action: Emit) -> None:
        """Write an engine's :class:`~mipd.core.actions.Emit` as one entry (if level and limits let it)."""
        if action.priority > self.level and not always_written(action.event, action.priority):
            return  # cheap early exit: the hot path at debug-level events
        self._logger.log(action.priority, action.event, message=action.message, **action.fields)

    # --- structlog processors ---------------------------------------------------------------------

    def _filter_level(self, _logger: object, method_name: str, event_dict: EventDict) -> EventDict:
        priority = METHOD_PRIORITY.get(method_name, Priority.INFO)
        if priority > self.level and not always_written(event_dict.get("event"), priority):
            raise structlog.DropEvent
        event_dict[_PRIORITY_KEY] = priority
        return event_dict

    def _rate_limit(self, _logger: object, _method_name: str, event_dict: EventDict) -> EventDict:
        suppressed = self.limiter.admit(str(event_dict.get("event")))
        if suppressed is None:
            raise structlog.DropEvent
        if suppressed:
            event_dict["_mip_suppressed"] = suppressed
        return event_dict

    def _render(self, _logger: object, _method_name: str, event_dict: EventDict) -> dict[str, str]:
        event = str(event_dict.pop("event", None) or "log")
        message = event_dict.pop("message", None)
        priority = event_dict.pop(_PRIORITY_KEY, Priority.INFO)
        suppressed = event_dict.pop("_mip_suppressed", 0)
        return journal_fields(
            event=event,
            message=None if message is None else str(message),
            priority=priority,
            instance=self.instance,
            role=self.role,
            fields=event_dict,
            suppressed=suppressed,
        )


# --- the process-wide configuration the daemon uses -------------------------------------------------

_current: EventLog | None = None


def configure(
    instance: str,
    role: str,
    level: str | Priority = "info",
    *,
    limiter: RateLimiter | None = None,
    sink: EntrySink | None = None,
) -> EventLog:
    """Make structlog (``get_logger``, ``structlog.get_logger``) write this instance's journal entries."""
    global _current  # noqa: PLW0603 - structlog's configuration is process-wide too
    events = EventLog(instance, role, level, limiter=limiter, sink=sink)
    structlog.configure(
        processors=events.processors,
        wrapper_class=MipLogger,
        logger_factory=lambda *_args: events.output,
        cache_logger_on_first_use=False,
    )
    _current = events
    return events


def current() -> EventLog:
    """The configured event log; before :func:`configure`, one for instance ``mipd`` writing at info."""
    global _current  # noqa: PLW0603
    if _current is None:
        _current = configure("mipd", "unknown")
    return _current


def get_logger(**context: Any) -> MipLogger:
    """A logger for the configured instance (lazy: may be taken at import time, before configure)."""
    return cast(MipLogger, structlog.get_logger(**context))


def set_level(level: str | Priority) -> None:
    """Change the configured instance's log level (``mipctl log-level``)."""
    current().set_level(level)


def emit(action: Emit) -> None:
    """Write an engine's Emit action through the configured instance's event log."""
    current().emit(action)
