"""mipctl's readable output: aligned tables and ``key: value`` lines from the section 4 results."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from mipd.core.wire.codes import ReplyCode

INFINITE_LIFETIME = 0xFFFF

BINDING_COLUMNS = (
    ("HOME ADDRESS", "home_address"),
    ("CARE-OF ADDRESS", "care_of_address"),
    ("LIFETIME", "lifetime"),
    ("FLAGS", "flags"),
    ("SPI", "spi"),
    ("FOREIGN AGENT", "foreign_agent"),
)
MOBILE_NETWORKS_COLUMN = ("MOBILE NETWORKS", "mobile_networks")
VISITOR_COLUMNS = (
    ("HOME ADDRESS", "home_address"),
    ("HOME AGENT", "home_agent"),
    ("CARE-OF ADDRESS", "care_of_address"),
    ("LINK ADDRESS", "link_address"),
    ("STATE", "state"),
    ("LIFETIME", "lifetime"),
    ("FLAGS", "flags"),
)


def render(command: str, result: Mapping[str, Any]) -> str:
    """The readable form of ``command``'s result (without a final newline)."""
    if command == "bindings":
        rows = [{**(r := _with_lifetime(b)), "mobile_networks": ",".join(r.get("mobile_networks") or ())}
                for b in result.get("bindings", [])]
        # RFC 5177: the column of a mobile router's accepted prefixes, when some binding has any
        columns = (*BINDING_COLUMNS, MOBILE_NETWORKS_COLUMN) if any(r.get("mobile_networks") for r in rows) \
            else BINDING_COLUMNS
        return table(columns, rows, "no bindings")
    if command == "visitors":
        return table(VISITOR_COLUMNS, [_with_lifetime(v) for v in result.get("visitors", [])], "no visitors")
    if command == "stats":
        return key_values(stats_rows(result.get("counters", {})))
    return key_values([(key, _cell(value)) for key, value in result.items()])


def table(columns: Sequence[tuple[str, str]], rows: Sequence[Mapping[str, Any]], empty: str) -> str:
    """Columns padded to their widest cell, two spaces apart; ``empty`` when there are no rows."""
    if not rows:
        return empty
    cells = [[title for title, _ in columns]]
    cells.extend([_cell(row.get(key)) for _, key in columns] for row in rows)
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells)


def key_values(rows: Sequence[tuple[str, str]]) -> str:
    """``key: value`` lines with the values aligned."""
    if not rows:
        return ""
    width = max(len(key) for key, _ in rows) + 1
    return "\n".join(f"{key + ':':<{width}} {value}" for key, value in rows)


def stats_rows(counters: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Totals, then denials per code with the code's RFC name, then drops per reason."""
    rows: list[tuple[str, str]] = []
    for key, value in counters.items():
        if isinstance(value, Mapping):
            rows.append((key, str(sum(v for v in value.values() if isinstance(v, int)))))
            for sub, count in value.items():
                label = f"{sub} {code_name(sub)}" if key == "denied" else sub
                rows.append((f"  {label}", _cell(count)))
        else:
            rows.append((key, _cell(value)))
    return rows


def code_name(code: str) -> str:
    """``"131"`` -> ``"HA_MOBILE_NODE_FAILED_AUTHENTICATION"`` (``"unknown code"`` if none)."""
    try:
        return ReplyCode(int(code)).name
    except ValueError:
        return "unknown code"


def _with_lifetime(entry: Mapping[str, Any]) -> dict[str, Any]:
    granted = entry.get("lifetime_granted")
    remaining = entry.get("lifetime_remaining")
    lifetime = "infinite" if granted == INFINITE_LIFETIME else f"{_cell(remaining)}/{_cell(granted)}"
    return {**entry, "lifetime": lifetime}


def _cell(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value) or "-"  # e.g. a mobile router's mobile_networks
    return json.dumps(value, separators=(",", ":"))
