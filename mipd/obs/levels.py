"""Log levels: the profile's ``log_level`` names and the logger's methods, as syslog priorities."""

from __future__ import annotations

from mipd.core.actions import Priority

# profile log_level (and mipctl log-level) name -> the highest (least urgent) priority still logged
LEVELS: dict[str, Priority] = {
    "debug": Priority.DEBUG,
    "info": Priority.INFO,
    "notice": Priority.NOTICE,
    "warning": Priority.WARNING,
    "error": Priority.ERR,
}

# logger method name -> the priority of the entry it writes (MipLogger's methods)
METHOD_PRIORITY: dict[str, Priority] = dict(LEVELS)
PRIORITY_METHOD: dict[Priority, str] = {priority: name for name, priority in LEVELS.items()}


def parse_level(level: str | Priority) -> Priority:
    """The priority threshold of a level name (``debug`` ... ``error``) or a Priority; ValueError otherwise."""
    if isinstance(level, Priority):
        return level
    try:
        return LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LEVELS)}") from None


def level_name(priority: Priority) -> str:
    """The level name of a threshold priority (inverse of :func:`parse_level`)."""
    return PRIORITY_METHOD[priority]
