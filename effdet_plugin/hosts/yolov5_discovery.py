"""Finding classic YOLOv5 as the user has it: the ``yolov5`` pip package, or a clone of ultralytics/yolov5 in the
working directory, and the model module a checkpoint was pickled from. The one place that imports a YOLOv5 model module
by name (and puts a clone's folder on ``sys.path``, as ``python train.py`` in the clone has it).
"""

from __future__ import annotations

import importlib
import importlib.util
import pickletools
import sys
import zipfile
from pathlib import Path
from types import ModuleType

from effdet_plugin.errors import first_line
from effdet_plugin.hosts.activate import YOLOV5_MODULES
from effdet_plugin.hosts.yolov5 import install, is_yolov5, model_class

CLONE, PACKAGE = YOLOV5_MODULES  # models.yolo (a clone's folder), yolov5.models.yolo (the pip package)
TASK_MODELS = {"detect": None, "segment": "SegmentationModel"}  # task -> model class (None: model_class's)


class YOLOv5SourceError(ValueError):
    """A classic YOLOv5 source cannot be read here: no YOLOv5 that reads it is importable, or the file holds no YOLOv5
    model built from a YAML (one line naming the file)."""


def pickled_module(path: Path) -> str | None:
    """The YOLOv5 model module whose classes a torch checkpoint pickles, read without unpickling it
    (``yolov5.models.yolo`` if both); None for any other file (an Ultralytics checkpoint, or not a torch zip file)."""
    try:
        with zipfile.ZipFile(path) as z:
            pkl = next((n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl")), None)
            ops = list(pickletools.genops(z.read(pkl))) if pkl else []
    except Exception:  # noqa: BLE001  not a torch zip file: not a YOLOv5 checkpoint
        return None
    # protocol 2 (torch.save's) names classes with GLOBAL "module name"; protocol 4 pushes the module as a string
    names = {arg.split(" ")[0] if op.name in ("GLOBAL", "INST") else arg for op, arg, _ in ops if isinstance(arg, str)}
    return next((m for m in (PACKAGE, CLONE) if m in names), None)


def find_module(source, pickled: str | None = None) -> ModuleType:
    """YOLOv5's model module for ``source``, with the plugin installed on it.

    A YAML is read by the yolov5 package, else by a clone in the working directory (``models/yolo.py``). A checkpoint
    needs the module it was pickled from (``pickled``, see ``pickled_module``): a clone's, for which the package can
    stand in (it puts its own ``models`` on ``sys.path``), or the package's. Raises ``YOLOv5SourceError`` when
    none is importable.
    """
    names = {None: (PACKAGE, CLONE), CLONE: (CLONE, PACKAGE), PACKAGE: (PACKAGE,)}[pickled]
    cwd = Path.cwd()
    for name in names:
        if name == CLONE:
            if name not in sys.modules and not (cwd / "models" / "yolo.py").is_file():
                continue
            if str(cwd) not in sys.path:
                sys.path.insert(0, str(cwd))
        elif importlib.util.find_spec("yolov5") is None:
            continue
        try:
            module = importlib.import_module(name)
        except Exception as e:  # noqa: BLE001  a broken clone or package: one line naming it
            raise YOLOv5SourceError(f"{source}: YOLOv5's {name} does not import: {first_line(e)}") from None
        if is_yolov5(module):
            install(module)  # also where the start-up hook is off or found a second copy
            return module
    if pickled == PACKAGE:
        raise YOLOv5SourceError(
            f"{source}: a checkpoint of the yolov5 package (its model is pickled from {PACKAGE}), which is not "
            f"installed here; install it (pip install yolov5) to read this checkpoint"
        )
    kind = "checkpoint" if pickled else "YAML"
    raise YOLOv5SourceError(
        f"{source}: a classic YOLOv5 {kind} is built with YOLOv5 itself, and none is importable here; run in the "
        f"folder of a clone of ultralytics/yolov5, or install the yolov5 package"
    )


def task_model_class(module: ModuleType, task: str) -> type | None:
    """The model class ``module`` builds ``task`` models with (``DetectionModel``, ``SegmentationModel``), if any."""
    if task not in TASK_MODELS:
        return None
    name = TASK_MODELS[task]
    return model_class(module) if name is None else getattr(module, name, None)


def module_of(model: object) -> ModuleType | None:
    """The YOLOv5 model module ``model``'s class comes from (unpickling may have imported a second copy, a clone's
    beside the package's), with the plugin installed on it; None if that is not YOLOv5's."""
    module = sys.modules.get(type(model).__module__)
    if module is None or not is_yolov5(module):
        return None
    install(module)
    return module
