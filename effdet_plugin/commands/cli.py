"""``effdet-plugin`` command line: one subcommand per module that defines ``add_arguments`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys

from effdet_plugin.errors import first_line
from effdet_plugin.hosts.unavailable import PluginUnavailableError

DESCRIPTION = (
    "EfficientNet backbones and a BiFPN neck for YOLO (Ultralytics, YOLOv5): data, models, weights, speed and mAP."
)

# subcommand -> (module, one-line help)
COMMANDS = {
    "demo-data": ("effdet_plugin.commands.demo", "write the generated demo dataset (YOLO layout + data.yaml)"),
    "swap": (
        "effdet_plugin.commands.swap",
        "replace the backbone of a model YAML or checkpoint (any task) with an EfficientNet one",
    ),
    "voc2yolo": (
        "effdet_plugin.commands.voc",
        "convert Pascal VOC xml + images to a YOLO dataset with a train/val/test split",
    ),
    "prepare-data": (
        "effdet_plugin.commands.prepare_data",
        "write a confirm dataset of the protocol (plates, drones) from a clone of its source, split as recorded",
    ),
    "benchmark": (
        "effdet_plugin.commands.benchmark",
        "time detectors side by side: params, GFLOPs, latency, memory, training and ONNX speed",
    ),
    "coco-eval": (
        "effdet_plugin.commands.coco_eval",
        "COCO mAP of a detect, segment or pose model on a COCO-format dataset, computed by pycocotools",
    ),
    "accuracy": (
        "effdet_plugin.commands.accuracy",
        "train detectors with one recipe and tabulate held-out mAP against cost",
    ),
    "convert-weights": (
        "effdet_plugin.commands.convert_weights",
        "write a checkpoint whose EfficientNet backbone holds torchvision ImageNet weights",
    ),
    "bifpn-weights": (
        "effdet_plugin.commands.bifpn_weights",
        "print every BiFPN fusion node's normalized input weights",
    ),
    "protocol": (
        "effdet_plugin.commands.protocol",
        "train on a choice dataset's val or score a confirm dataset's test once per frozen model",
    ),
    "render": (
        "effdet_plugin.commands.render",
        "render README/docs tables and plots from the results store (--check: list stale ones)",
    ),
    "yaml": (
        "effdet_plugin.commands.export_yaml",
        "write a shipped model YAML (Ultralytics or classic YOLOv5 format) to a file",
    ),
}

# Bad input, reported as one line and exit status 2. Each command's own error class (BenchmarkError, CocoEvalError,
# AccuracyError, PretrainedWeightsError, ...) derives from ValueError, so this tuple covers them all.
USER_ERRORS = (FileNotFoundError, ValueError, PluginUnavailableError)


def _chosen(argv: list[str]) -> str | None:
    """The subcommand named in ``argv``: the top-level parser takes no option besides -h, so the first word."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Return the parser; only ``command``'s module is imported (for its options), so ``--help`` and every other
    subcommand keep working when one module is slow to import or broken."""
    parser = argparse.ArgumentParser(prog="effdet-plugin", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        if name == command:
            mod = importlib.import_module(module)
            if mod.__doc__:  # its usage examples, laid out as written
                p.description = mod.__doc__.strip()
                p.formatter_class = argparse.RawDescriptionHelpFormatter
            mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``effdet-plugin`` command line and return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # the command line as typed, for the records a command writes to the results store
    args = build_parser(_chosen(argv)).parse_args(argv, namespace=argparse.Namespace(argv=tuple(argv)))
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except USER_ERRORS as e:  # one line, no traceback
        print(f"effdet-plugin {args.command}: error: {first_line(e, limit=None)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
