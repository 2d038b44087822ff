"""Auto-activation, run from ``effdet_plugin.pth`` at every interpreter start (installed as
``_effdet_plugin_autoload``).

It must cost nothing there: it imports only modules Python has already loaded (``os``, ``sys``) and puts a plain
finder on ``sys.meta_path`` that waits for a host module. When ``ultralytics.nn.tasks``, ``ultralytics.cfg``,
``ultralytics.data.dataset``, a YOLOv5 ``models.yolo`` or ``yolov5.models.yolo`` has executed,
``effdet_plugin.hosts.activate`` takes over.
``EFFDET_PLUGIN_DISABLE=1``: the plugin registers nothing (a plugin YAML then gets a message naming the variable).
"""

import sys

_HOOKS = {
    "ultralytics.nn.tasks": "activate_ultralytics",
    "ultralytics.cfg": "activate_ultralytics_config",
    "ultralytics.data.dataset": "activate_ultralytics_data",
    "models.yolo": "activate_yolov5",
    "yolov5.models.yolo": "activate_yolov5",
}


class _HostFinder:
    """A ``sys.meta_path`` finder (the protocol needs only ``find_spec``) that runs a hook after a host module."""

    def find_spec(self, fullname, path=None, target=None):
        hook = _HOOKS.get(fullname)
        if hook is None:
            return None
        from importlib.machinery import PathFinder  # only now: a host is being imported

        spec = PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_activate(module):
            exec_module(module)
            _run(hook, module)

        spec.loader.exec_module = exec_then_activate  # a loader object is made per spec: only this import changes
        return spec


def _run(hook: str, module) -> None:
    try:
        from effdet_plugin.hosts import activate
    except Exception as e:  # noqa: BLE001  (a broken install must not break the host)
        import warnings

        warnings.warn(f"effdet-plugin: auto-activation failed ({type(e).__name__}: {e})", stacklevel=2)
        return
    fn = getattr(activate, hook)
    fn(module) if hook == "activate_yolov5" else fn()


def install() -> None:
    """Put the finder on ``sys.meta_path`` once; run the hooks of host modules already imported."""
    for name, hook in _HOOKS.items():
        if name in sys.modules:
            _run(hook, sys.modules[name])
    if not any(isinstance(f, _HostFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _HostFinder())
