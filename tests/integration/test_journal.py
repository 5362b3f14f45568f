"""Events through mipd.obs into a real systemd-journald, read back with journalctl (mipd(8) JOURNAL).

Each test runs tests/support/obs_emitter.py, a stand-in daemon, inside the isolated namespace of
tests/support/journal.py and tells it on stdin what to emit.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support import journal as journal_support
from tests.support.journal import Journald, MountNamespace, running_journald
from tests.support.tools import venv_script

EMITTER = Path(__file__).resolve().parents[1] / "support" / "obs_emitter.py"
KEY = "00112233445566778899aabbccddeeff"

journald = journal_support.journald


class Emitter:
    """The stand-in daemon, driven one command at a time."""

    def __init__(self, namespace: MountNamespace, instance: str, role: str = "home-agent") -> None:
        self.process: subprocess.Popen[str] = namespace.popen(
            [venv_script("python"), str(EMITTER), instance, role],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def do(self, command: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer.split() == ["ok", *command.split()], f"{answer!r}; stderr: {self.finish()[1]}"

    def finish(self) -> tuple[int, str]:
        _, stderr = self.process.communicate(timeout=60)
        return self.process.returncode, stderr


def test_binding_added_reaches_the_journal_with_the_documented_fields(journald: Journald) -> None:
    emitter = Emitter(journald, "ha-fields")
    emitter.do("emit binding.added 2")
    emitter.do("emit binding.removed 1")
    assert emitter.finish() == (0, "")  # nothing went to stderr: the journal took it all
    entries = journald.entries(count=2, MIP_EVENT="binding.added", MIP_INSTANCE="ha-fields")
    assert len(entries) == 2
    entry = entries[0]
    assert entry["SYSLOG_IDENTIFIER"] == "mipd"
    assert (entry["MIP_INSTANCE"], entry["MIP_ROLE"], entry["MIP_EVENT"]) == ("ha-fields", "home-agent",
                                                                             "binding.added")
    assert entry["MESSAGE"] == "binding.added number 0"
    assert entry["PRIORITY"] == "6"
    assert (entry["MIP_HOME_ADDRESS"], entry["MIP_CARE_OF_ADDRESS"]) == ("10.1.0.1", "10.2.0.1")
    assert (entry["MIP_FOREIGN_AGENT"], entry["MIP_LIFETIME"], entry["MIP_SPI"]) == ("10.2.0.1", "600", "256")
    assert (entry["MIP_CODE"], entry["MIP_REASON"]) == ("0", "test")
    assert "CODE_FILE" not in entry  # sent as exactly the fields given, no stack-walking extras
    assert entries[1]["MIP_HOME_ADDRESS"] == "10.1.0.2"
    everything = journald.entries(count=3, MIP_INSTANCE="ha-fields")
    assert [e["MIP_EVENT"] for e in everything] == ["binding.added", "binding.added", "binding.removed"]
    assert all("MIP_KEY" not in e and KEY not in json.dumps(e) for e in everything)


def test_a_flood_of_drops_is_limited_and_the_next_entry_says_how_many(journald: Journald) -> None:
    emitter = Emitter(journald, "ha-flood")
    emitter.do("emit packet.dropped 300 5")
    emitter.do("emit binding.added 1500")  # interleaved in time with the limited flood
    emitter.do("emit packet.dropped 300 5")
    emitter.do("sleep 0.25")
    emitter.do("emit packet.dropped 1 5")
    assert emitter.finish() == (0, "")
    bindings = journald.entries(count=1500, MIP_EVENT="binding.added", MIP_INSTANCE="ha-flood")
    assert len(bindings) == 1500
    assert not any("MIP_SUPPRESSED" in entry for entry in bindings)
    drops = journald.entries(count=11, MIP_EVENT="packet.dropped", MIP_INSTANCE="ha-flood")
    written = len(drops)
    suppressed = sum(int(entry.get("MIP_SUPPRESSED", 0)) for entry in drops)
    # burst 10, refilled at 10/s while the bindings and the pause take their time (well under 5 s)
    assert 11 <= written <= 60, written
    assert written + suppressed == 601  # every drop is either in the journal or counted
    assert int(drops[-1]["MIP_SUPPRESSED"]) > 0  # the entry after the pause carries the second burst's count
    assert int(drops[10]["MIP_SUPPRESSED"]) > 0  # ... as does the first one after the first burst
    assert drops[-1]["PRIORITY"] == "5"


def test_a_journald_killed_mid_run_does_not_stop_the_daemon() -> None:
    with running_journald() as journal:
        emitter = Emitter(journal, "ha-crash")
        emitter.do("emit binding.added 1")
        assert len(journal.entries(count=1, MIP_INSTANCE="ha-crash")) == 1
        journal.kill_journald()
        emitter.do("emit binding.renewed 3")  # ECONNREFUSED: the socket is there, nobody reads it
        emitter.do("emit registration.accepted 2")
        journal.start_journald()
        emitter.do("emit binding.removed 1")
        returncode, stderr = emitter.finish()
        assert returncode == 0, stderr
        in_journal = journal.entries(count=2, MIP_INSTANCE="ha-crash")
        on_stderr: list[dict[str, Any]] = [json.loads(line) for line in stderr.splitlines()]
    assert [e["MIP_EVENT"] for e in in_journal if "MIP_EVENT" in e] == ["binding.added", "binding.removed"]
    assert any("reachable again" in e["MESSAGE"] for e in in_journal if "MIP_EVENT" not in e)
    notice, *events = on_stderr
    assert "journald is not reachable (ConnectionRefusedError" in notice["MESSAGE"]
    assert [e["MIP_EVENT"] for e in events] == ["binding.renewed"] * 3 + ["registration.accepted"] * 2
    assert all(e["MIP_INSTANCE"] == "ha-crash" and e["SYSLOG_IDENTIFIER"] == "mipd" for e in events)
