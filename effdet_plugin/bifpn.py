"""BiFPN neck (Tan, Pang & Le, EfficientDet, 2020) with fast normalized fusion, as one Ultralytics YAML row.

A row ``[[P3, P4, P5], 1, BiFPN, [phi, mode]]`` builds the BiFPN of EfficientDet-D``phi`` (width and layer count from
the paper's table 1, ``SIZES``) and outputs the list ``[P3, P4, P5]``; rows ``[i, 1, Level, [k]]`` pick level ``k``
out of it for ``Detect``. ``phi`` is an int or the name of a top-level YAML mapping from scale
letter to phi (e.g. ``bifpn_phi: {n: 0, s: 1, m: 2, l: 3, x: 4}``). The graph of one layer is the table ``NODES``.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from effdet_plugin.blocks import ConvBNAct

__all__ = ("NODES", "SIZES", "BiFPN", "BiFPNLayer", "Fusion", "Level", "bifpn_size", "fusion_weights")

MODES = ("fastattn", "attn", "sum")  # as effdet's FpnCombine weight_method
EPS = 1e-4  # fast normalized fusion epsilon (EfficientDet, section 3.3)

# One BiFPN layer over P3-P5 (EfficientDet fig. 2d): each node fuses its inputs at its own level. Names without a
# suffix are the layer's inputs; "td" is the top-down intermediate node, which also feeds its level's output node
# beside the same-level input edge (P4). The layer's outputs are the "out" nodes, P3 to P5.
NODES: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    # name      level  inputs
    ("P4_td", 4, ("P4", "P5")),  # top-down
    ("P3_out", 3, ("P3", "P4_td")),
    ("P4_out", 4, ("P4", "P4_td", "P3_out")),  # bottom-up
    ("P5_out", 5, ("P5", "P4_out")),
)
LEVELS = (3, 4, 5)  # the layer's input and output levels, in row order


# EfficientDet D0-D7 (Tan, Pang & Le, 2020, table 1): BiFPN (width, layers) by phi. The paper's eq. 1 gives 120 and
# 216 for phi 2 and 4, but its released models (table 1, effdet's configs) use 112 and 224, and D6/D7 stop growing.
SIZES: tuple[tuple[int, int], ...] = ((64, 3), (88, 4), (112, 5), (160, 6), (224, 7), (288, 7), (384, 8), (384, 8))
PHI_BY_SCALE = {"n": 0, "s": 1, "m": 2, "l": 3, "x": 4}  # the shipped YAMLs' bifpn_phi


def bifpn_size(phi: int) -> tuple[int, int]:
    """Return EfficientDet-D``phi``'s BiFPN ``(width, layers)`` (``SIZES``); phi is 0 to 7 as in the paper."""
    if isinstance(phi, bool) or not isinstance(phi, int) or not 0 <= phi < len(SIZES):
        raise ValueError(f"phi must be an integer from 0 to {len(SIZES) - 1} (EfficientDet D0-D7), got {phi!r}")
    return SIZES[phi]


def _level(name: str) -> int:
    return int(name[1:].split("_")[0])


class Fusion(nn.Module):
    """Weighted sum of same-shape feature maps: 'fastattn' ``sum_i w_i*x_i / (eps + sum_j w_j)`` with ``w = ReLU(p)``,
    'attn' softmax-weighted, or plain 'sum'. Weights start at 1."""

    def __init__(self, n: int, mode: str = "fastattn", eps: float = EPS):
        """Initialize for ``n`` inputs."""
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"fusion mode must be one of {MODES}, got {mode!r}")
        self.n, self.mode, self.eps = n, mode, float(eps)
        self.weight = nn.Parameter(torch.ones(n)) if mode != "sum" else None

    def normalized_weights(self) -> torch.Tensor:
        """Return the effective weight of each input (they sum to 1 up to eps for 'fastattn', exactly for 'attn')."""
        if self.mode == "sum":
            return torch.ones(self.n)
        if self.mode == "attn":
            return self.weight.softmax(0)
        w = self.weight.relu()
        return w / (w.sum() + self.eps)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Fuse the list ``xs`` (weights in the inputs' dtype, so AMP keeps half-precision maps half)."""
        if self.mode == "sum":
            return torch.stack(xs, -1).sum(-1)
        x = torch.stack(xs, -1)
        return (x * self.normalized_weights().to(x.dtype)).sum(-1)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, eps={self.eps:g}"


class _Resample(nn.Sequential):
    """Bring an input edge to its node's width (1x1 conv + BN where widths differ) and level (nearest upsample going
    down the pyramid, 3x3 stride-2 max-pool per level going up, as effdet)."""

    def __init__(self, c1: int, c2: int, from_level: int, to_level: int, conv: type[nn.Module]):
        layers = [conv(c1, c2, 1, act=False)] if c1 != c2 else []
        if to_level < from_level:
            layers.append(nn.Upsample(scale_factor=2 ** (from_level - to_level), mode="nearest"))
        layers += [nn.MaxPool2d(3, 2, 1) for _ in range(to_level - from_level)]
        super().__init__(*layers)


class _Node(nn.Module):
    """One fusion node: resample each input edge, fuse, then depthwise-separable conv + BN + SiLU."""

    def __init__(
        self,
        c_in: list[int],
        levels: list[int],
        level: int,
        c: int,
        mode: str,
        conv: type[nn.Module],
        act: nn.Module | bool,
    ):
        super().__init__()
        self.resample = nn.ModuleList(_Resample(c1, c, lv, level, conv) for c1, lv in zip(c_in, levels))
        self.fuse = Fusion(len(c_in), mode)
        # the host's Conv (depthwise, then pointwise with the model's activation): the host's fuse() folds every BN
        self.conv = nn.Sequential(conv(c, c, 3, g=c, act=False), conv(c, c, 1, act=act))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.conv(self.fuse([r(x) for r, x in zip(self.resample, xs)]))


class BiFPNLayer(nn.Module):
    """One BiFPN layer: the nodes of ``NODES`` in order, from inputs of widths ``c1`` (P3, P4, P5) to width ``c``."""

    def __init__(
        self,
        c1: list[int],
        c: int,
        mode: str = "fastattn",
        *,
        conv: type[nn.Module] | None = None,
        act: nn.Module | None = None,
    ):
        """Initialize from input widths ``c1`` (one per level in ``LEVELS``) to output width ``c``."""
        super().__init__()
        conv = conv or ConvBNAct
        width = dict(zip((f"P{lv}" for lv in LEVELS), c1))
        self.nodes = nn.ModuleDict()
        for name, level, inputs in NODES:
            c_in, levels = [width.get(n, c) for n in inputs], [_level(n) for n in inputs]
            self.nodes[name] = _Node(c_in, levels, level, c, mode, conv, True if act is None else act)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Map ``[P3, P4, P5]`` to the layer's ``[P3_out, P4_out, P5_out]``."""
        feats = {f"P{lv}": x for lv, x in zip(LEVELS, xs)}
        for name, _, inputs in NODES:
            feats[name] = self.nodes[name]([feats[n] for n in inputs])
        return [feats[f"P{lv}_out"] for lv in LEVELS]


class BiFPN(nn.Module):
    """``D`` BiFPN layers of width ``W`` (``bifpn_size(phi)``) on inputs P3, P4, P5; outputs ``[P3, P4, P5]``.

    YAML row ``[[p3, p4, p5], 1, BiFPN, [phi, mode]]``: ``phi`` an int or the name of a top-level mapping from scale
    letter to phi, ``mode`` one of ``MODES`` (default 'fastattn'). Pick outputs with ``[i, 1, Level, [k]]`` rows.
    """

    outputs = len(LEVELS)  # the list it returns: P3, P4, P5

    def __init__(
        self,
        c1: list[int],
        c2: int,
        phi: int,
        mode: str = "fastattn",
        strides: list[int] | None = None,
        *,
        conv: type[nn.Module] | None = None,
        act: nn.Module | None = None,
    ):
        """Initialize from input widths ``c1``; ``c2`` must be ``phi``'s width; ``strides`` are checked if given."""
        super().__init__()
        width, depth = bifpn_size(phi)
        if len(c1) != len(LEVELS):
            raise ValueError(f"BiFPN needs {len(LEVELS)} input levels (P3, P4, P5), got {len(c1)}")
        if c2 != width:
            raise ValueError(f"output width {c2} does not match phi={phi} (width {width})")
        if strides is not None and any(b != 2 * a for a, b in pairwise(strides)):
            raise ValueError(f"inputs must be P3, P4, P5 with strides s, 2s, 4s in that order, got strides {strides}")
        self.phi, self.width, self.depth = phi, width, depth
        self.layers = nn.ModuleList(
            BiFPNLayer(c1 if i == 0 else [width] * len(LEVELS), width, mode, conv=conv, act=act) for i in range(depth)
        )

    @classmethod
    def yaml_args(cls, args: list, d: dict) -> list:
        """Resolve a YAML row's ``[phi, mode]`` into ``[c2, phi, mode]`` using the model dict ``d`` (registry hook; a
        named phi is looked up at ``d["scale"]``, the letter the host builds at)."""
        if not 1 <= len(args) <= 2:
            raise ValueError(f"args must be [phi] or [phi, mode], got {args!r}")
        phi, mode = args[0], args[1] if len(args) > 1 else "fastattn"
        if isinstance(phi, str):
            table = d.get(phi)
            if not isinstance(table, dict):
                raise TypeError(f"phi {phi!r} names no top-level mapping from scale letter to phi in the YAML")
            scale = d.get("scale")  # the letter the host builds at (HostRules.scale), set by the shared build
            if not scale:
                raise ValueError(
                    f"top-level {phi!r} maps scale letters to phi, but this model has no scale letter "
                    f"(no scales: table, or a host that reads none); give phi as an integer"
                )
            if scale not in table:
                raise ValueError(f"top-level {phi!r} has no entry for scale {scale!r}")
            phi = table[scale]
        if mode not in MODES:
            raise ValueError(f"fusion mode must be one of {MODES}, got {mode!r}")
        return [bifpn_size(phi)[0], phi, mode]

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Map backbone ``[P3, P4, P5]`` to fused ``[P3, P4, P5]``."""
        for layer in self.layers:
            xs = layer(xs)
        return xs


class Level(nn.Module):
    """``[i, 1, Level, [k]]``: output ``k`` of a multi-output row such as BiFPN (as Ultralytics' ``Index``)."""

    def __init__(self, k: int):
        """Pick output ``k``."""
        super().__init__()
        self.k = k

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Return ``xs[k]``."""
        return xs[self.k]

    def extra_repr(self) -> str:
        return f"k={self.k}"


def fusion_weights(model: nn.Module) -> list[dict]:
    """Return every fusion node's normalized input weights in ``model``, in module order.

    Each entry: ``{"module": qualified name of the BiFPN, "layer": BiFPN layer index, "node": node name,
    "inputs": input names, "weights": list of floats}``.
    """
    rows = []
    for qname, m in model.named_modules():
        if isinstance(m, BiFPN):
            for k, layer in enumerate(m.layers):
                for name, _, inputs in NODES:
                    w = layer.nodes[name].fuse.normalized_weights().detach().float().cpu().tolist()
                    rows.append({"module": qname, "layer": k, "node": name, "inputs": list(inputs), "weights": w})
    return rows
