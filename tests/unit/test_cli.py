"""The installed ``mipd`` and ``mipctl`` console scripts, run as real processes."""

from __future__ import annotations

import subprocess
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

import mipd
from tests.support.tools import venv_script

PROGRAMS = ["mipd", "mipctl"]
REPO = Path(__file__).resolve().parents[2]


def run(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [venv_script(program), *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("program", PROGRAMS)
def test_help_exits_0_and_says_what_the_program_is(program: str) -> None:
    result = run(program, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {program} ")
    assert "Mobile IPv4" in result.stdout
    assert "--version" in result.stdout


@pytest.mark.parametrize("program", PROGRAMS)
def test_version_prints_the_package_version(program: str) -> None:
    result = run(program, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{program} {mipd.__version__}\n"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert mipd.__version__ == version("mipd") == project["version"]


@pytest.mark.parametrize("program", PROGRAMS)
def test_no_command_is_a_usage_error(program: str) -> None:
    result = run(program)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"usage: {program} ")


@pytest.mark.parametrize("program", PROGRAMS)
def test_unknown_argument_is_a_usage_error(program: str) -> None:
    result = run(program, "--no-such-option")
    assert result.returncode == 2
    assert "unrecognized arguments: --no-such-option" in result.stderr
