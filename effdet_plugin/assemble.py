"""Build a model dict with plugin rows through a host's own parser: the algorithm every host adapter shares.

1. ``check_keys`` (top-level keys and sections) and ``rows.validate_model`` (rows) check the whole dict once; nothing
   is built before they pass.
2. Each plugin row is resolved with the host's scaling rule (``HostRules.scaling``): output width and repeats, or a
   multi-input module's own width.
3. The host's parser builds a copy of the dict in which each plugin row is a stand-in built-in row with that output
   width (``HostRules.standin``), so the host computes every other row's widths, ``save`` list and head itself.
4. One forward walk (``routing.walk``) at a small size builds each plugin row in place of its stand-in from the real
   input tensors it receives: input widths and strides are read from tensors, never from module internals.

Only dicts with plugin rows reach this module: the host's own YAMLs go straight to its parser.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from effdet_plugin import blocks, keys, scale_rows
from effdet_plugin.routing import stride_of, walk
from effdet_plugin.rows import (
    HostNames,
    ModelRowError,
    MultiInputRow,
    RowKind,
    SameWidthRow,
    ScaledRow,
    check_sections,
    key_error,
    model_rows,
    plugin_rows,
    row_error,
    validate_model,
)

PROBE_SIZE = 64  # image size of the build walk: every stride up to 64 still has a feature map


@dataclass(frozen=True)
class Scaling:
    """A host's rule for a scaled row: output width from ``c_out`` as written, repeats from ``n`` as written."""

    width: Callable[[int], int]
    depth: Callable[[int], int]


class HostRules(ABC):
    """What the shared build needs from a host: its ``Conv``, names, scaling rule, stand-ins and model table."""

    conv: type[nn.Module]
    logger: logging.Logger

    @abstractmethod
    def keys(self) -> dict[str, keys.Key]:
        """The host's own top-level keys beyond ``keys.COMMON`` (same name: the host's rule wins)."""

    @abstractmethod
    def names(self) -> HostNames:
        """Module names the host's parser resolves, and its output heads."""

    @abstractmethod
    def scaling(self, d: dict) -> Scaling:
        """The host's width/depth rule for the model dict ``d``."""

    def scale(self, d: dict) -> str | None:
        """The scale letter ``d`` builds at, by the host's rule (for ``scale_rows:`` and rows that pick by letter, such
        as a BiFPN's named phi); None where the host's files have one scale each."""
        return None

    @abstractmethod
    def standin(self, kind: RowKind, f, c2: int | None) -> tuple[str, list]:
        """A built-in ``(module, args)`` row whose output width, as the host computes it, is ``c2`` (for a
        same-width row: its input's width). ``ValueError``: the host cannot carry ``c2`` (reported with the row)."""

    @abstractmethod
    def activation(self, d: dict, key: str = "activation") -> nn.Module | None:
        """The model's ``activation:`` (or another top-level key's activation) as a module, None where unset."""

    @abstractmethod
    def row_line(self, i: int, f, n: int, params: int, module: str, args: list) -> str:
        """The host's model-table line for one row."""

    def check(self, d: dict) -> None:
        """What this host's parser cannot build beyond ``rows.validate_model`` (run right after it); none by default."""


def check_keys(d: dict, host: HostRules) -> str | None:
    """Check every top-level key (``keys.COMMON``, ``keys.PLUGIN``, the host's) and the sections of a dict with plugin
    rows, as soon as a host has it; return the scale letter it builds at (``HostRules.scale``)."""
    keys.check(d, {**keys.COMMON, **keys.PLUGIN, **host.keys()})
    check_sections(d)
    return host.scale(d)


def build(d: dict, ch: int, parse: Callable[[dict], tuple[nn.Sequential, list]], host: HostRules):
    """Return ``parse(d)`` with every plugin row built by the plugin (see the module docstring)."""
    scale = check_keys(d, host)
    d = scale_rows.apply(d, scale)
    resolving = {**d, "scale": scale}  # what rows read (``yaml_args``); the host parses ``d`` with its own letter
    ours = plugin_rows(d)
    validate_model(resolving, host.names())
    host.check(d)
    rows = model_rows(d)
    n_backbone = len(d["backbone"])
    scale_backbone = d.get("scale_backbone", True)
    drop_path = d.get("drop_path", blocks.DEFAULT_DROP_PATH)
    act = host.activation(d)
    # Exact pretrained backbones (EfficientNet-Lite: ReLU6) need their own activation while the host's rows keep the
    # model's: the host has one `activation:` for every Conv, so the plugin's backbone rows read a key of their own.
    backbone_act = host.activation(d, "backbone_activation")
    scaling = host.scaling(d)
    backbone_scaling = scaling
    if "backbone_scales" in d:  # a head family's scales (YOLO26: depth 0.5 at n) need not deepen the backbone
        if not d.get("scales") or scale not in d["backbone_scales"]:
            have = ", ".join(d["backbone_scales"])
            raise key_error(d, "backbone_scales", f"needs 'scales:' and an entry for scale {scale!r} (it has {have})")
        backbone_scaling = host.scaling({**d, "scales": d["backbone_scales"], "scale": scale})

    plan: dict[int, tuple[int | None, int, list]] = {}  # row -> (c2, repeats, args after c2)
    for i, kind in ours.items():
        f, n, _, args = rows[i]
        if isinstance(kind, ScaledRow):
            unscaled = i < n_backbone and not scale_backbone
            rule = backbone_scaling if i < n_backbone else scaling
            c2, repeats = (args[0], n) if unscaled else (rule.width(args[0]), rule.depth(n))
            plan[i] = (c2, repeats, list(args[1:]))
        elif isinstance(kind, MultiInputRow):
            c2, *rest = kind.resolve(resolving, i, rows[i])
            plan[i] = (c2, 1, rest)
        else:
            src = i + f if f < 0 else f
            plan[i] = (plan[src][0] if src in plan and isinstance(ours[src], MultiInputRow) else None, 1, list(args))
    standin = dict(d)
    swapped = list(rows)
    for i, kind in ours.items():
        try:
            module, args = host.standin(kind, rows[i][0], plan[i][0])
        except ValueError as e:  # a width the host's parser cannot carry to the next row
            raise row_error(d, i, rows[i], str(e)) from None
        swapped[i] = [rows[i][0], 1, module, args]
    standin["backbone"], standin["head"] = swapped[:n_backbone], swapped[n_backbone:]

    # the host's parser sets Conv.default_act from `activation:` and (Ultralytics before ~8.4.9x, every YOLOv5) leaves
    # it set, so one Lite model would give every later model in the process ReLU6; a plugin model leaves it as it was
    with _held(host.logger) as held, _default_act_kept(host.conv):
        model, save = parse(standin)

    lines: dict[int, str] = {}

    def replace(i: int, inp) -> nn.Module | None:
        if i not in plan:
            return None
        kind, row = ours[i], rows[i]
        c2, n, args = plan[i]
        hosted = kind.host_args(host.conv, backbone_act if backbone_act is not None and i < n_backbone else act)
        try:
            if isinstance(kind, MultiInputRow):
                if not isinstance(inp, list) or any(stride_of(x, PROBE_SIZE) is None for x in inp):
                    raise row_error(
                        d, i, row, "every input must be one feature map (pick list outputs with a Level row)"
                    )
                c1, strides = [x.shape[1] for x in inp], [stride_of(x, PROBE_SIZE) for x in inp]
                layer, shown = kind.build(c1, c2, args, strides, **hosted), [c1, c2, *args]
            elif isinstance(kind, SameWidthRow):
                layer, shown = kind.build(args, **hosted), args
            else:
                if stride_of(inp, PROBE_SIZE) is None:
                    raise row_error(
                        d,
                        i,
                        row,
                        f"{kind.name} needs one feature map as input, row {row[0]} gives a {type(inp).__name__}",
                    )
                layer, shown = kind.build(inp.shape[1], c2, n, args, **hosted), [inp.shape[1], c2, *args]
        except ModelRowError:
            raise
        except (TypeError, ValueError) as e:
            raise row_error(d, i, row, str(e)) from None
        if "bn_eps" in d:
            blocks.set_bn_eps(layer, d["bn_eps"])
        layer.np = sum(x.numel() for x in layer.parameters())
        layer.i, layer.f, layer.type = i, row[0], kind.type_name
        lines[i] = host.row_line(i, row[0], n, layer.np, layer.type, shown)
        return layer

    last, i = max(plan), -1
    try:
        for i, _, _ in walk(model, torch.zeros(1, ch, PROBE_SIZE, PROBE_SIZE), replace, stop=last):
            pass
    except ModelRowError:
        raise
    except Exception as e:  # noqa: BLE001  (whatever a block raises on its inputs is reported with its row)
        j = i + 1  # the row that was running
        raise row_error(d, j, rows[j], f"does not run on the rows before it ({type(e).__name__}: {e})") from None
    blocks.set_drop_path(model, drop_path)
    _replay(held, lines, len(rows), host.logger)
    return model, save


@contextlib.contextmanager
def _default_act_kept(conv: type[nn.Module]) -> Iterator[None]:
    """Restore ``conv.default_act`` (absent before YOLOv5 7.0) however the parse ends."""
    missing = object()
    before = getattr(conv, "default_act", missing)
    try:
        yield
    finally:
        if before is not missing:
            conv.default_act = before


@contextlib.contextmanager
def _held(logger: logging.Logger) -> Iterator[list[logging.LogRecord]]:
    """Hold back the host's log records while it parses the stand-in dict."""
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        held.append(record)
        return False

    logger.addFilter(hold)
    try:
        yield held
    finally:
        logger.removeFilter(hold)


def _replay(held: list[logging.LogRecord], lines: dict[int, str], n_rows: int, logger: logging.Logger) -> None:
    """Emit the host's held records, with the plugin's own line for each plugin row.

    The host logs one record per row, in row order, as the last records of its parser; neither host offers another
    hook for the row text, so a plugin row's record is found by that position (never by matching its text).
    """
    first = len(held) - n_rows
    for k, record in enumerate(held):
        if k >= first and (k - first) in lines and first >= 0:
            record.msg, record.args = lines[k - first], ()
        logger.handle(record)
