"""Ultralytics as a swap format: model YAMLs of every task (detect, segment, pose, OBB, classify) and the checkpoints
``yolo train`` writes; the result is an Ultralytics YAML and checkpoint (``hosts.ultralytics_checkpoint``).

Ultralytics reads part of a model from its file name (``yaml_model_load`` rewrites some names, ``guess_model_scale``
takes the scale letter from it), so the output name is checked against those rules before anything is written.
"""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path

from torch import nn

from effdet_plugin.commands.swap.formats import Trained
from effdet_plugin.commands.swap.graph import SwapError
from effdet_plugin.errors import first_line
from effdet_plugin.hosts.ultralytics import TASK_MODELS
from effdet_plugin.hosts.ultralytics_checkpoint import save_checkpoint
from effdet_plugin.naming import p6_stem, scale_letter, with_scale
from effdet_plugin.quiet import quieted

HEADS = {
    "Detect": "detect",
    "v10Detect": "detect",
    "Segment": "segment",
    "Segment26": "segment",
    "Pose": "pose",
    "Pose26": "pose",
    "OBB": "obb",
    "OBB26": "obb",
    "Classify": "classify",
}
SUPPORTED = (
    "supported: models whose head ends in Detect, v10Detect, Segment(26), Pose(26) or OBB(26) on P3/P4/P5 (stride "
    "8/16/32) backbone outputs, or in Classify on the backbone, such as yolov3u, yolov5u, yolov8, yolov9, yolov10, "
    "yolo11, yolo12, yolo26, their -seg/-pose/-obb/-cls models and YAMLs like them"
)


def _tasks():
    from ultralytics.nn import tasks

    from effdet_plugin.hosts.activate import register

    register()
    return tasks


class UltralyticsFormat:
    """Sources Ultralytics builds: its own and the plugin's YAMLs (any name it resolves), and its checkpoints."""

    heads = HEADS
    supported = SUPPORTED
    scale_tables = True

    def read_yaml(self, source) -> dict:
        tasks = _tasks()
        if isinstance(source, dict):
            return deepcopy(source)
        try:
            d = tasks.yaml_model_load(source)  # the module attribute: the plugin's wrapper resolves shipped names
        except FileNotFoundError:
            raise
        except Exception as e:  # noqa: BLE001  YAML syntax and the like: one line naming the file
            raise SwapError(f"{source}: cannot be read as a model YAML: {first_line(e)}") from None
        if not isinstance(d, dict):
            raise SwapError(f"{source}: not a model YAML (it holds a {type(d).__name__}, not a mapping)")
        return d

    def read_checkpoint(self, path: Path) -> Trained:
        tasks = _tasks()
        try:
            model, ckpt = tasks.load_checkpoint(path)
        except Exception as e:  # noqa: BLE001  torch's and the unpickler's errors alike
            raise SwapError(f"{path}: not a loadable Ultralytics checkpoint: {first_line(e)}") from None
        if not isinstance(model, tasks.BaseModel) or not isinstance(getattr(model, "yaml", None), dict):
            raise SwapError(f"{path}: holds a {type(model).__name__}, not a model built from a YAML; {SUPPORTED}")
        return Trained(path, model, {**deepcopy(model.yaml), "yaml_file": str(path)}, ckpt)

    def parse(self, d: dict) -> nn.Sequential:
        probe = deepcopy(d)
        if probe.get("scales") and not probe.get("scale"):
            probe["scale"] = next(
                iter(probe["scales"])
            )  # strides do not depend on the scale; skip Ultralytics' warning
        with quieted("ultralytics"):
            return _tasks().parse_model(probe, ch=3, verbose=False)[0]

    def build(self, d: dict, trained: Trained | None = None) -> nn.Module:
        tasks = _tasks()
        task = HEADS[d["head"][-1][2]]
        with quieted("ultralytics"):  # a classifier prints its summary even with verbose=False
            model = getattr(tasks, TASK_MODELS[task])(
                deepcopy(d), ch=3, nc=d.get("nc") if trained else None, verbose=False
            )
        if trained is not None:
            model.names = dict(trained.model.names)
            model.args = {**(getattr(trained.model, "args", None) or {}), "task": task}
        return model

    def write_checkpoint(self, model: nn.Module, trained: Trained, info: dict, path: Path) -> None:
        # FP16 as Ultralytics' own final checkpoints (strip_optimizer), like the source
        save_checkpoint(model, path, half=True, train_args=getattr(model, "args", None), extra={"effdet_swap": info})

    def check_output(self, out: Path, backbone: str) -> None:
        """Refuse an output that Ultralytics would not load by its own name (as given, and as the bare file name)."""
        for name in dict.fromkeys((str(out), out.name)):
            instead = loaded_instead(name)
            if instead is None:
                continue
            scale, stem = scale_letter(out), out.stem
            candidates = [
                f"{stem}-{backbone}" if backbone not in stem else "",
                stem.removesuffix("u"),
                f"{stem}-swapped",
            ]
            fixed = next(
                (
                    c + out.suffix
                    for c in candidates
                    if c
                    and loaded_instead(out.with_name(c + out.suffix)) is None
                    and scale_letter(c + out.suffix) == scale
                ),
                None,
            )
            given = "" if name == str(out) else f" given as {name}"
            raise SwapError(
                f"{out}: Ultralytics' yaml_model_load reads this name{given} as {instead}, so it would not "
                f"load this file; {f'name it {fixed}' if fixed else 'choose another name'}"
            )

    def for_file(self, d: dict, out: Path) -> dict:
        """Make the scale survive Ultralytics' loader, which takes it from the file name (``guess_model_scale``)."""
        scale, named = d.get("scale"), scale_letter(out)
        if not scale or named == scale:
            return d
        if named:
            fixed = with_scale(out.stem, scale) + out.suffix
            raise SwapError(
                f"{out}: Ultralytics reads scale {named!r} from this file name but the model is scale {scale!r}; "
                f"name it {fixed} or pass --scale {named}"
            )
        # No letter in the name: the loader falls back to the first scale, so list the chosen one first.
        d = dict(d)
        d["scales"] = {scale: d["scales"][scale], **{k: v for k, v in d["scales"].items() if k != scale}}
        return d

    def usage(self, out: Path, pt: Path | None, task: str) -> str:
        return f"yolo train model={out.name} data=..."  # the task comes with the model


def loaded_instead(path) -> str | None:
    """The file Ultralytics' ``yaml_model_load`` reads when given the existing file ``path``, if not ``path`` itself.

    Two of its rules rewrite a name before looking for it: a stem such as ``yolov8s6`` becomes ``yolov8s-p6`` (P6
    models), and in a path that mentions yolov3/yolov5, ``u.yaml`` becomes ``.yaml`` (``check_yolov5u_filename``:
    ``yolov5su.yaml`` loads ``yolov5s.yaml``, or Ultralytics' own ``yolov5.yaml``).
    """
    from ultralytics.utils.checks import check_yolov5u_filename

    text = str(path)
    p = Path(text)
    if p6_stem(p.stem):
        return str(p.with_name(p6_stem(p.stem) + p.suffix))
    if text != text.strip():
        return text.strip()
    new = check_yolov5u_filename(text, verbose=False)
    return new if new != text else None
