"""Write a YOLO checkpoint whose EfficientNet backbone holds ImageNet weights (torchvision's, or EfficientNet-Lite's).

    effdet-plugin convert-weights --model yolov5s_effv2-s.yaml --weights efficientnet_v2_s-dd5fe13b.pth \
        --out yolov5s_effv2-s-imagenet.pt
    yolo train model=yolov5s_effv2-s-imagenet.pt data=coco8.yaml

The checkpoint is FP32 (the backbone tensors are bit-exact copies); the neck and head are freshly initialized, and
the Detect head is resized to the dataset's classes by ``yolo train`` as for any Ultralytics checkpoint.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``convert-weights`` options to ``p``."""
    p.add_argument("--model", required=True, help="model YAML, e.g. yolov5s_effv2-s.yaml (bare names resolve)")
    p.add_argument(
        "--weights",
        required=True,
        help="ImageNet state dict: torchvision's, e.g. efficientnet_v2_s-dd5fe13b.pth; for a *_effl* model "
        "an EfficientNet-Lite package's, e.g. efficientnet-lite0 (the installed package's file)",
    )
    p.add_argument("--out", required=True, help="output checkpoint (.pt)")
    p.add_argument("--nc", type=int, default=80, help="number of classes of the Detect head (default: 80)")


def run(args: argparse.Namespace) -> int:
    """Convert and print the written path; bad input raises ``ValueError``/``FileNotFoundError`` (one line, exit 2)."""
    if not args.out.lower().endswith(".pt"):
        raise ValueError(f"--out must end with .pt (Ultralytics loads only .pt checkpoints), got {args.out}")
    if args.nc < 1:
        raise ValueError(f"--nc must be a positive integer, got {args.nc}")
    from effdet_plugin import register
    from effdet_plugin.hosts.ultralytics_checkpoint import convert  # here, not at the top: --help stays instant

    register()  # the YAML's plugin rows, also with auto-activation off
    print(convert(args.model, args.weights, args.out, nc=args.nc))
    return 0
