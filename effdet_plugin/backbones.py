"""Exact torchvision EfficientNet-B0..B7 and EfficientNetV2-S/M/L feature extractors as Ultralytics model YAMLs.

Each family is one stage table (one line per stage, as in torchvision's ``_efficientnet_conf``); B1..B7 are derived
from B0 by compound scaling in ``_scaled`` with torchvision's own ``adjust_channels``/``adjust_depth``. The model YAMLs
``models_yaml/yolov5_eff*.yaml`` are generated from these tables; regenerate them after editing a table with

    python -m effdet_plugin.backbones          # rewrite the YAMLs
    python -m effdet_plugin.backbones --check  # exit 1 if any committed YAML is stale

Backbone row ``i`` is torchvision's ``features[i]`` (stem, then one row per stage), so the final 1x1 conv
``features[-1]`` is left out and SPPF follows the last stage. ``freeze=<SPPF row index>`` freezes exactly the backbone.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from effdet_plugin.atomic import atomic_open

# One line per stage: (block, expansion, kernel, stride, c_out, repeats); the stem is a 3x3 stride-2 conv.
EFFICIENTNET_B0 = (  # Tan & Le 2019, table 1; torchvision efficientnet_b0
    ("MBConv", 1, 3, 1, 16, 1),
    ("MBConv", 6, 3, 2, 24, 2),
    ("MBConv", 6, 5, 2, 40, 2),
    ("MBConv", 6, 3, 2, 80, 3),
    ("MBConv", 6, 5, 1, 112, 3),
    ("MBConv", 6, 5, 2, 192, 4),
    ("MBConv", 6, 3, 1, 320, 1),
)
EFFICIENTNET_B0_STEM = 32
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
# name: (stem, stages); Tan & Le 2021, table 4 and torchvision (all with BatchNorm eps 1e-3)
EFFICIENTNET_V2 = {
    "s": (24, (
        ("FusedMBConv", 1, 3, 1, 24, 2),
        ("FusedMBConv", 4, 3, 2, 48, 4),
        ("FusedMBConv", 4, 3, 2, 64, 4),
        ("MBConv", 4, 3, 2, 128, 6),
        ("MBConv", 6, 3, 1, 160, 9),
        ("MBConv", 6, 3, 2, 256, 15),
    )),
    "m": (24, (
        ("FusedMBConv", 1, 3, 1, 24, 3),
        ("FusedMBConv", 4, 3, 2, 48, 5),
        ("FusedMBConv", 4, 3, 2, 80, 5),
        ("MBConv", 4, 3, 2, 160, 7),
        ("MBConv", 6, 3, 1, 176, 14),
        ("MBConv", 6, 3, 2, 304, 18),
        ("MBConv", 6, 3, 1, 512, 5),
    )),
    "l": (32, (
        ("FusedMBConv", 1, 3, 1, 32, 4),
        ("FusedMBConv", 4, 3, 2, 64, 7),
        ("FusedMBConv", 4, 3, 2, 96, 7),
        ("MBConv", 4, 3, 2, 192, 10),
        ("MBConv", 6, 3, 1, 224, 19),
        ("MBConv", 6, 3, 2, 384, 25),
        ("MBConv", 6, 3, 1, 640, 7),
    )),
}
SE_RATIO = 0.25  # MBConv squeeze width = input channels // 4 in both families (FusedMBConv has no SE)
DROP_PATH = 0.2  # torchvision's stochastic_depth_prob default, used by every model here
SCALES = {"n": (0.33, 0.25, 1024), "s": (0.33, 0.50, 1024), "m": (0.67, 0.75, 1024), "l": (1.00, 1.00, 1024),
          "x": (1.33, 1.25, 1024)}  # yolov5u neck/head scales


@dataclass(frozen=True)
class Backbone:
    """One exact torchvision architecture: stem width, scaled stage table and BatchNorm eps."""

    name: str  # YAML suffix, e.g. "effb0" -> yolov5s_effb0.yaml
    torchvision: str  # torchvision builder, e.g. "efficientnet_b0"
    stem: int
    stages: tuple[tuple, ...]  # (block, expansion, kernel, stride, c_out, repeats)
    bn_eps: float

    @property
    def yaml_name(self) -> str:
        """Unified YAML file name (the scale letter goes after ``yolov5`` when used)."""
        return f"yolov5_{self.name}.yaml"

    @property
    def signature(self) -> tuple:
        """Stem width and (repeats, c_out) per stage: what identifies an architecture in a state dict."""
        return self.stem, tuple((s[5], s[4]) for s in self.stages)

    @property
    def taps(self) -> tuple[int, int, int]:
        """Backbone row indices that end the stride-8, 16 and 32 stages (P3, P4, P5)."""
        stride, last = 2, {}
        for i, stage in enumerate(self.stages, start=1):
            stride *= stage[3]
            last[stride] = i
        return last[8], last[16], last[32]

    @property
    def freeze(self) -> int:
        """``freeze=`` value that freezes exactly the pretrained rows (stem and stages, not SPPF)."""
        return len(self.stages) + 1


def _scaled(stem: int, stages: tuple, width: float, depth: float) -> tuple[int, tuple]:
    """Apply EfficientNet compound scaling exactly as torchvision does (width to /8 never -10%, depth by ceil)."""
    from torchvision.models.efficientnet import MBConvConfig

    ch, rep = MBConvConfig.adjust_channels, MBConvConfig.adjust_depth
    return ch(stem, width), tuple((b, e, k, s, ch(c, width), rep(n, depth)) for b, e, k, s, c, n in stages)


def _build() -> dict[str, Backbone]:
    out = {}
    for v, (width, depth, eps) in EFFICIENTNET_V1.items():
        stem, stages = _scaled(EFFICIENTNET_B0_STEM, EFFICIENTNET_B0, width, depth)
        out[f"eff{v}"] = Backbone(f"eff{v}", f"efficientnet_{v}", stem, stages, eps)
    for v, (stem, stages) in EFFICIENTNET_V2.items():
        out[f"effv2-{v}"] = Backbone(f"effv2-{v}", f"efficientnet_v2_{v}", stem, stages, 1e-3)
    return out


BACKBONES: dict[str, Backbone] = _build()


def find_backbone(signature: tuple) -> Backbone | None:
    """Return the known architecture with this ``Backbone.signature``, else None."""
    return next((b for b in BACKBONES.values() if b.signature == signature), None)


def render_yaml(bb: Backbone) -> str:
    """Return the model YAML text for ``bb``: exact backbone, SPPF on P5, YOLOv5 PAN head and Detect."""
    p3, p4, p5 = bb.taps
    sppf = len(bb.stages) + 1
    h = sppf + 1  # first head row
    stride, rows = 2, [f"  - [-1, 1, stem, [{bb.stem}, 3, 2]] # 0-P1/2"]
    for i, (block, e, k, s, c, n) in enumerate(bb.stages, start=1):
        stride *= s
        se = SE_RATIO if block == "MBConv" else 0
        rows.append(f"  - [-1, {n}, {block}, [{c}, {k}, {s}, {e}, {se}]] # {i}-P{stride.bit_length() - 1}/{stride}")
    rows.append(f"  - [-1, 1, SPPF, [1024, 5]] # {sppf}-P5/32")
    top1 = _imagenet_top1(bb)
    return f"""\
# effdet-plugin: YOLOv5 (v6.0 PAN head, Ultralytics Detect) on torchvision's {bb.torchvision} feature extractor
# GENERATED by `python -m effdet_plugin.backbones` from the stage table in effdet_plugin/backbones.py: do not edit.
# Rows 0-{sppf - 1} are torchvision features[0..{sppf - 1}] exactly (all but the final 1x1 conv), never scaled by the
# scale letter, which sizes only SPPF, neck and head. Taps: P3 row {p3}, P4 row {p4}, P5 SPPF (row {sppf}) on row {p5}.
# ImageNet weights: torchvision {top1}
#   yolo train model=yolov5s_{bb.name}.yaml pretrained=PATH/{default_weight_file(bb)}  (or any file above)
#   or effdet_plugin.load_pretrained_backbone(model, path); freeze={bb.freeze} freezes exactly the backbone.

nc: 80 # number of classes
scale_backbone: false # backbone rows keep the widths and repeats written here
bn_eps: {f"{bb.bn_eps:.1e}".replace("e-0", "e-")} # BatchNorm eps of torchvision's {bb.torchvision}
drop_path: {DROP_PATH} # maximum stochastic-depth rate (linear in block index), torchvision's default
scales: # [depth, width, max_channels], as yolov5u
{chr(10).join(f"  {k}: [{d:.2f}, {w:.2f}, {m}]" for k, (d, w, m) in SCALES.items())}

# [from, repeats, module, [c_out, kernel, stride, expansion, se_ratio]]
backbone:
{chr(10).join(rows)}

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

  - [[{h + 7}, {h + 10}, {h + 13}], 1, Detect, [nc]] # Detect(P3, P4, P5)
"""


def _weights(bb: Backbone) -> list:
    from torchvision.models import get_model_weights

    return list(get_model_weights(bb.torchvision))


def default_weight_file(bb: Backbone) -> str:
    """File name of torchvision's default ImageNet weights for ``bb``."""
    from torchvision.models import get_model_weights

    return get_model_weights(bb.torchvision).DEFAULT.url.rsplit("/", 1)[-1]


def imagenet_top1(bb: Backbone) -> dict[str, float]:
    """Return ImageNet top-1 (%) of each torchvision weight file for ``bb``, from torchvision's weight metadata."""
    return {w.url.rsplit("/", 1)[-1]: w.meta["_metrics"]["ImageNet-1K"]["acc@1"] for w in _weights(bb)}


def _imagenet_top1(bb: Backbone) -> str:
    return ", ".join(f"{f} (top-1 {a:.1f}%)" for f, a in imagenet_top1(bb).items())


def stale_yamls(folder: Path) -> list[Path]:
    """Return the generated YAMLs in ``folder`` that are missing or differ from ``render_yaml``."""
    paths = {folder / b.yaml_name: b for b in BACKBONES.values()}
    return [p for p, b in paths.items() if not p.is_file() or p.read_text(encoding="utf-8") != render_yaml(b)]


def write_yamls(folder: Path) -> list[Path]:
    """(Re)write every generated YAML into ``folder`` atomically; return the files that changed."""
    changed = stale_yamls(folder)
    for path in changed:
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.write(render_yaml(BACKBONES[path.stem.removeprefix("yolov5_")]))
    return changed


def main(argv: list[str] | None = None) -> int:
    """Regenerate the backbone YAMLs (``--check``: only report stale ones, exit 1 if any)."""
    from effdet_plugin.registry import model_yaml_dir

    parser = argparse.ArgumentParser(prog="python -m effdet_plugin.backbones", description=main.__doc__)
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if a YAML is stale")
    parser.add_argument("--dir", type=Path, default=model_yaml_dir(), help="YAML folder (default: %(default)s)")
    args = parser.parse_args(argv)
    paths = stale_yamls(args.dir) if args.check else write_yamls(args.dir)
    for p in paths:
        print(f"{'stale' if args.check else 'wrote'}: {p}")
    return 1 if args.check and paths else 0


if __name__ == "__main__":
    sys.exit(main())
