"""Users' own blocks in every process: entry points in the group ``effdet_plugin.modules`` and
``EFFDET_PLUGIN_MODULES``.

Each entry ``name = module:attr`` (or ``module:attr`` in the variable, comma-separated) names either an ``nn.Module``
subclass, registered under the entry point's name (the class name for the variable) with ``register_module``'s
defaults, or a function of no arguments that calls ``effdet_plugin.register_module(...)`` itself. They load once per
process, the first time a host parses a model (``yolo`` CLI, ``YOLO(...)``, DDP and dataloader workers, a process
that reloads a checkpoint), so nothing is imported at interpreter start. A broken entry gets one warning naming it and
its error; the others still register.
"""

from __future__ import annotations

import importlib
import os
import warnings

from torch import nn

from effdet_plugin.rows import register_module

GROUP = "effdet_plugin.modules"
VARIABLE = "EFFDET_PLUGIN_MODULES"
_loaded = False


def _register(name: str | None, obj, where: str) -> None:
    if isinstance(obj, type) and issubclass(obj, nn.Module):
        register_module(obj, name)
    elif callable(obj):
        obj()
    else:
        raise TypeError(f"{where} is neither an nn.Module subclass nor a function, got {type(obj).__name__}")


def _entries() -> list[tuple[str | None, str, str]]:
    """``(name, "module:attr", where)`` of every entry point and variable entry."""
    from importlib.metadata import entry_points

    out = [(ep.name, ep.value, f"entry point '{ep.name} = {ep.value}' ({GROUP})") for ep in entry_points(group=GROUP)]
    for value in filter(None, (v.strip() for v in os.environ.get(VARIABLE, "").split(","))):
        out.append((None, value, f"{VARIABLE} entry '{value}'"))
    return out


def load() -> list[str]:
    """Register every user block once per process; return one line per entry that failed (also warned)."""
    global _loaded
    if _loaded:
        return []
    _loaded = True
    failed = []
    for name, value, where in _entries():
        try:
            module, _, attr = value.partition(":")
            if not module or not attr:
                raise ValueError("expected 'module:attr'")
            obj = importlib.import_module(module.strip())
            for part in attr.strip().split("."):
                obj = getattr(obj, part)
            _register(name, obj, where)
        except Exception as e:  # noqa: BLE001  (one broken entry must not hide the others)
            line = f"effdet-plugin: {where} failed: {type(e).__name__}: {e}"
            warnings.warn(line, stacklevel=2)
            failed.append(line)
    return failed


def reset() -> None:
    """Let the next ``load()`` read the entries again (tests)."""
    global _loaded
    _loaded = False
