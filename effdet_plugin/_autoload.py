"""Auto-activation: run from ``effdet_plugin.pth`` at interpreter start (installed as ``_effdet_plugin_autoload``).

It only puts a finder on ``sys.meta_path`` that waits for ``ultralytics.nn.tasks``; when that module has executed,
the plugin registers itself. Processes that never import ultralytics import nothing else. Set
``EFFDET_PLUGIN_DISABLE=1`` to turn it off.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import warnings

TARGET = "ultralytics.nn.tasks"
CONFIG = "ultralytics.cfg"  # `yolo` checks its k=v arguments here, before it imports ultralytics.nn.tasks


class _TasksFinder(importlib.abc.MetaPathFinder):
    """Find ``ultralytics.nn.tasks`` / ``ultralytics.cfg`` normally and act on them once they have executed."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in (TARGET, CONFIG):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _register() if fullname == TARGET else _add_config_keys()

        spec.loader.exec_module = exec_then_register  # a loader object is made per spec, so this touches only this import
        return spec


def _register() -> None:
    try:
        from effdet_plugin.registry import register

        register(auto=True)
    except Exception as e:  # never break `import ultralytics` for users who do not use the plugin
        warnings.warn(f"effdet-plugin: auto-activation failed ({type(e).__name__}: {e}); "
                      f"call effdet_plugin.register() to see the full error", stacklevel=2)


def _add_config_keys() -> None:
    try:  # cheap: the progressive-learning keys and callbacks touch only ultralytics.utils
        from effdet_plugin.progressive import install as install_progressive

        install_progressive()
    except Exception as e:
        warnings.warn(f"effdet-plugin: adding config keys failed ({type(e).__name__}: {e})", stacklevel=2)


def install() -> None:
    """Install the finder once, unless disabled; register at once if ultralytics is already imported."""
    if os.environ.get("EFFDET_PLUGIN_DISABLE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return
    if CONFIG in sys.modules:
        _add_config_keys()
    if TARGET in sys.modules:
        _register()
    elif not any(isinstance(f, _TasksFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TasksFinder())
