"""EfficientNet / EfficientNetV2 backbones and a BiFPN neck for YOLO detectors (Ultralytics 8.x and classic YOLOv5).

Public names load their module on first use, so ``import effdet_plugin`` imports neither torch nor a host.
"""

from __future__ import annotations

import importlib

__version__ = "0.3.0"

# public name -> module that defines it
_EXPORTS = {
    "register": "effdet_plugin.hosts.activate",
    "register_module": "effdet_plugin.rows",
    "unregister_module": "effdet_plugin.rows",
    "registered_modules": "effdet_plugin.rows",
    "ModelRowError": "effdet_plugin.rows",
    "model_yaml_dir": "effdet_plugin.paths",
    "UnsupportedUltralyticsError": "effdet_plugin.hosts.unavailable",
    "PluginDisabledError": "effdet_plugin.hosts.unavailable",
    "Stem": "effdet_plugin.blocks",
    "FusedMBConv": "effdet_plugin.blocks",
    "MBConv": "effdet_plugin.blocks",
    "SqueezeExcite": "effdet_plugin.blocks",
    "DropPath": "effdet_plugin.blocks",
    "set_drop_path": "effdet_plugin.blocks",
    "load_pretrained_backbone": "effdet_plugin.weights",
    "BiFPN": "effdet_plugin.bifpn",
    "Fusion": "effdet_plugin.bifpn",
    "Level": "effdet_plugin.bifpn",
    "bifpn_size": "effdet_plugin.bifpn",
    "fusion_weights": "effdet_plugin.bifpn",
}

__all__ = tuple(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'effdet_plugin' has no attribute {name!r}")
