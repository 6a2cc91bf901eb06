"""No import cycle in probe/: data flows one way (README, Architecture).

The import graph is read from the source (``ast``, so imports under
``TYPE_CHECKING`` and inside functions count too: a cycle hidden there is
still a cycle of ideas), with ``from pkg import mod`` an edge to ``pkg`` and
to ``pkg.mod``; its strongly connected components of more than one module
are the cycles.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PROBE = Path(__file__).resolve().parent.parent / "probe"


def _graph() -> dict[str, set[str]]:
    modules: dict[str, Path] = {}
    for path in PROBE.rglob("*.py"):
        name = ".".join(path.relative_to(PROBE.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:  # relative: from the package, up level - 1 packages
                    parts = package.split(".")
                    base = parts[: len(parts) - (node.level - 1)]
                    module = ".".join([*base, module] if module else base)
                deps |= {module} & modules.keys()
                deps |= {f"{module}.{a.name}" for a in node.names} & modules.keys()
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names} & modules.keys()
        graph[name] = deps - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph)))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def test_no_import_cycle_in_probe() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_verdict_package_is_acyclic() -> None:
    graph = _graph()
    assert "probe.verdict.rules" in graph
    assert not [c for c in _cycles(graph) if any(m.startswith("probe.verdict") for m in c)]
