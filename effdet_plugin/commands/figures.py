"""Figures typed by hand in Markdown pages: measured numbers a person wrote instead of rendering from the store.

The rule, applied to a page's prose (``markers.prose``: outside rendered blocks, code fences and inline code):

- a measured figure is a decimal number (``0.374``), a percentage (``12%``), a ratio (``1.07×``, ``1.07x``) or a
  number after ``±``; a bare integer (``640``, ``3 seeds``, ``100 epochs``) is a setting, not a figure;
- a version is not a figure: three or more dotted parts (``7.0.14``), a wildcard part (``8.4.x``), a number right
  after a package name or the word "version" (``Python 3.11``, ``Ultralytics 8.4``) or after a comparison
  (``>= 3.9``), and a number glued to a name (``v8.4``, ``AGPL-3.0``, ``mAP50-95``); a number right after a
  setting's name (``IoU 0.75``, ``width 0.25``) is a setting;
- a figure passes when the store holds it: it appears in a rendered block of any page, or rounds from a value in a
  record (to 1-4 decimals; parameter counts also in millions, fractions also as percentages).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from effdet_plugin.commands.markers import prose, rendered_text

NUMBER = re.compile(r"\d+(?:\.\d+)*")
PACKAGES = {
    "python", "torch", "pytorch", "torchvision", "ultralytics", "yolov5", "onnx", "onnxruntime", "openvino", "nncf",
    "numpy", "pillow", "opencv", "opencv-python", "cuda", "cudnn", "pip", "scipy", "matplotlib", "pycocotools",
    "setuptools", "tensorrt", "opset", "version", "versions", "release", "releases", "hatchling", "pyyaml", "linux",
    "ubuntu", "macos", "windows", "debian", "effdet-plugin", "polars", "thop",
}  # fmt: skip
SETTINGS = {"iou", "depth", "width", "conf", "dropout", "momentum", "lr0", "lrf"}  # a number after these is an input
COMPARATORS = (">=", "<=", "==", "~=", "!=", "<", ">", "≥", "≤")


def _before(line: str, start: int) -> str:
    return line[:start].rstrip()


def is_version(line: str, start: int, end: int) -> bool:
    """Whether the number at ``line[start:end]`` is a version or part of a name, not a figure."""
    text = line[start:end]
    if text.count(".") >= 2 or re.match(r"\.[x*](?![\w])", line[end:]):
        return True
    left = line[start - 1] if start else " "
    if left.isalnum() or left in "_." or left in "-/" and start >= 2 and (line[start - 2].isalnum()):
        return True  # glued to a name: v8.4, AGPL-3.0, yolov5s, the month and day of an ISO date
    right = line[end] if end < len(line) else " "
    if right.isalpha() and right not in "x×" or right in "_":
        return True  # 3.0-only, 50s-style names: a number that is the start of a word
    before = _before(line, start)
    if before.endswith(COMPARATORS):
        return True
    word = re.search(r"([\w.-]+)\W*$", before)
    return bool(word and word.group(1).lower().strip(".") in PACKAGES | SETTINGS)


def figures(line: str) -> list[str]:
    """The measured figures in one line of prose, each as written (``0.374``, ``12%``, ``1.07×``, ``± 2``)."""
    out = []
    for m in NUMBER.finditer(line):
        start, end = m.span()
        if is_version(line, start, end):
            continue
        after = line[end:]
        suffix = re.match(r"\s?(%|×|x(?![\w]))", after)
        after_pm = re.search(r"±\s*$", line[:start])
        if "." in m.group(0) or suffix or after_pm:
            out.append(("± " if after_pm else "") + m.group(0) + (suffix.group(1) if suffix else ""))
    return out


def _renderings(v: float) -> set[str]:
    out = {f"{v:.{d}f}" for d in range(1, 5)}  # not as an integer: 1.5 would let any "± 2" through
    if abs(v) >= 1e5:  # parameter counts are written in millions
        out |= {f"{v / 1e6:.{d}f}" for d in range(1, 4)}
    if abs(v) <= 1:  # fractions are written as percentages
        out |= {f"{v * 100:.{d}f}" for d in range(3)}
    return out


def store_figures(rows: Iterable) -> set[str]:
    """Every rendering of every number in records' rows, skipping per-epoch curves (so many values would let almost
    any figure through)."""
    out: set[str] = set()

    def walk(x) -> None:
        if isinstance(x, bool):
            return
        if isinstance(x, (int, float)):
            out.update(_renderings(float(x)))
        elif isinstance(x, dict):
            for k, v in x.items():
                if k != "curve":
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(list(rows))
    return out


def _bare(figure: str) -> str:
    return re.sub(r"[^\d.]", "", figure)


def allowed_figures(pages: dict[Path, str], rows: Iterable) -> set[str]:
    """The figures a page may show: every number inside rendered blocks of ``pages`` and ``store_figures(rows)``."""
    shown: set[str] = set()
    for page, text in pages.items():
        shown |= {m.group(0) for m in NUMBER.finditer(rendered_text(text, page))}
    return shown | store_figures(rows)


def typed_figures(pages: dict[Path, str], allowed: set[str]) -> list[str]:
    """``page:line: figure`` for every figure typed by hand in ``pages`` that ``allowed`` does not hold."""
    out = []
    for page, text in pages.items():
        for n, line in prose(text, page):
            out += [f"{page}:{n}: {f}" for f in figures(line) if _bare(f) not in allowed]
    return out
