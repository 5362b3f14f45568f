"""mipd's import graph (grimp, as lint-imports builds it): no cycles, and the layers of the tree.

Every import counts as an edge: module level, inside a function (deferred), and under
``if TYPE_CHECKING``. The layers themselves are import-linter contracts in pyproject.toml
(test_import_contract.py runs them); this file checks what a contract cannot say: that no
module of mipd can reach itself again, and that the daemon is known only to its registry.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("mipd", cache_dir=None)


def ours(module: str) -> bool:
    return module == "mipd" or module.startswith("mipd.")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself
    (Tarjan's algorithm, iterative so that a deep graph cannot overflow the stack)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges.get(node, ()):
                    found.append(sorted(component))
    return found


def mipd_edges() -> dict[str, set[str]]:
    g = graph()
    return {m: {t for t in g.find_modules_directly_imported_by(m) if ours(t)} for m in g.modules if ours(m)}


def test_the_import_graph_of_mipd_has_no_cycles() -> None:
    found = cycles(mipd_edges())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"a"}}, [["a"]]),
    ],
)
def test_the_cycle_finder_finds_cycles(edges: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(edges) == expected


def test_a_deferred_import_is_an_edge_of_the_graph() -> None:
    """mipd.cli.cleanup imports its adapters inside functions (to keep ``mipd --help`` light)."""
    assert "mipd.adapters.netlink.calls" in graph().find_modules_directly_imported_by("mipd.cli.cleanup")


def test_the_wire_codec_imports_nothing_of_mipd_outside_it() -> None:
    edges = mipd_edges()
    outside = sorted(f"{m} -> {t}" for m in edges if m.startswith("mipd.core.wire")
                     for t in edges[m] if not t.startswith("mipd.core.wire"))
    assert outside == []


def _imports_daemon(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "mipd.runtime.daemon":
            return True
        if isinstance(node, ast.Import) and any(a.name == "mipd.runtime.daemon" for a in node.names):
            return True
    return False


def test_only_the_entry_points_import_the_daemon() -> None:
    """The roles see a Host (mipd.runtime.host); the daemon is started by the CLI, and knows its
    registry, which knows no daemon."""
    importers = sorted(str(p.relative_to(REPO)) for p in (REPO / "mipd").rglob("*.py") if _imports_daemon(p))
    assert importers == ["mipd/cli/run.py"]
    assert "mipd.runtime.daemon" not in graph().find_modules_directly_imported_by("mipd.runtime.registry")
