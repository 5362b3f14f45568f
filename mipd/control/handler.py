"""What the daemon implements to answer control requests (the runtime provides it)."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Protocol

from mipd.control.protocol import JSONObject


class ControlError(Exception):
    """A refusal or failure the handler reports to mipctl (``ok: false``; mipctl exits 1).

    The message is shown to the user as it is, so it should say what was refused and why,
    e.g. ``"no binding or visitor for 10.1.0.10"`` or ``"reload failed: /etc/mip/ha.yaml:3: ..."``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ControlHandler(Protocol):
    """The daemon side of each ``mipctl`` command.

    Each method returns the command's result as a JSON object, already in its shape of mipctl(8)
    JSON OUTPUT (build them with :mod:`mipd.control.shapes`); :class:`mipd.control.server.ControlServer`
    relays it unchanged. A method raises :class:`ControlError` to refuse; any other exception is
    reported to the client as an internal error and logged. Methods are coroutines so that the
    runtime can wait for its event loop's work (a reload, a commit) before answering; the server
    runs one request at a time per connection, several connections concurrently.
    """

    async def status(self) -> JSONObject:
        """``{"role": ..., "instance": ..., "uptime": ..., "backend": ..., ...}`` (``status_json``)."""
        ...

    async def bindings(self) -> JSONObject:
        """``{"bindings": [...]}`` (``bindings_json``); a role without bindings raises ControlError."""
        ...

    async def visitors(self) -> JSONObject:
        """``{"visitors": [...]}`` (``visitors_json``); a role without visitors raises ControlError."""
        ...

    async def stats(self) -> JSONObject:
        """``{"counters": {...}}`` (``stats_json``)."""
        ...

    async def flush(self, home_address: IPv4Address) -> JSONObject:
        """Remove the node's bindings or visitor entry now; ``flush_json``, or ControlError if none."""
        ...

    async def reload(self) -> JSONObject:
        """Re-read the profile and adopt it; ControlError (with the problems) if it is invalid."""
        ...

    async def log_level(self, level: str) -> JSONObject:
        """Change the log level (one of ``protocol.LOG_LEVELS``); ``{"log_level": level}``."""
        ...
