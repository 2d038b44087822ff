"""Swap the backbone of a detection model (YAML or trained checkpoint) for an EfficientNet one: an Ultralytics model,
or a classic YOLOv5 one (``anchors`` and ``Detect [nc, anchors]``; a clone of ultralytics/yolov5 or the yolov5 package).

The source and the EfficientNet YAML are both built, and a forward pass reads the stride of every backbone layer; the
head's references into the source backbone are then re-pointed by stride (P3/8, P4/16, P5/32) to the EfficientNet
layers at the same strides, and every other ``from`` index is shifted by the change in backbone length. Nothing about
row positions is assumed, so user YAMLs work as well as the built-ins. With a checkpoint source, every neck/head tensor
whose shape still matches keeps its trained value.

A classic YOLOv5 source is one more format (``_YOLOv5``): YOLOv5's own model module parses, probes, builds and saves it,
and the result is classic too (the source's ``anchors``, ``depth_multiple``, ``width_multiple``, ``nc``, its
``Detect [nc, anchors]`` row, and for a checkpoint a YOLOv5 checkpoint that ``attempt_load`` reads).

Examples:
    >>> from effdet_plugin import swap_backbone
    >>> d = swap_backbone("yolov8s.yaml", "effv2")  # YAML dict; DetectionModel(d) builds it
    >>> d, model, report = swap_checkpoint("runs/detect/train/weights/best.pt", "effb0")
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import logging
import os
import pickletools
import re
import sys
import zipfile
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch
import yaml

from effdet_plugin.atomic import atomic_open
from effdet_plugin.classic import SCALES as CLASSIC_SCALES
from effdet_plugin.hosts.activate import YOLOV5_MODULES
from effdet_plugin.routing import stride_of, walk
from effdet_plugin.rows import model_source
from effdet_plugin.scale_rows import COMMENT as SCALE_ROWS_COMMENT
from effdet_plugin.scale_rows import KEY as SCALE_ROWS
from effdet_plugin.stages import backbone_yamls

# --backbone -> shipped YAML whose backbone section (rows up to and including SPPF) is grafted in: effv2 (the
# EfficientNetV2-S stage table, scaled by the source's width/depth), effv2-wide, and the exact torchvision backbones
BACKBONES: dict[str, str] = backbone_yamls()
# --neck -> suffix of the shipped YAMLs whose head rows (minus Detect) are the neck; any one of them serves, as its rows
# are re-pointed by stride, but the one made for the chosen backbone is preferred
NECKS = {"keep": None, "bifpn": "_bifpn"}
HEADS = ("Detect", "v10Detect")  # last head row modules of plain P3/P4/P5 detection models
STRIDES = (8, 16, 32)
_PLUGIN_KEYS = ("drop_path", "bn_eps", "scale_backbone", SCALE_ROWS)  # top-level keys that act on the backbone rows
# a backbone designed for one activation (the Lite family's ReLU6) brings it; the host has one activation for every
# Conv, so it replaces the source's. Backbones without one keep the source's.
_BACKBONE_ACTIVATION = "activation"
_NEW_LAYER = "new neck layer, no source counterpart"
_PROBE = 256  # input size of the stride probe; large enough to see a stride-64 (P6) layer
_P6_STEMS = frozenset(f"yolov{d}{x}6" for x in "nsmlx" for d in (5, 8))  # yaml_model_load renames these to -p6
_SUPPORTED = (
    "supported: detection models whose head ends in Detect on P3/P4/P5 (stride 8/16/32) backbone outputs, such as "
    "yolov3u, yolov5u, yolov8, yolov9, yolov10, yolo11, yolo12, yolo26 and YAMLs like them"
)


class SwapError(ValueError):
    """The source cannot have its backbone swapped, or the output cannot be written (one line naming the file)."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


@dataclass
class Transfer:
    """What ``swap_checkpoint`` carried over: tensor counts, and each head tensor that was not transferred and why."""

    transferred: int = 0
    total: int = 0  # neck/head tensors of the new model
    skipped: dict[str, str] = field(default_factory=dict)  # new state_dict key -> reason

    def __str__(self) -> str:
        lines = [f"transferred {self.transferred}/{self.total} neck/head tensors from the source checkpoint"]
        new_layers: dict[str, int] = {}  # a new neck layer is one line, not one per tensor
        for k, why in self.skipped.items():
            if why == _NEW_LAYER:
                layer = ".".join(k.split(".")[:2])
                new_layers[layer] = new_layers.get(layer, 0) + 1
            else:
                lines.append(f"  not transferred {k}: {why}")
        lines += [f"  not transferred {layer}.* ({n} tensors): {_NEW_LAYER}" for layer, n in new_layers.items()]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------- probing
def _load_source(source) -> dict:
    from ultralytics.nn import tasks

    from effdet_plugin.hosts.activate import register

    register()
    if isinstance(source, dict):
        return deepcopy(source)
    try:
        d = tasks.yaml_model_load(source)  # the module attribute: the plugin's wrapper resolves shipped names
    except (FileNotFoundError, SwapError):
        raise
    except Exception as e:  # YAML syntax and the like: one line naming the file
        raise SwapError(f"{source}: cannot be read as a model YAML: {_first_line(e)}") from None
    if not isinstance(d, dict):
        raise SwapError(f"{source}: not a model YAML (it holds a {type(d).__name__}, not a mapping)")
    return d


def _probe_strides(d: dict, parse=None) -> list[int | None]:
    """Return the output stride of each backbone row of ``d`` (None where it is not one feature map).

    The whole model is parsed (a model with plugin rows must have its detection head to pass validation) by
    Ultralytics' parser, or by ``parse(d) -> layers`` (another host's), and the routing walk stops after the last
    backbone row.
    """
    from ultralytics.nn import tasks

    probe = deepcopy(d)
    if probe.get("scales") and not probe.get("scale"):
        probe["scale"] = next(iter(probe["scales"]))  # strides do not depend on the scale; skip Ultralytics' warning
    name = model_source(d)
    try:
        layers = parse(probe) if parse else tasks.parse_model(probe, ch=3, verbose=False)[0]
    except Exception as e:  # the source's own YAML error, reported with its file
        message = _first_line(e)
        raise SwapError(message if message.startswith(name) else f"{name}: the model does not build: {message}") \
            from None
    last = len(d["backbone"]) - 1
    try:
        return [stride_of(y, _PROBE) for _, _, y in walk(layers, torch.zeros(1, 3, _PROBE, _PROBE), stop=last)]
    except Exception as e:
        raise SwapError(f"{name}: the backbone does not run on a {_PROBE}x{_PROBE} input: {_first_line(e)}") from None


def _backbone_refs(d: dict) -> dict[int, list[int]]:
    """Map each backbone row the head reads to the head rows that read it (absolute indices)."""
    n = len(d["backbone"])
    refs: dict[int, list[int]] = {}
    for k, row in enumerate(d["head"]):
        i = n + k
        for j in [row[0]] if isinstance(row[0], int) else row[0]:
            a = i + j if j < 0 else j
            if a < n:
                refs.setdefault(a, []).append(i)
    return refs


def _check_source(d: dict) -> None:
    name = model_source(d)
    backbone, head = d.get("backbone"), d.get("head")
    if not isinstance(backbone, list) or not isinstance(head, list) or not backbone or not head:
        raise SwapError(f"{name}: needs non-empty 'backbone' and 'head' row lists; {_SUPPORTED}")
    for i, row in enumerate(backbone + head):
        f = row[0] if isinstance(row, (list, tuple)) and len(row) == 4 else None
        if not (isinstance(f, int) or (isinstance(f, list) and f and all(isinstance(j, int) for j in f))):
            raise SwapError(f"{name}: row {i} {row!r} is not [from, repeats, module, args] with integer 'from'")
    last = head[-1]
    module = last[2]
    if module not in HEADS:
        raise SwapError(f"{name}: the head ends in {module!r}, not a plain detection head; {_SUPPORTED}")
    if isinstance(last[0], int) or len(last[0]) != len(STRIDES):
        raise SwapError(f"{name}: {module} reads {last[0]!r}, not three levels P3/P4/P5; {_SUPPORTED}")


def _taps(d: dict, strides: list[int | None], rows: list[int]) -> dict[int, int]:
    """Check that backbone ``rows`` of ``d`` are at strides 8/16/32 and map each to its stride."""
    name = model_source(d)
    out = {}
    for a in rows:
        s = strides[a]
        if s not in STRIDES:
            kind = {4: " (a P2 head)", 64: " (a P6 head)", 128: " (a P7 head)"}.get(s, "")
            at = f"stride {s}" if s else "no single feature map"
            raise SwapError(f"{name}: the head reads backbone layer {a} at {at}{kind}; {_SUPPORTED}")
        out[a] = s
    return out


# ------------------------------------------------------------------------------------------------ the new backbone
@dataclass
class _Backbone:
    name: str
    rows: list
    keys: dict  # top-level plugin keys carried into the output
    taps: dict[int, int]  # stride -> row index (last row at that stride; the final row for stride 32)


def _new_backbone(backbone: str) -> _Backbone:
    from effdet_plugin.paths import model_yaml_dir

    if backbone not in BACKBONES:
        raise SwapError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    path = model_yaml_dir() / BACKBONES[backbone]
    if not path.is_file():
        raise SwapError(f"backbone {backbone!r} is not available: {path} is not shipped with this installation")
    d = _load_source(path)
    rows = list(d["backbone"])
    sppf = [i for i, r in enumerate(rows) if r[2] == "SPPF"]
    rows = rows[: sppf[-1] + 1] if sppf else rows
    strides = _probe_strides(d)[: len(rows)]
    taps = {s: max(i for i, v in enumerate(strides) if v == s) for s in STRIDES if s in strides}
    if strides[-1] != 32 or len(taps) != len(STRIDES):
        raise SwapError(f"{path}: backbone strides {strides} do not end in a P3/P4/P5 pyramid")
    taps[32] = len(rows) - 1
    return _Backbone(backbone, rows, {k: d[k] for k in (*_PLUGIN_KEYS, _BACKBONE_ACTIVATION) if k in d}, taps)


def _reindex(head: list, n_old: int, n_new: int, tap_of: dict[int, int]) -> list:
    """Re-point ``head`` rows from a backbone of ``n_old`` rows to one of ``n_new``; ``tap_of``: old row -> new row."""

    def one(j: int, i_old: int, i_new: int) -> int:
        a = i_old + j if j < 0 else j
        new = a - n_old + n_new if a >= n_old else tap_of[a]
        return j if j < 0 and new - i_new == j else new  # relative references stay relative where they still fit

    out = []
    for k, (f, n, m, args) in enumerate(head):
        i_old, i_new = n_old + k, n_new + k
        f = one(f, i_old, i_new) if isinstance(f, int) else [one(j, i_old, i_new) for j in f]
        out.append([f, n, m, deepcopy(args)])
    return out


def _neck(neck: str, bb: _Backbone) -> tuple[list, dict, list]:
    """Return (neck rows, extra top-level keys, the Detect inputs) of a replacement neck on backbone ``bb``."""
    from effdet_plugin.paths import model_yaml_dir

    if neck not in NECKS:
        raise SwapError(f"unknown neck {neck!r}; choose one of {', '.join(NECKS)}")
    root, suffix = model_yaml_dir(), NECKS[neck]
    own = root / (Path(BACKBONES[bb.name]).stem + suffix + ".yaml")
    found = [own] if own.is_file() else sorted(root.glob(f"*{suffix}.yaml"))
    if not found:
        raise SwapError(f"--neck {neck} is not available: no {root}/*{suffix}.yaml is shipped with this installation")
    path = found[0]
    d = _load_source(path)
    _check_source(d)
    n_old = len(d["backbone"])
    strides = _probe_strides(d)
    tap_of = {a: bb.taps[s] for a, s in _taps(d, strides, sorted(_backbone_refs(d))).items()}
    rows = _reindex(d["head"], n_old, len(bb.rows), tap_of)
    own = {"nc", "scales", "scale", "yaml_file", "backbone", "head", *_PLUGIN_KEYS}
    keys = {k: v for k, v in d.items() if k not in own}  # e.g. bifpn_phi
    return rows[:-1], keys, rows[-1][0]


# --------------------------------------------------------------------------------------------------------- the swap
def _scale_of(d: dict, scale: str | None) -> str | None:
    scales = d.get("scales")
    if scale is None:
        return (d.get("scale") or None) if scales else None
    if not scales:
        raise SwapError(f"{model_source(d)}: --scale {scale} given but the source has no 'scales:' table")
    if scale not in scales:
        raise SwapError(f"{model_source(d)}: scale {scale!r} is not one of its scales {', '.join(scales)}")
    return scale


def _swap(d: dict, backbone: str, neck: str, scale: str | None, host: _YOLOv5 | None = None) \
        -> tuple[dict, dict[int, int]]:
    """Return the swapped dict and the map old head row -> new head row (for weight transfer); ``host``: the YOLOv5
    that parses a classic source (None: Ultralytics)."""
    _check_source(d)
    scale = _scale_of(d, scale)
    bb = _new_backbone(backbone)
    n_old, n_new = len(d["backbone"]), len(bb.rows)
    if d.get("scales") and not d.get("scale"):
        d["scale"] = scale or next(iter(d["scales"]))
    strides = _probe_strides(d, host.parse) if host else _probe_strides(d)
    tap_of = {a: bb.taps[s] for a, s in _taps(d, strides, sorted(_backbone_refs(d))).items()}
    if neck == "keep":
        head, extra = _reindex(d["head"], n_old, n_new, tap_of), {}
        moved = {n_old + k: n_new + k for k in range(len(head))}
    else:
        rows, extra, detect_from = _neck(neck, bb)
        if host:
            rows, extra = host.fixed_neck(d, rows, extra)
        detect = d["head"][-1]
        head = [*rows, [detect_from, detect[1], detect[2], deepcopy(detect[3])]]
        moved = {n_old + len(d["head"]) - 1: n_new + len(head) - 1}  # only Detect survives
    out = {}
    for k, v in d.items():  # the source's keys in its order; the backbone's plugin keys replace any of its own
        if k in ("yaml_file", "scale", "backbone", "head", *_PLUGIN_KEYS):
            continue
        out[k] = deepcopy(v)
    out.update(bb.keys)
    out.update(extra)
    if scale:
        out["scale"] = scale
    out["backbone"], out["head"] = deepcopy(bb.rows), head
    _scale_rows_for_source(out)
    return out, moved


def _scale_rows_for_source(d: dict) -> None:
    """Fit the backbone's ``scale_rows:`` to the swapped dict ``d``: keep the letters its ``scales:`` has; without
    ``scales:`` (a classic YOLOv5 file) write in the rows of the YOLOv5 scale whose multiples it has, as the shipped
    classic files do, and drop the key."""
    given = d.pop(SCALE_ROWS, None)
    if not given:
        return
    scales = d.get("scales")
    if isinstance(scales, dict) and scales:
        kept = {k: v for k, v in given.items() if k in scales}
        if kept:
            d[SCALE_ROWS] = kept
        return
    multiples = (d.get("depth_multiple", 1.0), d.get("width_multiple", 1.0))
    letter = next((k for k, v in CLASSIC_SCALES.items() if v == multiples), None)
    for i, row in given.get(letter, {}).items():
        d["backbone"][i] = deepcopy(row)


def _build(d: dict, source: str, nc: int | None = None, make=None):
    """Build ``d`` (swapped from ``source``) as a DetectionModel (or with ``make(d, nc)``, another host's) and check it
    is a P3/P4/P5 detector."""
    from ultralytics.nn.tasks import DetectionModel

    try:
        model = make(deepcopy(d), nc) if make else DetectionModel(deepcopy(d), ch=3, nc=nc, verbose=False)
    except Exception as e:
        raise SwapError(f"{source}: the swapped model does not build: {_first_line(e)}") from None
    strides = [int(s) for s in model.stride.tolist()]
    if strides != list(STRIDES):
        raise SwapError(f"{source}: the swapped model has strides {strides}, expected {list(STRIDES)}")
    return model


def swap_backbone(source, backbone: str = "effv2", neck: str = "keep", scale: str | None = None) -> dict:
    """Return the model YAML dict of ``source`` with its backbone replaced by the EfficientNet ``backbone``.

    Args:
        source (str | Path | dict): detection model YAML (a built-in name such as ``yolov8s.yaml``, a file, a dict).
        backbone (str): one of ``BACKBONES``.
        neck (str): ``"keep"`` (the source's neck and head) or ``"bifpn"`` (BiFPN neck, the source's Detect row).
        scale (str, optional): scale letter for a source with ``scales:``; default the source's own.

    Returns:
        (dict): the swapped model dict (with a ``scale`` key when the source has ``scales:``); it is checked to build
            with strides [8, 16, 32].
    """
    host, src = _classic_yaml(source)
    src = src if host else _load_source(source)
    d, _ = _swap(src, backbone, neck, scale, host)
    _build(d, model_source(src), make=host.make if host else None)
    return d


def swap_checkpoint(source, backbone: str = "effv2", neck: str = "keep", scale: str | None = None):
    """Swap the backbone of a trained checkpoint and carry over every neck/head tensor whose shape still matches.

    Returns:
        (tuple[dict, DetectionModel, Transfer]): the swapped YAML dict, the new FP32 model (source names and nc)
            and what was transferred. A classic YOLOv5 checkpoint gives a YOLOv5 ``DetectionModel``.
    """
    return _swap_checkpoint(source, backbone, neck, scale)[:3]


def _swap_checkpoint(source, backbone: str, neck: str, scale: str | None):
    """``swap_checkpoint``, and last a function ``info -> bytes`` of the output checkpoint in the source's format."""
    from ultralytics.nn.tasks import DetectionModel, load_checkpoint

    from effdet_plugin.hosts.activate import register

    register()
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {source} not found")
    pickled = _pickled_yolov5(path)
    if pickled:
        return _YOLOv5.find(source, pickled).swap_checkpoint(path, backbone, neck, scale)
    try:
        src, ckpt = load_checkpoint(path)
    except Exception as e:
        raise SwapError(f"{source}: not a loadable Ultralytics checkpoint: {_first_line(e)}") from None
    if not isinstance(src, DetectionModel) or not isinstance(getattr(src, "yaml", None), dict):
        kind = type(src).__name__
        raise SwapError(f"{source}: holds a {kind}, not a detection model built from a YAML; {_SUPPORTED}")
    d = deepcopy(src.yaml)
    d["yaml_file"] = str(source)
    out, moved = _swap(d, backbone, neck, scale)
    model = _build(out, str(source), nc=out.get("nc"))
    model.names = dict(src.names)
    report = _transfer(src, model, moved)
    model.args = {**(getattr(src, "args", None) or {})}
    return out, model, report, lambda info: _checkpoint_bytes(model, dict(model.args), info)


def _transfer(src, dst, moved: dict[int, int]) -> Transfer:
    """Copy tensors of moved layers (old index -> new index) from ``src`` into ``dst`` where shapes match."""
    back = {new: old for old, new in moved.items()}
    first = len(dst.yaml["backbone"])
    ssd, dsd = src.state_dict(), dst.state_dict()
    report, load = Transfer(), {}
    for key, t in dsd.items():
        _, idx, rest = key.split(".", 2)  # model.<layer>.<name>
        if int(idx) < first:
            continue  # the new backbone
        report.total += 1
        old = f"model.{back[int(idx)]}.{rest}" if int(idx) in back else None
        if old is None:
            report.skipped[key] = _NEW_LAYER
        elif old not in ssd:
            report.skipped[key] = f"source has no {old}"
        elif ssd[old].shape != t.shape:
            report.skipped[key] = f"shape {tuple(t.shape)} here vs {tuple(ssd[old].shape)} in source {old}"
        else:
            load[key] = ssd[old]
    dst.load_state_dict(load, strict=False)
    report.transferred = len(load)
    return report


# ---------------------------------------------------------------------------------------- classic YOLOv5 sources
def _pickled_yolov5(path: Path) -> str | None:
    """The YOLOv5 model module (``YOLOV5_MODULES``) whose classes a torch checkpoint pickles, read without unpickling
    (``yolov5.models.yolo`` if both); None for any other checkpoint (Ultralytics', or not a torch zip file)."""
    try:
        with zipfile.ZipFile(path) as z:
            pkl = next((n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl")), None)
            ops = list(pickletools.genops(z.read(pkl))) if pkl else []
    except Exception:
        return None
    # protocol 2 (torch.save's) names classes with GLOBAL "module name"; protocol 4 pushes the module as a string
    names = {arg.split(" ")[0] if op.name in ("GLOBAL", "INST") else arg for op, arg, _ in ops if isinstance(arg, str)}
    return next((m for m in reversed(YOLOV5_MODULES) if m in names), None)


def _read_classic(source) -> dict | None:
    """The model dict of ``source`` if it is a classic YOLOv5 YAML (a dict, or a file with top-level ``anchors``)."""
    if isinstance(source, dict):
        return source if "anchors" in source else None
    path = Path(str(source))
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return None
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8", errors="ignore"))
    except Exception:
        return None  # Ultralytics' loader reports it
    return {**d, "yaml_file": str(source)} if isinstance(d, dict) and "anchors" in d else None


def _is_classic(source) -> bool:
    path = Path(str(source))
    if path.suffix == ".pt":
        return path.is_file() and _pickled_yolov5(path) is not None
    return _read_classic(source) is not None


def _classic_yaml(source) -> tuple[_YOLOv5 | None, dict | None]:
    """``(host, model dict)`` for a classic YOLOv5 YAML source, ``(None, None)`` for an Ultralytics one."""
    d = _read_classic(source)
    return (None, None) if d is None else (_YOLOv5.find(source), deepcopy(d))


class _YOLOv5:
    """Classic YOLOv5 as a swap format: one YOLOv5 model module (clone or package) parses, builds and saves."""

    def __init__(self, module):
        from effdet_plugin.hosts.yolov5 import model_class

        self.module, self.model_class = module, model_class(module)

    @classmethod
    def find(cls, source, pickled: str | None = None) -> _YOLOv5:
        """YOLOv5 as the user has it: the yolov5 package, else a clone in the working directory (``models.yolo``).
        A checkpoint needs the module it was pickled from: the package's, or a clone's (the package can stand in, as
        it puts its own ``models`` on ``sys.path``). The plugin is registered with the module found."""
        from effdet_plugin.hosts.activate import register
        from effdet_plugin.hosts.yolov5 import is_yolov5

        package, clone = YOLOV5_MODULES[1], YOLOV5_MODULES[0]
        names = {None: (package, clone), clone: (clone, package), package: (package,)}[pickled]
        cwd = Path.cwd()
        for name in names:
            if name == clone:
                if name not in sys.modules and not (cwd / "models" / "yolo.py").is_file():
                    continue
                if str(cwd) not in sys.path:
                    sys.path.insert(0, str(cwd))  # as `python train.py` in the clone has it
            elif importlib.util.find_spec("yolov5") is None:
                continue
            try:
                module = importlib.import_module(name)
            except Exception as e:
                raise SwapError(f"{source}: YOLOv5's {name} does not import: {_first_line(e)}") from None
            register()
            if is_yolov5(module):
                return cls(module)
        if pickled == package:
            raise SwapError(f"{source}: a checkpoint of the yolov5 package (its model is pickled from {package}), "
                            f"which is not installed here; install it (pip install yolov5) to swap this checkpoint")
        kind = "checkpoint" if pickled else "YAML"
        raise SwapError(f"{source}: a classic YOLOv5 {kind} is built with YOLOv5 itself, and none is importable here; "
                        f"run the swap in the folder of a clone of ultralytics/yolov5, or install the yolov5 package")

    @contextlib.contextmanager
    def _quiet(self):
        logger = getattr(self.module, "LOGGER", logging.getLogger("yolov5"))
        level = logger.level
        logger.setLevel(logging.WARNING)  # YOLOv5 prints every model table
        try:
            yield
        finally:
            logger.setLevel(level)

    def parse(self, d: dict):
        with self._quiet():
            return self.module.parse_model(d, ch=[3])[0]

    def make(self, d: dict, nc: int | None):
        with self._quiet():
            return self.model_class(d, ch=3, nc=nc)

    def fixed_neck(self, d: dict, rows: list, extra: dict) -> tuple[list, dict]:
        """Write a neck row's per-scale table argument (``BiFPN [bifpn_phi, ...]``) as the value of the source's scale:
        the classic scale (``classic.SCALES``) nearest to its width_multiple, as the shipped classic files have it."""
        from effdet_plugin.classic import SCALES

        gw = d.get("width_multiple", 1.0)
        letter = min(SCALES, key=lambda s: abs(SCALES[s][1] - gw)) if isinstance(gw, (int, float)) else "l"
        tables = {k for k, v in extra.items() if isinstance(v, dict)}
        for row in rows:
            if row[3] and isinstance(row[3][0], str) and row[3][0] in tables:
                row[3][0] = extra[row[3][0]][letter]
        return rows, {k: v for k, v in extra.items() if k not in tables}

    def swap_checkpoint(self, path: Path, backbone: str, neck: str, scale: str | None):
        """``_swap_checkpoint`` for a YOLOv5 checkpoint; the new model is built by the module the source was pickled
        from, so the output loads wherever the source does."""
        from torch import nn

        from effdet_plugin.hosts.activate import register
        from effdet_plugin.hosts.yolov5 import is_yolov5

        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise SwapError(f"{path}: not a loadable YOLOv5 checkpoint: {_first_line(e)}") from None
        src = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
        if not isinstance(src, nn.Module) or not isinstance(getattr(src, "yaml", None), dict):
            raise SwapError(f"{path}: holds no YOLOv5 model built from a YAML ('model' or 'ema'); {_SUPPORTED}")
        register()  # unpickling may have imported a second copy of the module
        module = sys.modules.get(type(src).__module__)
        host = _YOLOv5(module) if module is not None and is_yolov5(module) else self
        src = src.float()
        d = {**deepcopy(src.yaml), "yaml_file": str(path)}
        out, moved = _swap(d, backbone, neck, scale, host)
        model = _build(out, str(path), nc=out.get("nc"), make=host.make)
        report = _transfer(src, model, moved)
        for k in ("names", "nc", "hyp", "class_weights"):  # what YOLOv5's train.py sets on the model
            if hasattr(src, k):
                setattr(model, k, deepcopy(getattr(src, k)))
        if isinstance(getattr(model, "names", None), (list, tuple)):
            model.names = dict(enumerate(model.names))
        return out, model, report, lambda info: host.checkpoint_bytes(model, ckpt, info)

    @staticmethod
    def checkpoint_bytes(model, ckpt: dict, info: dict) -> bytes:
        """YOLOv5's final-checkpoint format (``strip_optimizer``), which ``attempt_load`` and ``--weights`` read."""
        model = deepcopy(model).half()
        for p in model.parameters():
            p.requires_grad = False
        buffer = io.BytesIO()
        torch.save({"epoch": -1, "best_fitness": None, "model": model, "ema": None, "updates": None, "optimizer": None,
                    "opt": ckpt.get("opt"), "git": None, "date": datetime.now().isoformat(), "effdet_swap": info},
                   buffer)
        return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------------- saving
def _flow(v) -> str:
    return yaml.safe_dump(v, default_flow_style=True, width=10**9, sort_keys=False).strip().removesuffix("\n...")


def dump_yaml(d: dict, header: str = "") -> str:
    """Return ``d`` as model-YAML text: one flow-style line per row, scales and other mappings one entry per line."""
    lines = [f"# {h}" if h else "#" for h in header.splitlines()]
    keys = [k for k in d if k != SCALE_ROWS]
    if SCALE_ROWS in d:  # next to the rows it replaces, as in the shipped files
        keys.insert(keys.index("backbone") if "backbone" in keys else len(keys), SCALE_ROWS)
    for k in keys:
        v = d[k]
        if k == SCALE_ROWS and isinstance(v, dict):
            lines += ["", f"{k}: # {SCALE_ROWS_COMMENT}"]
            for letter, rows in v.items():
                lines += [f"  {letter}:"] + [f"    {i}: {_flow(list(r))}" for i, r in rows.items()]
        elif k in ("backbone", "head"):
            first = len(d["backbone"]) if k == "head" else 0  # rows are numbered across backbone and head
            lines += ["", f"{k}:"] + [f"  - {_flow(list(r))} # {first + i}" for i, r in enumerate(v)]
        elif k == "anchors" and isinstance(v, list):  # classic YOLOv5: one line per level
            lines += [f"{k}:"] + [f"  - {_flow(a)}" for a in v]
        elif isinstance(v, dict) and k == "scales":
            lines += [f"{k}:"] + [f"  {s}: {_flow(list(x))}" for s, x in v.items()]
        else:
            lines.append(f"{k}: {_flow(v)}")
    return "\n".join(lines) + "\n"


def _file_scale(d: dict, out: Path) -> dict:
    """Make the scale survive Ultralytics' loader, which takes it from the file name (``guess_model_scale``) only."""
    from ultralytics.nn.tasks import guess_model_scale

    scale, named = d.get("scale"), guess_model_scale(out)
    if not scale or named == scale:
        return d
    if named:
        fixed = re.sub(r"(yolo(e-)?v?\d+)[nslmx]", lambda m: m.group(1) + scale, out.stem, count=1) + out.suffix
        raise SwapError(
            f"{out}: Ultralytics reads scale {named!r} from this file name but the model is scale {scale!r}; "
            f"name it {fixed} or pass --scale {named}"
        )
    # No letter in the name: the loader falls back to the first scale, so list the chosen one first.
    d = dict(d)
    d["scales"] = {scale: d["scales"][scale], **{k: v for k, v in d["scales"].items() if k != scale}}
    return d


def _checkpoint_bytes(model, ckpt_args: dict, info: dict) -> bytes:
    from ultralytics import __version__
    from ultralytics.utils import DEFAULT_CFG_DICT, DEFAULT_CFG_KEYS

    model = deepcopy(model).half()  # as Ultralytics' own final checkpoints (strip_optimizer)
    for p in model.parameters():
        p.requires_grad = False
    args = {**DEFAULT_CFG_DICT, **ckpt_args}
    buffer = io.BytesIO()
    torch.save(
        {
            "date": datetime.now().astimezone().isoformat(),
            "version": __version__,
            "license": "AGPL-3.0 License (https://ultralytics.com/license)",
            "docs": "https://docs.ultralytics.com",
            "epoch": -1,
            "model": model,
            "ema": None,
            "train_args": {k: v for k, v in args.items() if k in DEFAULT_CFG_KEYS},
            "effdet_swap": info,
        },
        buffer,
    )
    return buffer.getvalue()


def loaded_instead(path) -> str | None:
    """The file Ultralytics' ``yaml_model_load`` reads when given the existing file ``path``, if not ``path`` itself.

    Two of its rules rewrite a name before looking for it: a stem such as ``yolov8s6`` becomes ``yolov8s-p6`` (P6
    models), and in a path that mentions yolov3/yolov5, ``u.yaml`` becomes ``.yaml`` (``check_yolov5u_filename``:
    ``yolov5su.yaml`` loads ``yolov5s.yaml``, or Ultralytics' own ``yolov5.yaml``).
    """
    from ultralytics.utils.checks import check_yolov5u_filename

    text = str(path)
    p = Path(text)
    if p.stem in _P6_STEMS:
        return str(p.with_name(re.sub(r"(\d+)([nslmx])6(.+)?$", r"\1\2-p6\3", p.stem) + p.suffix))
    if text != text.strip():
        return text.strip()
    new = check_yolov5u_filename(text, verbose=False)
    return new if new != text else None


def _check_name(out: Path, backbone: str) -> None:
    """Refuse an output that Ultralytics would not load by its own name (as given, and as the bare file name)."""
    from ultralytics.nn.tasks import guess_model_scale

    for name in dict.fromkeys((str(out), out.name)):
        instead = loaded_instead(name)
        if instead is None:
            continue
        scale, stem = guess_model_scale(out), out.stem
        candidates = [f"{stem}-{backbone}" if backbone not in stem else "", stem.removesuffix("u"), f"{stem}-swapped"]
        fixed = next((c + out.suffix for c in candidates if c and loaded_instead(out.with_name(c + out.suffix)) is None
                      and guess_model_scale(c + out.suffix) == scale), None)
        given = "" if name == str(out) else f" given as {name}"
        raise SwapError(f"{out}: Ultralytics' yaml_model_load reads this name{given} as {instead}, so it would not "
                        f"load this file; {f'name it {fixed}' if fixed else 'choose another name'}")


def _check_outputs(source, out: Path, pt: Path | None, force: bool) -> None:
    """Refuse (before any work) an output that exists or is the source itself, unless ``force``."""
    if force:
        return
    src = Path(str(source)) if isinstance(source, (str, Path)) else None
    for target in (out, pt) if pt is not None else (out,):
        if src is not None and src.exists() and target.exists() and os.path.samefile(src, target):
            raise SwapError(f"{target}: is the source file itself; write to another name, or pass --force "
                            f"(force=True) to replace the source")
        if target.exists():
            raise SwapError(f"{target}: already exists; pass --force (force=True) to overwrite it")


def swap_to_files(source, out, backbone: str = "effv2", neck: str = "keep", scale: str | None = None,
                  force: bool = False) -> dict:
    """Write the swapped ``out`` YAML (and ``out`` with suffix .pt for a checkpoint source); nothing on error.

    An existing output (either file) or the source itself is refused unless ``force``; so is an output name that
    Ultralytics would rename when loading it (``loaded_instead``), or whose scale letter contradicts the model's.

    Returns:
        (dict): ``{"yaml": Path, "pt": Path | None, "transfer": Transfer | None, "model": DetectionModel}``.
    """
    out = Path(out)
    if out.suffix not in (".yaml", ".yml"):
        raise SwapError(f"{out}: the output must end in .yaml")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out}: output folder {out.parent} does not exist")
    is_pt = Path(str(source)).suffix == ".pt"
    pt = out.with_suffix(".pt") if is_pt else None
    classic = _is_classic(source)
    if not classic:  # YOLOv5 loads a file by the name it is given
        _check_name(out, backbone)
    _check_outputs(source, out, pt, force)
    header = f"effdet-plugin swap: {Path(str(source)).name} with backbone {backbone}, neck {neck}"
    if is_pt:
        d, model, report, checkpoint_bytes = _swap_checkpoint(source, backbone, neck, scale)
    else:
        d = swap_backbone(source, backbone, neck, scale)
        model, report = None, None
    if classic:
        weights = pt.name if pt else "''"
        use = f"python train.py --cfg {out.name} --weights {weights} --data ...  (yolov5 package: yolov5 train ...)"
    else:
        d, use = _file_scale(d, out), f"yolo train model={out.name} data=..."
    text = dump_yaml(d, header + "\nUse: " + use)
    blob = None
    if is_pt:
        info = {"source": str(source), "backbone": backbone, "neck": neck, "transferred": report.transferred}
        blob = checkpoint_bytes(info)
    # The .pt is written inside the YAML's atomic write: if it fails, the YAML's temp file goes too.
    with atomic_open(out, "w", encoding="utf-8") as f:
        f.write(text)
        if blob is not None:
            with atomic_open(pt, "wb") as g:
                g.write(blob)
    return {"yaml": out, "pt": pt, "transfer": report, "model": model}


# -------------------------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``effdet-plugin swap`` arguments."""
    p = parser
    p.add_argument("source", help="detection model YAML (built-in name such as yolov8s.yaml, or a file) or a .pt: "
                                  "Ultralytics or classic YOLOv5 (run in a clone's folder or with yolov5 installed)")
    p.add_argument("--backbone", required=True, choices=list(BACKBONES), help="EfficientNet backbone to graft in")
    p.add_argument("--neck", default="keep", choices=list(NECKS), help="keep the source neck (default) or use BiFPN")
    p.add_argument("--scale", choices=list("nsmlx"), help="scale letter for a source with scales: (default: its own)")
    p.add_argument("-o", "--output", required=True, help="output YAML (a .pt source also writes it with suffix .pt)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files (even the source itself)")


def run(args: argparse.Namespace) -> int:
    """Run ``effdet-plugin swap``."""
    res = swap_to_files(args.source, args.output, args.backbone, args.neck, args.scale, force=args.force)
    print(f"wrote {res['yaml']}")
    if res["pt"] is not None:
        print(res["transfer"])
        print(f"wrote {res['pt']}")
    return 0
