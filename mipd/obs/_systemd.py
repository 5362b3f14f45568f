"""The two calls mipd makes into systemd-python, behind typed signatures.

systemd-python ships no type information; keeping it in this one module lets the rest of
mipd.obs be checked by ``mypy --strict`` and gives tests one place to substitute.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import systemd.daemon as _daemon  # type: ignore[import-untyped]
import systemd.journal as _journal  # type: ignore[import-untyped]

JOURNAL_SOCKET = "/run/systemd/journal/socket"


def journal_send(fields: Mapping[str, str]) -> None:
    """Send one entry with exactly ``fields`` to journald; raises OSError when journald is unreachable.

    libsystemd's sd_journal_sendv returns success, dropping the entry, when the socket does not
    exist (ENOENT "fails silently"); only a socket nobody listens on gives ECONNREFUSED. So the
    socket is looked for first: without it FileNotFoundError is raised and the caller falls back.

    ``systemd.journal.send`` is a thin wrapper over ``sendv`` that also adds CODE_FILE, CODE_LINE and
    CODE_FUNC by walking the stack: here they would always name this module, so the entry is sent
    with ``sendv`` as ``FIELD=value`` items, which is exactly what ``send`` does after that.
    """
    os.stat(JOURNAL_SOCKET)
    _journal.sendv(*[f"{name}={value}" for name, value in fields.items()])


def sd_notify(state: str) -> bool:
    """sd_notify(3): True if the message was sent, False if there is no NOTIFY_SOCKET."""
    return bool(_daemon.notify(state))
