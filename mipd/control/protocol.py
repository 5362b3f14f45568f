"""The wire format between ``mipctl`` and the daemon's control socket.

One request per connection, one response, each a JSON object on one line (UTF-8, ending in a
newline)::

    -> {"command": "bindings"}
    -> {"command": "flush", "home_address": "10.1.0.10"}
    -> {"command": "log-level", "level": "debug"}
    <- {"ok": true, "result": {...}}          # result: a shape of mipctl(8) JSON OUTPUT
    <- {"ok": false, "error": "why"}

Every malformed request becomes one exception, :class:`ProtocolError`, whose message is sent
back as the error; nothing a client sends can raise anything else out of :func:`decode_request`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address
from typing import Any

# A request is a few dozen bytes; anything near this bound is not a request.
MAX_REQUEST_BYTES = 64 * 1024
# Responses carry whole binding lists (about 250 bytes a binding): room for a million nodes.
MAX_RESPONSE_BYTES = 512 * 1024 * 1024
# How long the server waits for a client's request line, and for a client to take the response.
READ_TIMEOUT = 5.0

COMMANDS = ("status", "bindings", "visitors", "stats", "flush", "reload", "log-level")
LOG_LEVELS = ("debug", "info", "notice", "warning", "error")  # the profile's log_level values

# Arguments each command takes, besides "command" itself; any other key is refused.
_ARGUMENTS: dict[str, frozenset[str]] = {command: frozenset() for command in COMMANDS}
_ARGUMENTS["flush"] = frozenset({"home_address"})
_ARGUMENTS["log-level"] = frozenset({"level"})

JSONObject = dict[str, Any]


class ProtocolError(Exception):
    """A request or response that does not follow this format; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Request:
    """One control request: ``home_address`` is set for ``flush`` only, ``level`` for ``log-level`` only."""

    command: str
    home_address: IPv4Address | None = None
    level: str | None = None

    def to_json(self) -> JSONObject:
        """The request as the JSON object sent on the wire."""
        message: JSONObject = {"command": self.command}
        if self.home_address is not None:
            message["home_address"] = str(self.home_address)
        if self.level is not None:
            message["level"] = self.level
        return message


@dataclass(frozen=True, slots=True)
class Response:
    """One control response: ``result`` when ``ok``, else ``error``."""

    ok: bool
    result: JSONObject | None = None
    error: str | None = None


def encode_line(message: JSONObject) -> bytes:
    """A JSON object as one wire line."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def encode_request(request: Request) -> bytes:
    """The wire line of ``request`` (validated first, so a client cannot send what the server refuses)."""
    validate_request(request)
    return encode_line(request.to_json())


def encode_result(result: JSONObject) -> bytes:
    """An ``ok`` response line; raises ValueError/TypeError if ``result`` is not JSON-serialisable."""
    return encode_line({"ok": True, "result": result})


def encode_error(message: str) -> bytes:
    """A refusal or failure response line."""
    return encode_line({"ok": False, "error": message})


def _parse_object(line: bytes, what: str) -> JSONObject:
    try:
        message = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError(f"{what} is not UTF-8") from None
    except (ValueError, RecursionError):
        raise ProtocolError(f"{what} is not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"{what} is not a JSON object")
    return message


def decode_request(line: bytes) -> Request:
    """Parse and validate one request line; raises :class:`ProtocolError` for anything else."""
    if len(line) > MAX_REQUEST_BYTES:
        raise ProtocolError(f"request longer than {MAX_REQUEST_BYTES} bytes")
    message = _parse_object(line, "request")
    command = message.get("command")
    if not isinstance(command, str):
        raise ProtocolError('request has no "command" string')
    if command not in _ARGUMENTS:
        raise ProtocolError(f"unknown command {command[:40]!r}; commands: {', '.join(COMMANDS)}")
    arguments = set(message) - {"command"}
    unexpected = sorted(arguments - _ARGUMENTS[command])
    if unexpected:
        raise ProtocolError(f"{command} takes no argument {unexpected[0][:40]!r}")
    missing = sorted(_ARGUMENTS[command] - arguments)
    if missing:
        raise ProtocolError(f"{command} needs {missing[0]!r}")
    request = Request(command, _home_address(message.get("home_address")), _level(message.get("level")))
    validate_request(request)
    return request


def validate_request(request: Request) -> None:
    """Check a request's command and arguments; raises :class:`ProtocolError`."""
    if request.command not in _ARGUMENTS:
        raise ProtocolError(f"unknown command {request.command[:40]!r}")
    if (request.home_address is not None) != ("home_address" in _ARGUMENTS[request.command]):
        raise ProtocolError(f"home_address is for flush only, and flush needs one (got {request.command})")
    if (request.level is not None) != ("level" in _ARGUMENTS[request.command]):
        raise ProtocolError(f"level is for log-level only, and log-level needs one (got {request.command})")
    if request.level is not None and request.level not in LOG_LEVELS:
        raise ProtocolError(f"unknown log level {request.level[:40]!r}; levels: {', '.join(LOG_LEVELS)}")


def _home_address(value: object) -> IPv4Address | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError("home_address must be a string")
    try:
        return IPv4Address(value)
    except AddressValueError:
        raise ProtocolError(f"home_address {value[:40]!r} is not an IPv4 address") from None


def _level(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ProtocolError("level must be a string")


def decode_response(line: bytes) -> Response:
    """Parse one response line (the client side); raises :class:`ProtocolError`."""
    message = _parse_object(line, "response")
    ok = message.get("ok")
    if ok is True:
        result = message.get("result")
        if not isinstance(result, dict):
            raise ProtocolError('response has ok: true but no "result" object')
        return Response(ok=True, result=result)
    if ok is False:
        error = message.get("error")
        if not isinstance(error, str):
            raise ProtocolError('response has ok: false but no "error" string')
        return Response(ok=False, error=error)
    raise ProtocolError('response has no boolean "ok"')
