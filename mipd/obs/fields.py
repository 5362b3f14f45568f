"""Turning an event into journal fields (mipd(8) JOURNAL), and keeping secrets out of them.

Callers name fields as mipd(8) does, in lower case and without the ``MIP_`` prefix
(``home_address``, ``care_of_address``, ``code``, ``spi``, ``reason``, ...); each becomes
``MIP_<NAME>``. Every entry carries ``SYSLOG_IDENTIFIER=mipd``, ``MIP_INSTANCE``, ``MIP_ROLE``,
``MIP_EVENT``, ``MESSAGE`` and ``PRIORITY``; no caller field can override those.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from enum import Enum

from mipd.core.actions import Priority

SYSLOG_IDENTIFIER = "mipd"

# Defence in depth: the engines never put a key in an event, but should one slip through, a field
# whose name looks like it could hold one is dropped, and so is any raw bytes value.
_SECRET_NAME = re.compile(r"key|secret|passw|token|credential", re.IGNORECASE)
_NOT_FIELD_CHAR = re.compile(r"[^A-Z0-9_]")
_MAX_FIELD_NAME = 64  # journald refuses longer field names

_BASE_NAMES = frozenset(
    {"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "MIP_INSTANCE", "MIP_ROLE", "MIP_EVENT", "MIP_SUPPRESSED"}
)


def is_secret_field(name: str) -> bool:
    """Whether a field called ``name`` is refused because it might carry key material."""
    return _SECRET_NAME.search(name) is not None


def field_name(name: str) -> str:
    """The journal field for a caller's field name: ``care_of_address`` -> ``MIP_CARE_OF_ADDRESS``."""
    upper = _NOT_FIELD_CHAR.sub("_", name.upper())
    if not upper.startswith("MIP_"):
        upper = "MIP_" + upper
    return upper[:_MAX_FIELD_NAME]


@functools.lru_cache(maxsize=1024)
def _allowed_field_name(name: str) -> str | None:
    """``field_name(name)``, or None for a secret-looking name or one of the fixed fields (cached: hot path)."""
    if is_secret_field(name):
        return None
    journal_name = field_name(name)
    return None if journal_name in _BASE_NAMES else journal_name


def field_value(value: object) -> str:
    """A field value as text: enums by their value, booleans as ``true``/``false``, the rest by ``str``."""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def journal_fields(
    *,
    event: str,
    message: str | None,
    priority: Priority,
    instance: str,
    role: str,
    fields: Mapping[str, object],
    suppressed: int = 0,
) -> dict[str, str]:
    """The complete journal entry for one event, as ``FIELD -> value`` text.

    ``fields`` with secret-looking names or bytes values are dropped; so are those that would map
    onto one of the fixed fields. Without ``message`` a readable one is made from the event and
    its fields. ``suppressed`` > 0 adds ``MIP_SUPPRESSED`` (rate limiting, see ratelimit.py).
    """
    extra: dict[str, str] = {}
    for name, value in fields.items():
        if value is None or isinstance(value, bytes | bytearray | memoryview):
            continue
        journal_name = _allowed_field_name(name)
        if journal_name is not None:
            extra[journal_name] = field_value(value)
    if message is None:
        details = " ".join(
            f"{name.removeprefix('MIP_').lower()}={value}" for name, value in extra.items() if name != "MIP_EXCEPTION"
        )
        message = f"{event} {details}".rstrip()
    entry = {
        "MESSAGE": message,
        "PRIORITY": str(int(priority)),
        "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
        "MIP_INSTANCE": instance,
        "MIP_ROLE": role,
        "MIP_EVENT": event,
        **extra,
    }
    if suppressed > 0:
        entry["MIP_SUPPRESSED"] = str(suppressed)
    return entry
