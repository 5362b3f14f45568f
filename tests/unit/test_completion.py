"""completions/mipctl, run by a real bash: what it offers for the command line so far.

Each case sources the file, sets COMP_WORDS and COMP_CWORD as bash's programmable completion does, calls
the completion function and reads COMPREPLY. What it should offer comes from mipctl's own parser.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mipd.cli.mipctl import COMMANDS, RUN_DIR_VARIABLE, build_parser
from mipd.control.protocol import LOG_LEVELS
from tests.support.tools import tool

COMPLETION = Path(__file__).resolve().parents[2] / "completions" / "mipctl"
# $1 the completion file, then the words of the command line; the last one is being completed.
SCRIPT = """\
source "$1" || exit 9
shift
complete -p mipctl >/dev/null || exit 8
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
_mipctl
printf '%s\\n' "${COMPREPLY[@]}"
"""


def complete(*words: str, run_dir: Path | None = None) -> list[str]:
    env = {"PATH": "/usr/bin:/bin", **({RUN_DIR_VARIABLE: str(run_dir)} if run_dir else {})}
    result = subprocess.run([tool("bash"), "--norc", "--noprofile", "-c", SCRIPT, "bash", str(COMPLETION), *words],
                            capture_output=True, text=True, timeout=30, check=False, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return [line for line in result.stdout.splitlines() if line]


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    """A socket directory with one listening instance, ``home-agent``, and a stale file that is no socket."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "home-agent.sock"))
    (tmp_path / "stale.sock").write_text("")
    try:
        yield tmp_path
    finally:
        listener.close()


def long_options() -> set[str]:
    return {o for action in build_parser()._actions for o in action.option_strings if o.startswith("--")}


def test_the_first_word_completes_to_every_command() -> None:
    assert sorted(complete("mipctl", "")) == sorted(COMMANDS)
    assert complete("mipctl", "st") == ["status", "stats"]


def test_a_command_completes_after_options() -> None:
    assert complete("mipctl", "--json", "--instance", "x", "bi") == ["bindings"]


def test_nothing_more_after_a_command_that_takes_no_argument() -> None:
    assert complete("mipctl", "status", "") == []
    assert complete("mipctl", "flush", "") == []


def test_log_level_completes_to_the_log_levels() -> None:
    assert complete("mipctl", "log-level", "") == list(LOG_LEVELS)
    assert complete("mipctl", "--instance", "ha", "log-level", "w") == ["warning"]


def test_options_complete_to_mipctls_long_options() -> None:
    assert set(complete("mipctl", "--")) == long_options()
    assert complete("mipctl", "status", "--j") == ["--json"]


def test_instance_completes_to_the_names_of_listening_sockets(run_dir: Path) -> None:
    assert complete("mipctl", "--instance", "", run_dir=run_dir) == ["home-agent"]
    assert complete("mipctl", "--instance", "x", run_dir=run_dir) == []


def test_socket_completes_to_files(run_dir: Path) -> None:
    assert complete("mipctl", "--socket", str(run_dir / "home"), run_dir=run_dir) == [str(run_dir / "home-agent.sock")]
