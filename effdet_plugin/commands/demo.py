"""Generated demo datasets, one per Ultralytics task: coloured shapes on textured backgrounds, in Ultralytics' layouts.

Offline and deterministic (one seed), so README's first command and the tests train on real images without a download.

  effdet-plugin demo-data demo                      # detect: boxes; data=demo/data.yaml
  effdet-plugin demo-data demo-seg --task segment   # polygons (circles as 24-gons)
  effdet-plugin demo-data demo-pose --task pose     # 4 keypoints per shape (kpt_shape [4, 3], flip_idx)
  effdet-plugin demo-data demo-obb --task obb       # rotated bars, squares, triangles; DOTA-style 8-point labels
  effdet-plugin demo-data demo-cls --task classify  # one shape per image in class folders; data=demo-cls (a folder)

The command prints what ``data=`` takes: the data YAML, or for classification the dataset folder (Ultralytics reads
classification datasets from folders only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import yaml

TASKS = ("detect", "segment", "pose", "obb", "classify")
CLASSES = ("circle", "square", "triangle")
OBB_CLASSES = ("bar", "square", "triangle")  # a circle has no orientation, so OBB's first class is a 3:1 bar
KPT_SHAPE = (4, 3)  # per shape its top, right, bottom and left point, each (x, y, visible)
FLIP_IDX = (0, 3, 2, 1)  # a horizontal flip swaps the right and left points


def _outline(cls: int, cx: float, cy: float, r: float, angle: float = 0.0, obb: bool = False) -> np.ndarray:
    """The shape's polygon (N x 2 pixels), rotated by ``angle`` radians about its centre."""
    if cls == 0 and not obb:
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    elif cls == 2:
        pts = np.array([[0, -r], [r, r], [-r, r]], float)
    else:
        h = r / 3 if cls == 0 else r  # obb's bar, or the square
        pts = np.array([[-r, -h], [r, -h], [r, h], [-r, h]], float)
    c, s = np.cos(angle), np.sin(angle)
    return pts @ np.array([[c, s], [-s, c]]) + (cx, cy)


def _draw(img: np.ndarray, cls: int, cx: float, cy: float, r: float, color: tuple[int, int, int]) -> None:
    if cls == 0:
        cv2.circle(img, (round(cx), round(cy)), round(r), color, -1, cv2.LINE_AA)
    elif cls == 1:
        cv2.rectangle(img, (round(cx - r), round(cy - r)), (round(cx + r), round(cy + r)), color, -1)
    else:
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA)


def _keypoints(cls: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Top, right, bottom and left point of an upright shape (4 x 2 pixels)."""
    if cls == 2:  # apex, right corner, base centre, left corner
        return np.array([[cx, cy - r], [cx + r, cy + r], [cx, cy + r], [cx - r, cy + r]])
    return np.array([[cx, cy - r], [cx + r, cy], [cx, cy + r], [cx - r, cy]])


def _label(task: str, cls: int, cx: float, cy: float, r: float, angle: float, width: int, height: int) -> str:
    """One label row in the task's YOLO format, coordinates normalized."""
    scale = np.array([width, height], float)
    if task == "segment":
        coords = (_outline(cls, cx, cy, r) / scale).ravel()
    elif task == "obb":  # the four corners of the shape's minimum-area rotated box
        coords = (
            cv2.boxPoints(cv2.minAreaRect(_outline(cls, cx, cy, r, angle, obb=True).astype(np.float32))) / scale
        ).ravel()
    else:
        coords = [cx / width, cy / height, 2 * r / width, 2 * r / height]
    values = [f"{float(v):.6f}" for v in np.clip(coords, 0, 1)]
    if task == "pose":  # x, y, visibility 2 (COCO's "labelled and visible")
        values += [f"{float(v):.6f}" for x, y in np.clip(_keypoints(cls, cx, cy, r) / scale, 0, 1) for v in (x, y, 2)]
    return f"{cls} " + " ".join(values) + "\n"


def _image(rng: np.random.Generator, width: int, height: int, max_objects: int, task: str = "detect"):
    """Return one image and its label rows in ``task``'s format."""
    base = rng.integers(40, 200, 3)
    img = (base + rng.normal(0, 12, (height, width, 3))).clip(0, 255).astype(np.uint8)
    labels = []
    big = task == "classify"  # one shape filling much of the image
    for _ in range(1 if big else int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(len(CLASSES)))
        r = float(rng.uniform(0.2, 0.35) if big else rng.uniform(0.07, 0.2)) * min(width, height)
        margin = r * np.sqrt(2) if task == "obb" else r  # a rotated shape stays inside the image
        cx, cy = float(rng.uniform(margin, width - margin)), float(rng.uniform(margin, height - margin))
        color = tuple(int(c) for c in (255 - base + rng.integers(-30, 30, 3)).clip(0, 255))
        if task == "obb":
            angle = float(rng.uniform(0, np.pi))
            cv2.fillPoly(
                img, [np.round(_outline(cls, cx, cy, r, angle, obb=True)).astype(np.int32)], color, cv2.LINE_AA
            )
        else:
            angle = 0.0
            _draw(img, cls, cx, cy, r, color)
        labels.append(cls if big else _label(task, cls, cx, cy, r, angle, width, height))
    return img, labels


def make_demo_dataset(
    root: str | Path,
    n_train: int = 256,
    n_val: int = 32,
    n_test: int = 0,
    imgsz: int | tuple[int, int] = 128,
    max_objects: int = 3,
    seed: int = 0,
    task: str = "detect",
) -> Path:
    """Write a dataset for ``task`` under ``root`` and return what Ultralytics' ``data=`` takes.

    detect, segment, pose, obb: ``root/images/{train,val[,test]}``, matching ``labels/`` and ``root/data.yaml``
    (returned). classify: ``root/{train,val[,test]}/CLASS/*.jpg``, one shape per image; returns ``root``.
    ``imgsz`` is a side length or a ``(width, height)`` pair.
    """
    root = Path(root).resolve()
    width, height = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    if min(n_train, n_val) < 1 or n_test < 0 or min(width, height) < 32 or max_objects < 1:
        raise ValueError("need n_train, n_val >= 1, n_test >= 0, image sides >= 32 and max_objects >= 1")
    rng = np.random.default_rng(seed)
    splits = {"train": n_train, "val": n_val, **({"test": n_test} if n_test else {})}
    names = OBB_CLASSES if task == "obb" else CLASSES
    for split, count in splits.items():
        if task == "classify":
            for name in names:
                (root / split / name).mkdir(parents=True, exist_ok=True)
        else:
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            img, labels = _image(rng, width, height, max_objects, task)
            if task == "classify":
                cv2.imwrite(str(root / split / names[labels[0]] / f"{split}_{k:04d}.jpg"), img)
                continue
            cv2.imwrite(str(root / "images" / split / f"{split}_{k:04d}.jpg"), img)
            (root / "labels" / split / f"{split}_{k:04d}.txt").write_text("".join(labels))
    if task == "classify":
        return root
    data = {"path": str(root), **{s: f"images/{s}" for s in splits}, "names": dict(enumerate(names))}
    if task == "pose":
        data.update(kpt_shape=list(KPT_SHAPE), flip_idx=list(FLIP_IDX))
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ------------------------------------------------------------------------------- effdet-plugin demo-data DIR
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="output folder (created)")
    p.add_argument(
        "--task", choices=TASKS, default="detect", help="the Ultralytics task the labels are for (default detect)"
    )
    p.add_argument("--train", type=int, default=256, help="training images (default 256)")
    p.add_argument("--val", type=int, default=32, help="validation images (default 32)")
    p.add_argument("--test", type=int, default=0, help="test images (default 0)")
    p.add_argument("--imgsz", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    path = make_demo_dataset(args.dir, args.train, args.val, args.test, args.imgsz, seed=args.seed, task=args.task)
    print(path)
    return 0
