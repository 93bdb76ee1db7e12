"""The package's layout holds: no import cycles between modules, no engine branches outside
warehouses/, and the core imports nothing heavy (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.project import REPO

PACKAGE = REPO / "plugins" / "pubdata"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def module_level_imports(path: Path) -> set[str]:
    """pubdata modules imported when this module is imported (not inside functions or TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and not _type_checking(node):
            pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pubdata")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pubdata"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {t for t in module_level_imports(path) if t in modules}
        # Importing a.b.c runs a/__init__ and a/b/__init__ first; a module's own packages are
        # already being imported when it runs, so only other packages' __init__ count.
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for target in list(targets):
            parts = target.split(".")
            targets |= {".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in modules}
        graph[name] = targets - {name} - own
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 40
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_a_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if "warehouses" not in p.parts),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_engine_branches_outside_warehouses(path):
    """Engine knowledge is an attribute of the warehouse class, never an `engine ==` test elsewhere."""
    text = path.read_text(encoding="utf-8")
    for spelling in ('engine == "', "engine == '", '.engine in (', 'engine != "'):
        assert spelling not in text, f"{path.relative_to(PACKAGE)} branches on the warehouse engine"
