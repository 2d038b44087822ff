"""Neck and head families as data: the rows each family puts after a backbone's last stage, for every task.

In the manner of effdet's ``fpn_config``, a family is a table, not code: the rows are written as the family's own
Ultralytics YAML writes them, numbered as in that file (``Neck.source``), and ``head_text`` re-indexes them onto any
backbone: the rows the source reads as P3, P4 and its last backbone row (``Neck.taps``) become the backbone's taps,
every later row moves with the head. A task (``TASKS``) picks the output row and its top-level keys; classification
replaces the neck by Ultralytics' ``Classify`` on the backbone's last row.

    pan     YOLOv5's v6.0 PAN head (Ultralytics' yolov5.yaml, yolov5u): SPPF, then C3 rows; files yolov5_*.yaml
    bifpn   a BiFPN neck (EfficientDet) on the same SPPF, detection only
    yolo11  YOLO11's neck and heads (yolo11.yaml): SPPF and C2PSA kept, C3k2 rows
    yolo26  YOLO26's (yolo26.yaml): unactivated SPPF and C2PSA kept, C3k2 rows, end-to-end heads (``end2end``,
            ``reg_max: 1``)

Ultralytics' parser applies its own per-scale rules to these rows as to its built-in files (C3k2 builds C3k blocks at
m/l/x). ``tests/test_heads.py`` checks every family's rows and keys against the installed Ultralytics' YAMLs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

Scales = dict[str, tuple[float, float, int]]  # letter -> (depth, width, max_channels), Ultralytics' ``scales:``
BARE = frozenset({"nc", "kpt_shape", "anchors", "bifpn_phi", "fastattn"})  # names written unquoted: keys, BiFPN's mode


class Row(NamedTuple):
    """A YAML row as its source file numbers it; ``note`` is the comment, where ``{i}`` is the row's index in the
    written file."""

    f: int | list[int]
    n: int
    module: str
    args: list
    note: str = ""


@dataclass(frozen=True)
class Task:
    """One Ultralytics task: its file-name suffix (``yolo11n-seg.yaml``) and the top-level keys it sets."""

    name: str  # Ultralytics' task name
    suffix: str
    nc: int = 80  # the source files' nc (classification: ImageNet's 1000)
    keys: dict = field(default_factory=dict)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("detect", ""),
        Task("segment", "-seg"),
        Task("pose", "-pose", keys={"kpt_shape": [17, 3]}),  # COCO keypoints: 17 (x, y, visible)
        Task("obb", "-obb"),
        Task("classify", "-cls", nc=1000),
    )
}


@dataclass(frozen=True)
class Neck:
    """A neck/head family; rows numbered as in ``source`` (Ultralytics' ``cfg/models`` file of the family)."""

    name: str  # the family's key (``ModelYaml.neck``)
    prefix: str  # file-name prefix: yolov5_effv2.yaml, yolo26_effv2.yaml
    title: str  # what the YAML header calls the family; ``{head}``: the output row's module
    comment: str  # the line above ``head:``
    source: str | None  # None: numbered as the YOLOv5 family's file
    taps: tuple[int, int, int]  # rows of ``source`` the neck reads as P3, P4 and the last backbone row
    tail: tuple[Row, ...]  # the family's own last backbone rows, after the backbone's last stage
    groups: tuple[tuple[Row, ...], ...]  # neck rows, a blank line between groups
    outputs: list[int]  # the output row's inputs (P3, P4, P5)
    heads: dict[str, tuple[str, list]]  # task -> the output row's module and args
    keys: dict = field(default_factory=dict)  # top-level keys of its detect/segment/pose/obb files
    scales: Scales | None = None  # its own ``scales:``; None: the backbone file's
    cls_tail: bool = False  # classification keeps ``tail`` (C2PSA needs it: see _CLS_TAIL)

    @property
    def first_head_row(self) -> int:
        """Index of the source file's first head row."""
        return self.taps[2] + 1

    def tail_for(self, task: str) -> tuple[Row, ...]:
        """The backbone rows this family adds after the last stage for ``task``."""
        return self.tail if task != "classify" or self.cls_tail else ()


def _upsample() -> Row:
    return Row(-1, 1, "nn.Upsample", [None, 2, "nearest"])


PAN = Neck(
    "pan",
    "yolov5",
    "YOLOv5 (v6.0 PAN head, Ultralytics {head})",
    "# YOLOv5 v6.0 head",
    "v5/yolov5.yaml",
    (4, 6, 9),
    tail=(Row(-1, 1, "SPPF", [1024, 5], "{i}-P5/32"),),
    groups=(
        (
            Row(-1, 1, "Conv", [512, 1, 1], "{i}"),
            _upsample(),
            Row([-1, 6], 1, "Concat", [1], "cat backbone P4"),
            Row(-1, 3, "C3", [512, False], "{i}"),
        ),
        (
            Row(-1, 1, "Conv", [256, 1, 1], "{i}"),
            _upsample(),
            Row([-1, 4], 1, "Concat", [1], "cat backbone P3"),
            Row(-1, 3, "C3", [256, False], "{i} (P3/8-small)"),
        ),
        (
            Row(-1, 1, "Conv", [256, 3, 2]),
            Row([-1, 14], 1, "Concat", [1], "cat head P4"),
            Row(-1, 3, "C3", [512, False], "{i} (P4/16-medium)"),
        ),
        (
            Row(-1, 1, "Conv", [512, 3, 2]),
            Row([-1, 10], 1, "Concat", [1], "cat head P5"),
            Row(-1, 3, "C3", [1024, False], "{i} (P5/32-large)"),
        ),
    ),
    outputs=[17, 20, 23],
    heads={
        "detect": ("Detect", ["nc"]),
        "segment": ("Segment", ["nc", 32, 256]),
        "pose": ("Pose", ["nc", "kpt_shape"]),
        "obb": ("OBB", ["nc", 1]),
    },  # yolov5u's heads: Ultralytics' v8 heads (yolov8-seg/-pose/-obb.yaml)
)
BIFPN = Neck(
    "bifpn",
    "yolov5",
    "BiFPN neck + Ultralytics {head}",
    "# BiFPN neck: [[P3, P4, P5], 1, BiFPN, [phi, fusion mode]] -> [P3, P4, P5]; Level [k] picks output k",
    None,
    PAN.taps,
    PAN.tail,
    groups=(
        (
            Row([4, 6, 9], 1, "BiFPN", ["bifpn_phi", "fastattn"], "{i}"),
            Row(10, 1, "Level", [0], "{i} (P3/8-small)"),
            Row(10, 1, "Level", [1], "{i} (P4/16-medium)"),
            Row(10, 1, "Level", [2], "{i} (P5/32-large)"),
        ),
    ),
    outputs=[11, 12, 13],
    heads={"detect": ("Detect", ["nc"])},
)
# Both families' scales: one depth for n/s/m, channels capped at 512 from m up (yolo11.yaml, yolo26.yaml)
YOLO11_SCALES: Scales = {
    "n": (0.50, 0.25, 1024),
    "s": (0.50, 0.50, 1024),
    "m": (0.50, 1.00, 512),
    "l": (1.00, 1.00, 512),
    "x": (1.00, 1.50, 512),
}


def _c3k2_neck(c3k: bool, last: list) -> tuple[tuple[Row, ...], ...]:
    """YOLO11's and YOLO26's neck (they differ in the C3k2 rows' c3k flag and the last one's args)."""
    return (
        (_upsample(), Row([-1, 6], 1, "Concat", [1], "cat backbone P4"), Row(-1, 2, "C3k2", [512, c3k], "{i}")),
        (
            _upsample(),
            Row([-1, 4], 1, "Concat", [1], "cat backbone P3"),
            Row(-1, 2, "C3k2", [256, c3k], "{i} (P3/8-small)"),
        ),
        (
            Row(-1, 1, "Conv", [256, 3, 2]),
            Row([-1, 13], 1, "Concat", [1], "cat head P4"),
            Row(-1, 2, "C3k2", [512, c3k], "{i} (P4/16-medium)"),
        ),
        (
            Row(-1, 1, "Conv", [512, 3, 2]),
            Row([-1, 10], 1, "Concat", [1], "cat head P5"),
            Row(-1, *last, "{i} (P5/32-large)"),
        ),
    )


# Classification keeps SPPF before C2PSA, where yolo11-cls/yolo26-cls drop it: C2PSA keeps its input width (c1 == c2)
# and needs at least 128 channels for its attention heads, and an EfficientNet's last stage has neither (96 at n), so
# SPPF's 1x1 projection brings it to C2PSA's width, as in detection; the backbone is then the detector's, row for row.
_CLS_TAIL = True
YOLO11 = Neck(
    "yolo11",
    "yolo11",
    "YOLO11 neck and {head} head",
    "# YOLO11 head",
    "11/yolo11.yaml",
    (4, 6, 10),
    tail=(Row(-1, 1, "SPPF", [1024, 5], "{i}-P5/32"), Row(-1, 2, "C2PSA", [1024], "{i}-P5/32")),
    groups=_c3k2_neck(False, [2, "C3k2", [1024, True]]),
    outputs=[16, 19, 22],
    heads={
        "detect": ("Detect", ["nc"]),
        "segment": ("Segment", ["nc", 32, 256]),
        "pose": ("Pose", ["nc", "kpt_shape"]),
        "obb": ("OBB", ["nc", 1]),
    },
    scales=YOLO11_SCALES,
    cls_tail=_CLS_TAIL,
)
YOLO26 = Neck(
    "yolo26",
    "yolo26",
    "YOLO26 neck and end-to-end {head} head",
    "# YOLO26 head",
    "26/yolo26.yaml",
    (4, 6, 10),
    tail=(Row(-1, 1, "SPPF", [1024, 5, 3, True], "{i}-P5/32"), Row(-1, 2, "C2PSA", [1024], "{i}-P5/32")),
    groups=_c3k2_neck(True, [1, "C3k2", [1024, True, 0.5, True]]),
    outputs=[16, 19, 22],
    heads={
        "detect": ("Detect", ["nc"]),
        "segment": ("Segment26", ["nc", 32, 256]),
        "pose": ("Pose26", ["nc", "kpt_shape"]),
        "obb": ("OBB26", ["nc", 1]),
    },
    keys={"end2end": True, "reg_max": 1},  # NMS-free one-to-one head, no DFL bins
    scales=YOLO11_SCALES,
    cls_tail=_CLS_TAIL,
)
NECKS: dict[str, Neck] = {n.name: n for n in (PAN, BIFPN, YOLO11, YOLO26)}
KEY_NOTES = {  # the comment after each top-level key a family or task sets
    "end2end": "end-to-end: one-to-one head, no NMS",
    "reg_max": "DFL bins (1: none)",
    "kpt_shape": "number of keypoints, number of dims (2 for x,y or 3 for x,y,visible)",
}


def describe(neck: Neck, task: str) -> str:
    """What a YAML of ``neck`` for ``task`` puts on the backbone, for its header's first line."""
    if task != "classify":
        return neck.title.format(head=neck.heads[task][0])
    kept = [r.module for r in neck.tail_for(task)]
    return (
        f"{neck.prefix.upper()}'s {' and '.join(kept)}, then Ultralytics Classify"
        if kept
        else "Ultralytics Classify on the last stage (as YOLOv5's -cls models)"
    )


def flow(x) -> str:
    """``x`` in YAML flow style as the shipped files write it (``None``/``True`` as Ultralytics writes them)."""
    if isinstance(x, (list, tuple)):
        return f"[{', '.join(map(flow, x))}]"
    if isinstance(x, str):
        return x if x in BARE else f'"{x}"'
    return str(x)


def _row_line(f, n: int, module: str, args: list, note: str, i: int) -> str:
    comment = f" # {note.format(i=i)}" if note else ""
    return f"  - [{flow(f)}, {n}, {module}, {flow(args)}]{comment}"


def tail_lines(neck: Neck, task: str, first: int) -> list[str]:
    """The family's last backbone rows for ``task``, the first at row ``first``."""
    return [_row_line(*r, i) for i, r in enumerate(neck.tail_for(task), start=first)]


def head_text(
    neck: Neck, task: str, taps: tuple[int, int, int], names: dict | None = None, output_args: list | None = None
) -> str:
    """The ``head:`` section of ``neck`` for ``task`` on a backbone whose P3 and P4 end at rows ``taps[:2]`` and
    whose last row is ``taps[2]``; ``names``: top-level names to write as values (classic YOLOv5's BiFPN phi),
    ``output_args``: the output row's args instead of the task's (classic YOLOv5's ``[nc, anchors]``)."""
    if task == "classify":
        return "head:\n" + _row_line(-1, 1, "Classify", ["nc"], "Classify", taps[2] + 1) + "\n"
    if task not in neck.heads:
        raise ValueError(f"the {neck.name} family has no {task} head (it has {', '.join(neck.heads)})")
    start = taps[2] + 1
    src = dict(zip(neck.taps, taps))

    def ref(j: int) -> int:
        if j == -1:
            return j
        if j in src:
            return src[j]
        if j < neck.first_head_row:
            raise ValueError(f"{neck.name}: row {j} of {neck.source} is a backbone row that is not a tap")
        return j - neck.first_head_row + start

    def value(a):
        return (names or {}).get(a, a) if isinstance(a, str) else a

    lines, i = [neck.comment, "head:"], start
    for g, group in enumerate(neck.groups):
        if g:
            lines.append("")
        for f, n, module, args, note in group:
            f = [ref(j) for j in f] if isinstance(f, list) else ref(f)
            lines.append(_row_line(f, n, module, [value(a) for a in args], note, i))
            i += 1
    module, args = neck.heads[task]
    lines += ["", _row_line([ref(j) for j in neck.outputs], 1, module, output_args or args, f"{module}(P3, P4, P5)", i)]
    return "\n".join(lines) + "\n"
