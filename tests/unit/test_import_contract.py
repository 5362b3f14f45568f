"""The import-linter contracts in pyproject.toml hold on the real tree and catch every forbidden import.

Finding (import-linter 2.17 / grimp 3.20, include_external_packages = true): the import graph contains
standard-library modules as external packages, so ``import socket``, ``from time import monotonic`` or
``import os.path`` in mipd/core break the contract just like ``import pydantic`` does; the tests below
check that for each forbidden module. Dynamic imports (``importlib.import_module("socket")``,
``__import__``) are invisible to it, as to any static check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.tools import venv_script

REPO = Path(__file__).resolve().parents[2]

# Both contracts in pyproject.toml, by what they forbid mipd.core to import.
FORBIDDEN_LIBRARIES = [
    "asyncio", "socket", "time", "logging", "os", "pydantic", "structlog", "pyroute2", "systemd",
]
FORBIDDEN_OURS = ["mipd.config", "mipd.adapters", "mipd.obs", "mipd.control", "mipd.runtime", "mipd.cli"]

INJECTED = "_injected_violation"  # a throwaway module created in a copy of mipd/core


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH makes the tree in cwd shadow the editable install of the real one.
    return subprocess.run(
        [venv_script("lint-imports"), "--no-cache", "--no-logo"],
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(cwd)},
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "mipd", tmp_path / "mipd", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_real_tree_keeps_the_contracts() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_untouched_copy_keeps_the_contracts(tree_copy: Path) -> None:
    (tree_copy / "mipd" / "core" / f"{INJECTED}.py").write_text('"""Imports nothing."""\n')
    result = lint_imports(tree_copy)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [(f"import {name}", name) for name in FORBIDDEN_LIBRARIES + FORBIDDEN_OURS]
    + [
        ("from time import monotonic", "time"),
        ("import os.path", "os"),
        ("import systemd.journal", "systemd"),
        ("from mipd import adapters", "mipd.adapters"),
        ("from .. import adapters", "mipd.adapters"),
        ("from ..config import something", "mipd.config"),
        ("def later() -> None:\n    import socket", "socket"),
    ],
)
def test_a_forbidden_import_in_the_core_breaks_the_contract(
    tree_copy: Path, statement: str, forbidden: str
) -> None:
    (tree_copy / "mipd" / "core" / f"{INJECTED}.py").write_text(f"{statement}\n")
    result = lint_imports(tree_copy)
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"mipd.core is not allowed to import {forbidden}:" in result.stdout, result.stdout
    assert f"mipd.core.{INJECTED} -> {forbidden}" in result.stdout, result.stdout
