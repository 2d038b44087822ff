"""Old path of `effdet-plugin accuracy`, kept for scripts that call tools/accuracy.py (needs `pip install -e .`)."""

import sys

from effdet_plugin.commands.cli import main

sys.exit(main(["accuracy", *sys.argv[1:]]))
