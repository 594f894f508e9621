"""The package's layers point one way, and no module imports itself back through another.

Every `polyfuse` import in `src/` is read from the syntax tree, including the imports inside
functions that a cycle would hide behind: a lazy import still points from one layer to
another. The root package (`polyfuse/__init__.py`) is the public facade above every layer and
is not a node of the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"

# Lowest first. A module may import its own layer (without a cycle) or any layer below it.
LAYERS: list[set[str]] = [
    {"polyfuse.errors"},
    {"polyfuse.io", "polyfuse.progress", "polyfuse.interrupt", "polyfuse.search_space"},
    {"polyfuse.figures", "polyfuse.config"},
    {"polyfuse.embed"},
    {"polyfuse.data"},
    {"polyfuse.tasks"},
    {"polyfuse.datasets", "polyfuse.models"},
    {"polyfuse.training"},
    {"polyfuse.inference", "polyfuse.explain"},
    {"polyfuse.tuning"},
    {"polyfuse.evaluation"},
    {"polyfuse.cli", "polyfuse.__main__"},
]


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, src: Path) -> set[str]:
    """The polyfuse modules `path` imports, at the top or inside a function."""
    name = _module_name(path, src)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            out.add(target)
            # `from polyfuse.x import y` may import the submodule polyfuse.x.y
            out.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in out if m.startswith("polyfuse.")}


def _graph(src: Path = SRC) -> dict[str, set[str]]:
    files = {_module_name(p, src): p for p in (src / "polyfuse").rglob("*.py")}
    files.pop("polyfuse", None)
    return {
        name: {m for m in _imports(path, src) if m in files} - {name}
        for name, path in files.items()
    }


def layer(module: str) -> int:
    for i, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return i
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
        for a, targets in graph.items()
        for b in targets
        if layer(b) > layer(a)
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_import_points_down_a_layer():
    assert upward_imports(_graph()) == []


def test_no_import_cycles():
    assert cycles(_graph()) == []


def test_the_check_catches_an_upward_import_and_a_cycle(tmp_path):
    """The two checks can fail: a model importing the tuner, and a pair importing each other."""
    pkg = tmp_path / "polyfuse"
    for rel, text in {
        "models/__init__.py": "",
        "models/m.py": "def f():\n    from polyfuse.tuning.space import model_space\n",
        "tuning/__init__.py": "",
        "tuning/space.py": "from polyfuse.models import m\n",
        "data/__init__.py": "",
        "data/a.py": "from polyfuse.data import b\n",
        "data/b.py": "def g():\n    from .a import x\n",
    }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    graph = _graph(tmp_path)
    assert upward_imports(graph) == [
        "polyfuse.models.m (layer 6) imports polyfuse.tuning.space (layer 9)"
    ]
    assert sorted(cycles(graph)) == [
        ["polyfuse.data.a", "polyfuse.data.b"],
        ["polyfuse.models.m", "polyfuse.tuning.space"],
    ]


@pytest.mark.parametrize("module", ["polyfuse.cli", "polyfuse.models.registry"])
def test_every_module_has_a_layer(module):
    assert layer(module) >= 0
