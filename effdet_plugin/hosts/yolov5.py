"""The classic YOLOv5 host: a clone of ultralytics/yolov5 (``models.yolo``) or the pip package ``yolov5``
(``yolov5.models.yolo``). Every seam, the fingerprint that tells YOLOv5 from the forks that share its module name, and
YOLOv5's scaling rule.

Seams (through ``rebind``, keyed per module object, so a process holding both a clone and the package gets both):

- ``<module>.parse_model(d, ch)``: dicts with plugin rows are built by ``effdet_plugin.assemble`` through YOLOv5's own
  ``parse_model``; every other dict goes straight to it.
- ``<module>.DetectionModel.__init__``: only notes the ``cfg`` path while the model builds, so that a bad row's message
  names the file (YOLOv5 hands ``parse_model`` a bare dict).

YOLOv5's parser has no "width as written" row, so the stand-ins are rows whose width YOLOv5 computes itself: a plugin
block becomes a ``Conv`` row whose ``c_out`` YOLOv5 scales to exactly the block's width (``conv_arg``, checked with
YOLOv5's own ``make_divisible``), a BiFPN row (list ``from``) a ``Concat`` row, and each ``Level`` row a ``Conv`` row of
the BiFPN's width. The plugin's blocks are built with the module's own ``Conv`` (``models.common.Conv``), so YOLOv5's
``fuse()`` folds every BatchNorm and ``export.py`` sees only modules it knows how to trace.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import math
import sys
from pathlib import Path
from types import ModuleType

import torch
import yaml
from torch import nn

from effdet_plugin import assemble, errors, keys, user_modules
from effdet_plugin.assemble import HostRules, Scaling
from effdet_plugin.hosts.rebind import original, rebind
from effdet_plugin.hosts.unavailable import disabled_error
from effdet_plugin.rows import (
    HostNames,
    MultiInputRow,
    RowKind,
    SameWidthRow,
    is_index,
    model_rows,
    plugin_rows,
    row_error,
    uses_plugin,
)

HEADS = frozenset({"Detect", "Segment"})
# Classes that exist only in forks that also call their model module ``models.yolo`` (YOLOv7, YOLOv9, and the
# YOLOv5-based YOLOv6/v8 experiments): with any of them in the module's globals it is not YOLOv5's parser.
FORK_ONLY = frozenset({
    "IDetect", "IAuxDetect", "IBin", "IKeypoint", "ImplicitA", "ImplicitM",  # YOLOv7
    "DDetect", "DualDetect", "DualDDetect", "TripleDetect", "TripleDDetect", "DSegment", "DualDSegment", "Panoptic",
    "RepNCSPELAN4", "ADown", "SPPELAN",  # YOLOv9
    "V6Detect", "DFL",  # anchor-free experiments on the YOLOv5 code base: another head, another parser
})  # fmt: skip
DEFAULT_CHANNEL_MULTIPLE = 8  # YOLOv5 rounds widths to multiples of 8 (newer clones: a YAML's `channel_multiple`)

_SOURCE: contextvars.ContextVar[str | None] = contextvars.ContextVar("effdet_yolov5_cfg", default=None)


# ------------------------------------------------------------------------------------------------------ fingerprint
def _params(fn) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return ()


def model_class(module: ModuleType) -> type | None:
    """YOLOv5's model class in ``module`` (``DetectionModel``; ``Model`` in older releases), if any."""
    cls = getattr(module, "DetectionModel", None) or getattr(module, "Model", None)
    return cls if isinstance(cls, type) and issubclass(cls, nn.Module) else None


def is_yolov5(module: ModuleType) -> bool:
    """Whether ``module`` is YOLOv5's ``models/yolo.py`` (clone or pip package), not a fork that reuses the name.

    YOLOv5's module has ``parse_model(d, ch)``, an anchor-based ``Detect(nc, anchors, ch)``, a model class, its
    ``Conv``, ``Concat``, ``make_divisible`` and ``LOGGER`` in its globals, and none of the forks' own classes
    (``FORK_ONLY``: YOLOv7's ``IDetect``, YOLOv9's ``DDetect``/``DualDDetect``, ...). YOLOv7 fails on ``IDetect`` and
    on having no ``LOGGER``; YOLOv9 on ``DDetect`` and on a ``Detect`` without anchors.
    """
    g = vars(module)
    if FORK_ONLY & g.keys():
        return False
    detect, conv = g.get("Detect"), g.get("Conv")
    return (
        callable(g.get("parse_model"))
        and _params(g["parse_model"]) == ("d", "ch")
        and isinstance(detect, type)
        and issubclass(detect, nn.Module)
        and _params(detect.__init__)[:3] == ("self", "nc", "anchors")
        and isinstance(conv, type)
        and issubclass(conv, nn.Module)
        and isinstance(g.get("Concat"), type)
        and callable(g.get("make_divisible"))
        and isinstance(g.get("LOGGER"), logging.Logger)
        and model_class(module) is not None
    )


# ------------------------------------------------------------------------------------------------------------ rules
def _is_anchors(x) -> bool:
    """A list of ``[w, h, ...]`` anchors per level, or an anchor count."""
    if is_index(x):
        return x > 0
    return (
        isinstance(x, list)
        and bool(x)
        and all(isinstance(a, list) and a and len(a) % 2 == 0 and all(map(keys.is_positive_number, a)) for a in x)
    )


_MULTIPLE = "a positive number (YOLOv5 scales every row by it: e.g. 0.33 and 0.50 for s)"
# The top-level keys YOLOv5's model class and parse_model read from a model dict, beyond keys.COMMON
KEYS: dict[str, keys.Key] = {
    "depth_multiple": keys.Key(_MULTIPLE, keys.is_positive_number, missing=f"YOLOv5 needs {_MULTIPLE}"),
    "width_multiple": keys.Key(_MULTIPLE, keys.is_positive_number, missing=f"YOLOv5 needs {_MULTIPLE}"),
    "anchors": keys.Key(
        "a list of [w, h, ...] anchors per level or an anchor count",
        _is_anchors,
        missing="YOLOv5 needs a list of [w, h, ...] anchors per level or an anchor count",
    ),
    "ch": keys.Key("a positive integer (input channels)", keys.is_positive_int),
    "channel_multiple": keys.Key(
        "a positive integer (the channel rounding of newer YOLOv5 clones)", keys.is_positive_int
    ),
}


class Rules(HostRules):
    """One YOLOv5 module's parser, seen from the plugin, for one model dict ``d`` (its multipliers, anchors, nc)."""

    def __init__(self, module: ModuleType, d: dict):
        g = vars(module)
        self.module, self.d = module, d
        self.conv, self.logger, self.make_divisible = g["Conv"], g["LOGGER"], g["make_divisible"]
        # newer clones round widths to the YAML's `channel_multiple` (default 8); 7.0 and the pip package always to 8
        parse = original(module, "parse_model")
        self.honours_channel_multiple = "channel_multiple" in getattr(getattr(parse, "__code__", None), "co_consts", ())
        self._rule: tuple[float, float, int, int] | None = None

    def names(self) -> HostNames:
        g = vars(self.module)
        known = {k for k, v in g.items() if isinstance(v, type) and issubclass(v, nn.Module)}

        def resolves(m: str) -> bool:  # what YOLOv5's eval(m) in the module's globals finds
            for prefix in ("nn.", "torch.nn."):
                if m.startswith(prefix):
                    return isinstance(getattr(torch.nn, m[len(prefix) :], None), type)
            return m in known

        return HostNames(resolves, sorted(known), frozenset(h for h in HEADS if h in g))

    def keys(self) -> dict[str, keys.Key]:
        return KEYS

    def rule(self) -> tuple[float, float, int, int]:
        """``(depth_multiple, width_multiple, no, channel_multiple)`` of the dict, its keys checked (``KEYS``)."""
        if self._rule is None:
            d = self.d
            keys.check(d, {**keys.COMMON, **KEYS})
            anchors = d["anchors"]
            na = anchors if is_index(anchors) else len(anchors[0]) // 2
            ch_mul = d.get("channel_multiple") if self.honours_channel_multiple else None
            ch_mul = ch_mul or DEFAULT_CHANNEL_MULTIPLE
            self._rule = (d["depth_multiple"], d["width_multiple"], na * (d["nc"] + 5), ch_mul)
        return self._rule

    def width(self, c: int) -> int:
        """YOLOv5's width for a ``Conv``/``C3`` row written with ``c`` (unscaled if ``c`` is ``no``, as YOLOv5)."""
        _, gw, no, ch_mul = self.rule()
        return c if c == no else self.make_divisible(c * gw, ch_mul)

    def scaling(self, d: dict) -> Scaling:
        """YOLOv5's own rule for its ``Conv``/``C3`` rows (``parse_model``): ``make_divisible(c_out * width_multiple,
        8)`` unless ``c_out`` equals the Detect output width ``no``; repeats ``max(round(n * depth_multiple), 1)`` for
        ``n > 1``. No ``max_channels``."""
        gd = self.rule()[0]
        return Scaling(width=self.width, depth=lambda n: max(round(n * gd), 1) if n > 1 else n)

    def conv_arg(self, width: int) -> int:
        """The ``c_out`` of a ``Conv`` row that YOLOv5's parser turns into ``width`` (found with its own rule)."""
        _, gw, no, ch_mul = self.rule()
        if width == no:
            return width
        a = max(1, math.floor((width - ch_mul) / gw))  # a * gw <= width - ch_mul: YOLOv5 gives less than width
        while True:
            got = self.width(a)
            if got == width:
                return a
            if got > width and a != no:  # YOLOv5's widths grow with c_out: none gives `width`
                raise ValueError(
                    f"YOLOv5's parser carries only widths that are multiples of {ch_mul} (or {no}, the Detect output "
                    f"width) from this row to the next; {width} is neither"
                )
            a += 1

    def standin(self, kind: RowKind, f, c2: int | None) -> tuple[str, list]:
        if isinstance(kind, MultiInputRow):
            return "Concat", [1]  # takes the list `from`; nothing reads its width (rows that would are refused)
        if isinstance(kind, SameWidthRow) and c2 is None:
            return "nn.Identity", []  # YOLOv5's default branch: output width = input width
        return "Conv", [self.conv_arg(c2), 1, 1]

    def activation(self, d: dict, key: str = "activation") -> nn.Module | None:
        act = keys.parse_activation(d, key)
        if act is None and key == "activation" and not hasattr(self.conv, "default_act"):
            act = nn.SiLU()  # YOLOv5 before 7.0: Conv's SiLU is built in
        return act

    def row_line(self, i: int, f, n: int, params: int, module: str, args: list) -> str:
        return f"{i:>3}{f!s:>18}{n:>3}{params:10.0f}  {module:<40}{args!s:<30}"

    def check(self, d: dict) -> None:
        _check_reads(d)


def _check_reads(d: dict) -> None:
    """Refuse a host row that reads a multi-input row directly: YOLOv5 would give it the ``Concat`` stand-in's width."""
    ours = plugin_rows(d)
    rows = model_rows(d)
    for j, row in enumerate(rows):
        if j in ours:
            continue
        for ref in [row[0]] if is_index(row[0]) else row[0]:
            src = j + ref if ref < 0 else ref
            if isinstance(ours.get(src), MultiInputRow):
                raise row_error(
                    d,
                    j,
                    row,
                    f"YOLOv5's parser cannot size a row that reads {rows[src][2]} (row {src}) "
                    f"directly; read it through a Level row",
                )


# ------------------------------------------------------------------------------------------------------------ seams
def _with_source(d: dict) -> dict:
    src = _SOURCE.get()
    return {**d, "yaml_file": src} if src and not d.get("yaml_file") else d


def _parse_model_wrapper(parse_model):
    module = sys.modules[parse_model.__module__]  # the clone's models.yolo or the package's yolov5.models.yolo

    def parse_model_with_plugin(d, ch):
        user_modules.load()  # users' entry-point blocks, once per process
        if not uses_plugin(d):
            return parse_model(d, ch)
        d = _with_source(d)
        c = ch[-1] if isinstance(ch, (list, tuple)) else ch
        return assemble.build(d, c, lambda standin: parse_model(standin, ch), Rules(module, d))

    parse_model_with_plugin.__wrapped__ = parse_model
    return parse_model_with_plugin


def _disabled_parse_model_wrapper(parse_model):
    def parse_model_disabled(d, ch):
        if uses_plugin(d):
            d = _with_source(d)
            raise disabled_error(f"{d.get('yaml_file') or 'the model YAML'} uses effdet-plugin rows")
        return parse_model(d, ch)

    parse_model_disabled.__wrapped__ = parse_model
    return parse_model_disabled


def _model_dict(cfg) -> dict | None:
    """The model dict YOLOv5's model class will read from ``cfg`` (a dict, or a YAML file read as YOLOv5 reads it);
    None where it cannot be read (YOLOv5 then reports that itself)."""
    if isinstance(cfg, dict):
        return cfg
    try:
        with open(cfg, encoding="ascii", errors="ignore") as f:
            d = yaml.safe_load(f)
    except (OSError, TypeError, ValueError, yaml.YAMLError):
        return None
    return d if isinstance(d, dict) else None


def _noting_cfg(init, check: bool):
    module = sys.modules.get(getattr(init, "__module__", None) or "")  # as parse_model's: the class's own module
    check = check and module is not None and is_yolov5(module)

    @functools.wraps(init)
    def init_noting_cfg(self, *args, **kwargs):
        cfg = args[0] if args else kwargs.get("cfg")
        source = str(cfg) if isinstance(cfg, (str, bytes)) or hasattr(cfg, "__fspath__") else None
        token = _SOURCE.set(source)
        try:
            d = _model_dict(cfg) if check else None
            if d is not None and uses_plugin(d):  # the model class indexes nc (and ch) before parse_model
                d = _with_source(d)
                assemble.check_keys(d, Rules(module, d))
            init(self, *args, **kwargs)
        finally:
            _SOURCE.reset(token)

    return init_noting_cfg


def _init_wrapper(init):
    """The model class's ``__init__``: notes ``cfg`` for messages and checks a plugin dict's keys before YOLOv5 reads
    them."""
    return _noting_cfg(init, check=True)


def _disabled_init_wrapper(init):
    """The model class's ``__init__`` with the plugin off: only notes ``cfg`` for the message."""
    return _noting_cfg(init, check=False)


# YOLOv5's command-line scripts, relative to the folder that holds models/; each calls its main(opt)
COMMANDS = (
    "train.py", "val.py", "detect.py", "export.py",
    "segment/train.py", "segment/val.py", "segment/predict.py",
    "classify/train.py", "classify/val.py", "classify/predict.py",
)  # fmt: skip


def install_command_errors(module: ModuleType) -> None:
    """``train.py`` (and YOLOv5's other scripts) ending on a plugin error print its one line, not the traceback."""
    if not getattr(module, "__file__", None):
        return
    root = Path(module.__file__).parents[1].as_posix()
    for script in COMMANDS:
        errors.one_line_in_command(f"{root}/{script}", "main")


def install(module: ModuleType) -> None:
    """Rebind ``module``'s seams (idempotent); replaces the ``EFFDET_PLUGIN_DISABLE`` seam if that is in place."""
    rebind(module, "parse_model", _parse_model_wrapper, params=("d", "ch"))
    rebind(model_class(module), "__init__", _init_wrapper, params=("self", "cfg"))


def install_disabled(module: ModuleType) -> None:
    """With ``EFFDET_PLUGIN_DISABLE`` set: build nothing, only explain when a plugin YAML reaches the parser."""
    rebind(module, "parse_model", _disabled_parse_model_wrapper, params=("d", "ch"))
    rebind(model_class(module), "__init__", _disabled_init_wrapper, params=("self", "cfg"))
