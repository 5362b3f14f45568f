"""Journal fields (mipd(8) JOURNAL): names, fixed fields, no key, levels."""

from __future__ import annotations

from enum import IntEnum
from ipaddress import IPv4Address

import pytest

from mipd.core.actions import Priority
from mipd.obs.fields import field_name, is_secret_field, journal_fields
from mipd.obs.levels import level_name, parse_level

JOURNAL_FIELDS = {
    "home_address": "MIP_HOME_ADDRESS",
    "care_of_address": "MIP_CARE_OF_ADDRESS",
    "home_agent": "MIP_HOME_AGENT",
    "foreign_agent": "MIP_FOREIGN_AGENT",
    "link_address": "MIP_LINK_ADDRESS",
    "lifetime": "MIP_LIFETIME",
    "code": "MIP_CODE",
    "spi": "MIP_SPI",
    "reason": "MIP_REASON",
}


def entry(fields: dict[str, object], **overrides: object) -> dict[str, str]:
    arguments: dict[str, object] = {
        "event": "binding.added", "message": "bound", "priority": Priority.INFO,
        "instance": "ha1", "role": "home-agent", "fields": fields,
    }
    arguments.update(overrides)
    return journal_fields(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "journal_name"), sorted(JOURNAL_FIELDS.items()))
def test_journal_field_names(name: str, journal_name: str) -> None:
    assert field_name(name) == journal_name


def test_an_entry_has_the_fixed_fields_and_each_given_field() -> None:
    fields = {"home_address": IPv4Address("10.1.0.10"), "care_of_address": "10.2.0.1", "lifetime": 600, "spi": 256}
    assert entry(fields) == {
        "MESSAGE": "bound",
        "PRIORITY": "6",
        "SYSLOG_IDENTIFIER": "mipd",
        "MIP_INSTANCE": "ha1",
        "MIP_ROLE": "home-agent",
        "MIP_EVENT": "binding.added",
        "MIP_HOME_ADDRESS": "10.1.0.10",
        "MIP_CARE_OF_ADDRESS": "10.2.0.1",
        "MIP_LIFETIME": "600",
        "MIP_SPI": "256",
    }


def test_values_are_text_enums_by_value() -> None:
    class Code(IntEnum):
        DENIED = 129

    got = entry({"code": Code.DENIED, "flag": True, "other": False})
    assert (got["MIP_CODE"], got["MIP_FLAG"], got["MIP_OTHER"]) == ("129", "true", "false")


@pytest.mark.parametrize(
    "name", ["key", "Key", "mn_ha_key", "key_file", "secret", "shared_secret", "password", "token", "MIP_KEY"]
)
def test_secret_looking_fields_never_reach_an_entry(name: str) -> None:
    assert is_secret_field(name)
    got = entry({name: "00112233445566778899aabbccddeeff", "spi": 256})
    assert got["MIP_SPI"] == "256"
    assert not any("0011223344" in value for value in got.values()), got
    assert not any("KEY" in field or "SECRET" in field for field in got), got


def test_bytes_values_and_none_are_dropped() -> None:
    got = entry({"blob": b"\x00\x11", "raw": bytearray(b"k"), "absent": None, "spi": 300})
    assert "MIP_BLOB" not in got and "MIP_RAW" not in got and "MIP_ABSENT" not in got
    assert got["MIP_SPI"] == "300"


@pytest.mark.parametrize("name", ["instance", "role", "event", "mip_event", "suppressed", "MESSAGE"])
def test_a_field_cannot_override_the_fixed_ones(name: str) -> None:
    got = entry({name: "forged"})
    fixed = {key: got[key] for key in ("MESSAGE", "SYSLOG_IDENTIFIER", "MIP_INSTANCE", "MIP_ROLE", "MIP_EVENT")}
    assert fixed == {
        "MESSAGE": "bound", "SYSLOG_IDENTIFIER": "mipd", "MIP_INSTANCE": "ha1", "MIP_ROLE": "home-agent",
        "MIP_EVENT": "binding.added",
    }
    assert "MIP_SUPPRESSED" not in got


def test_field_names_are_valid_journal_field_names() -> None:
    assert field_name("link-address.x") == "MIP_LINK_ADDRESS_X"
    assert len(field_name("a" * 100)) == 64


def test_a_message_is_made_when_none_is_given() -> None:
    got = entry({"home_address": "10.1.0.10", "reason": "expired"}, message=None)
    assert got["MESSAGE"] == "binding.added home_address=10.1.0.10 reason=expired"


def test_suppressed_count_is_carried_only_when_positive() -> None:
    assert "MIP_SUPPRESSED" not in entry({}, suppressed=0)
    assert entry({}, suppressed=42)["MIP_SUPPRESSED"] == "42"


@pytest.mark.parametrize(
    ("name", "priority"),
    [("debug", 7), ("info", 6), ("notice", 5), ("warning", 4), ("error", 3), (" INFO ", 6)],
)
def test_profile_levels_are_syslog_priorities(name: str, priority: int) -> None:
    assert parse_level(name) == priority
    assert level_name(parse_level(name)) == name.strip().lower()


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level 'verbose'"):
        parse_level("verbose")
