"""Top-level keys of a model dict with plugin rows, read the same way in every host.

A host reads its own keys raw (``eval(activation)``, ``scales[scale]`` unpacked, ``round(n * depth_multiple)``), so a
malformed one fails deep in its parser, or without naming the file. In a dict with plugin rows these are read here
first, and each bad one is reported as one ``ModelRowError`` naming the file, the key and what was expected.
"""

from __future__ import annotations

import ast
import re

import torch
from torch import nn

from effdet_plugin.rows import key_error

_ACT = re.compile(r"^(?:torch\.)?nn\.([A-Za-z_][A-Za-z0-9_]*)\((.*)\)$")


def parse_activation(d: dict, key: str = "activation") -> nn.Module | None:
    """``activation: nn.ReLU()`` (or ``torch.nn.X(literal args)``) as a module, without ``eval``; None if unset."""
    spec = d.get(key)
    if not spec:
        return None
    m = _ACT.match(str(spec).strip())
    cls = getattr(torch.nn, m.group(1), None) if m else None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise key_error(d, key, f"expected a torch activation such as nn.ReLU() or nn.LeakyReLU(0.1), got {spec!r}")
    try:
        args = ast.literal_eval(f"({m.group(2)},)") if m.group(2).strip() else ()
        return cls(*args)
    except (ValueError, SyntaxError, TypeError) as e:
        raise key_error(d, key, f"{spec!r} does not build: {e}") from None
