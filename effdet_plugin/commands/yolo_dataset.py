"""Write objects read from any source as an Ultralytics YOLO dataset, with a deterministic train/val/test split.

``voc2yolo`` and ``prepare-data`` read their sources into ``Record``s and leave the layout to ``write_yolo_dataset``:
``DST/images/{train,val[,test]}`` (hard links, else copies), matching ``labels/`` (an empty file for an image without
objects) and ``data.yaml``. Labels are the task's rows: boxes (detect), polygons (segment), boxes with keypoints
(pose) or four corners (obb). The split is a seeded permutation of the records in the order given, so one source, one
seed and one fraction give one split; records of one ``group`` (frames of one stretch of a video) stay in one split,
so near-copies of a training image never score a model.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from ultralytics.utils.ops import xyxy2xywhn

from effdet_plugin.atomic import atomic_open

SPLITS = ("train", "val", "test")


@dataclass
class Record:
    """One image and its boxes: pixel corners as written (clipped when written), class names per box."""

    image: Path
    width: float
    height: float
    names: list[str]
    xyxy: np.ndarray  # (n, 4) x1, y1, x2, y2 in pixels
    dropped: int = 0  # boxes lying wholly outside the image, left out by the reader
    source: Path | None = None  # the annotation file, for messages
    # per object, in pixels: a polygon (k, 2) for segment, keypoints (K, 2 or 3: x, y[, visible]) for pose, the four
    # corners (4, 2) for obb; None for detect
    shapes: list[np.ndarray] | None = None
    group: str | None = None  # records of one group go to one split


@dataclass
class Conversion:
    """What ``write_yolo_dataset`` wrote: the data YAML, images per split, and the boxes readers dropped."""

    data_yaml: Path
    images: dict[str, int]  # split -> image count
    dropped: int = 0  # boxes lying wholly outside their image
    dropped_in: list[Path] = field(default_factory=list)  # the annotation files those boxes came from


def split_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Images per train/val/test for ``n`` images: val and test rounded, train takes the rest."""
    if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"split {list(fractions)} must be three non-negative fractions summing to 1")
    n_val, n_test = round(fractions[1] * n), round(fractions[2] * n)
    n_train = n - n_val - n_test
    if n_train < 1 or n_val < 1:
        raise ValueError(f"split {list(fractions)} of {n} images leaves {n_train} train / {n_val} val; need >= 1 each")
    return n_train, n_val, n_test


def _place(image: Path, target: Path) -> None:
    try:
        os.link(image, target)  # hard link: no copy of the data when on one file system
    except OSError:
        shutil.copy2(image, target)


def check_empty(dst: Path) -> None:
    """Refuse to write into a folder that holds anything: a conversion never mixes with, or overwrites, other files."""
    if dst.exists() and any(dst.iterdir()):
        raise ValueError(f"output folder {dst} is not empty")


TASKS = ("detect", "segment", "pose", "obb")


def label_rows(r: Record, names: list[str], task: str = "detect") -> str:
    """The YOLO label file of one record: one row per object, class id then normalized coordinates clipped to the
    image: the box's centre and size (detect, and pose before its keypoints), or the shape's points (segment, obb)."""
    xywhn = xyxy2xywhn(r.xyxy.copy(), w=r.width, h=r.height, clip=True)
    rows = []
    for k, (n, box) in enumerate(zip(r.names, xywhn)):
        values = list(box)
        if task != "detect":
            points = np.array(r.shapes[k], np.float64)
            points[:, :2] = np.clip(points[:, :2] / (r.width, r.height), 0, 1)
            values = [*values, *points.ravel()] if task == "pose" else list(points.ravel())
        rows.append(f"{names.index(n)} " + " ".join(f"{v:.10f}" for v in values) + "\n")
    return "".join(rows)


def split_groups(groups: list[str | None], fractions: tuple[float, float, float], seed: int) -> dict[str, list[int]]:
    """Item indices per split: a seeded permutation of the items, or of their groups where they have one (``None``:
    an item of its own)."""
    keys = [g if g is not None else f"#{i}" for i, g in enumerate(groups)]
    unique = list(dict.fromkeys(keys))
    counts = split_counts(len(unique), fractions)
    order = np.random.default_rng(seed).permutation(len(unique))
    bounds = np.cumsum((0, *counts))
    where = {unique[g]: s for i, s in enumerate(SPLITS) for g in order[bounds[i] : bounds[i + 1]]}
    out: dict[str, list[int]] = {s: [] for s, c in zip(SPLITS, counts) if c}
    for i, key in enumerate(keys):
        out[where[key]].append(i)
    return out


def write_class_folders(
    images: list[tuple[Path, str]],
    dst: str | Path,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> dict[str, int]:
    """Write (image, class name) pairs, in a fixed order, as a classification dataset, ``DST/{train,val,test}/CLASS/``
    (hard links, else copies), each class split by ``seed`` on its own, so every split holds every class in the same
    proportions (the host numbers classes by the train split's folders); return images per split. Every class must keep
    its own file names apart."""
    dst = Path(dst).resolve()
    check_empty(dst)
    seen: dict[tuple[str, str], Path] = {}
    for image, name in images:
        if (name, image.name) in seen:
            raise ValueError(f"{image} and {seen[name, image.name]} are both {name}/{image.name}")
        seen[name, image.name] = image
    counts: dict[str, int] = {}
    for name in sorted({n for _, n in images}):
        members = [image for image, n in images if n == name]
        for s, idx in split_groups([None] * len(members), split, seed).items():
            (dst / s / name).mkdir(parents=True, exist_ok=True)
            for i in idx:
                _place(members[i], dst / s / name / members[i].name)
            counts[s] = counts.get(s, 0) + len(idx)
    return counts


def write_yolo_dataset(
    records: list[Record],
    dst: str | Path,
    names: list[str],
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    task: str = "detect",
    keys: dict | None = None,
) -> Conversion:
    """Write ``records`` (in a fixed order) as a YOLO ``task`` dataset at ``dst`` split by ``seed``; return what was
    written. ``keys`` go into data.yaml beside the splits and names (a pose dataset's ``kpt_shape`` and ``flip_idx``).

    Class ids follow ``names``. Image file names must be unique (labels are matched to images by stem), every
    object's class must be in ``names``, and every object has a shape unless the task is detect.
    """
    if task not in TASKS:
        raise ValueError(f"task {task!r}: expected one of {', '.join(TASKS)}")
    dst = Path(dst).resolve()
    check_empty(dst)
    if len(set(names)) != len(names):
        raise ValueError(f"class names {names} repeat a name")
    seen: dict[str, Record] = {}
    for r in records:
        if r.image.stem in seen:
            raise ValueError(f"{r.source or r.image} and {seen[r.image.stem].source or seen[r.image.stem].image} "
                             f"both use an image named {r.image.stem}.*; labels are matched to images by stem")  # fmt: skip
        seen[r.image.stem] = r
    if unknown := [(r, n) for r in records for n in r.names if n not in names]:
        r, n = unknown[0]
        raise ValueError(f"{r.source or r.image}: class {n!r} is not in names {names}")

    if task != "detect" and (
        bad := next((r for r in records if r.shapes is None or len(r.shapes) != len(r.names)), None)
    ):
        raise ValueError(f"{bad.source or bad.image}: a {task} dataset needs one shape per object")
    splits = split_groups([r.group for r in records], split, seed)
    for s, idx in splits.items():
        (dst / "images" / s).mkdir(parents=True, exist_ok=True)
        (dst / "labels" / s).mkdir(parents=True, exist_ok=True)
        for i in idx:
            r = records[i]
            _place(r.image, dst / "images" / s / r.image.name)
            (dst / "labels" / s / f"{r.image.stem}.txt").write_text(label_rows(r, names, task))
    data = {"path": str(dst), **{s: f"images/{s}" for s in splits}, **(keys or {}), "names": dict(enumerate(names))}
    path = dst / "data.yaml"
    with atomic_open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    dropped_in = [r.source or r.image for r in records if r.dropped]
    return Conversion(path, {s: len(idx) for s, idx in splits.items()}, sum(r.dropped for r in records), dropped_in)
