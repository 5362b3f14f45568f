"""Durable state: ``<state_directory>/<instance>.db`` (docs/interfaces.md, "Durability").

SQLite from the standard library, in WAL mode. A commit is two steps: :meth:`StateStore.write` runs
the transaction (``synchronous=NORMAL``: SQLite writes the WAL but does not flush it), and
:meth:`StateStore.sync` flushes the WAL file to the disk (fsync), which is what ``synchronous=FULL``
would do inside the commit. The profile's ``durability`` (mip.yaml(5)) says whether the second step is
taken: ``power-loss`` (default) syncs, so a commit survives a power cut or a kernel crash;
``process-crash`` does not (and SQLite runs ``synchronous=OFF``), so a commit is in the kernel's page
cache once written: it survives the process being killed (kill -9, a crash of mipd), not a power cut
or a kernel crash, and costs no disk flush. Split so, the daemon writes in its event loop and waits
for the flush in another thread, reading and deciding the next requests meanwhile (mipd/runtime/daemon.py).
The runtime commits once per group of loop turns with every node that changed in them (group commit),
and sends their replies only after the commit is complete. ``PRAGMA user_version`` carries the
format version (mipd.adapters.state.schema): an older file is migrated in place, a newer one or a
foreign one is refused rather than guessed at.

A home agent's nodes (:class:`PersistNode`) and a foreign agent's current visitors
(:class:`PersistVisitor`, RFC 5944 3.7.1) share the file and the transaction of a turn. Expiry is
stored as wall-clock time, so that remaining lifetimes survive a restart. The 64-bit Identification
is stored as 16 hex digits (SQLite integers are signed 64-bit), a link-layer address as hex. A mobile
node's state (:class:`PersistMobile`, format version 3) is one JSON document
(mipd.adapters.state.mobile_json), written in the same transaction as the rest. A UDP-tunnelled
binding (RFC 3519, format version 4) keeps its outer address and port, so that a restart tunnels to
the same NAT mapping.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, TypeVar

from mipd.adapters.state import mobile_json
from mipd.adapters.state.schema import FORMAT_VERSION, MIGRATIONS, SCHEMA
from mipd.core.actions import PersistMobile, PersistNode, PersistVisitor, ReplayState
from mipd.core.bindings import Binding
from mipd.core.home_agent import NodeRecord
from mipd.core.mobile_state import MobileState
from mipd.core.names import VisitorState
from mipd.core.planes import UdpTunnelEndpoint
from mipd.core.visitors import Visitor
from mipd.core.wire.registration import RequestFlags

__all__ = ["FORMAT_VERSION", "CommitError", "StateChange", "StateError", "StateStore"]

_MOBILE_KEY = "state"
_VISITOR_COLUMNS = ("home_address, home_agent, care_of_address, link_address, source, destination, source_port,"
                    " identification, lifetime_requested, lifetime_granted, expires, flags")


class StateError(Exception):
    """The state file cannot be used (another format version, or not a mipd state file)."""


class CommitError(StateError):
    """A commit did not reach the disk (SQLite or the file system refused it); nothing of it was written."""


StateChange = PersistNode | PersistVisitor | PersistMobile
C = TypeVar("C", PersistNode, PersistVisitor, PersistMobile)


@functools.lru_cache(maxsize=1 << 16)
def _text(address: IPv4Address) -> str:
    """``str(address)``, cached: a saturated home agent writes the same nodes' addresses again and again."""
    return str(address)


def _hex(value: int | None) -> str | None:
    return None if value is None else f"{value:016x}"


# mip.yaml(5) durability -> SQLite's synchronous setting (in WAL mode); power-loss adds sync().
SYNCHRONOUS = {"power-loss": "NORMAL", "process-crash": "OFF"}


class StateStore:
    """The instance's state file: load it once at start, then commit changes per loop turn."""

    def __init__(self, path: Path, durability: str = "power-loss") -> None:
        self.path = path
        self.durability = durability
        self._synced_wal: int | None = None  # the inode of the WAL file last synced, its directory with it
        self._wal_fd: int | None = None  # that file, open for fsync
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            # Created private: it holds Identifications, which a replay attacker would like.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self.set_durability(durability)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: not a mipd state file ({exc})") from exc
        if version == 0:
            tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise StateError(f"{path}: a SQLite file without a mipd format version")
            self._db.executescript(f"BEGIN; {SCHEMA} PRAGMA user_version={FORMAT_VERSION}; COMMIT;")
        elif not 0 < version <= FORMAT_VERSION:
            raise StateError(f"{path}: state format version {version}, this mipd reads {FORMAT_VERSION}")
        elif version < FORMAT_VERSION:
            self._migrate(version)

    def set_durability(self, durability: str) -> None:
        """What a commit survives from now on (``power-loss`` or ``process-crash``, see above)."""
        self._db.execute(f"PRAGMA synchronous={SYNCHRONOUS[durability]}")
        self.durability = durability

    @property
    def syncs(self) -> bool:
        """Whether a commit needs :meth:`sync` after :meth:`write` (durability ``power-loss``)."""
        return self.durability == "power-loss"

    def sync(self) -> None:
        """Flush what :meth:`write` wrote to the disk (durability power-loss; else nothing):
        :meth:`prepare_sync`, then fsync. CommitError if the disk refuses."""
        fd = self.prepare_sync()
        if fd is not None:
            try:
                os.fsync(fd)
            except OSError as exc:
                raise CommitError(f"{self.path}-wal: {exc.strerror or exc}") from exc

    def prepare_sync(self) -> int | None:
        """The file descriptor whose fsync completes the commits written so far (the WAL file's,
        kept open), or None when commits need no flush. The first time, and whenever SQLite made
        the WAL file anew, the directory is flushed too (here), so that the file itself survives.
        The fsync itself may run in another thread: it is one system call, during which the
        next :meth:`write` may go on (the kernel flushes whatever it has of the file by then)."""
        if not self.syncs:
            return None
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            inode = os.stat(wal).st_ino
            if self._wal_fd is None or inode != self._synced_wal:
                if self._wal_fd is not None:
                    os.close(self._wal_fd)
                    self._wal_fd = None
                self._wal_fd = os.open(wal, os.O_RDONLY | os.O_CLOEXEC)
                directory = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
                self._synced_wal = inode
        except OSError as exc:
            raise CommitError(f"{wal}: {exc.strerror or exc}") from exc
        return self._wal_fd

    def commit(self, changes: Iterable[StateChange]) -> int:
        """:meth:`write`, then :meth:`sync`: the whole commit in this thread."""
        written = self.write(changes)
        if written:
            self.sync()
        return written

    def _migrate(self, version: int) -> None:
        """Bring a file of an older format version up to date, in place and in one transaction."""
        script = "".join(MIGRATIONS[v] for v in range(version, FORMAT_VERSION))
        try:
            self._db.executescript(f"BEGIN IMMEDIATE; {script} PRAGMA user_version={FORMAT_VERSION}; COMMIT;")
        except sqlite3.DatabaseError as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StateError(f"{self.path}: cannot migrate from format version {version}: {exc}") from exc

    def load(self) -> list[NodeRecord]:
        """Every stored node, bindings with wall-clock expiry (expired ones included)."""
        bindings: dict[str, list[Binding]] = {}
        for row in self._db.execute(
            "SELECT home_address, care_of_address, lifetime_granted, expires, identification, flags, spi,"
            " foreign_agent, outer_address, outer_port, mobile_networks FROM bindings ORDER BY rowid"
        ):
            home, coa, granted, expires, ident, flags, spi, agent, outer_address, outer_port, networks = row
            outer = None if outer_address is None else UdpTunnelEndpoint(IPv4Address(outer_address), outer_port)
            prefixes = () if not networks else tuple(IPv4Network(n) for n in networks.split(","))
            bindings.setdefault(home, []).append(Binding(
                IPv4Address(home), IPv4Address(coa), granted, math.inf if expires is None else expires,
                int(ident, 16), RequestFlags(flags), spi, None if agent is None else IPv4Address(agent), outer,
                prefixes))
        replay: dict[str, ReplayState] = {}
        for home, last, nonce in self._db.execute("SELECT home_address, last_identification, nonce FROM nodes"):
            replay[home] = ReplayState(None if last is None else int(last, 16), nonce)
        return [
            NodeRecord(IPv4Address(home), tuple(bindings.get(home, ())), replay.get(home, ReplayState()))
            for home in sorted(set(bindings) | set(replay), key=lambda h: int(IPv4Address(h)))
        ]

    def load_visitors(self) -> list[Visitor]:
        """Every stored visitor, ``state="active"``, ``expires`` as wall-clock time (expired ones
        included: the engine's ``restore`` deletes those)."""
        return [
            Visitor(IPv4Address(home), IPv4Address(agent), IPv4Address(coa), bytes.fromhex(link),
                    IPv4Address(source), IPv4Address(destination), port, int(ident, 16), requested, granted,
                    math.inf if expires is None else expires, RequestFlags(flags), VisitorState.ACTIVE)
            for home, agent, coa, link, source, destination, port, ident, requested, granted, expires, flags
            in self._db.execute(f"SELECT {_VISITOR_COLUMNS} FROM visitors ORDER BY rowid")
        ]

    def load_mobile(self, home_agent: IPv4Address) -> MobileState | None:
        """The mobile node's state as last committed, or None if none ever was; ``home_agent``
        (the profile's) where the file names none."""
        row = self._db.execute("SELECT value FROM mobile WHERE key = ?", (_MOBILE_KEY,)).fetchone()
        if row is None:
            return None
        state = json.loads(row[0])
        if not isinstance(state, dict):
            raise StateError(f"{self.path}: the mobile node's state is not a JSON object")
        return mobile_json.from_json(state, home_agent)

    def write(self, changes: Iterable[StateChange]) -> int:
        """Write the latest state of each changed node, visitor and the mobile node in one
        transaction (not yet flushed to the disk: :meth:`sync`); returns the number of records
        written. The last word on each wins.
        CommitError if it could not be written; any other error (a state with no stored form)
        rolls the transaction back too, so that nothing of it is written."""
        latest: dict[tuple[type, object], StateChange] = {}
        for change in changes:
            latest[type(change), _WRITERS[type(change)].key(change)] = change
        if not latest:
            return 0
        db = self._db
        try:
            by_kind: dict[type, list[StateChange]] = {}
            for (kind, _), change in latest.items():
                by_kind.setdefault(kind, []).append(change)
            db.execute("BEGIN IMMEDIATE")
            try:
                for kind, kind_changes in by_kind.items():
                    _WRITERS[kind].write(self, kind_changes)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as exc:
            raise CommitError(str(exc)) from exc
        return len(latest)

    def _write_nodes(self, changes: list[PersistNode]) -> None:
        """Each node's bindings and replay state replaced, all nodes of the turn in a few
        statements (executemany): a statement per node showed in the profile of a saturated
        home agent (bench/)."""
        db = self._db
        keys = [(_text(change.home_address),) for change in changes]
        db.executemany("DELETE FROM bindings WHERE home_address = ?", keys)
        db.executemany(
            "INSERT INTO bindings (home_address, care_of_address, lifetime_granted, expires, identification, flags,"
            " spi, foreign_agent, outer_address, outer_port, mobile_networks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(key, _text(b.care_of_address), b.lifetime_granted,
              None if math.isinf(b.expires) else b.expires + change.wall_offset,
              _hex(b.identification), int(b.flags), b.spi,
              None if b.foreign_agent is None else _text(b.foreign_agent),
              None if b.outer is None else str(b.outer.address), None if b.outer is None else b.outer.port,
              ",".join(map(str, b.prefixes)) if b.prefixes else None)
             for (key,), change in zip(keys, changes, strict=True) for b in change.bindings],
        )
        gone = [key for key, change in zip(keys, changes, strict=True)
                if change.replay == ReplayState() and not change.bindings]
        db.executemany("DELETE FROM nodes WHERE home_address = ?", gone)
        db.executemany(
            "INSERT INTO nodes VALUES (?, ?, ?) ON CONFLICT(home_address) DO UPDATE SET"
            " last_identification = excluded.last_identification, nonce = excluded.nonce",
            [(key, _hex(change.replay.last_identification), change.replay.nonce)
             for (key,), change in zip(keys, changes, strict=True)
             if change.replay != ReplayState() or change.bindings],
        )

    def _write_visitors(self, changes: list[PersistVisitor]) -> None:
        for change in changes:
            self._write_visitor(change)

    def _write_mobiles(self, changes: list[PersistMobile]) -> None:
        for change in changes:
            self._write_mobile(change)

    def _write_visitor(self, change: PersistVisitor) -> None:
        v = change.visitor
        if v is None:
            self._db.execute("DELETE FROM visitors WHERE home_address = ?", (str(change.home_address),))
            return
        self._db.execute(
            f"INSERT OR REPLACE INTO visitors ({_VISITOR_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (str(change.home_address), str(v.home_agent), str(v.care_of_address), v.link_address.hex(),
             str(v.source), str(v.destination), v.source_port, _hex(v.identification), v.lifetime_requested,
             v.lifetime_granted, None if math.isinf(v.expires) else v.expires + change.wall_offset, int(v.flags)),
        )

    def _write_mobile(self, change: PersistMobile) -> None:
        stored = json.dumps(mobile_json.to_json(change.state), sort_keys=True)
        self._db.execute("INSERT OR REPLACE INTO mobile (key, value) VALUES (?, ?)", (_MOBILE_KEY, stored))

    def close(self) -> None:
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        self._db.close()


@dataclass(frozen=True, slots=True)
class _Writer:
    """How one change type is written: what names its record (the last change per key wins) and
    the method that writes it inside the turn's transaction."""

    key: Callable[[Any], object]
    write: Callable[[StateStore, list[Any]], None]


def _writer(kind: type[C], key: Callable[[C], object], write: Callable[[StateStore, list[C]], None]
            ) -> tuple[type, _Writer]:
    return kind, _Writer(key, write)


# Every change type the store takes, declared once: a home agent's nodes and a foreign agent's
# visitors by home address, the mobile node's one state.
_WRITERS: dict[type, _Writer] = dict([
    _writer(PersistNode, lambda change: change.home_address, StateStore._write_nodes),
    _writer(PersistVisitor, lambda change: change.home_address, StateStore._write_visitors),
    _writer(PersistMobile, lambda change: None, StateStore._write_mobiles),
])
