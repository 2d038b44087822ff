"""Print every BiFPN fusion node's normalized input weights from a trained checkpoint (or a model YAML).

    effdet-plugin bifpn-weights runs/detect/train/weights/best.pt
    effdet-plugin bifpn-weights best.pt --json      # one JSON list on stdout (see effdet_plugin.bifpn.fusion_weights)

Each line shows one node of one BiFPN layer: its inputs (table ``NODES`` in effdet_plugin/bifpn.py) and the weight
each gets in the fused sum, ``relu(w_i) / (eps + sum_j relu(w_j))`` for the default 'fastattn' mode.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load_model(path: str):
    """Return the ``nn.Module`` of an Ultralytics checkpoint (.pt) or model YAML, on CPU."""
    from ultralytics import YOLO

    from effdet_plugin import register

    if not path.endswith((".yaml", ".yml")) and not Path(path).is_file():  # never let Ultralytics try a download
        raise FileNotFoundError(f"checkpoint not found: {path}")
    register()  # BiFPN rows, also with auto-activation off
    return YOLO(path).model


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``bifpn-weights`` options to ``p``."""
    p.add_argument("model", help="checkpoint (.pt) or model YAML with a BiFPN row")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of a table")


def run(args: argparse.Namespace) -> int:
    """Print the fusion weights of ``args.model``; a model without a BiFPN row raises ``ValueError`` (exit 2)."""
    from effdet_plugin.bifpn import fusion_weights

    rows = fusion_weights(load_model(args.model))
    if not rows:
        raise ValueError(f"{args.model} has no BiFPN row")
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    module = None
    for r in rows:
        if r["module"] != module:
            module = r["module"]
            print(f"BiFPN {module}")
        pairs = "  ".join(f"{name} {w:.3f}" for name, w in zip(r["inputs"], r["weights"]))
        print(f"  layer {r['layer']}  {r['node']:<7} {pairs}")
    return 0
