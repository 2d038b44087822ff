"""EfficientNet / EfficientNetV2 layers built from the host's ``Conv`` so the host's ``fuse()`` folds every BatchNorm.

Each block maps ``c1`` input channels to ``c2`` output channels, as every row in a YOLO YAML does. Keyword ``conv`` is
the host's conv + BN + activation class, which every host's parser passes (Ultralytics' ``Conv``, YOLOv5's
``models.common.Conv``); blocks built outside a parser use ``ConvBNAct``, the same layer with the same interface.
``act`` is the model's activation (the YAML's ``activation:``; default the conv's, SiLU). Arguments are checked here
and reported as ``ValueError`` (``TypeError`` for a non-number) naming the argument; the parser hook adds the YAML row.
"""

from __future__ import annotations

import torch
from torch import nn

from effdet_plugin.same_padding import padded_conv

__all__ = (
    "ConvBNAct",
    "DropPath",
    "FusedMBConv",
    "KeepEpsBatchNorm2d",
    "MBConv",
    "SqueezeExcite",
    "Stem",
    "set_bn_eps",
    "set_drop_path",
)

DEFAULT_DROP_PATH = 0.2  # torchvision's efficientnet_v2_s stochastic_depth_prob; a YAML's `drop_path:` overrides it


class ConvBNAct(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + activation, with the hosts' ``Conv`` interface: the conv class of blocks built
    outside a host's parser.

    Arguments, attributes (``conv``, ``bn``, ``act``, class attribute ``default_act``) and ``forward_fuse`` are those of
    Ultralytics' and YOLOv5's ``Conv``: ``act=True`` is ``default_act``, a module is used as given, anything else is
    no activation.
    """

    default_act = nn.SiLU()

    def __init__(
        self,
        c1: int,
        c2: int,
        k: int = 1,
        s: int = 1,
        p: int | None = None,
        g: int = 1,
        d: int = 1,
        act: nn.Module | bool = True,
    ):
        """Initialize a ``k`` x ``k`` stride-``s`` conv from ``c1`` to ``c2`` channels ("same" padding by default)."""
        super().__init__()
        p = d * (k - 1) // 2 if p is None else p
        self.conv = nn.Conv2d(c1, c2, k, s, p, groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = self.default_act if act is True else act if isinstance(act, nn.Module) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply convolution, BatchNorm and activation."""
        return self.act(self.bn(self.conv(x)))

    def forward_fuse(self, x: torch.Tensor) -> torch.Tensor:
        """Apply convolution and activation (after the BatchNorm has been folded into the convolution)."""
        return self.act(self.conv(x))


def _act(conv: type[nn.Module], act: nn.Module | None) -> nn.Module:
    """The activation module: the model's, else the host Conv's default (SiLU)."""
    return act if act is not None else conv.default_act


def _check_kernel_stride(k, s) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise ValueError(f"kernel must be a positive odd integer, got {k!r}")
    if isinstance(s, bool) or s not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {s!r}")


def _check_ratio(name: str, value, low: float, high: float | None, high_open: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if value < low or (high is not None and (value >= high if high_open else value > high)):
        bound = f"[{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be in {bound}, got {value!r}")


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch per sample with probability ``p`` while training."""

    def __init__(self, p: float = 0.0):
        """Initialize with drop probability ``p`` in [0, 1)."""
        super().__init__()
        _check_ratio("drop_path", p, 0.0, 1.0)
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` unchanged in eval mode, else zero whole samples and rescale the survivors."""
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p:.4f}"


class SqueezeExcite(nn.Module):
    """Squeeze-excitation: global mean, 1x1 reduce + activation (SiLU), 1x1 expand + sigmoid, channel-wise scale."""

    def __init__(self, c: int, c_squeeze: int, act: nn.Module | None = None):
        """Initialize for ``c`` channels squeezed to ``c_squeeze``."""
        super().__init__()
        self.reduce = nn.Conv2d(c, c_squeeze, 1)
        self.act = act if act is not None else nn.SiLU()
        self.expand = nn.Conv2d(c_squeeze, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel of ``x`` by its learned gate (keepdim mean: no reshapes, exports as plain ops)."""
        return x * self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))).sigmoid()


class Stem(nn.Module):
    """Stem: k x k conv + BN + activation (YAML name ``stem``, args ``[c_out, kernel, stride, padding]``; ``padding``
    ``auto`` or ``same``: see ``effdet_plugin.same_padding``)."""

    def __init__(
        self,
        c1: int,
        c2: int,
        k: int = 3,
        s: int = 2,
        padding: str = "auto",
        *,
        conv: type[nn.Module] | None = None,
        act: nn.Module | None = None,
    ):
        """Initialize a ``k`` x ``k`` stride-``s`` stem from ``c1`` to ``c2`` channels."""
        super().__init__()
        _check_kernel_stride(k, s)
        conv = conv or ConvBNAct
        self.conv = padded_conv(conv, c1, c2, k, s, padding, act=_act(conv, act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the stem."""
        return self.conv(x)


class _MBBlock(nn.Module):
    """Shared argument checks and residual rule of the two inverted-residual blocks."""

    def __init__(self, c1: int, c2: int, k: int, s: int, e: float, se: float):
        super().__init__()
        _check_kernel_stride(k, s)
        _check_ratio("expansion", e, 1.0, None)
        _check_ratio("se_ratio", se, 0.0, 1.0)
        self.shortcut = s == 1 and c1 == c2  # residual only where shapes match, as in the paper
        self.drop_path = DropPath()  # rate set per model by set_drop_path(), from the block's global index


class FusedMBConv(_MBBlock):
    """Fused-MBConv: k x k expansion conv + BN + SiLU, then 1x1 projection + BN (single k x k conv when e == 1).

    YAML args ``[c_out, kernel, stride, expansion, se_ratio]``; ``se_ratio`` must be 0 (EfficientNetV2 has no SE here).
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, e: float = 1.0, se: float = 0.0, *,
                 conv: type[nn.Module] | None = None, act: nn.Module | None = None):  # fmt: skip
        """Initialize a Fused-MBConv block from ``c1`` to ``c2`` channels."""
        super().__init__(c1, c2, k, s, e, se)
        if se:
            raise ValueError(f"FusedMBConv has no squeeze-excitation: se_ratio must be 0, got {se!r}")
        conv = conv or ConvBNAct
        c_mid = int(c1 * e)
        if c_mid == c1:
            self.expand = conv(c1, c2, k, s, act=_act(conv, act))
            self.project = nn.Identity()
        else:
            self.expand = conv(c1, c_mid, k, s, act=_act(conv, act))
            self.project = conv(c_mid, c2, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block, adding the (drop-path) residual when shapes match."""
        y = self.project(self.expand(x))
        return x + self.drop_path(y) if self.shortcut else y


class MBConv(_MBBlock):
    """MBConv: 1x1 expansion (omitted when e == 1), depthwise k x k, squeeze-excitation, 1x1 projection + BN.

    YAML args ``[c_out, kernel, stride, expansion, se_ratio, padding]``; the SE squeeze width is ``int(c1 * se_ratio)``,
    from the block's input channels as in the EfficientNet papers and torchvision; ``padding`` (of the depthwise conv)
    ``auto`` or ``same`` (EfficientNet-Lite): see ``effdet_plugin.same_padding``.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, e: float = 4.0, se: float = 0.25,
                 padding: str = "auto", *, conv: type[nn.Module] | None = None,
                 act: nn.Module | None = None):  # fmt: skip
        """Initialize an MBConv block from ``c1`` to ``c2`` channels."""
        super().__init__(c1, c2, k, s, e, se)
        conv = conv or ConvBNAct
        a = _act(conv, act)
        c_mid = int(c1 * e)
        self.expand = conv(c1, c_mid, 1, act=a) if c_mid != c1 else nn.Identity()
        self.dw = padded_conv(conv, c_mid, c_mid, k, s, padding, g=c_mid, act=a)
        self.se = SqueezeExcite(c_mid, max(1, int(c1 * se)), act) if se > 0 else nn.Identity()
        self.project = conv(c_mid, c2, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block, adding the (drop-path) residual when shapes match."""
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + self.drop_path(y) if self.shortcut else y


def set_drop_path(model: nn.Module, rate: float) -> int:
    """Give every FusedMBConv/MBConv in ``model`` the drop-path rate ``rate * index / count`` and return the count.

    ``index`` is the block's global position in module order (0 for the first), as torchvision does; only blocks with
    a shortcut ever drop anything.
    """
    _check_ratio("drop_path", rate, 0.0, 1.0)
    blocks = [m for m in model.modules() if isinstance(m, _MBBlock)]
    for i, block in enumerate(blocks):
        block.drop_path.p = rate * i / len(blocks)
    return len(blocks)


class KeepEpsBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that keeps its own eps: Ultralytics' ``initialize_weights`` resets only exact ``nn.BatchNorm2d``."""


def set_bn_eps(model: nn.Module, eps: float) -> int:
    """Give every conv's BatchNorm inside ``model`` epsilon ``eps`` (kept through model construction); return the count.

    Needed to match source models numerically (torchvision's EfficientNet-B0..B4 use 1e-5). Momentum is set to 0.03,
    the value Ultralytics gives its own BatchNorms for training.
    """
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise ValueError(f"bn_eps must be a number in (0, 1), got {eps!r}")
    convs = [m for m in model.modules() if isinstance(getattr(m, "bn", None), nn.BatchNorm2d)]
    for conv in convs:
        bn = KeepEpsBatchNorm2d(conv.bn.num_features, eps=float(eps), momentum=0.03)
        bn.load_state_dict(conv.bn.state_dict())
        conv.bn = bn
    return len(convs)
