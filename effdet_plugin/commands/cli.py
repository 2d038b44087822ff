"""``effdet-plugin`` command line: one subcommand per module that defines ``add_arguments`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS = {
    "demo-data": ("effdet_plugin.commands.demo", "write the generated demo dataset (YOLO layout + data.yaml)"),
    "swap": ("effdet_plugin.commands.swap", "replace the backbone of a detection YAML or checkpoint with an EfficientNet one"),
    "voc2yolo": ("effdet_plugin.commands.voc", "convert Pascal VOC xml + images to a YOLO dataset with a train/val/test split"),
}


def main(argv: list[str] | None = None) -> int:
    """Run the ``effdet-plugin`` command line and return its exit status."""
    parser = argparse.ArgumentParser(prog="effdet-plugin", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (FileNotFoundError, ValueError) as e:  # user errors: one line, no traceback
        print(f"effdet-plugin {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
