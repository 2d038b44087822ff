"""The package's shape: no import cycle among its modules (function-level imports included), and the core never
imports a host at module level."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "effdet_plugin"
CORE = ("blocks", "bifpn", "stages", "heads", "yaml_headers", "rows", "assemble", "routing", "paths", "atomic",
        "weights", "progressive", "user_modules", "classic", "scale_rows", "same_padding", "lite_weights")


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> tuple[set[str], set[str]]:
    """(every effdet_plugin module imported anywhere in the file, the third-party roots imported at module level)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found, top = set(), set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            if n in modules:
                found.add(n)
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top.add(node.module.split(".")[0])
    return found, top


def _graph() -> dict[str, set[str]]:
    files = {_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph = {}
    for name, path in files.items():
        deps, _ = _imports(path, modules)
        # importing a submodule runs its packages' __init__ too, but ours import nothing: only the module counts
        graph[name] = {d for d in deps if d != name and not (files[d].name == "__init__.py" and d != "effdet_plugin")}
    return graph


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                cycle = stack[stack.index(m):] + [m]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert len(graph) > 20


def test_core_imports_no_host_at_module_level():
    for name in CORE:
        path = PACKAGE / f"{name}.py"
        if path.is_file():
            _, top = _imports(path, set())
            assert not top & {"ultralytics", "yolov5", "models"}, (name, top)
            deps, _ = _imports(path, set(_graph()))
            assert not any(d.startswith("effdet_plugin.hosts") or d.startswith("effdet_plugin.commands")
                           for d in deps), (name, deps)
