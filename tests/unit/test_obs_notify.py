"""sd_notify: real datagrams to a NOTIFY_SOCKET; a no-op without one; never raises."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mipd.obs import notify


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A stand-in service manager listening on NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield listener


def received(listener: socket.socket) -> list[str]:
    return listener.recv(4096).decode().split("\n")


def test_ready_with_status(manager: socket.socket) -> None:
    assert notify.ready("serving 10.1.0.1:434")
    assert received(manager) == ["READY=1", "STATUS=serving 10.1.0.1:434"]


@pytest.mark.parametrize(
    ("call", "expected"),
    [(notify.watchdog, "WATCHDOG=1"), (notify.stopping, "STOPPING=1"), (notify.ready, "READY=1")],
)
def test_single_assignments(manager: socket.socket, call: object, expected: str) -> None:
    assert call()  # type: ignore[operator]
    assert received(manager) == [expected]


def test_status_is_one_line(manager: socket.socket) -> None:
    assert notify.status("3 bindings\n2 visitors")
    assert received(manager) == ["STATUS=3 bindings 2 visitors"]


def test_reloading_carries_the_monotonic_time(manager: socket.socket) -> None:
    assert notify.reloading()
    reloading, monotonic = received(manager)
    assert reloading == "RELOADING=1"
    assert monotonic.startswith("MONOTONIC_USEC=") and int(monotonic.split("=")[1]) > 0


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.ready() is False
    assert notify.watchdog() is False


def test_an_unreachable_notify_socket_does_not_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert notify.ready("x") is False
    assert notify.stopping() is False


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notify.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert notify.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    monkeypatch.setenv("WATCHDOG_USEC", "junk")
    assert notify.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert notify.watchdog_interval() is None
