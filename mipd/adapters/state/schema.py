"""The state file's tables, one format version at a time, and the migrations between them.

``PRAGMA user_version`` is the format version. Version 1 held a home agent's nodes and bindings;
version 2 adds a foreign agent's visitors (RFC 5944 3.7.1); version 3 adds a mobile node's state
(its registration and Identification, 3.6 and 5.7), one JSON document only its engine reads; version 4
gives each binding the outer address and port of a UDP-tunnelled binding (RFC 3519); version 5
gives each binding a mobile router's accepted Mobile Network Prefixes (RFC 5177 6.2.1). A file
of an older version is brought up to date in place, in one transaction, when it is opened; a newer
one is refused.
"""

from __future__ import annotations

FORMAT_VERSION = 5

_NODES = """
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

_VISITORS = """
CREATE TABLE visitors (            -- a foreign agent's current visitors (3.7.1); pending ones are not kept
    home_address TEXT PRIMARY KEY,
    home_agent TEXT NOT NULL,
    care_of_address TEXT NOT NULL,
    link_address TEXT NOT NULL,    -- hex, the node's link-layer source address
    source TEXT NOT NULL,          -- IP source of the request
    destination TEXT NOT NULL,     -- IP destination of the request
    source_port INTEGER NOT NULL,
    identification TEXT NOT NULL,  -- hex
    lifetime_requested INTEGER NOT NULL,
    lifetime_granted INTEGER NOT NULL,
    expires REAL,                  -- wall-clock seconds; NULL for an infinite lifetime
    flags INTEGER NOT NULL
);
"""

_MOBILE = """
CREATE TABLE mobile (              -- a mobile node's state: one row, key 'state'
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL            -- JSON (mipd.adapters.state.mobile_json)
);
"""

_UDP_TUNNELS = """
ALTER TABLE bindings ADD COLUMN outer_address TEXT;   -- RFC 3519: the NAT's address; NULL: not UDP-tunnelled
ALTER TABLE bindings ADD COLUMN outer_port INTEGER;   -- and its UDP port
"""

_MOBILE_NETWORKS = """
ALTER TABLE bindings ADD COLUMN mobile_networks TEXT; -- RFC 5177: accepted prefixes, comma-separated CIDRs; NULL: none
"""

# The statements that make a new file of the current version.
SCHEMA = _NODES + _VISITORS + _MOBILE + _UDP_TUNNELS + _MOBILE_NETWORKS

# MIGRATIONS[v]: the statements that turn a version-v file into a version-(v + 1) one.
MIGRATIONS: dict[int, str] = {
    1: _VISITORS,
    2: _MOBILE,
    3: _UDP_TUNNELS,
    4: _MOBILE_NETWORKS,
}
