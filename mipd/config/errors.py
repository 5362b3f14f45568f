"""The one exception of profile loading, and the problems it carries."""

from __future__ import annotations

from typing import NamedTuple

ROOT = "(root)"  # the YAML path of the document itself
SYNTAX = "syntax"  # the YAML path of a YAML syntax error (mipd(8), check)
PERMISSIONS = "permissions"  # the YAML path of a file mode problem, at line 0 (mipd(8), check)


class Problem(NamedTuple):
    """One thing wrong with a profile, as ``mipd check`` prints it: ``PATH:LINE: yaml.path: message``.

    ``path`` is the profile as it was named; ``line`` is 1-based (0 for a problem with the file
    itself, such as its mode); ``yaml_path`` is dotted with list indexes (``mobile_nodes.0.spi``).
    """

    path: str
    line: int
    yaml_path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.yaml_path}: {self.message}"


class ProfileError(Exception):
    """A profile that cannot be used; ``problems`` lists every problem found, in line order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__("\n".join(str(p) for p in self.problems))
