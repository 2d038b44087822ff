"""Model names as the hosts read them: the scale letter in ``yolov5s_effv2.yaml`` and the file it unifies to.

Ultralytics keeps one YAML per family (``yolov5_effv2.yaml``) and reads the scale from the name a user types
(``yolov5s_effv2.yaml``): ``yaml_model_load`` drops the letter after the version digits to find the file, and
``guess_model_scale`` picks it out. Both rules are written once here, for the adapters and the commands alike.
"""

from __future__ import annotations

import re
from pathlib import Path

SCALE_LETTERS = "nslmx"
_UNIFY = re.compile(rf"(\d+)([{SCALE_LETTERS}])(.+)?$")  # ultralytics.nn.tasks.yaml_model_load
_GUESS = re.compile(rf"yolo(e-)?[v]?\d+([{SCALE_LETTERS}])")  # ultralytics.nn.tasks.guess_model_scale


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
