"""The client side of the control socket (what ``mipctl`` uses): one blocking request."""

from __future__ import annotations

import os
import socket
import time

from mipd.control.protocol import MAX_RESPONSE_BYTES, ProtocolError, Request, Response, decode_response, encode_request

DEFAULT_TIMEOUT = 10.0


class Unreachable(Exception):
    """No instance answers on the socket: no such file, nobody listening, no permission, or a timeout."""


def call(path: str | os.PathLike[str], request: Request, timeout: float = DEFAULT_TIMEOUT) -> Response:
    """Send ``request`` to the daemon listening on ``path`` and return its response.

    Raises :class:`Unreachable` if the socket cannot be reached or nothing answers within
    ``timeout`` seconds (for the whole exchange), :class:`ProtocolError` if the answer is not a
    response (or the connection ended without one).
    """
    payload = encode_request(request)
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.settimeout(timeout)
            sock.connect(os.fspath(path))
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            data = _read_line(sock, deadline)
        except FileNotFoundError:
            raise Unreachable(f"{os.fspath(path)}: no such socket (is the instance running?)") from None
        except ConnectionRefusedError:
            raise Unreachable(f"{os.fspath(path)}: nobody is listening (stale socket?)") from None
        except PermissionError:
            raise Unreachable(f"{os.fspath(path)}: permission denied (the control socket is root's)") from None
        except TimeoutError:
            raise Unreachable(f"{os.fspath(path)}: no answer within {timeout:g} s") from None
        except OSError as error:
            raise Unreachable(f"{os.fspath(path)}: {error.strerror or error}") from None
    return decode_response(data)


def _read_line(sock: socket.socket, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n"):
            break
        if size > MAX_RESPONSE_BYTES:
            raise ProtocolError(f"response longer than {MAX_RESPONSE_BYTES} bytes")
    data = b"".join(chunks)
    if not data:
        raise ProtocolError("the daemon closed the connection without a response")
    if not data.endswith(b"\n"):
        raise ProtocolError("the response ended before its end of line")
    return data
