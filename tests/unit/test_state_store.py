"""The state file (CONTRACT section 6): round trip, group commit, format version, permissions."""

from __future__ import annotations

import math
import os
import sqlite3
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from mipd.adapters.state import FORMAT_VERSION, StateError, StateStore
from mipd.core.actions import PersistNode, ReplayState
from mipd.core.bindings import Binding
from mipd.core.registration import RequestFlags

HOME, HOME2 = IPv4Address("10.1.0.10"), IPv4Address("10.1.0.11")
COA, FA = IPv4Address("10.5.0.5"), IPv4Address("10.2.0.2")


def binding(home: IPv4Address = HOME, coa: IPv4Address = COA, expires: float = 100.0) -> Binding:
    return Binding(home, coa, 600, expires, 0xFEDCBA9876543210, RequestFlags.D | RequestFlags.T, 256, FA)


def test_round_trip_with_wall_clock_expiry(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ha.db"
    store = StateStore(path)
    assert store.commit([
        PersistNode(HOME, (binding(),), ReplayState(0xFEDCBA9876543210, None), wall_offset=1000.0),
        PersistNode(HOME2, (binding(HOME2, expires=math.inf),), ReplayState(None, 0xABCD), wall_offset=1000.0),
    ]) == 2
    store.close()
    (first, second) = StateStore(path).load()
    assert first.home_address == HOME and first.replay == ReplayState(0xFEDCBA9876543210, None)
    assert first.bindings == (binding(expires=1100.0),)  # monotonic 100 + offset: wall-clock 1100
    assert math.isinf(second.bindings[0].expires) and second.replay.nonce == 0xABCD
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path.parent).st_mode & 0o777 == 0o700


def test_one_commit_keeps_the_last_word_per_node_and_deletes_empty_nodes(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "ha.db")
    store.commit([PersistNode(HOME, (binding(),), ReplayState(1, None), 0.0)])
    written = store.commit([
        PersistNode(HOME, (binding(coa=IPv4Address("10.6.0.6")),), ReplayState(2, None), 0.0),
        PersistNode(HOME, (), ReplayState(3, None), 0.0),
    ])
    assert written == 1
    (record,) = store.load()
    assert record.bindings == () and record.replay == ReplayState(3, None)
    store.commit([PersistNode(HOME, (), ReplayState(), 0.0)])
    assert store.load() == []
    assert store.commit([]) == 0


def test_another_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ha.db"
    StateStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={FORMAT_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StateError, match=f"format version {FORMAT_VERSION + 1}"):
        StateStore(path)


@pytest.mark.parametrize("content", [b"not a database at all, just text" * 40, b""])
def test_foreign_files_are_refused_or_initialised(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "ha.db"
    path.write_bytes(content)
    if content:
        with pytest.raises(StateError, match="not a mipd state file"):
            StateStore(path)
    else:
        StateStore(path).close()  # an empty file is a new database


def test_sqlite_file_of_another_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ha.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE other (x)")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="without a mipd format version"):
        StateStore(path)
