"""Write a YOLO checkpoint whose EfficientNet backbone holds torchvision ImageNet weights.

    python tools/convert_weights.py --model yolov5s_effv2-s.yaml --weights efficientnet_v2_s-dd5fe13b.pth \
        --out yolov5s_effv2-s-imagenet.pt
    yolo train model=yolov5s_effv2-s-imagenet.pt data=coco8.yaml

The checkpoint is FP32 (the backbone tensors are bit-exact copies); the neck and head are freshly initialized, and
the Detect head is resized to the dataset's classes by ``yolo train`` as for any Ultralytics checkpoint.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Convert; print the written path, or one error line and exit 2."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model YAML, e.g. yolov5s_effv2-s.yaml (bare names resolve)")
    parser.add_argument("--weights", required=True, help="torchvision state dict, e.g. efficientnet_v2_s-dd5fe13b.pth")
    parser.add_argument("--out", required=True, help="output checkpoint (.pt)")
    parser.add_argument("--nc", type=int, default=80, help="number of classes of the Detect head (default: 80)")
    args = parser.parse_args(argv)
    if not args.out.lower().endswith(".pt"):
        parser.error(f"--out must end with .pt (Ultralytics loads only .pt checkpoints), got {args.out}")

    from effdet_plugin.weights import convert  # after argument parsing: --help stays instant

    try:
        path = convert(args.model, args.weights, args.out, nc=args.nc)
    except (FileNotFoundError, ValueError, TypeError) as e:
        print(f"convert_weights: error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
