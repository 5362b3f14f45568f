"""Without a journal, entries go to stderr as JSON lines; a failing journal never stops the daemon."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from mipd.obs.sink import EntrySink
from tests.support import journal as journal_support
from tests.support.tools import venv_script

EMITTER = Path(__file__).resolve().parents[1] / "support" / "obs_emitter.py"
ENTRY = {"MESSAGE": "bound", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "mipd", "MIP_INSTANCE": "ha1",
         "MIP_ROLE": "home-agent", "MIP_EVENT": "binding.added", "MIP_HOME_ADDRESS": "10.1.0.10"}

journal_namespace = journal_support.journal_namespace


class FlakyJournal:
    """A journald that is up or down as the test says."""

    def __init__(self) -> None:
        self.up = False
        self.error: OSError = ConnectionRefusedError(111, "Connection refused")
        self.entries: list[dict[str, str]] = []

    def __call__(self, fields: Mapping[str, str]) -> None:
        if not self.up:
            raise self.error
        self.entries.append(dict(fields))


def lines(stream: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize("error", [ConnectionRefusedError(111, "refused"), FileNotFoundError(2, "no socket"),
                                   OSError(105, "no buffer space"), RuntimeError("anything else")])
def test_without_a_journal_entries_are_json_lines_on_stderr(error: Exception) -> None:
    journal = FlakyJournal()
    journal.error = error  # type: ignore[assignment]
    stream = io.StringIO()
    sink = EntrySink(send=journal, stream=stream, wall_clock=lambda: 0.0)
    sink.write(ENTRY)
    sink.write({**ENTRY, "MIP_HOME_ADDRESS": "10.1.0.11"})
    notice, first, second = lines(stream)
    assert notice["PRIORITY"] == "5" and "journald is not reachable" in notice["MESSAGE"]
    assert (notice["MIP_INSTANCE"], notice["SYSLOG_IDENTIFIER"]) == ("ha1", "mipd")
    assert "MIP_EVENT" not in notice
    assert first == {**ENTRY, "TIMESTAMP": "1970-01-01T00:00:00.000000+00:00"}
    assert second["MIP_HOME_ADDRESS"] == "10.1.0.11"
    assert sink.journal_up is False


def test_the_choice_is_made_per_entry_with_one_notice_per_transition() -> None:
    journal = FlakyJournal()
    stream = io.StringIO()
    sink = EntrySink(send=journal, stream=stream)
    journal.up = True
    sink.write({**ENTRY, "MIP_HOME_ADDRESS": "1"})
    journal.up = False
    for number in range(2, 6):
        sink.write({**ENTRY, "MIP_HOME_ADDRESS": str(number)})
    journal.up = True
    sink.write({**ENTRY, "MIP_HOME_ADDRESS": "6"})
    sink.write({**ENTRY, "MIP_HOME_ADDRESS": "7"})
    written = lines(stream)
    assert sum("MIP_EVENT" not in line for line in written) == 1  # one notice, not one per entry
    assert [line["MIP_HOME_ADDRESS"] for line in written if "MIP_EVENT" in line] == ["2", "3", "4", "5"]
    in_journal = [entry.get("MIP_HOME_ADDRESS", "notice") for entry in journal.entries]
    assert in_journal == ["1", "6", "notice", "7"]  # the entry that finds journald back, then the notice
    assert "reachable again" in journal.entries[2]["MESSAGE"]


def test_a_broken_stderr_does_not_raise() -> None:
    class Broken(io.StringIO):
        def write(self, _text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    EntrySink(send=FlakyJournal(), stream=Broken()).write(ENTRY)


def test_a_process_that_sees_no_journal_socket_writes_json_lines(
    journal_namespace: journal_support.MountNamespace,
) -> None:
    assert not journal_namespace.path(journal_support.SOCKET).exists()
    result = journal_namespace.run(
        [venv_script("python"), str(EMITTER), "nojournal", "foreign-agent"],
        input="emit visitor.added 3\nemit packet.dropped 25 5\n",
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["ok emit visitor.added 3", "ok emit packet.dropped 25 5"]
    records = [json.loads(line) for line in result.stderr.splitlines()]
    notice, *events = records
    assert "journald is not reachable (FileNotFoundError" in notice["MESSAGE"]
    assert [r["MIP_EVENT"] for r in events] == ["visitor.added"] * 3 + ["packet.dropped"] * 10
    visitor = events[0]
    assert visitor["SYSLOG_IDENTIFIER"] == "mipd"
    assert (visitor["MIP_INSTANCE"], visitor["MIP_ROLE"]) == ("nojournal", "foreign-agent")
    assert visitor["PRIORITY"] == "6"
    assert visitor["MESSAGE"] == "visitor.added number 0"
    assert (visitor["MIP_HOME_ADDRESS"], visitor["MIP_CARE_OF_ADDRESS"]) == ("10.1.0.1", "10.2.0.1")
    assert (visitor["MIP_SPI"], visitor["MIP_LIFETIME"]) == ("256", "600")
    assert events[-1]["PRIORITY"] == "5"
    assert "MIP_KEY" not in visitor and "00112233" not in result.stderr
