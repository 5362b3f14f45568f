"""Every external program the tests run is registered, installed by our set-up, and started via ``tool``.

(a) Each program registered in tests/support/tools.py is owned (``dpkg -S``) by the Debian package the
    registry names, and that package is listed in debian-packages.txt.
(b) The rule, checked on every tests/**/*.py by reading its syntax tree:
    - ``subprocess.run/Popen/check_output/check_call/call`` and ``asyncio.create_subprocess_exec`` get an
      argv whose first element is a call ``tool("name")`` or ``venv_script("name")``. The argv is a list or
      tuple literal, or a plain name every assignment of which in the same file is such a literal; the
      first element may also be a plain name every assignment of which in the same file is such a call.
    - No shell: ``shell=True``, ``subprocess.getoutput/getstatusoutput``, ``asyncio.create_subprocess_shell``,
      ``os.system``, ``os.popen``, ``os.exec*`` and ``os.spawn*`` are refused outright.
"""

from __future__ import annotations

import ast
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.tools import DEBIAN_PACKAGES, ToolError, tool

REPO = Path(__file__).resolve().parents[2]

ARGV_FUNCTIONS = {
    ("subprocess", "run"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("subprocess", "check_call"),
    ("subprocess", "call"),
    ("asyncio", "create_subprocess_exec"),
}
APPROVED_CALLS = {"tool", "venv_script"}


def listed_packages() -> set[str]:
    lines = (REPO / "debian-packages.txt").read_text().splitlines()
    return {word for line in lines for word in line.split("#", 1)[0].split()}


# ---------------------------------------------------------------------------------------------------------
# (a) registered programs come from listed packages


def path_variants(path: str) -> list[str]:
    """The path as found, resolved, and with /bin <-> /usr/bin (usrmerge) swapped: dpkg knows only one."""
    variants: list[str] = []
    for candidate in (path, os.path.realpath(path)):
        variants.append(candidate)
        for merged, unmerged in (("/usr/bin/", "/bin/"), ("/usr/sbin/", "/sbin/")):
            if candidate.startswith(merged):
                variants.append(unmerged + candidate.removeprefix(merged))
            elif candidate.startswith(unmerged):
                variants.append(merged + candidate.removeprefix(unmerged))
    return list(dict.fromkeys(variants))


def owning_packages(path: str) -> set[str]:
    owners: set[str] = set()
    for candidate in path_variants(path):
        result = subprocess.run(
            [tool("dpkg"), "-S", candidate], capture_output=True, text=True, timeout=60, check=False
        )
        for line in result.stdout.splitlines():
            if line.startswith("diversion by") or ": " not in line:
                continue
            names, _, owned = line.partition(": ")
            if owned == candidate:
                owners.update(name.strip().split(":")[0] for name in names.split(","))
    return owners


@pytest.mark.parametrize("program", sorted(DEBIAN_PACKAGES))
def test_registered_program_comes_from_a_listed_package(program: str) -> None:
    path = tool(program)
    owners = owning_packages(path)
    assert owners, f"dpkg -S knows no package owning {path} (tried {path_variants(path)})"
    package = DEBIAN_PACKAGES[program]
    assert package in owners, f"{path} is owned by {owners}, not {package}"
    assert package in listed_packages(), f"add {package} to debian-packages.txt"


def test_every_listed_package_is_installed() -> None:
    for package in sorted(listed_packages()):
        result = subprocess.run(
            [tool("dpkg-query"), "-W", "-f=${db:Status-Status}", package],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.stdout == "installed", f"{package}: {result.stdout or result.stderr}"


def test_tool_refuses_an_unregistered_program() -> None:
    with pytest.raises(ToolError, match="not a registered test tool"):
        tool("sh")


# ---------------------------------------------------------------------------------------------------------
# (b) the argv rule


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


class _Scanner:
    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.module_alias: dict[str, str] = {}  # local name -> module ("sp" -> "subprocess")
        self.function_alias: dict[str, tuple[str, str]] = {}  # local name -> (module, function)
        self.assignments: dict[str, list[ast.expr]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.module_alias[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    self.function_alias[alias.asname or alias.name] = (node.module, alias.name)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    self._assigned(target, node.value)
            elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
                self._assigned(node.target, node.value)
            elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
                self._assigned(node.target, None)
            elif isinstance(node, ast.With | ast.AsyncWith):
                for item in node.items:
                    if item.optional_vars is not None:
                        self._assigned(item.optional_vars, None)

    def _assigned(self, target: ast.expr, value: ast.expr | None) -> None:
        if isinstance(target, ast.Name):
            # An unknown value (loop variable, with-target, unpacking) is recorded as a non-approved one.
            unknown = ast.Constant(None)
            self.assignments.setdefault(target.id, []).append(value if value is not None else unknown)
        elif isinstance(target, ast.Tuple | ast.List | ast.Starred):
            for element in target.elts if not isinstance(target, ast.Starred) else [target.value]:
                self._assigned(element, None)

    def _resolve(self, func: ast.expr) -> tuple[str, str] | None:
        if isinstance(func, ast.Name):
            return self.function_alias.get(func.id)
        if isinstance(func, ast.Attribute):
            base = _dotted(func.value)
            if base is not None:
                return (self.module_alias.get(base, base), func.attr)
        return None

    def _is_approved_call(self, node: ast.expr) -> bool:
        if not isinstance(node, ast.Call):
            return False
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        return name in APPROVED_CALLS

    def _every_assignment(self, name: str, check: Callable[[ast.expr], bool]) -> bool:
        values = self.assignments.get(name, [])
        return bool(values) and all(check(value) for value in values)

    def _is_approved_program(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            return self._every_assignment(node.id, self._is_approved_call)
        return self._is_approved_call(node)

    def _is_approved_argv_literal(self, node: ast.expr) -> bool:
        return (
            isinstance(node, ast.List | ast.Tuple)
            and bool(node.elts)
            and not isinstance(node.elts[0], ast.Starred)
            and self._is_approved_program(node.elts[0])
        )

    def _is_approved_argv(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            return self._every_assignment(node.id, self._is_approved_argv_literal)
        return self._is_approved_argv_literal(node)

    def violations(self) -> list[tuple[int, str]]:
        found: list[tuple[int, str]] = []
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Call):
                continue
            target = self._resolve(node.func)
            if target is None:
                continue
            module, function = target
            where = f"{module}.{function}"
            if (
                (module == "subprocess" and function in {"getoutput", "getstatusoutput"})
                or (module == "asyncio" and function == "create_subprocess_shell")
                or (module == "os" and function in {"system", "popen"})
                or (module == "os" and function.startswith(("exec", "spawn")))
            ):
                found.append((node.lineno, f"{where} is not allowed: run programs via tool(...)"))
                continue
            if target not in ARGV_FUNCTIONS:
                continue
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    found.append((node.lineno, f"{where} with shell= is not allowed"))
            if function == "create_subprocess_exec":
                program = node.args[0] if node.args and not isinstance(node.args[0], ast.Starred) else None
                if program is None or not self._is_approved_program(program):
                    found.append((node.lineno, f"{where}: the program must be tool(...) or venv_script(...)"))
                continue
            argv_keyword = next((k.value for k in node.keywords if k.arg == "args"), None)
            argv = node.args[0] if node.args else argv_keyword
            if argv is None or not self._is_approved_argv(argv):
                found.append((node.lineno, f"{where}: argv[0] must be tool(...) or venv_script(...)"))
        return sorted(found)


def argv_violations(source: str) -> list[tuple[int, str]]:
    return _Scanner(ast.parse(source)).violations()


def test_every_test_runs_external_programs_via_tool() -> None:
    problems = [
        f"{path.relative_to(REPO)}:{line}: {message}"
        for path in sorted((REPO / "tests").rglob("*.py"))
        for line, message in argv_violations(path.read_text())
    ]
    assert not problems, "\n".join(problems)


VIOLATING = {
    "bare name": 'import subprocess\nsubprocess.run(["tshark", "-v"])\n',
    "module alias": 'import subprocess as sp\nsp.Popen(["ip", "link"])\n',
    "imported function": 'from subprocess import check_output as co\nco(["ping", "-c1", "x"])\n',
    "args keyword": 'import subprocess\nsubprocess.call(args=["ls"])\n',
    "argv variable": 'import subprocess\ncmd = ["ls", "-l"]\nsubprocess.check_call(cmd)\n',
    "argv parameter": 'import subprocess\ndef f(cmd):\n    subprocess.run(cmd)\n',
    "reassigned program": (
        'import subprocess\nfrom tests.support.tools import tool\n'
        'x = tool("ip")\nx = "/bin/sh"\nsubprocess.run([x])\n'
    ),
    "starred argv": 'import subprocess\nsubprocess.run([*prefix, "x"])\n',
    "string argv": 'import subprocess\nsubprocess.run("ls -l")\n',
    "shell": (
        'import subprocess\nfrom tests.support.tools import tool\n'
        'subprocess.run([tool("ip")], shell=True)\n'
    ),
    "getoutput": 'import subprocess\nsubprocess.getoutput("ls")\n',
    "os.system": 'import os\nos.system("ls")\n',
    "os.execvp": 'import os\nos.execvp("ls", ["ls"])\n',
    "asyncio exec": 'import asyncio\nasyncio.create_subprocess_exec("ls")\n',
    "asyncio shell": 'import asyncio\nasyncio.create_subprocess_shell("ls")\n',
}

COMPLIANT = {
    "inline tool": (
        'import subprocess\nfrom tests.support.tools import tool\n'
        'subprocess.run([tool("ip"), "link"])\n'
    ),
    "venv script": (
        'import subprocess\nfrom tests.support.tools import venv_script\n'
        'subprocess.run((venv_script("mipd"), "--help"))\n'
    ),
    "name from tool": (
        'import subprocess\nfrom tests.support import tools\n'
        'TSHARK = tools.tool("tshark")\nsubprocess.Popen([TSHARK, "-v"])\n'
    ),
    "argv variable": (
        'import subprocess\nfrom tests.support.tools import tool\n'
        'cmd = [tool("ping"), "-c1", "x"]\nsubprocess.run(cmd, check=True)\n'
    ),
    "asyncio exec": (
        'import asyncio\nfrom tests.support.tools import tool\n'
        'asyncio.create_subprocess_exec(tool("ip"), "link")\n'
    ),
    "shell false": (
        'import subprocess\nfrom tests.support.tools import tool\n'
        'subprocess.run([tool("ip")], shell=False)\n'
    ),
}


@pytest.mark.parametrize("snippet", sorted(VIOLATING))
def test_the_scanner_catches_a_violation(snippet: str) -> None:
    assert argv_violations(VIOLATING[snippet]), snippet


@pytest.mark.parametrize("snippet", sorted(COMPLIANT))
def test_the_scanner_accepts_compliant_code(snippet: str) -> None:
    assert argv_violations(COMPLIANT[snippet]) == []
