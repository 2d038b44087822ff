"""The package's shape, read from every import in its source: core <- hosts <- commands, no arrow back, no host adapter
importing another, no cycle.

Every import counts: module-level and inside functions, ``import x``, ``from x import y``, relative imports,
``importlib.import_module("literal")`` / ``__import__("literal")``, and a string literal that names one of the package's
submodules exactly (the lazy tables of ``effdet_plugin/__init__.py`` and ``commands/cli.py``). The checker is tested on
synthetic sources first, so a rule that stops catching what it should fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "effdet_plugin"
HOST_LIBRARIES = {"ultralytics": "ultralytics", "yolov5": "yolov5", "models": "yolov5"}  # import root -> host
ADAPTERS = ("ultralytics", "yolov5")  # effdet_plugin/hosts/<host>*.py own that host


# ----------------------------------------------------------------------------------------------------------- checker
def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(name: str, source: str, modules: set[str], is_package: bool = False) -> set[str]:
    """Every module ``source`` (the module ``name``) imports anywhere: absolute names, relative ones resolved; a
    ``from m import x`` counts as ``m.x`` where that is one of ``modules``, else as ``m``."""
    here = name if is_package else name.rpartition(".")[0]
    root = name.split(".")[0]
    found: set[str] = set()

    def add(module: str, attrs: list[str]) -> None:
        subs = [f"{module}.{a}" for a in attrs if f"{module}.{a}" in modules]
        found.update(subs or [module])
        if len(subs) < len(attrs):  # some names are attributes of the module itself
            found.add(module)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            add(module, [a.name for a in node.names])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            fn = node.func
            called = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules - {root}:
            found.add(node.value)  # the package's own name is also its logger's
    found.discard(name)
    return found


def layer(name: str) -> str:
    """``core``, ``facade`` (the package's ``__init__``), ``hosts`` or ``commands``."""
    parts = name.split(".")
    if len(parts) == 1:
        return "facade"
    return parts[1] if parts[1] in ("hosts", "commands") else "core"


def adapter(name: str) -> str | None:
    """The host a module of ``hosts/`` adapts (``hosts/ultralytics_training.py``: ultralytics), else None."""
    parts = name.split(".")
    if layer(name) != "hosts" or len(parts) < 3:
        return None
    return next((h for h in ADAPTERS if parts[2].startswith(h)), None)


def host_of(imported: str, modules: set[str]) -> str | None:
    """The host a third-party import belongs to (ultralytics, yolov5), else None."""
    return None if imported in modules else HOST_LIBRARIES.get(imported.split(".")[0])


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that breaks the layering (see the module docstring)."""
    modules, out = set(graph), []
    for name, deps in sorted(graph.items()):
        for dep in sorted(deps):
            host, own = host_of(dep, modules), adapter(name)
            if layer(name) == "core" and host:
                out.append(f"{name} (core) imports the host {dep}")
            if dep not in modules:
                if own and host and host != own:
                    out.append(f"{name} (the {own} adapter) imports another host, {dep}")
                continue
            if layer(name) == "core" and layer(dep) in ("hosts", "commands", "facade"):
                out.append(f"{name} (core) imports {dep} ({layer(dep)})")
            if layer(name) in ("hosts", "facade") and layer(dep) == "commands":
                out.append(f"{name} ({layer(name)}) imports {dep} (commands)")
            if own and adapter(dep) and adapter(dep) != own:
                out.append(f"{name} (the {own} adapter) imports {dep} (the {adapter(dep)} adapter)")
    return out


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the package's modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if m not in graph:
                continue
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            found = visit(m) if m not in state else None
            if found:
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        found = visit(n) if n not in state else None
        if found:
            return found
    return None


def graph_of(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """``{module: (source, is_package)}`` -> ``{module: imports}``. Importing a submodule also runs its packages'
    ``__init__``; those below the facade import only modules of their own layer (test_subpackages_stay_in_their_layer),
    so only the module itself counts."""
    modules = set(sources)
    return {name: imports_of(name, src, modules, pkg) for name, (src, pkg) in sources.items()}


def package_graph() -> dict[str, set[str]]:
    return graph_of(
        {module_name(p): (p.read_text(encoding="utf-8"), p.name == "__init__.py") for p in PACKAGE.rglob("*.py")}
    )


# ---------------------------------------------------------------------------------------------- the checker, checked
SYNTHETIC = {
    "effdet_plugin": ("_EXPORTS = {'swap': 'effdet_plugin.commands.swap'}", True),
    "effdet_plugin.blocks": ("def conv():\n    from ultralytics.nn.modules import Conv\n    return Conv\n", False),
    "effdet_plugin.weights": ("import importlib\nLOG = importlib.import_module('yolov5.utils')\n", False),
    "effdet_plugin.stages": ("from .hosts import rebind\nfrom . import blocks\n", False),
    "effdet_plugin.rows": ("def f():\n    import models.yolo\n", False),
    "effdet_plugin.hosts": ("", True),
    "effdet_plugin.hosts.rebind": ("", False),
    "effdet_plugin.hosts.yolov5": ("from effdet_plugin.hosts.ultralytics_training import x\n", False),
    "effdet_plugin.hosts.ultralytics_training": ("def f():\n    from ..commands import cli\n", False),
    "effdet_plugin.hosts.ultralytics": ("def f():\n    import yolov5.models.yolo\n", False),
    "effdet_plugin.commands": ("", True),
    "effdet_plugin.commands.swap": ("", False),
    "effdet_plugin.commands.cli": (
        "from effdet_plugin.hosts import ultralytics\nfrom effdet_plugin import register\n",
        False,
    ),
}


def test_checker_catches_each_kind_of_bad_import():
    found = violations(graph_of(SYNTHETIC))
    expected = [
        "effdet_plugin (facade) imports effdet_plugin.commands.swap (commands)",
        "effdet_plugin.blocks (core) imports the host ultralytics.nn.modules",  # lazy, inside a function
        "effdet_plugin.hosts.ultralytics (the ultralytics adapter) imports another host, yolov5.models.yolo",
        "effdet_plugin.hosts.ultralytics_training (hosts) imports effdet_plugin.commands.cli (commands)",  # relative
        (
            "effdet_plugin.hosts.yolov5 (the yolov5 adapter) imports effdet_plugin.hosts.ultralytics_training "
            "(the ultralytics adapter)"
        ),
        "effdet_plugin.rows (core) imports the host models.yolo",
        "effdet_plugin.stages (core) imports effdet_plugin.hosts.rebind (hosts)",  # relative, from a package
        "effdet_plugin.weights (core) imports the host yolov5.utils",  # importlib.import_module("literal")
    ]
    assert found == expected
    assert cycle(graph_of(SYNTHETIC)) is None
    looped = {**SYNTHETIC, "effdet_plugin.blocks": ("def f():\n    from effdet_plugin import stages\n", False)}
    assert cycle(graph_of(looped)) == ["effdet_plugin.blocks", "effdet_plugin.stages", "effdet_plugin.blocks"]


@pytest.mark.parametrize(
    "name, source, imported",
    [
        ("effdet_plugin.stages", "from . import blocks", {"effdet_plugin.blocks"}),
        ("effdet_plugin.stages", "from .blocks import Stem", {"effdet_plugin.blocks"}),
        ("effdet_plugin.hosts", "from . import yolov5", {"effdet_plugin.hosts.yolov5"}),  # a package's own folder
        ("effdet_plugin.hosts.yolov5", "from .. import rows", {"effdet_plugin.rows"}),
        ("effdet_plugin.hosts.yolov5", "from ..rows import key_error, kinds", {"effdet_plugin.rows"}),
        ("effdet_plugin.hosts.yolov5", "from effdet_plugin import register", {"effdet_plugin"}),
        (
            "effdet_plugin.hosts.yolov5",
            "from effdet_plugin import rows, register",
            {"effdet_plugin", "effdet_plugin.rows"},
        ),
        ("effdet_plugin.hosts.yolov5", "import effdet_plugin.rows as r", {"effdet_plugin.rows"}),
        ("effdet_plugin.hosts.yolov5", "def f():\n    import ultralytics.utils", {"ultralytics.utils"}),
        ("effdet_plugin.hosts.yolov5", "x = __import__('ultralytics')", {"ultralytics"}),
        ("effdet_plugin.hosts.yolov5", "NAME = 'effdet_plugin.rows'", {"effdet_plugin.rows"}),
        ("effdet_plugin.hosts.yolov5", "NAME = 'effdet_plugin.rows is here'", set()),
        ("effdet_plugin.hosts.yolov5", "LOG = logging.getLogger('effdet_plugin')", set()),
    ],
)
def test_checker_resolves_imports(name, source, imported):
    modules = {
        "effdet_plugin",
        "effdet_plugin.rows",
        "effdet_plugin.blocks",
        "effdet_plugin.stages",
        "effdet_plugin.hosts",
        "effdet_plugin.hosts.yolov5",
    }
    assert imports_of(name, source, modules, is_package=name == "effdet_plugin.hosts") == imported


# ------------------------------------------------------------------------------------------------------ the package
def test_package_graph_is_layered():
    graph = package_graph()
    assert len(graph) > 20 and {"effdet_plugin.blocks", "effdet_plugin.hosts.ultralytics"} <= set(graph)
    assert violations(graph) == []


def test_no_import_cycle():
    assert cycle(package_graph()) is None


def test_subpackages_stay_in_their_layer():
    """What ``graph_of`` leaves out: importing ``commands.swap.graph`` also runs ``commands/swap/__init__.py``."""
    graph = package_graph()
    inits = [n for n in graph if n != PACKAGE.name and (PACKAGE.parent / n.replace(".", "/") / "__init__.py").is_file()]
    assert {"effdet_plugin.hosts", "effdet_plugin.commands", "effdet_plugin.commands.swap"} <= set(inits)
    for name in inits:
        assert all(layer(d) == layer(name) for d in graph[name] if d in graph), (name, graph[name])
