"""EfficientNet / EfficientNetV2 backbones and a BiFPN neck for Ultralytics YOLO.

Public names load their module on first use. The package imports ``ultralytics.nn.tasks`` first: if user code
imports a submodule (say ``effdet_plugin.blocks``) before ultralytics, the auto-activation hook would otherwise fire
in the middle of that submodule's own import and find it half-initialized.
"""

from __future__ import annotations

import importlib

import ultralytics.nn.tasks  # noqa: F401  (see the module docstring)

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
    "swap_backbone": "effdet_plugin.swap",
    "swap_checkpoint": "effdet_plugin.swap",
    "load_pretrained_backbone": "effdet_plugin.weights",
    "BiFPN": "effdet_plugin.bifpn",
    "Fusion": "effdet_plugin.bifpn",
    "bifpn_size": "effdet_plugin.bifpn",
    "fusion_weights": "effdet_plugin.bifpn",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'effdet_plugin' has no attribute {name!r}")
