"""Classic YOLOv5 as a swap format: a YOLOv5 YAML (top-level ``anchors``, ``Detect [nc, anchors]`` or ``Segment [nc,
anchors, ...]``) or a checkpoint of YOLOv5's train.py / segment/train.py. One YOLOv5 model module (the yolov5 package
or a clone's, found by ``hosts.yolov5_discovery``) parses, builds and saves; the result is classic too (the source's
``anchors``, ``depth_multiple``, ``width_multiple``, ``nc`` and head row, and for a checkpoint a YOLOv5 checkpoint that
``attempt_load`` reads).

YOLOv5 builds no classifier from a YAML (``ClassificationModel`` cuts one from a detection model), so a classic
``Classify`` source is refused with what to do instead.
"""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from types import ModuleType

import yaml
from torch import nn

from effdet_plugin.classic import TRAIN
from effdet_plugin.commands.swap.formats import Trained
from effdet_plugin.commands.swap.graph import SwapError
from effdet_plugin.hosts.yolov5_checkpoint import load_checkpoint, save_checkpoint
from effdet_plugin.hosts.yolov5_discovery import YOLOv5SourceError, find_module, module_of, task_model_class
from effdet_plugin.quiet import quieted

HEADS = {"Detect": "detect", "Segment": "segment"}
SUPPORTED = (
    "supported in classic YOLOv5: models whose head ends in Detect [nc, anchors] or Segment [nc, anchors, ...] on "
    "P3/P4/P5 (stride 8/16/32) backbone outputs, such as yolov5s.yaml and yolov5s-seg.yaml; YOLOv5 builds "
    "classifiers from a detection checkpoint (classify/train.py --model DETECTION.pt --cutoff N, N the number of "
    "its backbone rows), not from a YAML"
)
# the yolov5 package's command per task (a clone's script is classic.TRAIN's): 7.0.14's `yolov5 segment train` returns
# without training
_PACKAGE_TRAIN = {"detect": "yolov5 train", "segment": "python -m yolov5.segment.train"}


def read_classic(source) -> dict | None:
    """The model dict of ``source`` if it is a classic YOLOv5 YAML (a dict, or a file with top-level ``anchors``)."""
    if isinstance(source, dict):
        return deepcopy(source) if "anchors" in source else None
    path = Path(str(source))
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return None
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8", errors="ignore"))
    except Exception:  # noqa: BLE001  not a classic YAML; Ultralytics' loader reports it
        return None
    return {**d, "yaml_file": str(source)} if isinstance(d, dict) and "anchors" in d else None


class YOLOv5Format:
    """Sources classic YOLOv5 builds; ``pickled``: the module a checkpoint source was pickled from. The module is looked
    up on first use, so an output that exists is refused before a missing YOLOv5 is."""

    heads = HEADS
    supported = SUPPORTED
    scale_tables = False  # YOLOv5's parser evaluates each argument alone

    def __init__(self, source, pickled: str | None = None):
        self.source, self.pickled = source, pickled
        self._module: ModuleType | None = None

    def host(self) -> ModuleType:
        """The YOLOv5 model module (one line naming the source if none is importable)."""
        if self._module is None:
            try:
                self._module = find_module(self.source, self.pickled)
            except YOLOv5SourceError as e:
                raise SwapError(str(e)) from None
        return self._module

    def _quiet(self):
        """YOLOv5 prints every model table."""
        return quieted(getattr(self.host(), "LOGGER", "yolov5"))

    def read_yaml(self, source) -> dict:
        d = read_classic(source)
        if d is None:
            raise SwapError(f"{source}: not a classic YOLOv5 model YAML (no top-level 'anchors')")
        return d

    def read_checkpoint(self, path: Path) -> Trained:
        """The model is then built by the module the source was pickled from, so the output loads where it does."""
        self.host()  # unpickling needs it importable (a clone's folder on sys.path)
        try:
            model, ckpt = load_checkpoint(path)
        except YOLOv5SourceError as e:
            raise SwapError(str(e)) from None
        self._module = module_of(model) or self._module
        return Trained(path, model, {**deepcopy(model.yaml), "yaml_file": str(path)}, ckpt)

    def parse(self, d: dict) -> nn.Sequential:
        with self._quiet():
            return self.host().parse_model(deepcopy(d), ch=[3])[0]

    def build(self, d: dict, trained: Trained | None = None) -> nn.Module:
        task = HEADS[d["head"][-1][2]]
        cls = task_model_class(self.host(), task)
        if cls is None:
            raise SwapError(f"{d.get('yaml_file')}: this YOLOv5 ({self.host().__name__}) has no {task} model class")
        with self._quiet():
            model = cls(deepcopy(d), ch=3, nc=d.get("nc") if trained else None)
        if trained is not None:
            for k in ("names", "nc", "hyp", "class_weights"):  # what YOLOv5's train.py sets on the model
                if hasattr(trained.model, k):
                    setattr(model, k, deepcopy(getattr(trained.model, k)))
            if isinstance(getattr(model, "names", None), (list, tuple)):
                model.names = dict(enumerate(model.names))
        return model

    def write_checkpoint(self, model: nn.Module, trained: Trained, info: dict, path: Path) -> None:
        save_checkpoint(model, path, opt=trained.checkpoint.get("opt"), extra={"effdet_swap": info})

    def check_output(self, out: Path, backbone: str) -> None:
        """YOLOv5 loads a model file by the name it is given: any name serves."""

    def for_file(self, d: dict, out: Path) -> dict:
        return d

    def usage(self, out: Path, pt: Path | None, task: str) -> str:
        script, command = TRAIN[task], _PACKAGE_TRAIN[task]
        weights = pt.name if pt else "''"
        return f"python {script} --cfg {out.name} --weights {weights} --data ...  (yolov5 package: {command} ...)"
