"""The state file (docs/interfaces.md, "Durability"): round trip, group commit, format version, migration, permissions.

A home agent's nodes (format version 1), a foreign agent's visitors (2), a mobile node's state (3) and
UDP-tunnelled bindings' outer endpoints (4) and a mobile router's prefixes (5)."""

from __future__ import annotations

import json
import math
import os
import sqlite3
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from mipd.adapters.state.store import FORMAT_VERSION, StateError, StateStore
from mipd.core.actions import PersistMobile, PersistNode, PersistVisitor, ReplayState
from mipd.core.bindings import Binding
from mipd.core.mobile_state import MobileState, StoredRegistration
from mipd.core.names import Location
from mipd.core.planes import UdpTunnelEndpoint
from mipd.core.visitors import Visitor
from mipd.core.wire.registration import RequestFlags

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


@pytest.mark.parametrize(("durability", "synchronous"), [("power-loss", 1), ("process-crash", 0)])
def test_durability_sets_how_a_commit_reaches_the_disk(tmp_path: Path, durability: str, synchronous: int) -> None:
    """power-loss: SQLite writes with synchronous=NORMAL (1) and the store fsyncs the WAL file (and
    its directory, once) before the commit is complete; process-crash: synchronous=OFF (0) and no
    fsync, the commit is written to the file but not flushed (mip.yaml(5) durability). Either way it
    is in the file at once."""
    path = tmp_path / "ha.db"
    store = StateStore(path, durability)
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == synchronous
    assert store.syncs is (durability == "power-loss")
    store.commit([PersistNode(HOME, (binding(),), ReplayState(1, None), wall_offset=0.0)])
    wal = os.stat(path.with_name(path.name + "-wal")).st_ino
    assert store._synced_wal == (wal if durability == "power-loss" else None)
    assert [r.home_address for r in StateStore(path).load()] == [HOME]  # another connection reads it
    store.set_durability("power-loss" if durability == "process-crash" else "process-crash")
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1 - synchronous
    store.close()


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


# --- a foreign agent's visitors (format version 2) ---

MN_MAC = bytes.fromhex("02000000a0b1")
HA = IPv4Address("10.1.0.1")


def visitor(home: IPv4Address = HOME, expires: float = 100.0, ident: int = 0xFEDCBA9876543210) -> Visitor:
    return Visitor(home, HA, FA, MN_MAC, home, IPv4Address("224.0.0.11"), 49152, ident, 600, 300, expires,
                   RequestFlags.D | RequestFlags.T | RequestFlags.G, "active")


def test_visitors_round_trip_with_wall_clock_expiry(tmp_path: Path) -> None:
    path = tmp_path / "fa.db"
    store = StateStore(path)
    infinite = replace(visitor(HOME2, expires=math.inf), state="pending")  # the state is not stored
    assert store.commit([PersistVisitor(HOME, visitor(), 1000.0), PersistVisitor(HOME2, infinite, 1000.0)]) == 2
    store.close()
    first, second = StateStore(path).load_visitors()
    assert first == visitor(expires=1100.0)  # monotonic 100 + offset: wall-clock 1100
    assert first.link_address == MN_MAC and first.identification == 0xFEDCBA9876543210
    assert second.home_address == HOME2 and math.isinf(second.expires) and second.state == "active"


def test_mixed_commit_is_one_transaction_and_the_last_word_per_key_wins(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "both.db")
    store.commit([PersistVisitor(HOME2, visitor(HOME2), 0.0)])
    written = store.commit([
        PersistNode(HOME, (binding(),), ReplayState(1, None), 0.0),
        PersistVisitor(HOME, visitor(ident=1), 0.0),  # same address, other table: both kept
        PersistVisitor(HOME, visitor(ident=2), 0.0),
        PersistVisitor(HOME2, None, 0.0),  # None deletes
        PersistNode(HOME, (binding(),), ReplayState(5, None), 0.0),
    ])
    assert written == 3  # one node, two visitor keys
    assert [v.identification for v in store.load_visitors()] == [2]
    (record,) = store.load()
    assert record.replay == ReplayState(5, None)
    store.commit([PersistVisitor(HOME, None, 0.0)])
    assert store.load_visitors() == [] and len(store.load()) == 1


def test_a_failed_commit_writes_nothing(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "fa.db")
    broken = visitor()
    object.__setattr__(broken, "link_address", None)  # .hex() fails half-way through the transaction
    with pytest.raises(AttributeError):
        store.commit([PersistNode(HOME, (binding(),), ReplayState(1, None), 0.0), PersistVisitor(HOME, broken, 0.0)])
    assert store.load() == [] and store.load_visitors() == []


VERSION_1 = """
CREATE TABLE nodes (home_address TEXT PRIMARY KEY, last_identification TEXT, nonce INTEGER);
CREATE TABLE bindings (home_address TEXT NOT NULL, care_of_address TEXT NOT NULL, lifetime_granted INTEGER NOT NULL,
    expires REAL, identification TEXT NOT NULL, flags INTEGER NOT NULL, spi INTEGER NOT NULL, foreign_agent TEXT,
    PRIMARY KEY (home_address, care_of_address));
INSERT INTO nodes VALUES ('10.1.0.10', 'fedcba9876543210', NULL);
INSERT INTO bindings VALUES ('10.1.0.10', '10.5.0.5', 600, 1100.0, 'fedcba9876543210', 34, 256, '10.2.0.2');
PRAGMA user_version=1;
"""


def test_a_version_1_file_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ha.db"
    db = sqlite3.connect(path)
    db.executescript(VERSION_1)
    db.close()
    store = StateStore(path)
    (record,) = store.load()  # what version 1 held is still there
    assert record.bindings == (binding(expires=1100.0),)
    assert record.replay == ReplayState(0xFEDCBA9876543210, None)
    assert store.load_visitors() == []
    store.commit([PersistVisitor(HOME, visitor(), 0.0)])
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION == 5
    db.close()
    reopened = StateStore(path)  # a second open finds it current and changes nothing
    assert reopened.load_visitors() == [visitor()] and len(reopened.load()) == 1

    assert reopened.load_mobile(HA) is None  # version 1 -> 3 in one go: the mobile table is there, empty


# --- a mobile node's state (format version 3) ---

MOBILE_STATE = MobileState(
    HA, 0xFEDCBA9876543210, 0x12345678, -1.5, Location.FOREIGN_AGENT,
    StoredRegistration(COA, 300, 0xFEDCBA9876543211, RequestFlags.T, 1700000123.25, COA, b"\x02\x00\x00\x00\xa0\xb1"))
# The same record as the file holds it: the stored form did not change with format version 3.
MOBILE_JSON = {
    "home_agent": "10.1.0.1", "last_identification": "fedcba9876543210", "ha_nonce": 0x12345678,
    "clock_offset": -1.5, "location": "foreign-agent",
    "registration": {"care_of_address": str(COA), "lifetime": 300, "identification": "fedcba9876543211",
                     "flags": int(RequestFlags.T), "expires_wall": 1700000123.25, "agent": str(COA),
                     "agent_link_address": "02000000a0b1"},
}


def mobile(step: int) -> MobileState:
    """A mobile node's state told apart by its last Identification."""
    return MobileState(HA, step, None, 0.0, Location.UNKNOWN)


def test_mobile_state_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "mn.db"
    store = StateStore(path)
    assert store.load_mobile(HA) is None
    assert store.commit([PersistMobile(MOBILE_STATE)]) == 1
    store.close()
    db = sqlite3.connect(path)
    assert json.loads(db.execute("SELECT value FROM mobile").fetchone()[0]) == MOBILE_JSON
    db.close()
    reopened = StateStore(path)
    assert reopened.load_mobile(HA) == MOBILE_STATE
    # An infinite lifetime (no end), co-located (no agent): None in, None out.
    forever = replace(MOBILE_STATE, registration=StoredRegistration(COA, 0xFFFF, 1, RequestFlags.D, None, None, None))
    reopened.commit([PersistMobile(forever)])
    assert reopened.load_mobile(HA) == forever
    reopened.commit([PersistMobile(mobile(0))])
    assert reopened.load_mobile(HA) == mobile(0)


def test_mixed_commit_with_the_mobile_node_keeps_its_last_word(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "all.db")
    written = store.commit([
        PersistMobile(mobile(1)),
        PersistNode(HOME, (binding(),), ReplayState(1, None), 0.0),
        PersistMobile(mobile(2)),
        PersistVisitor(HOME, visitor(), 0.0),
    ])
    assert written == 3  # one node, one visitor, one mobile state
    assert store.load_mobile(HA) == mobile(2)
    assert len(store.load()) == 1 and len(store.load_visitors()) == 1


def test_a_mobile_state_that_is_not_json_writes_nothing(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "mn.db")
    store.commit([PersistMobile(mobile(1))])
    unserialisable = replace(mobile(2), ha_nonce=object())  # no JSON form: json.dumps raises TypeError
    with pytest.raises(TypeError):
        store.commit([PersistNode(HOME, (binding(),), ReplayState(1, None), 0.0), PersistMobile(unserialisable)])
    assert store.load_mobile(HA) == mobile(1) and store.load() == []


VERSION_2_VISITORS = """
CREATE TABLE visitors (home_address TEXT PRIMARY KEY, home_agent TEXT NOT NULL, care_of_address TEXT NOT NULL,
    link_address TEXT NOT NULL, source TEXT NOT NULL, destination TEXT NOT NULL, source_port INTEGER NOT NULL,
    identification TEXT NOT NULL, lifetime_requested INTEGER NOT NULL, lifetime_granted INTEGER NOT NULL,
    expires REAL, flags INTEGER NOT NULL);
INSERT INTO visitors VALUES ('10.1.0.10', '10.1.0.1', '10.2.0.2', '02000000a0b1', '10.1.0.10', '224.0.0.11', 49152,
    'fedcba9876543210', 600, 300, 1100.0, 42);
PRAGMA user_version=2;
"""


def test_a_version_2_file_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "fa.db"
    db = sqlite3.connect(path)
    db.executescript(VERSION_1.replace("PRAGMA user_version=1;", "") + VERSION_2_VISITORS)
    db.close()
    store = StateStore(path)
    assert store.load_visitors() == [visitor(expires=1100.0)]  # what version 2 held is still there
    assert len(store.load()) == 1 and store.load_mobile(HA) is None
    store.commit([PersistMobile(mobile(1))])
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION == 5
    db.close()
    assert StateStore(path).load_mobile(HA) == mobile(1)


# --- UDP-tunnelled bindings (format version 4) ---

def test_a_udp_tunnelled_binding_keeps_its_outer_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "ha.db"
    outer = UdpTunnelEndpoint(IPv4Address("192.0.2.7"), 61000)
    store = StateStore(path)
    store.commit([PersistNode(HOME, (replace(binding(), outer=outer, foreign_agent=None), binding(coa=FA)),
                              ReplayState(1, None), 1000.0)])
    store.close()
    (record,) = StateStore(path).load()
    assert [b.outer for b in record.bindings] == [outer, None]
    assert record.bindings[0] == replace(binding(expires=1100.0), outer=outer, foreign_agent=None)


VERSION_3_MOBILE = "CREATE TABLE mobile (key TEXT PRIMARY KEY, value TEXT NOT NULL);\nPRAGMA user_version=3;\n"


def test_a_version_3_file_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ha.db"
    db = sqlite3.connect(path)
    db.executescript(VERSION_1.replace("PRAGMA user_version=1;", "")
                     + VERSION_2_VISITORS.replace("PRAGMA user_version=2;", "") + VERSION_3_MOBILE)
    db.close()
    store = StateStore(path)
    (record,) = store.load()  # the version 3 binding is still there, not UDP-tunnelled
    assert record.bindings == (binding(expires=1100.0),)
    outer = UdpTunnelEndpoint(IPv4Address("192.0.2.7"), 4500)
    store.commit([PersistNode(HOME, (replace(binding(), outer=outer),), ReplayState(1, None), 0.0)])
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION == 5
    db.close()
    assert StateStore(path).load()[0].bindings[0].outer == outer


# --- a mobile router's prefixes (format version 5, RFC 5177 6.2.1) ---

LANS = (IPv4Network("192.168.50.0/24"), IPv4Network("192.168.60.0/28"))


def test_a_mobile_routers_binding_keeps_its_prefixes(tmp_path: Path) -> None:
    path = tmp_path / "ha.db"
    store = StateStore(path)
    store.commit([PersistNode(HOME, (replace(binding(), prefixes=LANS), binding(coa=FA)), ReplayState(1, None),
                              1000.0)])
    store.close()
    (record,) = StateStore(path).load()
    assert [b.prefixes for b in record.bindings] == [LANS, ()]
    assert record.bindings[0] == replace(binding(expires=1100.0), prefixes=LANS)


VERSION_4_UDP = ("ALTER TABLE bindings ADD COLUMN outer_address TEXT;\n"
                 "ALTER TABLE bindings ADD COLUMN outer_port INTEGER;\n"
                 "PRAGMA user_version=4;\n")


def test_a_version_4_file_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ha.db"
    db = sqlite3.connect(path)
    db.executescript(VERSION_1.replace("PRAGMA user_version=1;", "")
                     + VERSION_2_VISITORS.replace("PRAGMA user_version=2;", "")
                     + VERSION_3_MOBILE.replace("PRAGMA user_version=3;", "") + VERSION_4_UDP)
    db.close()
    store = StateStore(path)
    (record,) = store.load()  # the version 4 binding is still there, with no prefixes
    assert record.bindings == (binding(expires=1100.0),)
    store.commit([PersistNode(HOME, (replace(binding(), prefixes=LANS),), ReplayState(1, None), 0.0)])
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION == 5
    db.close()
    assert StateStore(path).load()[0].bindings[0].prefixes == LANS
