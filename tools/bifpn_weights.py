"""Old path of `effdet-plugin bifpn-weights`, kept for scripts that call tools/bifpn_weights.py (needs
`pip install -e .`)."""

import sys

from effdet_plugin.commands.cli import main

sys.exit(main(["bifpn-weights", *sys.argv[1:]]))
