"""Top-level keys of a model dict with plugin rows, checked the same way in every host.

A host reads its own keys raw (``eval(activation)``, ``scales[scale]`` unpacked, ``round(n * depth_multiple)``), so a
malformed one fails deep in its parser, or without naming the file. In a dict with plugin rows every key is checked
first, against a table of ``Key`` rules: ``COMMON`` (read by every host), ``PLUGIN`` (the plugin's own) and each host's
(``HostRules.keys``). A bad key is reported as one ``ModelRowError`` naming the file, the key, what was expected and
what was found. Dicts without plugin rows never come here: they reach the host untouched.
"""

from __future__ import annotations

import ast
import contextlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from effdet_plugin.rows import is_index, key_error


@dataclass(frozen=True)
class Key:
    """What a top-level key must be: a predicate and its words; ``missing``: the message when a file must set it."""

    expected: str
    ok: Callable[[Any], bool]
    missing: str = ""  # empty: the key is optional


def check(d: dict, rules: Mapping[str, Key]) -> None:
    """Raise one ``ModelRowError`` for the first key of ``d`` that breaks its rule (or is missing and required)."""
    for name, rule in rules.items():
        if name not in d:
            if rule.missing:
                raise key_error(d, name, f"missing; {rule.missing}")
        elif not rule.ok(d[name]):
            raise key_error(d, name, f"must be {rule.expected}, got {d[name]!r}")


def is_number(x) -> bool:
    """A finite YAML int or float (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_positive_number(x) -> bool:
    return is_number(x) and x > 0


def is_positive_int(x) -> bool:
    return is_index(x) and x > 0


def is_bool(x) -> bool:
    return isinstance(x, bool)


def is_scales(x) -> bool:
    """Ultralytics' ``scales:``: letter -> ``[depth, width, max_channels]``, positive numbers (empty or null: none)."""
    return x is None or (
        isinstance(x, dict)
        and all(
            isinstance(k, str) and k and isinstance(v, list) and len(v) == 3 and all(map(is_positive_number, v))
            for k, v in x.items()
        )
    )


_ACT = re.compile(r"^(?:torch\.)?nn\.([A-Za-z_][A-Za-z0-9_]*)\((.*)\)$")
ACTIVATION = "a torch activation with positional literal arguments, such as nn.ReLU() or nn.LeakyReLU(0.1)"


def build_activation(spec) -> nn.Module | None:
    """``nn.ReLU()`` (or ``torch.nn.X(literal args)``) as a module, without ``eval``; None if empty; ``ValueError``
    unless it names a torch module that builds from those arguments."""
    if not spec:
        return None
    m = _ACT.match(str(spec).strip())
    cls = getattr(torch.nn, m.group(1), None) if m else None
    with contextlib.suppress(ValueError, SyntaxError, TypeError):  # arguments that are no literals, or are refused
        if isinstance(cls, type) and issubclass(cls, nn.Module):
            return cls(*(ast.literal_eval(f"({m.group(2)},)") if m.group(2).strip() else ()))
    raise ValueError(f"must be {ACTIVATION}, got {spec!r}")


def is_activation(x) -> bool:
    """Empty (the host's activation) or an activation ``build_activation`` builds."""
    try:
        build_activation(x)
    except ValueError:
        return False
    return True


def parse_activation(d: dict, key: str = "activation") -> nn.Module | None:
    """The activation that top-level ``key`` of ``d`` names, as a module (None if unset); one ``ModelRowError``."""
    try:
        return build_activation(d.get(key))
    except ValueError as e:
        raise key_error(d, key, str(e)) from None


COMMON: dict[str, Key] = {  # read by every host
    "nc": Key("a positive integer", is_positive_int, missing="the number of classes must be set (e.g. nc: 80)"),
    "depth_multiple": Key("a positive number", is_positive_number),
    "width_multiple": Key("a positive number", is_positive_number),
    "inplace": Key("true or false", is_bool),
    "activation": Key(ACTIVATION, is_activation),  # every Conv the host builds
}
PLUGIN: dict[str, Key] = {  # the plugin's own
    "scale_backbone": Key("true or false", is_bool),
    "drop_path": Key("a number in [0, 1)", lambda x: is_number(x) and 0 <= x < 1),
    "bn_eps": Key("a number in (0, 1)", lambda x: is_number(x) and 0 < x < 1),
    "backbone_activation": Key(ACTIVATION, is_activation),  # the plugin's backbone rows (an exact backbone's own)
    # the plugin's backbone rows' own [depth, width, max_channels] per letter, where the head family's differ
    "backbone_scales": Key(
        "a mapping of scale letters to [depth, width, max_channels], each a positive number",
        lambda x: x is not None and is_scales(x),
    ),
}
