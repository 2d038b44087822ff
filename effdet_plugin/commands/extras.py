"""What a command needs beyond a bare ``pip install effdet-plugin``, checked before any work starts.

A command that times ONNX Runtime or OpenVINO, or quantizes with NNCF, needs the ``deploy`` extra; without it the
command stops at once with one line naming the extra, not after minutes of loading, training or exporting.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable


class MissingExtraError(ValueError):
    """A package of an optional extra is not installed: reported as one line naming the extra to install."""


def missing(modules: Iterable[str]) -> list[str]:
    """Return the top-level modules of ``modules`` that cannot be imported here (found without importing them; a
    ``None`` entry in ``sys.modules`` is Python's mark of a module whose import is blocked)."""
    return [m for m in modules if (sys.modules[m] is None if m in sys.modules else importlib.util.find_spec(m) is None)]


def require(what: str, modules: Iterable[str], extra: str) -> None:
    """Raise ``MissingExtraError`` when any of ``modules`` is absent: ``what`` (e.g. ``--onnx``) needs ``extra``."""
    gone = missing(modules)
    if gone:
        raise MissingExtraError(
            f'{what} needs {", ".join(gone)}, which a bare install lacks: pip install "effdet-plugin[{extra}]"'
        )
