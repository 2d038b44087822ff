"""EfficientNet / EfficientNetV2 backbones and a BiFPN neck for Ultralytics YOLO.

Importing the package is cheap: heavy modules (torch, ultralytics) load on first use of a public name, so the
auto-activation hook that every Python process runs at start-up costs nothing until ultralytics is imported.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "register": "effdet_plugin.registry",
    "register_module": "effdet_plugin.registry",
    "registered_modules": "effdet_plugin.registry",
    "model_yaml_dir": "effdet_plugin.registry",
    "ModelRowError": "effdet_plugin.registry",
    "UnsupportedUltralyticsError": "effdet_plugin.registry",
    "Stem": "effdet_plugin.blocks",
    "FusedMBConv": "effdet_plugin.blocks",
    "MBConv": "effdet_plugin.blocks",
    "SqueezeExcite": "effdet_plugin.blocks",
    "DropPath": "effdet_plugin.blocks",
    "set_drop_path": "effdet_plugin.blocks",
    "make_demo_dataset": "effdet_plugin.demo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'effdet_plugin' has no attribute {name!r}")
