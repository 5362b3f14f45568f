"""The locks agree with pyproject.toml, offline (README.md, Development; ``make lock`` writes them).

- requirements.txt (the packages' lock) pins every runtime dependency, requirements-dev.txt (.venv's) every
  runtime, test and plot one, each ``name==version`` satisfying pyproject's specifier and with hashes;
- neither pins anything pyproject.toml does not pull in: each lock is exactly the dependency closure of its
  pyproject requirements, walked through the installed distributions' metadata (markers and extras
  evaluated for this machine), and .venv holds exactly the pinned versions (``make bootstrap``).
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
LOCKS = {"requirements.txt": ("dependencies",), "requirements-dev.txt": ("dependencies", "test", "plot")}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def pyproject_requirements(parts: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    found = [Requirement(text) for text in project["dependencies"]] if "dependencies" in parts else []
    for extra in parts:
        if extra != "dependencies":
            found += [Requirement(text) for text in project["optional-dependencies"][extra]]
    return found


def read_lock(text: str) -> dict[str, tuple[Version, int]]:
    """``name -> (version, number of hashes)`` of a pip-compile --generate-hashes file."""
    pins: dict[str, tuple[Version, int]] = {}
    current: str | None = None
    for line in text.splitlines():
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            assert current not in pins, f"{current} is pinned twice"
            pins[current] = (Version(match.group(2)), len(_HASH.findall(line)))
        elif current is not None and line.startswith("    --hash="):
            version, hashes = pins[current]
            pins[current] = (version, hashes + len(_HASH.findall(line)))
        elif line.strip() and not line.lstrip().startswith("#") and not line.startswith("    "):
            raise AssertionError(f"not a pin of pip-compile --generate-hashes: {line!r}")
    return pins


def applies(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**default_environment(), "extra": extra}) for extra in extras or {""})


def closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution ``requirements`` pull in on this machine, by the installed metadata."""
    seen: set[str] = set()
    wanted = [(r, set(r.extras)) for r in requirements if applies(r, set())]
    while wanted:
        requirement, extras = wanted.pop()
        name = canonicalize_name(requirement.name)
        if name in seen and not extras:
            continue
        seen.add(name)
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise AssertionError(f"{name} is not installed: run make bootstrap") from None
        for text in distribution.requires or []:
            child = Requirement(text)
            if applies(child, extras):
                wanted.append((child, set(child.extras)))
    return seen


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_pins_every_pyproject_dependency_within_its_specifier(lock: str) -> None:
    pins = read_lock((REPO / lock).read_text())
    for requirement in pyproject_requirements(LOCKS[lock]):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} does not pin {name} (pyproject.toml); run make lock"
        version, _ = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), \
            f"{lock} pins {name}=={version}, pyproject.toml asks for {requirement.specifier}; run make lock"
    assert all(hashes for _, hashes in pins.values()), f"{lock}: a pin without --hash"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_pins_nothing_pyproject_does_not_pull_in(lock: str) -> None:
    pins = read_lock((REPO / lock).read_text())
    needed = closure(pyproject_requirements(LOCKS[lock])) - {"mipd"}
    assert sorted(set(pins) - needed) == [], f"{lock} pins what pyproject.toml does not need; run make lock"
    assert sorted(needed - set(pins)) == [], f"{lock} lacks what pyproject.toml pulls in; run make lock"


def test_the_venv_holds_the_locked_versions() -> None:
    for name, (version, _) in read_lock((REPO / "requirements-dev.txt").read_text()).items():
        installed = Version(metadata.version(name))
        assert installed == version, f".venv has {name} {installed}, the lock {version}: run make bootstrap"


def test_the_runtime_lock_agrees_with_the_development_lock() -> None:
    runtime = read_lock((REPO / "requirements.txt").read_text())
    development = read_lock((REPO / "requirements-dev.txt").read_text())
    assert {n: v for n, (v, _) in runtime.items()} == {n: development[n][0] for n in runtime}


def test_the_reader_sees_pins_and_hashes() -> None:
    text = ("# header\nfoo-bar==1.2 \\\n    --hash=sha256:" + "a" * 64 + " \\\n    --hash=sha256:" + "b" * 64
            + "\n    # via x\nbaz==3\n")
    assert read_lock(text) == {"foo-bar": (Version("1.2"), 2), "baz": (Version("3"), 0)}
    with pytest.raises(AssertionError, match="not a pin"):
        read_lock("-e .\n")
