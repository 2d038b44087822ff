"""The stage tables: one typed row per stage, the single source of every shipped model YAML.

One table per family, as torchvision's ``_efficientnet_conf`` writes them (``partial(MBConvConfig, ...)`` rows):
EfficientNet-B0 (B1..B7 derived by compound scaling with torchvision's own ``adjust_channels``/``adjust_depth``),
EfficientNetV2-S/M/L, and the widened V2-S table (the recommended ``yolov5_effv2.yaml``, ``-wide``) with its
EfficientNet-Lite variant (no SE; ReLU6 through the YAML's ``activation:``). Every YAML in ``models_yaml/`` is
rendered from these tables (``MODEL_YAMLS``; the classic YOLOv5 files in ``models_yaml/yolov5/`` with
``effdet_plugin.classic``'s header and keys); regenerate after editing a table with

    python -m effdet_plugin.stages          # rewrite the YAMLs
    python -m effdet_plugin.stages --check  # exit 1 if any committed YAML is stale

In the exact-backbone YAMLs backbone row ``i`` is torchvision's ``features[i]`` (stem, then one row per stage), so the
final 1x1 conv ``features[-1]`` is left out and SPPF follows the last stage.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import NamedTuple

from effdet_plugin import classic, scale_rows
from effdet_plugin.atomic import atomic_open
from effdet_plugin.bifpn import PHI_BY_SCALE, bifpn_size
from effdet_plugin.blocks import DEFAULT_DROP_PATH
from effdet_plugin.paths import model_yaml_dir

SE_RATIO = 0.25  # MBConv squeeze width = input channels // 4 in both families (FusedMBConv has no SE)
DROP_PATH = DEFAULT_DROP_PATH  # the blocks' default (torchvision's): the plain and exact tables' (the widened: 0)
Scales = dict[str, tuple[float, float, int]]  # letter -> (depth, width, max_channels), Ultralytics' ``scales:``
SCALES: Scales = {"n": (0.33, 0.25, 1024), "s": (0.33, 0.50, 1024), "m": (0.67, 0.75, 1024), "l": (1.00, 1.00, 1024),
                  "x": (1.33, 1.25, 1024)}  # yolov5u neck/head scales
# The recommended family's: yolov5u's at n and s; at m/l/x one depth step less, which is what keeps the widened table
# at or under the same-letter yolov5u's CPU latency (the width cut and a 768-channel cap did not: docs/benchmarks.md)
RECOMMENDED_SCALES: Scales = {**SCALES, "m": (0.50, 0.75, 1024), "l": (0.75, 1.00, 1024), "x": (1.00, 1.25, 1024)}


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
    """A backbone: a stem (3x3, stride 2) of width ``stem`` and its stages."""

    stem: int
    stages: tuple[Stage, ...]

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
            stages.append(s._replace(c_out=MBConvConfig.adjust_channels(s.c_out, factor))
                          if min_stride <= stride <= max_stride else s)
        return replace(self, stages=tuple(stages))

    def fused_through(self, max_stride: int) -> Table:
        """This table with every stage at output stride <= ``max_stride`` a Fused-MBConv stage: no SE, expansion at
        most 4 (EfficientNetV2's fused stages use 1 or 4), kernel, stride, width and repeats kept."""
        stride, stages = 2, []
        for s in self.stages:
            stride *= s.stride
            stages.append(fused(min(s.expansion, 4), s.kernel, s.stride, s.c_out, s.repeats) if stride <= max_stride
                          else s)
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

    def without_se(self) -> Table:
        """This table with no squeeze-and-excitation in any stage (EfficientNet-Lite)."""
        return replace(self, stages=tuple(s._replace(se=0) for s in self.stages))

    def scaled(self, width: float, depth: float) -> Table:
        """EfficientNet compound scaling exactly as torchvision (width to /8 never -10%, depth by ceil)."""
        from torchvision.models.efficientnet import MBConvConfig

        ch, rep = MBConvConfig.adjust_channels, MBConvConfig.adjust_depth
        return Table(ch(self.stem, width), tuple(s._replace(c_out=ch(s.c_out, width), repeats=rep(s.repeats, depth))
                                                 for s in self.stages))


EFFICIENTNET_B0 = Table(32, (  # Tan & Le 2019, table 1; torchvision efficientnet_b0
    mbconv(1, 3, 1, 16, 1),
    mbconv(6, 3, 2, 24, 2),
    mbconv(6, 5, 2, 40, 2),
    mbconv(6, 3, 2, 80, 3),
    mbconv(6, 5, 1, 112, 3),
    mbconv(6, 5, 2, 192, 4),
    mbconv(6, 3, 1, 320, 1),
))
EFFICIENTNET_V2_S = Table(24, (  # Tan & Le 2021, table 4; torchvision efficientnet_v2_s
    fused(1, 3, 1, 24, 2),
    fused(4, 3, 2, 48, 4),
    fused(4, 3, 2, 64, 4),
    mbconv(4, 3, 2, 128, 6),
    mbconv(6, 3, 1, 160, 9),
    mbconv(6, 3, 2, 256, 15),
))
EFFICIENTNET_V2_M = Table(24, (
    fused(1, 3, 1, 24, 3),
    fused(4, 3, 2, 48, 5),
    fused(4, 3, 2, 80, 5),
    mbconv(4, 3, 2, 160, 7),
    mbconv(6, 3, 1, 176, 14),
    mbconv(6, 3, 2, 304, 18),
    mbconv(6, 3, 1, 512, 5),
))
EFFICIENTNET_V2_L = Table(32, (
    fused(1, 3, 1, 32, 4),
    fused(4, 3, 2, 64, 7),
    fused(4, 3, 2, 96, 7),
    mbconv(4, 3, 2, 192, 10),
    mbconv(6, 3, 1, 224, 19),
    mbconv(6, 3, 2, 384, 25),
    mbconv(6, 3, 1, 640, 7),
))
# EfficientNetV2-S with the stride-16/32 stages 1.5x wider (128/160/256 -> 192/240/384): see yolov5_effv2-wide.yaml
EFFICIENTNET_V2_WIDE = EFFICIENTNET_V2_S.widened(1.5, min_stride=16)
# The n and s models' table: Fused-MBConv (one dense 3x3 conv in place of 1x1 + depthwise + SE) through stride 16.
# At those widths the depthwise stages fit the training data slower than YOLOv5's dense CSP backbone, and dense 3x3
# convs of 48-240 channels cost little on CPU; at m/l/x they would cost more than yolov5u (docs/accuracy.md)
# Its stride-8 stage is 3x wider (64 -> 192; 48 channels at n where yolov5nu's P3 has 64, 96 at s): at 16 the P3 tap
# fed the head too little to place small boxes; at n and s the wider stage costs nothing on CPU (docs/accuracy.md)
EFFICIENTNET_V2_WIDE_FUSED = EFFICIENTNET_V2_WIDE.fused_through(16).widened(3, min_stride=8, max_stride=8)
# The n model's own table: two stride-8 blocks at expansion 2 where s has one at 4 (depth 0.33 makes 2 of 6 repeats, 1
# of 4), and a deeper stride-32 stage with 5x5 depthwise kernels (7 blocks of 21 repeats where s has 5 of 15, as
# EfficientNet-B0's late stages use 5x5; at 1/32 resolution both cost little). Raccoon's large objects asked for more
# stride-32 depth, not width (128 channels there did nothing); s keeps the n/s table, which leads yolov5su as it is
# (docs/accuracy.md)
EFFICIENTNET_V2_WIDE_FUSED_N = (EFFICIENTNET_V2_WIDE_FUSED.with_stage(3, expansion=2, repeats=6)
                                .with_stage(6, kernel=5, repeats=21))
# EfficientNet-Lite's changes (Google's TF EfficientNet-Lite, 2020) on the widened table: no SE; ReLU6 is the YAML's
# ``activation:``, which the host's rows and the plugin's blocks both take. n and s take the Fused-MBConv rows too: on
# cards they lifted the Lite n model by 11 mAP50-95 points at the same OpenVINO INT8 latency (docs/accuracy.md)
EFFICIENTNET_V2_LITE = EFFICIENTNET_V2_WIDE.without_se()
EFFICIENTNET_V2_LITE_FUSED = EFFICIENTNET_V2_LITE.fused_through(16)
# name: (width, depth, BatchNorm eps) as torchvision builds efficientnet_bN (B5-B7 ported with eps 1e-3)
EFFICIENTNET_V1 = {
    "b0": (1.0, 1.0, 1e-5),
    "b1": (1.0, 1.1, 1e-5),
    "b2": (1.1, 1.2, 1e-5),
    "b3": (1.2, 1.4, 1e-5),
    "b4": (1.4, 1.8, 1e-5),
    "b5": (1.6, 2.2, 1e-3),
    "b6": (1.8, 2.6, 1e-3),
    "b7": (2.0, 3.1, 1e-3),
}


@dataclass(frozen=True)
class Backbone:
    """One exact torchvision architecture: its stage table and BatchNorm eps."""

    name: str  # YAML suffix, e.g. "effb0" -> yolov5s_effb0.yaml
    torchvision: str  # torchvision builder, e.g. "efficientnet_b0"
    table: Table
    bn_eps: float

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


def _exact() -> dict[str, Backbone]:
    out = {}
    for v, (width, depth, eps) in EFFICIENTNET_V1.items():
        out[f"eff{v}"] = Backbone(f"eff{v}", f"efficientnet_{v}", EFFICIENTNET_B0.scaled(width, depth), eps)
    for v, table in (("s", EFFICIENTNET_V2_S), ("m", EFFICIENTNET_V2_M), ("l", EFFICIENTNET_V2_L)):
        out[f"effv2-{v}"] = Backbone(f"effv2-{v}", f"efficientnet_v2_{v}", table, 1e-3)
    return out


EXACT_BACKBONES: dict[str, Backbone] = _exact()  # YAML suffix -> torchvision architecture whose weights load exactly


def find_backbone(signature: tuple) -> Backbone | None:
    """Return the known architecture with this ``Backbone.signature``, else None."""
    return next((b for b in EXACT_BACKBONES.values() if b.signature == signature), None)


# ------------------------------------------------------------------------------------------------------ model YAMLs
@dataclass(frozen=True)
class ModelYaml:
    """One shipped model YAML: a backbone table (scaled by the scale letter, or an exact torchvision one) and a neck."""

    file: str  # e.g. "yolov5_effv2.yaml"
    table: Table
    neck: str  # "pan" (YOLOv5 v6.0 head) or "bifpn"
    header: str  # first line: what the backbone is; then the header's text (exact backbones: derived, "")
    drop_path: float = DROP_PATH
    exact: Backbone | None = None  # rows never scaled, BatchNorm eps as torchvision
    scales: Scales = field(default_factory=lambda: dict(SCALES))
    activation: str | None = None  # the YAML's ``activation:`` (Ultralytics' key), None: the host's default (SiLU)
    scale_tables: dict[str, Table] = field(default_factory=dict)  # letter -> its own table (``scale_rows:``)

    def __post_init__(self):
        for letter, t in self.scale_tables.items():
            if letter not in self.scales or t.strides() != self.table.strides() or t.stem != self.table.stem:
                raise ValueError(f"{self.file}: the scale-{letter} table must be a scale of the file with the same "
                                 f"stem and stage strides as its own table")

    def table_at(self, scale: str) -> Table:
        """The backbone table the letter ``scale`` builds."""
        return self.scale_tables.get(scale, self.table)

    @property
    def backbone_key(self) -> str:
        """The name ``effdet-plugin swap --backbone`` knows this backbone by (``yolov5_NAME[_bifpn].yaml``)."""
        return self.file.removeprefix("yolov5_").removesuffix(".yaml").removesuffix("_bifpn")


def _stage_rows(table: Table) -> list[tuple[str, str]]:
    """Each stage's YAML row (flow style) and its comment, stage ``i`` being backbone row ``i``."""
    stride, rows = 2, []
    for i, s in enumerate(table.stages, start=1):
        stride *= s.stride
        rows.append((f"[-1, {s.repeats}, {s.block}, [{s.c_out}, {s.kernel}, {s.stride}, {s.expansion}, {s.se}]]",
                     f"{i}-P{stride.bit_length() - 1}/{stride}"))
    return rows


def _backbone_rows(table: Table) -> list[str]:
    return [f"  - [-1, 1, stem, [{table.stem}, 3, 2]] # 0-P1/2",
            *(f"  - {row} # {note}" for row, note in _stage_rows(table)),
            f"  - [-1, 1, SPPF, [1024, 5]] # {len(table.stages) + 1}-P5/32"]


def _changed_rows(spec: ModelYaml, scale: str) -> dict[int, tuple[str, str]]:
    """The backbone rows (index -> row, comment) that ``scale``'s own table builds instead of the file's rows."""
    base = _stage_rows(spec.table)
    return {i: r for i, (r, b) in enumerate(zip(_stage_rows(spec.table_at(scale)), base), start=1) if r != b}


def _scale_rows_text(spec: ModelYaml) -> str:
    """The ``scale_rows:`` block: for each letter with its own table, the backbone rows that differ."""
    if not spec.scale_tables:
        return ""
    text = f"{scale_rows.KEY}: # {scale_rows.COMMENT} (the file's per-scale tables)\n"
    for letter in spec.scale_tables:
        text += f"  {letter}:\n"
        text += "".join(f"    {i}: {row} # {note}\n" for i, (row, note) in _changed_rows(spec, letter).items())
    return text


def pan_head(p3: int, p4: int, sppf: int, detect: str = "nc") -> str:
    """YOLOv5's v6.0 PAN head on taps ``p3``, ``p4`` and the SPPF row (``detect``: the Detect row's args; Ultralytics'
    ``nc``, classic YOLOv5's ``nc, anchors``)."""
    h = sppf + 1
    return f"""\
# YOLOv5 v6.0 head
head:
  - [-1, 1, Conv, [512, 1, 1]] # {h}
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, {p4}], 1, Concat, [1]] # cat backbone P4
  - [-1, 3, C3, [512, False]] # {h + 3}

  - [-1, 1, Conv, [256, 1, 1]] # {h + 4}
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, {p3}], 1, Concat, [1]] # cat backbone P3
  - [-1, 3, C3, [256, False]] # {h + 7} (P3/8-small)

  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, {h + 4}], 1, Concat, [1]] # cat head P4
  - [-1, 3, C3, [512, False]] # {h + 10} (P4/16-medium)

  - [-1, 1, Conv, [512, 3, 2]]
  - [[-1, {h}], 1, Concat, [1]] # cat head P5
  - [-1, 3, C3, [1024, False]] # {h + 13} (P5/32-large)

  - [[{h + 7}, {h + 10}, {h + 13}], 1, Detect, [{detect}]] # Detect(P3, P4, P5)
"""


def bifpn_head(p3: int, p4: int, sppf: int, detect: str = "nc", phi: str = "bifpn_phi") -> str:
    """A BiFPN row on taps ``p3``, ``p4`` and the SPPF row, three ``Level`` rows and ``Detect`` (``detect``, ``phi``:
    the Detect row's args and the BiFPN's phi as written)."""
    h = sppf + 1
    return f"""\
# BiFPN neck: [[P3, P4, P5], 1, BiFPN, [phi, fusion mode]] -> [P3, P4, P5]; Level [k] picks output k
head:
  - [[{p3}, {p4}, {sppf}], 1, BiFPN, [{phi}, fastattn]] # {h}
  - [{h}, 1, Level, [0]] # {h + 1} (P3/8-small)
  - [{h}, 1, Level, [1]] # {h + 2} (P4/16-medium)
  - [{h}, 1, Level, [2]] # {h + 3} (P5/32-large)

  - [[{h + 1}, {h + 2}, {h + 3}], 1, Detect, [{detect}]] # Detect(P3, P4, P5)
"""


def _bifpn_phi_line() -> str:
    sizes = ", ".join("/".join(map(str, bifpn_size(phi))) for phi in PHI_BY_SCALE.values())
    table = ", ".join(f"{k}: {v}" for k, v in PHI_BY_SCALE.items())
    return f"bifpn_phi: {{ {table} }} # BiFPN width/layers (EfficientDet D0-D4 table): {sizes}\n"


def render_yaml(spec: ModelYaml) -> str:
    """Return the model YAML text of ``spec``."""
    bb = spec.exact
    what = f"torchvision's {bb.torchvision} feature extractor" if bb else spec.header.splitlines()[0]
    neck = "YOLOv5 (v6.0 PAN head, Ultralytics Detect)" if spec.neck == "pan" else "BiFPN neck + Ultralytics Detect"
    header = [f"effdet-plugin: {neck} on {what}",
              ("GENERATED by `python -m effdet_plugin.stages` from the stage tables in effdet_plugin/stages.py: do "
               "not edit.")]
    if bb:
        header += (_exact_header(bb) if spec.neck == "pan" else _exact_bifpn_header(bb)).splitlines()
    else:
        header += spec.header.splitlines()[1:]
    keys = "nc: 80 # number of classes\n"
    if bb:
        keys += "scale_backbone: false # backbone rows keep the widths and repeats written here\n"
        eps = f"{bb.bn_eps:.1e}".replace("e-0", "e-")
        keys += f"bn_eps: {eps} # BatchNorm eps of torchvision's {bb.torchvision}\n"
    keys += (f"drop_path: {spec.drop_path} # maximum stochastic-depth rate, reached by the last block (linear in "
             f"index)\n")
    if spec.activation:
        keys += f"activation: {spec.activation} # every Conv of the head and every block of the backbone\n"
    which = {"as yolov5u": SCALES, "yolov5u's at n/s, one depth step less at m/l/x": RECOMMENDED_SCALES}
    note = next((k for k, v in which.items() if v == spec.scales), "this family's own")
    keys += f"scales: # [depth, width, max_channels], {note}\n"
    keys += "".join(f"  {k}: [{d:.2f}, {w:.2f}, {m}]\n" for k, (d, w, m) in spec.scales.items())
    keys += _scale_rows_text(spec)
    if spec.neck == "bifpn":
        keys += _bifpn_phi_line()
    return "\n".join(f"# {line}".rstrip() for line in header) + "\n\n" + keys + _rows_text(spec.table, spec.neck)


def _rows_text(table: Table, neck: str, detect: str = "nc", phi: str = "bifpn_phi") -> str:
    """A model YAML's backbone and head rows (``detect``, ``phi``: the Detect row's args and the BiFPN's phi)."""
    p3, p4, _ = table.taps
    sppf = len(table.stages) + 1
    head = pan_head(p3, p4, sppf, detect) if neck == "pan" else bifpn_head(p3, p4, sppf, detect, phi)
    return ("\n# [from, repeats, module, [c_out, kernel, stride, expansion, se_ratio]]\nbackbone:\n"
            + "\n".join(_backbone_rows(table)) + "\n\n" + head)


def render_classic(spec: classic.ClassicYaml) -> str:
    """The classic YOLOv5 YAML ``spec``: ``effdet_plugin.classic``'s header and keys, then the rows of its
    Ultralytics-format source file with ``Detect [nc, anchors]`` and the scale's BiFPN phi."""
    src = MODEL_YAMLS[spec.ultralytics_file]
    table = src.table_at(spec.scale)
    rows = _rows_text(table, src.neck, detect=classic.DETECT_ARGS, phi=str(spec.phi))
    depth, width, _ = src.scales[spec.scale]
    changed = _changed_rows(src, spec.scale)
    note = (f"At scale {spec.scale}, backbone rows {', '.join(map(str, changed))} are that file's `scale_rows: "
            f"{spec.scale}:` rows." if changed else "")
    return classic.render(spec, rows, table.taps, src.drop_path, (depth, width), src.activation, note)


def _exact_header(bb: Backbone) -> str:
    p3, p4, p5 = bb.taps
    sppf = bb.freeze
    from torchvision.models import get_model_weights

    weights = list(get_model_weights(bb.torchvision))
    files = ", ".join(f"{w.url.rsplit('/', 1)[-1]} (top-1 {w.meta['_metrics']['ImageNet-1K']['acc@1']:.1f}%)"
                      for w in weights)
    return (
        f"Rows 0-{sppf - 1} are torchvision features[0..{sppf - 1}] exactly (all but the final 1x1 conv), never\n"
        f"scaled by the scale letter, which sizes only SPPF, neck and head. Taps: P3 row {p3}, P4 row {p4}, P5 SPPF "
        f"(row {sppf}) on row {p5}.\n"
        f"ImageNet weights: torchvision {files}\n"
        f"  yolo train model=yolov5s_{bb.name}.yaml pretrained=PATH/{default_weight_file(bb)}  (or any file above)\n"
        f"  or effdet_plugin.load_pretrained_backbone(model, path); freeze={bb.freeze} freezes exactly the backbone."
    )


_V2_HEADER = """\
a widened EfficientNetV2-S stage table (the recommended family)
EfficientNetV2-S's stages (Tan & Le, 2021, table 4) with the three stride-16/32 stages 1.5x wider (128/160/256 ->
192/240/384, torchvision's adjust_channels rounding), no stochastic depth, and per-scale multipliers: yolov5u's at n
and s, one depth step less at m/l/x. Why: with yolov5u's multipliers the plain table feeds the head 256*w channels at
P5 where YOLOv5's CSP backbone gives 1024*w; widening the low-resolution stages is nearly free on CPU, widening the
high-resolution ones is not, and at m/l/x the full depth of the widened table costs more than yolov5u \
(docs/benchmarks.md).
At n and s both stride-16 stages are Fused-MBConv (one dense 3x3 conv at expansion 4, no SE: scale_rows below): at
those widths the depthwise stages fit the training data slower than YOLOv5's CSP backbone, dense ones do not. There the
stride-8 stage is also 3x wider (48/96 channels where yolov5u's P3 has 64/128; 16/32 placed boxes looser): free on CPU.
At n the stride-8 stage has two blocks at expansion 2 (s: one at 4) and the stride-32 stage 7 blocks (s: 5) of 5x5
kernels: more accurate than s's rows at n on both measured datasets, under yolov5nu's CPU latency by the median run.
Stochastic depth is off because from scratch the detector underfits; set drop_path 0.1-0.2 for long runs.
Measured against yolov5u per dataset and scale: docs/accuracy.md. Taps at strides 8 (row 3), 16 (row 5), 32 (row 7).
Use: yolo train model=yolov5s_effv2.yaml data=...   (the letter n/s/m/l/x picks the scale)"""
_PLAIN_HEADER = """\
the plain EfficientNetV2-S stage table
Backbone stages as EfficientNetV2-S (Tan & Le, 2021, table 4), scaled like every other row by yolov5u's width/depth
multipliers; detection taps at strides 8 (row 3), 16 (row 5) and 32 (row 7, after SPPF). In 0.1 this was
yolov5_effv2.yaml. The fastest family (0.75-0.92x yolov5u's CPU latency) but less accurate at n (docs/accuracy.md).
Use: yolo train model=yolov5s_effv2-plain.yaml data=...   (the letter n/s/m/l/x picks the scale)"""
_WIDE_HEADER = """\
a widened EfficientNetV2-S stage table at yolov5u's multipliers
The stage table of yolov5_effv2.yaml (stride-16/32 stages 1.5x wider, no stochastic depth; MBConv at stride 16 at
every scale) with yolov5u's depth and width multipliers at every scale: the recommended n and s models until
2026-12-02, deeper and 1.1x slower than yolov5u at m/l/x (docs/benchmarks.md). Kept for runs trained with it; new
work: yolov5_effv2.yaml.
Use: yolo train model=yolov5s_effv2-wide.yaml data=...   (the letter n/s/m/l/x picks the scale)"""
_LITE_HEADER = """\
an EfficientNet-Lite-style stage table, for edge deployment
The stage table and multipliers of yolov5_effv2.yaml (Fused-MBConv at stride 16 at n and s: scale_rows below; MBConv
from m up), with EfficientNet-Lite's changes (TF EfficientNet-Lite, 2020):
no squeeze-and-excitation and ReLU6 instead of SiLU, in the backbone and in YOLOv5's head alike, because SE's global
pooling and SiLU quantize and run poorly on mobile accelerators. TF-Lite also keeps the stem and final conv from
growing as B0 scales up; here n-l shrink them already and only x grows them (stem 32, SPPF 1280).
Latency in PyTorch, ONNX Runtime and OpenVINO (FP32 and INT8), and mAP against yolov5_effv2.yaml: docs/accuracy.md.
Use: yolo train model=yolov5s_effv2-lite.yaml data=...   (the letter n/s/m/l/x picks the scale)"""
_BIFPN_HEADER = """\
the plain EfficientNetV2-S stage table (as yolov5_effv2-plain.yaml)
The BiFPN row fuses P3 (row 3), P4 (row 5) and P5 (row 7, after SPPF) with fast normalized fusion; its size follows
EfficientDet's table (D0-D7) from bifpn_phi, not the width/depth multipliers. Node graph of one layer:
effdet_plugin/bifpn.py NODES.
Use: yolo train model=yolov5s_effv2_bifpn.yaml data=...   (the letter n/s/m/l/x picks the scale and phi)"""


def _exact_bifpn_header(bb: Backbone) -> str:
    return (
        f"Backbone rows are those of {bb.yaml_name} verbatim, so `pretrained=` torchvision weights load exactly as\n"
        f"there. P5 keeps that file's SPPF so the two differ only in the neck. The scale letter sizes SPPF and picks\n"
        f"the BiFPN's phi (EfficientDet table); the backbone is never scaled. yolov5n_{bb.name}_bifpn.yaml (phi 0) is\n"
        f"the EfficientDet-D0 neck on this backbone.\n"
        f"  yolo train model=yolov5s_{bb.name}_bifpn.yaml data=..."
    )


def _model_yamls() -> dict[str, ModelYaml]:
    specs = [
        ModelYaml("yolov5_effv2.yaml", EFFICIENTNET_V2_WIDE, "pan", _V2_HEADER, drop_path=0.0,
                  scales=RECOMMENDED_SCALES,
                  scale_tables={"n": EFFICIENTNET_V2_WIDE_FUSED_N, "s": EFFICIENTNET_V2_WIDE_FUSED}),
        ModelYaml("yolov5_effv2-plain.yaml", EFFICIENTNET_V2_S, "pan", _PLAIN_HEADER),
        ModelYaml("yolov5_effv2-wide.yaml", EFFICIENTNET_V2_WIDE, "pan", _WIDE_HEADER, drop_path=0.0),
        ModelYaml("yolov5_effv2-lite.yaml", EFFICIENTNET_V2_LITE, "pan", _LITE_HEADER, drop_path=0.0,
                  scales=RECOMMENDED_SCALES, activation="nn.ReLU6()",
                  scale_tables=dict.fromkeys("ns", EFFICIENTNET_V2_LITE_FUSED)),
        ModelYaml("yolov5_effv2_bifpn.yaml", EFFICIENTNET_V2_S, "bifpn", _BIFPN_HEADER),
    ]
    for bb in EXACT_BACKBONES.values():
        specs.append(ModelYaml(bb.yaml_name, bb.table, "pan", "", exact=bb))
    for name in ("effv2-s", "effb0"):
        bb = EXACT_BACKBONES[name]
        specs.append(ModelYaml(f"yolov5_{name}_bifpn.yaml", bb.table, "bifpn", "", exact=bb))
    return {s.file: s for s in specs}


MODEL_YAMLS: dict[str, ModelYaml] = _model_yamls()


def backbone_yamls() -> dict[str, str]:
    """``effdet-plugin swap --backbone`` names -> the shipped PAN YAML whose backbone rows are grafted in."""
    return {s.backbone_key: s.file for s in MODEL_YAMLS.values() if s.neck == "pan"}


def default_weight_file(bb: Backbone) -> str:
    """File name of torchvision's default ImageNet weights for ``bb``."""
    from torchvision.models import get_model_weights

    return get_model_weights(bb.torchvision).DEFAULT.url.rsplit("/", 1)[-1]


def generated_yamls() -> dict[str, str]:
    """Every generated YAML, path relative to the YAML folder -> text: ``MODEL_YAMLS`` (Ultralytics format), then the
    classic YOLOv5 files (``classic.CLASSIC_YAMLS``, in ``yolov5/``)."""
    return {**{f: render_yaml(spec) for f, spec in MODEL_YAMLS.items()},
            **{f"{classic.FOLDER}/{f}": render_classic(spec) for f, spec in classic.CLASSIC_YAMLS.items()}}


def stale_yamls(folder: Path) -> list[Path]:
    """Return the generated YAMLs in ``folder`` that are missing or differ from what the tables generate."""
    return [folder / f for f, text in generated_yamls().items()
            if not (folder / f).is_file() or (folder / f).read_text(encoding="utf-8") != text]


def write_yamls(folder: Path) -> list[Path]:
    """(Re)write every generated YAML into ``folder`` atomically; return the files that changed."""
    texts = generated_yamls()
    changed = stale_yamls(folder)
    for path in changed:
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.write(texts[path.relative_to(folder).as_posix()])
    return changed


def main(argv: list[str] | None = None) -> int:
    """Regenerate the shipped model YAMLs, classic YOLOv5 ones in yolov5/ included (``--check``: only report stale
    ones, exit 1 if any)."""
    parser = argparse.ArgumentParser(prog="python -m effdet_plugin.stages", description=main.__doc__)
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if a YAML is stale")
    parser.add_argument("--dir", type=Path, default=model_yaml_dir(), help="YAML folder (default: %(default)s)")
    args = parser.parse_args(argv)
    paths = stale_yamls(args.dir) if args.check else write_yamls(args.dir)
    for p in paths:
        print(f"{'stale' if args.check else 'wrote'}: {p}")
    return 1 if args.check and paths else 0


if __name__ == "__main__":
    sys.exit(main())
