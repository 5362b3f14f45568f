"""Observability: structured events to journald (or stderr) and sd_notify.

The daemon's API: :func:`configure` once per process, :func:`get_logger` for loggers,
:func:`emit` for the engines' Emit actions, :func:`set_level` for ``mipctl log-level``;
:mod:`mipd.obs.notify` for the service manager.
"""

from mipd.obs.journal import EventLog, MipLogger, configure, current, emit, get_logger, set_level

__all__ = ["EventLog", "MipLogger", "configure", "current", "emit", "get_logger", "set_level"]
