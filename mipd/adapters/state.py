"""Durable state: ``<state_directory>/<instance>.db`` (CONTRACT section 6).

SQLite from the standard library, in WAL mode with ``synchronous=FULL``: a commit returns only
once it is on disk. The runtime calls :meth:`StateStore.commit` once per turn of the event loop
with every node that changed in that turn (group commit), and sends the replies only after it
returns. ``PRAGMA user_version`` carries the format version; a file of another version is
refused rather than guessed at.

Binding expiry is stored as wall-clock time, so that remaining lifetimes survive a restart. The
64-bit Identification is stored as 16 hex digits (SQLite integers are signed 64-bit).
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterable
from ipaddress import IPv4Address
from pathlib import Path

from mipd.core.actions import PersistNode, ReplayState
from mipd.core.bindings import Binding
from mipd.core.home_agent import NodeRecord
from mipd.core.registration import RequestFlags

FORMAT_VERSION = 1

_SCHEMA = """
CREATE TABLE nodes (
    home_address TEXT PRIMARY KEY,
    last_identification TEXT,      -- hex; highest accepted timestamp Identification
    nonce INTEGER                  -- the home agent nonce last sent
);
CREATE TABLE bindings (
    home_address TEXT NOT NULL,
    care_of_address TEXT NOT NULL,
    lifetime_granted INTEGER NOT NULL,
    expires REAL,                  -- wall-clock seconds; NULL for an infinite lifetime
    identification TEXT NOT NULL,  -- hex
    flags INTEGER NOT NULL,
    spi INTEGER NOT NULL,
    foreign_agent TEXT,
    PRIMARY KEY (home_address, care_of_address)
);
"""


class StateError(Exception):
    """The state file cannot be used (another format version, or not a mipd state file)."""


def _hex(value: int | None) -> str | None:
    return None if value is None else f"{value:016x}"


class StateStore:
    """The instance's state file: load it once at start, then commit changes per loop turn."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            # Created private: it holds Identifications, which a replay attacker would like.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: not a mipd state file ({exc})") from exc
        if version == 0:
            tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise StateError(f"{path}: a SQLite file without a mipd format version")
            self._db.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version={FORMAT_VERSION}; COMMIT;")
        elif version != FORMAT_VERSION:
            raise StateError(f"{path}: state format version {version}, this mipd reads {FORMAT_VERSION}")

    def load(self) -> list[NodeRecord]:
        """Every stored node, bindings with wall-clock expiry (expired ones included)."""
        bindings: dict[str, list[Binding]] = {}
        for row in self._db.execute(
            "SELECT home_address, care_of_address, lifetime_granted, expires, identification, flags, spi,"
            " foreign_agent FROM bindings ORDER BY rowid"
        ):
            home, coa, granted, expires, ident, flags, spi, agent = row
            bindings.setdefault(home, []).append(Binding(
                IPv4Address(home), IPv4Address(coa), granted, math.inf if expires is None else expires,
                int(ident, 16), RequestFlags(flags), spi, None if agent is None else IPv4Address(agent)))
        replay: dict[str, ReplayState] = {}
        for home, last, nonce in self._db.execute("SELECT home_address, last_identification, nonce FROM nodes"):
            replay[home] = ReplayState(None if last is None else int(last, 16), nonce)
        return [
            NodeRecord(IPv4Address(home), tuple(bindings.get(home, ())), replay.get(home, ReplayState()))
            for home in sorted(set(bindings) | set(replay), key=lambda h: int(IPv4Address(h)))
        ]

    def commit(self, changes: Iterable[PersistNode]) -> int:
        """Write the latest state of each changed node in one transaction; returns nodes written."""
        latest: dict[IPv4Address, PersistNode] = {}
        for change in changes:
            latest[change.home_address] = change  # the last word on a node wins
        if not latest:
            return 0
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for home, change in latest.items():
                key = str(home)
                db.execute("DELETE FROM bindings WHERE home_address = ?", (key,))
                db.executemany(
                    "INSERT INTO bindings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(key, str(b.care_of_address), b.lifetime_granted,
                      None if math.isinf(b.expires) else b.expires + change.wall_offset,
                      _hex(b.identification), int(b.flags), b.spi,
                      None if b.foreign_agent is None else str(b.foreign_agent)) for b in change.bindings],
                )
                if change.replay == ReplayState() and not change.bindings:
                    db.execute("DELETE FROM nodes WHERE home_address = ?", (key,))
                else:
                    db.execute(
                        "INSERT INTO nodes VALUES (?, ?, ?) ON CONFLICT(home_address) DO UPDATE SET"
                        " last_identification = excluded.last_identification, nonce = excluded.nonce",
                        (key, _hex(change.replay.last_identification), change.replay.nonce),
                    )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(latest)

    def close(self) -> None:
        self._db.close()
