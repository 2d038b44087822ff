"""``effdet-plugin swap``: the command line over ``files.swap_to_files``."""

from __future__ import annotations

import argparse

from effdet_plugin.commands.swap.files import swap_to_files
from effdet_plugin.commands.swap.parts import BACKBONE_FILES, NECKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``effdet-plugin swap`` arguments."""
    p = parser
    p.add_argument(
        "source",
        help="model YAML of any task (a built-in name such as yolov8s.yaml or yolo11n-seg.yaml, "
        "or a file) or a trained .pt: Ultralytics, or classic YOLOv5 (run in a clone's "
        "folder or with yolov5 installed)",
    )
    p.add_argument("--backbone", required=True, choices=list(BACKBONE_FILES), help="EfficientNet backbone to graft in")
    p.add_argument("--neck", default="keep", choices=list(NECKS), help="keep the source neck (default) or use BiFPN")
    p.add_argument("--scale", choices=list("nsmlx"), help="scale letter for a source with scales: (default: its own)")
    p.add_argument("-o", "--output", required=True, help="output YAML (a .pt source also writes it with suffix .pt)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files (even the source itself)")


def run(args: argparse.Namespace) -> int:
    """Run ``effdet-plugin swap``."""
    res = swap_to_files(args.source, args.output, args.backbone, args.neck, args.scale, force=args.force)
    print(f"wrote {res.yaml}")
    if res.pt is not None:
        print(res.transfer)
        print(f"wrote {res.pt}")
    return 0
