"""Where entries go: journald when it answers, else stderr as one JSON object per line.

The choice is made per entry, because journald may appear or vanish while mipd runs (restarted,
not yet started, a container without it). A missing or failing journal never raises out of
:meth:`EntrySink.write`. The switch is announced once per transition, not per entry: one notice
line on stderr when entries start going there, one notice entry in the journal when it answers
again.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TextIO

from mipd.core.actions import Priority

Sender = Callable[[Mapping[str, str]], None]

# Copied from the entry that triggered a notice, so the notice names the instance too.
_IDENTITY_FIELDS = ("SYSLOG_IDENTIFIER", "MIP_INSTANCE", "MIP_ROLE")


def _default_sender() -> Sender:
    """systemd-python's sender; without systemd-python, one that always fails (so: stderr)."""
    try:
        from mipd.obs._systemd import journal_send  # noqa: PLC0415 - an optional import
    except ImportError as error:
        missing = error

        def journal_send(fields: Mapping[str, str]) -> None:
            raise OSError(f"systemd-python is not importable: {missing}")

    return journal_send


class EntrySink:
    """Writes complete journal entries (``FIELD -> text``) to journald, or to stderr without one.

    ``send`` delivers one entry to journald (default: systemd-python) and raises when it cannot;
    ``stream`` is the fallback (default: ``sys.stderr`` at the time of writing); ``wall_clock``
    stamps fallback lines with ``TIMESTAMP`` (RFC 3339, UTC), since stderr has no timestamps of its own.
    """

    def __init__(
        self,
        *,
        send: Sender | None = None,
        stream: TextIO | None = None,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self._send = send or _default_sender()
        self._stream = stream
        self._wall_clock = wall_clock or time.time
        self.journal_up: bool | None = None  # None until the first entry tells

    def write(self, entry: Mapping[str, str]) -> None:
        """Deliver one entry: to journald if it takes it, else as a JSON line on the fallback stream."""
        try:
            self._send(entry)
        except Exception as error:  # a logging call must never take the daemon down
            if self.journal_up is not False:
                self.journal_up = False
                self._notice_stderr(entry, error)
            self._write_line(entry)
            return
        if self.journal_up is False:
            self.journal_up = True
            self._notice_journal(entry)
        else:
            self.journal_up = True

    def _notice_stderr(self, entry: Mapping[str, str], error: BaseException) -> None:
        notice = {name: entry[name] for name in _IDENTITY_FIELDS if name in entry}
        notice["PRIORITY"] = str(int(Priority.NOTICE))
        notice["MESSAGE"] = (
            f"journald is not reachable ({type(error).__name__}: {error}); "
            "events go to stderr as JSON lines until it is"
        )
        self._write_line(notice)

    def _notice_journal(self, entry: Mapping[str, str]) -> None:
        notice = {name: entry[name] for name in _IDENTITY_FIELDS if name in entry}
        notice["PRIORITY"] = str(int(Priority.NOTICE))
        notice["MESSAGE"] = "journald is reachable again; events in between went to stderr"
        with contextlib.suppress(Exception):  # it vanished again: the next entry will notice
            self._send(notice)

    def _write_line(self, entry: Mapping[str, str]) -> None:
        record = dict(entry)
        record["TIMESTAMP"] = datetime.fromtimestamp(self._wall_clock(), UTC).isoformat(timespec="microseconds")
        stream = self._stream if self._stream is not None else sys.stderr
        try:
            stream.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            stream.flush()
        except Exception:  # stderr closed or broken: nowhere left to report it
            pass
