"""sd_notify(3) for ``Type=notify`` units: READY, STATUS, WATCHDOG, RELOADING, STOPPING.

Each function is a no-op returning False when ``NOTIFY_SOCKET`` is unset (not started by systemd),
and never raises: a service manager that cannot be told must not stop the daemon.
"""

from __future__ import annotations

import os
import time


def notify(*assignments: str) -> bool:
    """Send ``VAR=value`` assignments in one message; True if it was sent."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    try:
        from mipd.obs._systemd import sd_notify  # noqa: PLC0415 - only when systemd listens

        return sd_notify("\n".join(assignments))
    except Exception:
        return False


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.splitlines())


def ready(status: str | None = None) -> bool:
    """READY=1 (start-up finished), with an optional STATUS line."""
    return notify("READY=1", *([_status(status)] if status else []))


def status(text: str) -> bool:
    """STATUS=text, shown by ``systemctl status``."""
    return notify(_status(text))


def watchdog() -> bool:
    """WATCHDOG=1: the keep-alive ping for ``WatchdogSec=``."""
    return notify("WATCHDOG=1")


def reloading() -> bool:
    """RELOADING=1 with MONOTONIC_USEC (as ``Type=notify-reload`` requires); send :func:`ready` after."""
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def stopping() -> bool:
    """STOPPING=1: shutdown has begun."""
    return notify("STOPPING=1")


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings systemd expects of this process (WATCHDOG_USEC), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None
