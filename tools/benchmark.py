"""Old path of `effdet-plugin benchmark`, kept for scripts that call tools/benchmark.py (needs `pip install -e .`)."""

import sys

from effdet_plugin.commands.cli import main

sys.exit(main(["benchmark", *sys.argv[1:]]))
