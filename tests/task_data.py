"""Tiny generated datasets for the segment, pose, OBB and classify tasks, in Ultralytics' layouts: a few small images
of filled squares on noise, with their masks (polygons), keypoints (the corners), rotated boxes or class folders.

Enough for one short training to write a real checkpoint of each task; not for learning anything.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import yaml

CLASSES = ("square", "diamond")  # a square drawn upright or turned by 45 degrees
KPT_SHAPE = [4, 3]  # the corners, each x, y, visible
FLIP_IDX = [1, 0, 3, 2]  # corners as listed by _corners: a left-right flip swaps 0 and 1, 2 and 3


def _corners(cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """The four corners of a square of half-side ``r`` turned by ``angle`` radians, clockwise from the top left."""
    base = np.array([[-r, -r], [r, -r], [r, r], [-r, r]])
    c, s = math.cos(angle), math.sin(angle)
    return base @ np.array([[c, s], [-s, c]]) + (cx, cy)


def _image(rng: np.random.Generator, size: int, classes: list[int]) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One image of objects of ``classes`` and its objects: (class, corners in pixels)."""
    img = rng.integers(0, 80, (size, size, 3)).astype(np.uint8)
    objects = []
    for cls in classes:
        r = float(rng.uniform(0.12, 0.2) * size)
        cx, cy = (float(rng.uniform(1.5 * r, size - 1.5 * r)) for _ in range(2))
        angle = math.pi / 4 * cls + float(rng.uniform(-0.2, 0.2))
        corners = _corners(cx, cy, r, angle)
        cv2.fillPoly(img, [corners.round().astype(np.int32)], tuple(int(v) for v in rng.integers(150, 256, 3)))
        objects.append((cls, corners))
    return img, objects


def _label(task: str, cls: int, corners: np.ndarray, size: int) -> str:
    xy = np.clip(corners / size, 0, 1)
    if task in ("segment", "obb"):  # a polygon; OBB's is exactly four corners
        return " ".join([str(cls), *(f"{v:.6f}" for v in xy.ravel())])
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    box = [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
    return " ".join([str(cls), *(f"{v:.6f}" for v in box), *(f"{v:.6f}" for x, y in xy for v in (x, y, 2.0))])


def make_task_dataset(root: Path, task: str, n_train: int = 8, n_val: int = 4, size: int = 64, seed: int = 0) -> Path:
    """Write a ``task`` dataset (``segment``, ``pose``, ``obb`` or ``classify``) under ``root``; return what
    ``data=`` takes: the data YAML, or for ``classify`` the folder with ``train/`` and ``val/``."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, count in (("train", n_train), ("val", n_val)):
        for k in range(count):
            classes = [k % len(CLASSES)] if task == "classify" else list(rng.integers(len(CLASSES), size=2))
            img, objects = _image(rng, size, [int(c) for c in classes])
            if task == "classify":  # one object a picture, every class in both splits
                folder = root / split / CLASSES[objects[0][0]]
                folder.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folder / f"{k:03d}.jpg"), img)
                continue
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "images" / split / f"{k:03d}.jpg"), img)
            text = "".join(_label(task, c, corners, size) + "\n" for c, corners in objects)
            (root / "labels" / split / f"{k:03d}.txt").write_text(text)
    if task == "classify":
        return root
    data = {
        "path": str(root.resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(CLASSES)),
    }
    if task == "pose":
        data.update(kpt_shape=KPT_SHAPE, flip_idx=FLIP_IDX)
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
