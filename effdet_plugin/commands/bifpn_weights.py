"""Print every BiFPN fusion node's normalized input weights from a trained checkpoint (or a model YAML).

Usage:
    python tools/bifpn_weights.py runs/detect/train/weights/best.pt
    python tools/bifpn_weights.py best.pt --json      # one JSON list on stdout (see effdet_plugin.bifpn.fusion_weights)

Each line shows one node of one BiFPN layer: its inputs (table ``NODES`` in effdet_plugin/bifpn.py) and the weight
each gets in the fused sum, ``relu(w_i) / (eps + sum_j relu(w_j))`` for the default 'fastattn' mode.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load_model(path: str):
    """Return the ``nn.Module`` of an Ultralytics checkpoint (.pt) or model YAML, on CPU."""
    from ultralytics import YOLO

    if not path.endswith((".yaml", ".yml")) and not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return YOLO(path).model


def main(argv: list[str] | None = None) -> int:
    """Print the fusion weights of the model named on the command line; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="checkpoint (.pt) or model YAML with a BiFPN row")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    args = parser.parse_args(argv)

    from effdet_plugin.bifpn import fusion_weights

    try:
        rows = fusion_weights(load_model(args.model))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: {args.model} has no BiFPN row", file=sys.stderr)
        return 1
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


if __name__ == "__main__":
    sys.exit(main())
