"""``load_profile``: a YAML profile file to a validated profile, or every problem with it.

The steps, each reporting problems at a file, line and YAML path (``mipd check`` in mipd(8)):
YAML syntax and duplicate keys (:mod:`mipd.config.yamltree`), the profile file's mode when it
holds a ``key`` (mip.yaml(5) PERMISSIONS), the pydantic model of its ``role``, the rules between keys
(:mod:`mipd.config.rules`), then the key files and the ``mobile_nodes_file``, whose modes are
checked too. Relative paths in a profile resolve against the profile's directory.
"""

from __future__ import annotations

import os
import stat
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from mipd.config import nodes_file, rules, yamltree
from mipd.config.errors import PERMISSIONS, Problem, ProfileError
from mipd.config.models import ROLES, HomeAgentProfile
from mipd.config.rules import AnyProfile
from mipd.config.security import KEY_BOTH, KEY_MISSING, KeySource
from mipd.config.types import parse_hex_key

SOCKET_DIRECTORY = Path("/run/mip")
MAX_SOCKET_PATH = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_MESSAGES = {"missing": "required key is missing", "extra_forbidden": "unknown key"}


def load_profile(path: str | os.PathLike[str], instance: str | None = None) -> AnyProfile:
    """Load and validate the profile at ``path`` for ``instance`` (default: the file name without ``.yaml``).

    Raises :class:`ProfileError` listing every problem found. The profile returned has its key
    files read, its ``mobile_nodes_file`` loaded, its paths absolute and ``control_socket`` set.
    """
    loading = _Loading(os.fspath(path))
    profile = loading.run()
    if loading.problems or profile is None:
        raise ProfileError(loading.problems)
    source = Path(loading.name)
    profile.set_origin(source, instance or source.name.removesuffix(".yaml"))
    if profile.control_socket is None:
        profile.control_socket = SOCKET_DIRECTORY / f"{profile.instance}.sock"
        if len(os.fsencode(profile.control_socket)) > MAX_SOCKET_PATH:
            raise ProfileError([Problem(loading.name, 0, "control_socket",
                                        f"default {profile.control_socket} is too long for a socket path")])
    return profile


def file_mode_problem(file: Path, what: str) -> str | None:
    """Why ``file`` may not hold keys (mip.yaml(5) PERMISSIONS: mode & 077 must be 0), or None."""
    mode = stat.S_IMODE(file.stat().st_mode)
    if mode & 0o077:
        return (f"{what} {file} has mode {mode:04o}; a file holding keys must not be readable or writable "
                f"by group or others (chmod 600 {file})")
    return None


class _Loading:
    """One run of the loader over one file, collecting problems."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.base = Path(name).parent.absolute()
        self.problems: list[Problem] = []
        self.doc = yamltree.Document(None)

    def problem(self, path: tuple[str | int, ...], message: str, line: int | None = None) -> None:
        where = self.doc.line_of(path) if line is None else line
        self.problems.append(Problem(self.name, where, yamltree.dotted(path), message))

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base / path

    def run(self) -> AnyProfile | None:
        try:
            text = Path(self.name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.problem((), f"cannot read the profile: {getattr(exc, 'strerror', None) or exc}", line=0)
            return None
        self.doc = yamltree.parse(text)
        self.problems += [Problem(self.name, line, where, message) for line, where, message in self.doc.problems]
        if self.doc.has_key("key"):
            self.check_mode(Path(self.name), "profile", ())
        if self.doc.problems and self.doc.data is None:
            return None
        profile = self.validate(self.doc.data)
        if profile is None:
            return None
        for where, message in rules.check(profile):
            self.problem(where, message)
        self.read_key_files(profile)
        if isinstance(profile, HomeAgentProfile) and profile.mobile_nodes_file is not None:
            self.read_nodes_file(profile, profile.mobile_nodes_file)
        profile.state_directory = self.resolve(profile.state_directory)
        if profile.control_socket is not None:
            profile.control_socket = self.resolve(profile.control_socket)
            if len(os.fsencode(profile.control_socket)) > MAX_SOCKET_PATH:
                self.problem(("control_socket",), f"longer than {MAX_SOCKET_PATH} bytes, too long for a socket path")
        return profile

    def validate(self, data: Any) -> AnyProfile | None:
        if not isinstance(data, dict):
            self.problem((), "a profile is a mapping of keys to values, starting with role:")
            return None
        role = data.get("role")
        model = ROLES.get(role) if isinstance(role, str) else None
        if model is None:
            choices = ", ".join(ROLES)
            message = f"must be one of {choices}" if "role" in data else f"required key is missing ({choices})"
            self.problem(("role",), message)
            return None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors():
                self.validation_problem(error)
            return None

    def validation_problem(self, error: ErrorDetails) -> None:
        where = tuple(error["loc"])
        if error["type"] in (KEY_BOTH, KEY_MISSING):
            where = (*where, "key")
        message = _MESSAGES.get(error["type"]) or error["msg"].removeprefix("Value error, ")
        if where[-1:] == ("key",) and error["type"] == "string_type":
            message = "must be hexadecimal digits in a string (quote a key that YAML reads as a number)"
        value = error.get("input")
        if error["type"] not in _MESSAGES and where[-1:] != ("key",) and isinstance(value, str | int | float):
            message += f" (got {value!r})"  # never for a key: keys are not printed
        self.problem(where, message)

    def check_mode(self, file: Path, what: str, where: tuple[str | int, ...]) -> bool:
        try:
            why = file_mode_problem(file, what)
        except OSError as exc:
            self.problem(where, f"cannot read {what} {file}: {exc.strerror}")
            return False
        if why is not None:
            self.problem((), why, line=0)
            self.problems[-1] = self.problems[-1]._replace(yaml_path=PERMISSIONS)
        return True

    def read_key_files(self, profile: AnyProfile) -> None:
        sources: list[tuple[tuple[str | int, ...], KeySource]] = list(rules.associations(profile))
        if isinstance(profile, KeySource):
            sources.insert(0, ((), profile))
        for where, source in sources:
            if source.key_file is None:
                continue
            source.key_file = file = self.resolve(source.key_file)
            at = (*where, "key_file")
            if not self.check_mode(file, "key file", at):
                continue
            try:
                source.set_file_secret(parse_hex_key(file.read_text(encoding="ascii").strip()))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                self.problem(at, f"{file}: {getattr(exc, 'strerror', None) or exc}")

    def read_nodes_file(self, profile: HomeAgentProfile, given: Path) -> None:
        profile.mobile_nodes_file = file = self.resolve(given)
        at: tuple[str | int, ...] = ("mobile_nodes_file",)
        if not self.check_mode(file, "mobile_nodes_file", at):
            return
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.problem(at, f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}")
            return
        nodes, found = nodes_file.parse_nodes(text, profile.home_network)
        spis: dict[int, str] = {}
        homes: dict[IPv4Address, str] = {profile.address: "address (the home agent)"}
        for where, listed in rules.associations(profile):
            spis.setdefault(listed.spi, yamltree.dotted(where))
        for index, node in enumerate(profile.mobile_nodes):
            homes.setdefault(node.home_address, f"mobile_nodes.{index}")
        for line, sa in nodes:
            if sa.spi in spis:
                found.append((line, f"SPI {sa.spi} is already used by {spis[sa.spi]}"))
            elif sa.peer in homes:
                found.append((line, f"home address {sa.peer} is already given to {homes[sa.peer]}"))
        found.sort()
        for line, message in found[:nodes_file.MAX_PROBLEMS]:
            self.problem(at, f"{file}:{line}: {message}")
        if len(found) > nodes_file.MAX_PROBLEMS:
            self.problem(at, f"{file}: {len(found) - nodes_file.MAX_PROBLEMS} more problems not shown")
        profile.set_file_nodes(nodes)
