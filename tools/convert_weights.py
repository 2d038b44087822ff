"""Old path of `effdet-plugin convert-weights`, kept for scripts that call tools/convert_weights.py (needs
`pip install -e .`)."""

import sys

from effdet_plugin.commands.cli import main

sys.exit(main(["convert-weights", *sys.argv[1:]]))
