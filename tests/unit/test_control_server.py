"""ControlServer on a real Unix socket: permissions, lifecycle, and clients that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mipd.control.protocol import MAX_REQUEST_BYTES
from mipd.control.server import ControlServer, ControlSocketError
from tests.support.control import FakeInstance, dead_socket, exchange, receive_all, serving

STATUS = b'{"command": "status"}\n'


@pytest.fixture
def run_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer.
    directory = Path(tempfile.mkdtemp(prefix="mipd-control-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def answer(path: Path, data: bytes = STATUS) -> dict[str, object]:
    response = exchange(path, data)
    assert response.endswith(b"\n") and response.count(b"\n") == 1, response
    decoded = json.loads(response)
    assert isinstance(decoded, dict)
    return decoded


def test_socket_is_root_only_in_a_created_0755_directory_and_removed_on_close(run_dir: Path) -> None:
    path = run_dir / "mip" / "ha.sock"
    previous = os.umask(0o022)  # what a daemon usually has: it must not widen the socket's mode
    try:
        with serving(path, FakeInstance()):
            mode = os.stat(path).st_mode
            assert stat.S_ISSOCK(mode)
            assert stat.S_IMODE(mode) == 0o600
            assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o755
            assert os.umask(0o022) == 0o022  # the server put the umask back
    finally:
        os.umask(previous)
    assert not path.exists()
    assert path.parent.is_dir()


def test_an_existing_directory_keeps_its_mode(run_dir: Path) -> None:
    os.chmod(run_dir, 0o700)
    with serving(run_dir / "ha.sock", FakeInstance()):
        assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700


def test_a_stale_socket_is_replaced(run_dir: Path) -> None:
    path = run_dir / "ha.sock"
    dead_socket(path)
    with serving(path, FakeInstance()):  # binding over the stale file would fail: EADDRINUSE
        assert answer(path)["ok"] is True
    assert not path.exists()


def test_a_live_socket_is_not_taken_over(run_dir: Path) -> None:
    path = run_dir / "ha.sock"
    with serving(path, FakeInstance()):
        second = ControlServer(path, FakeInstance())
        with pytest.raises(ControlSocketError, match="already running"):
            asyncio.run(second.start())
        assert answer(path)["ok"] is True  # the first server still owns the path


def test_a_file_that_is_not_a_socket_is_left_alone(run_dir: Path) -> None:
    path = run_dir / "ha.sock"
    path.write_text("not a socket")
    with pytest.raises(ControlSocketError, match="not a socket"):
        asyncio.run(ControlServer(path, FakeInstance()).start())
    assert path.read_text() == "not a socket"


def test_close_leaves_a_socket_that_replaced_ours(run_dir: Path) -> None:
    path = run_dir / "ha.sock"
    with serving(path, FakeInstance()):
        path.unlink()
        dead_socket(path)  # someone else's socket now
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


@pytest.mark.parametrize(
    ("request_line", "error"),
    [
        (b"garbage\n", "request is not JSON"),
        (b"\xff\xfe\n", "request is not UTF-8"),
        (b"[1, 2]\n", "request is not a JSON object"),
        (b'{"cmd": "status"}\n', 'request has no "command" string'),
        (b'{"command": "shutdown"}\n', "unknown command 'shutdown'"),
        (b'{"command": "flush"}\n', "flush needs 'home_address'"),
        (b'{"command": "flush", "home_address": "10.1.0.300"}\n', "is not an IPv4 address"),
        (b'{"command": "log-level", "level": "loud"}\n', "unknown log level 'loud'"),
        (b'{"command": "status", "force": true}\n', "status takes no argument 'force'"),
        (b"[" * 50_000 + b"\n", "request is not JSON"),
    ],
)
def test_a_bad_request_gets_an_error_and_the_server_keeps_serving(
    run_dir: Path, request_line: bytes, error: str
) -> None:
    path = run_dir / "ha.sock"
    with serving(path, FakeInstance()):
        response = answer(path, request_line)
        assert response["ok"] is False
        assert error in str(response["error"])
        assert answer(path)["ok"] is True


def test_an_oversized_request_is_refused_and_the_server_keeps_serving(run_dir: Path) -> None:
    path = run_dir / "ha.sock"
    with serving(path, FakeInstance()):
        response = answer(path, b'{"command": "status", "x": "' + b"a" * (MAX_REQUEST_BYTES + 10) + b'"}\n')
        assert response == {"ok": False, "error": f"request longer than {MAX_REQUEST_BYTES} bytes"}
        assert answer(path)["ok"] is True


def test_a_request_without_end_of_line_is_served_at_end_of_stream(run_dir: Path) -> None:
    path = run_dir / "ha.sock"
    with serving(path, FakeInstance()):
        response = answer(path, b'{"command": "stats"}')
        assert response["ok"] is True
        assert "counters" in response["result"]  # type: ignore[operator]


def test_a_client_that_sends_nothing_is_dropped_and_does_not_stall_others(run_dir: Path) -> None:
    path = run_dir / "ha.sock"
    with serving(path, FakeInstance(), read_timeout=1.5), socket.socket(socket.AF_UNIX) as silent:
        silent.settimeout(10)
        silent.connect(str(path))
        started = time.monotonic()
        assert answer(path)["ok"] is True  # answered while the silent client is still connected
        assert time.monotonic() - started < 1.0
        data = receive_all(silent)  # the server gives up on it
        assert time.monotonic() - started < 6
        assert json.loads(data) == {"ok": False, "error": "no complete request within 1.5 s"}


def test_a_client_that_stops_half_way_is_dropped(run_dir: Path) -> None:
    path = run_dir / "ha.sock"
    with serving(path, FakeInstance(), read_timeout=0.3), socket.socket(socket.AF_UNIX) as slow:
        slow.settimeout(5)
        slow.connect(str(path))
        slow.sendall(b'{"command": "sta')
        assert json.loads(receive_all(slow))["ok"] is False
        assert answer(path)["ok"] is True


def test_connections_beyond_the_limit_are_closed_at_once(run_dir: Path) -> None:
    path = run_dir / "ha.sock"
    with serving(path, FakeInstance(), read_timeout=1.0, max_connections=2):
        held = [socket.socket(socket.AF_UNIX) for _ in range(2)]
        try:
            for sock in held:
                sock.connect(str(path))
            time.sleep(0.2)  # let the server accept both
            # Refused without an answer: closed, or reset because our request went unread.
            with contextlib.suppress(ConnectionResetError):
                assert exchange(path, STATUS) == b""
        finally:
            for sock in held:
                sock.close()
        assert eventually_answered(path)


def eventually_answered(path: Path) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with contextlib.suppress(ConnectionResetError):
            if exchange(path, STATUS).startswith(b'{"ok":true,'):
                return True
        time.sleep(0.05)
    return False


def test_a_handler_bug_is_an_error_response_not_a_dead_socket(run_dir: Path) -> None:
    path = run_dir / "ha.sock"
    instance = FakeInstance()
    with serving(path, instance):
        instance.broken = True
        response = answer(path)
        assert response == {"ok": False, "error": "internal error in status; see the daemon's log"}
        instance.broken = False
        assert answer(path)["ok"] is True


def test_close_ends_open_connections(run_dir: Path) -> None:
    path = run_dir / "ha.sock"
    instance = FakeInstance()
    instance.delay = 30
    with socket.socket(socket.AF_UNIX) as waiting:
        started = time.monotonic()
        with serving(path, instance):
            waiting.connect(str(path))
            waiting.sendall(STATUS)
            time.sleep(0.2)
        assert time.monotonic() - started < 5
        waiting.settimeout(5)
        assert receive_all(waiting) == b""
