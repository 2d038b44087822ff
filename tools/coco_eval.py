"""Old path of `effdet-plugin coco-eval`, kept for scripts that call tools/coco_eval.py (needs `pip install -e .`)."""

import sys

from effdet_plugin.commands.cli import main

sys.exit(main(["coco-eval", *sys.argv[1:]]))
