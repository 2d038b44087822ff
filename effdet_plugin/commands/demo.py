"""Generated demo dataset: coloured shapes on textured backgrounds, in Ultralytics' YOLO layout.

Offline and deterministic (one seed), so README's first command and the tests train on real images without a download.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import yaml

CLASSES = ("circle", "square", "triangle")


def _draw(img: np.ndarray, cls: int, cx: float, cy: float, r: float, color: tuple[int, int, int]) -> None:
    if cls == 0:
        cv2.circle(img, (round(cx), round(cy)), round(r), color, -1, cv2.LINE_AA)
    elif cls == 1:
        cv2.rectangle(img, (round(cx - r), round(cy - r)), (round(cx + r), round(cy + r)), color, -1)
    else:
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA)


def _image(rng: np.random.Generator, width: int, height: int, max_objects: int):
    """Return one image and its YOLO label rows (class, x_center, y_center, width, height; normalized)."""
    base = rng.integers(40, 200, 3)
    img = (base + rng.normal(0, 12, (height, width, 3))).clip(0, 255).astype(np.uint8)
    labels = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(len(CLASSES)))
        r = float(rng.uniform(0.07, 0.2) * min(width, height))
        cx, cy = float(rng.uniform(r, width - r)), float(rng.uniform(r, height - r))
        color = tuple(int(c) for c in (255 - base + rng.integers(-30, 30, 3)).clip(0, 255))
        _draw(img, cls, cx, cy, r, color)
        labels.append((cls, cx / width, cy / height, 2 * r / width, 2 * r / height))
    return img, labels


def make_demo_dataset(
    root: str | Path,
    n_train: int = 256,
    n_val: int = 32,
    n_test: int = 0,
    imgsz: int | tuple[int, int] = 128,
    max_objects: int = 3,
    seed: int = 0,
) -> Path:
    """Write ``root/images/{train,val[,test]}``, matching ``labels/`` and ``root/data.yaml``; return the YAML path.

    ``imgsz`` is a side length or a ``(width, height)`` pair.
    """
    root = Path(root).resolve()
    width, height = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    if min(n_train, n_val) < 1 or n_test < 0 or min(width, height) < 32 or max_objects < 1:
        raise ValueError("need n_train, n_val >= 1, n_test >= 0, image sides >= 32 and max_objects >= 1")
    rng = np.random.default_rng(seed)
    splits = {"train": n_train, "val": n_val, **({"test": n_test} if n_test else {})}
    for split, count in splits.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            img, labels = _image(rng, width, height, max_objects)
            cv2.imwrite(str(root / "images" / split / f"{split}_{k:04d}.jpg"), img)
            rows = "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in labels)
            (root / "labels" / split / f"{split}_{k:04d}.txt").write_text(rows)
    data = {"path": str(root), **{s: f"images/{s}" for s in splits}, "names": dict(enumerate(CLASSES))}
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ------------------------------------------------------------------------------- effdet-plugin demo-data DIR
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="output folder (created)")
    p.add_argument("--train", type=int, default=256, help="training images (default 256)")
    p.add_argument("--val", type=int, default=32, help="validation images (default 32)")
    p.add_argument("--test", type=int, default=0, help="test images (default 0)")
    p.add_argument("--imgsz", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    path = make_demo_dataset(args.dir, args.train, args.val, args.test, args.imgsz, seed=args.seed)
    print(path)
    return 0
