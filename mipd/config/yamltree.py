"""YAML to plain data, keeping the line of every YAML path and refusing duplicate keys.

PyYAML's loader forgets where values came from and silently keeps the last of two equal keys.
Here the document is composed into its node tree first (every node keeps ``start_mark``), the
tree is walked once for lines and duplicates, and then constructed into Python values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from mipd.config.errors import ROOT, SYNTAX


def dotted(path: tuple[str | int, ...]) -> str:
    """``("mobile_nodes", 0, "spi")`` -> ``"mobile_nodes.0.spi"``; the empty path is ``(root)``."""
    return ".".join(str(part) for part in path) if path else ROOT


@dataclass
class Document:
    """A parsed profile: its data, the line of each path, and structural problems found."""

    data: Any
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)
    # (line, yaml path, message) of duplicate keys or a syntax error
    problems: list[tuple[int, str, str]] = field(default_factory=list)

    def line_of(self, path: tuple[str | int, ...]) -> int:
        """The line of ``path``, or of its nearest ancestor that is written (a missing key's parent)."""
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)

    def has_key(self, name: str) -> bool:
        """Whether any mapping in the document has the key ``name``."""
        return any(path and path[-1] == name for path in self.lines)


def parse(text: str) -> Document:
    """Parse one YAML document; a syntax error is reported, not raised."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        doc = Document(None)
        if node is not None:
            _walk(node, (), doc)
            doc.lines[()] = node.start_mark.line + 1
            doc.data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        return Document(None, problems=[(line, SYNTAX, str(exc.problem or exc.context))])
    except yaml.YAMLError as exc:
        return Document(None, problems=[(0, SYNTAX, str(exc))])
    finally:
        loader.dispose()
    return doc


def _walk(node: yaml.Node, path: tuple[str | int, ...], doc: Document) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                doc.problems.append((line, dotted((*path, key)), f"duplicate key (first given on line {seen[key]})"))
                continue
            seen[key] = line
            doc.lines[(*path, key)] = line
            _walk(value_node, (*path, key), doc)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            doc.lines[(*path, index)] = item.start_mark.line + 1
            _walk(item, (*path, index), doc)
