"""Model names as the hosts read them: the scale letter in ``yolov5s_effv2.yaml`` and the file it unifies to.

Ultralytics keeps one YAML per family (``yolov5_effv2.yaml``) and reads the scale from the name a user types
(``yolov5s_effv2.yaml``): ``yaml_model_load`` drops the letter after the version digits to find the file, and
``guess_model_scale`` picks it out; its short P6 names (``yolov8s6.yaml``) load ``yolov8s-p6.yaml``. These rules are
written once here, for the adapters, the commands and the tests alike.
"""

from __future__ import annotations

import re
from pathlib import Path

SCALE_LETTERS = "nslmx"
_UNIFY = re.compile(rf"(\d+)([{SCALE_LETTERS}])(.+)?$")  # ultralytics.nn.tasks.yaml_model_load
_GUESS = re.compile(rf"yolo(e-)?[v]?\d+([{SCALE_LETTERS}])")  # ultralytics.nn.tasks.guess_model_scale
_VERSION = re.compile(r"^(\D*\d+)")  # a family's name up to its version digits, where the scale letter goes
_P6_STEMS = frozenset(f"yolov{d}{x}6" for x in SCALE_LETTERS for d in (5, 8))  # yaml_model_load's P6 short names


def unified_stem(stem: str) -> str:
    """The family's stem without the scale letter: ``yolov5s_effv2`` -> ``yolov5_effv2`` (stems without one: as is)."""
    return _UNIFY.sub(r"\1\3", stem)


def unified_name(path: str | Path) -> str:
    """The file name Ultralytics loads for ``path``: ``yolov5s_effv2.yaml`` -> ``yolov5_effv2.yaml``."""
    p = Path(path)
    return unified_stem(p.stem) + p.suffix


def scale_letter(path: str | Path) -> str:
    """The scale letter Ultralytics reads from a model's name, '' when the name carries none."""
    m = _GUESS.search(Path(path).stem)
    return m.group(2) if m else ""


def with_scale(stem: str, letter: str) -> str:
    """``stem`` with its scale letter replaced by ``letter`` (``yolov5s_effv2``, ``n`` -> ``yolov5n_effv2``)."""
    return _GUESS.sub(lambda m: m.group(0)[:-1] + letter, stem, count=1)


def scaled_stem(stem: str, letter: str) -> str:
    """The stem a user types for scale ``letter`` of a family file: ``yolov5_effv2``, ``s`` -> ``yolov5s_effv2`` (the
    letter after the version digits, where ``unified_stem`` drops it; a stem without digits as is)."""
    return _VERSION.sub(lambda m: m.group(1) + letter, stem, count=1)


def p6_stem(stem: str) -> str | None:
    """The stem ``yaml_model_load`` reads for a P6 model's short name (``yolov8s6`` -> ``yolov8s-p6``), else None."""
    return f"{stem[:-1]}-p6" if stem in _P6_STEMS else None
