"""Activation: which hosts get the plugin, and what ``EFFDET_PLUGIN_DISABLE`` leaves behind.

``register()`` (public, idempotent) installs the Ultralytics adapter and the YOLOv5 adapter on every YOLOv5 model
module already imported. The start-up hook (``_autoload``) calls the same functions as each host module finishes
importing. With ``EFFDET_PLUGIN_DISABLE`` set, the hook registers nothing; it only makes a plugin YAML fail with a
message that names the variable.
"""

from __future__ import annotations

import sys
import warnings
from types import ModuleType

from effdet_plugin.hosts.unavailable import PluginDisabledError, disabled, disabled_error  # noqa: F401  (re-exported)

YOLOV5_MODULES = ("models.yolo", "yolov5.models.yolo")  # a clone of the repo, the pip package


def register() -> None:
    """Register the plugin with Ultralytics and with every loaded YOLOv5; safe to call any number of times.

    Raises ``UnsupportedUltralyticsError`` for an untested ultralytics version when a model with plugin rows is built.
    """
    from effdet_plugin import user_modules
    from effdet_plugin.hosts import ultralytics

    ultralytics.install()
    user_modules.load()
    for name in YOLOV5_MODULES:
        mod = sys.modules.get(name)
        if mod is not None:
            activate_yolov5(mod, auto=False)


def activate_ultralytics() -> None:
    """Start-up hook: ``ultralytics.nn.tasks`` has executed."""
    from effdet_plugin.hosts import ultralytics

    _guarded(ultralytics.install_disabled if disabled() else ultralytics.install)


def activate_ultralytics_data() -> None:
    """Start-up hook: ``ultralytics.data.dataset`` has executed."""
    if disabled():
        return
    from effdet_plugin.hosts import ultralytics

    _guarded(ultralytics.install_dataset)


def activate_ultralytics_config() -> None:
    """Start-up hook: ``ultralytics.cfg`` has executed (``yolo`` checks its k=v arguments there, before tasks)."""
    from effdet_plugin.hosts import ultralytics

    _guarded(ultralytics.install_command_errors)  # disabled too: its error names the variable in one line
    if not disabled():
        _guarded(ultralytics.install_config_keys)


def activate_yolov5(module: ModuleType, auto: bool = True) -> None:
    """Start-up hook (or ``register()``): a module named like YOLOv5's ``models/yolo.py`` has executed."""

    def install() -> None:
        from effdet_plugin.hosts import yolov5

        if not yolov5.is_yolov5(module):
            return  # a YOLOv7/YOLOv9 fork or anything else called models.yolo: not ours to touch
        yolov5.install_command_errors(module)
        (yolov5.install_disabled if auto and disabled() else yolov5.install)(module)

    _guarded(install) if auto else install()


def _guarded(install) -> None:
    try:
        install()
    except Exception as e:  # noqa: BLE001  (never break the host's import for users who do not use the plugin)
        warnings.warn(
            f"effdet-plugin: auto-activation failed ({type(e).__name__}: {e}); "
            f"call effdet_plugin.register() to see the full error",
            stacklevel=3,
        )
