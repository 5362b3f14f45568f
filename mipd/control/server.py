"""The daemon's control socket: a Unix stream socket, mode 0600, one request per connection.

Connecting to a Unix socket needs write permission on it, so mode 0600 owned by the daemon's
user (root) means only root can control the daemon. A client cannot stall it: each connection
is its own task, the request must arrive within ``read_timeout`` and fit in
``protocol.MAX_REQUEST_BYTES``, the response must be taken within ``read_timeout`` too, and at
most ``max_connections`` connections are served at once (others are closed at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from pathlib import Path
from types import TracebackType

from mipd.control.handler import ControlError, ControlHandler
from mipd.control.protocol import (
    MAX_REQUEST_BYTES,
    READ_TIMEOUT,
    JSONObject,
    ProtocolError,
    Request,
    decode_request,
    encode_error,
    encode_result,
)

_log = logging.getLogger(__name__)

SOCKET_MODE = 0o600
DIRECTORY_MODE = 0o755  # like /run/mip, which systemd's RuntimeDirectory= creates
MAX_CONNECTIONS = 64


class ControlSocketError(Exception):
    """The socket path cannot be used: another process listens there, or it is not a socket."""


class ControlServer:
    """Serve ``handler`` on the Unix socket ``path`` (``await start()``, ``await close()``, or
    ``async with``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        handler: ControlHandler,
        *,
        read_timeout: float = READ_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.path = Path(path)
        self.handler = handler
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self._server: asyncio.AbstractServer | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket we bound
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Create the parent directory if needed, replace a stale socket file, and listen."""
        _ensure_directory(self.path.parent)
        await _remove_stale_socket(self.path)
        # The umask makes bind() create the socket file as 0600 with no moment at a wider mode.
        # umask is process-wide: this runs at start-up, before the daemon creates other files.
        previous = os.umask(0o777 & ~SOCKET_MODE)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path, limit=MAX_REQUEST_BYTES)
        finally:
            os.umask(previous)
        os.chmod(self.path, SOCKET_MODE)
        info = os.stat(self.path)
        self._identity = (info.st_dev, info.st_ino)

    async def close(self) -> None:
        """Stop listening, end open connections and remove the socket file (if it is still ours)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._identity is not None:
            with contextlib.suppress(FileNotFoundError):
                info = os.lstat(self.path)
                if (info.st_dev, info.st_ino) == self._identity:
                    self.path.unlink()
            self._identity = None

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    # --- one connection ---

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._connections) >= self.max_connections or task is None:
            writer.close()
            return
        self._connections.add(task)
        try:
            response = await self._respond(reader)
            if response is not None:
                writer.write(response)
                await asyncio.wait_for(writer.drain(), self.read_timeout)
        except (OSError, TimeoutError):
            pass  # the client went away or does not take its response
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), self.read_timeout)

    async def _respond(self, reader: asyncio.StreamReader) -> bytes | None:
        """The response line for the connection's request, or None if it sent nothing at all."""
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), self.read_timeout)
        except asyncio.IncompleteReadError as short:  # end of stream before a newline
            if not short.partial.strip():
                return None
            line = short.partial
        except asyncio.LimitOverrunError:
            return encode_error(f"request longer than {MAX_REQUEST_BYTES} bytes")
        except TimeoutError:
            return encode_error(f"no complete request within {self.read_timeout:g} s")
        try:
            request = decode_request(line)
        except ProtocolError as refusal:
            return encode_error(str(refusal))
        return await self._dispatch(request)

    async def _dispatch(self, request: Request) -> bytes:
        try:
            result = await self._call(request)
            if not isinstance(result, dict):
                raise TypeError(f"handler returned {type(result).__name__}, not a dict")
            return encode_result(result)
        except ControlError as refusal:
            return encode_error(refusal.message)
        except Exception:  # a bug in the handler must not end the control socket
            _log.exception("control command %s failed", request.command)
            return encode_error(f"internal error in {request.command}; see the daemon's log")

    async def _call(self, request: Request) -> JSONObject:
        handler = self.handler
        match request.command:
            case "status":
                return await handler.status()
            case "bindings":
                return await handler.bindings()
            case "visitors":
                return await handler.visitors()
            case "stats":
                return await handler.stats()
            case "flush":
                assert request.home_address is not None  # decode_request guarantees it
                return await handler.flush(request.home_address)
            case "reload":
                return await handler.reload()
            case "log-level":
                assert request.level is not None
                return await handler.log_level(request.level)
        raise ProtocolError(f"unknown command {request.command!r}")  # unreachable: validated


def _ensure_directory(directory: Path) -> None:
    if directory.is_dir():
        return
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, DIRECTORY_MODE)  # mkdir's mode is reduced by the umask


async def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file nobody listens on; refuse a live socket or any other kind of file."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlSocketError(f"{path} exists and is not a socket; not replacing it")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), 1.0)
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)  # stale: left by a daemon that did not stop cleanly
        return
    except (OSError, TimeoutError) as error:
        raise ControlSocketError(f"{path} is in use or unusable ({error}); not replacing it") from None
    writer.close()
    raise ControlSocketError(f"another process is listening on {path}; is this instance already running?")
