"""The protocol's confirm datasets, rebuilt from their public sources with one command and one fixed split.

    git clone https://github.com/creiser/drone-detection
    effdet-plugin prepare-data drones drone-detection data/drones-v2

Each source's annotations are read as they come (the plates' text rows, the drones' box lists, the car parts' COCO
polygons, the tiger's YOLO pose rows, MSRA-TD500's turned text boxes, class folders), in the order of their files'
paths, and written by ``write_yolo_dataset`` as labels of the source's task (a classifier's as class folders, by
``write_class_folders``) with the protocol's 70/15/15 split and seed 0, so the same clone gives the same files and the
same ``data_fingerprint`` that protocol records carry.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from effdet_plugin.commands.heldout import data_fingerprint
from effdet_plugin.commands.yolo_dataset import Record, check_empty, write_class_folders, write_yolo_dataset

SPLIT = (0.7, 0.15, 0.15)
SEED = 0


def _size(image: Path, source: Path) -> tuple[int, int]:
    if not image.is_file():
        raise FileNotFoundError(f"{source}: image {image.name} not found beside it")
    with Image.open(image) as im:
        return im.size


def _numbers(values: list[str], source: Path, line: int, want: int) -> list[float]:
    try:
        numbers = [float(v) for v in values[:want]]
    except ValueError:
        numbers = []
    if len(numbers) != want:
        raise ValueError(f"{source} line {line}: expected {want} numbers, got {values!r}")
    return numbers


def _rows(path: Path, sep: str | None = "\t") -> list[tuple[int, list[str]]]:
    """The non-blank rows of a tab-separated file (``sep=None``: blank-separated), each with its line number (for
    messages)."""
    return [(i, line.split(sep)) for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]


def read_plates(folder: Path) -> list[Record]:
    """openalpr/benchmarks ``endtoend/<country>/*.txt``: one row per plate, ``image x y w h text`` (tab-separated,
    pixels, top-left corner). The image is the one a row names; a photo shipped in two encodings is taken once."""
    records = []
    for txt in sorted(folder.glob("*/*.txt")):
        rows = _rows(txt)
        if not rows:
            raise ValueError(f"{txt}: no plate rows (expected 'image<TAB>x<TAB>y<TAB>w<TAB>h<TAB>plate')")
        images = {r[0].strip() for _, r in rows}
        if len(images) != 1:
            raise ValueError(f"{txt}: rows name {len(images)} images ({', '.join(sorted(images))}); expected one")
        image = txt.parent / images.pop()
        w, h = _size(image, txt)
        boxes = []
        for i, r in rows:
            x, y, bw, bh = _numbers(r[1:5], txt, i, 4)
            boxes.append((x, y, x + bw, y + bh))
        records.append(Record(image, w, h, ["plate"] * len(boxes), np.array(boxes, np.float64), source=txt))
    return records


def read_drones(folder: Path) -> list[Record]:
    """creiser/drone-detection ``DataSets/Drones/positive``: ``N.jpg`` with ``N.bboxes.tsv`` (one ``x1 y1 x2 y2`` row
    per box, pixels) and ``N.bboxes.labels.tsv`` (the class of each row)."""
    records = []
    for tsv in sorted(folder.glob("*.bboxes.tsv")):
        stem = tsv.name[: -len(".bboxes.tsv")]
        labels = tsv.with_name(f"{stem}.bboxes.labels.tsv")
        if not labels.is_file():
            raise FileNotFoundError(f"{tsv}: its class list {labels.name} not found beside it")
        rows = _rows(tsv)
        names = [line.strip() for line in labels.read_text().splitlines() if line.strip()]
        if len(names) != len(rows):
            raise ValueError(f"{labels}: {len(names)} classes for the {len(rows)} boxes of {tsv.name}")
        w, h = _size(folder / f"{stem}.jpg", tsv)
        boxes = np.array([_numbers(r, tsv, i, 4) for i, r in rows], np.float64).reshape(-1, 4)
        records.append(Record(folder / f"{stem}.jpg", w, h, names, boxes, source=tsv))
    return records


# The default recipe flips images left-right (fliplr=0.5), which would swap a left door for a right one without
# swapping its label: the car-parts dataset keeps each part and drops the side
CAR_PARTS = (
    "back_bumper", "back_door", "back_glass", "back_light", "front_bumper", "front_door", "front_glass", "front_light",
    "hood", "mirror", "tailgate", "trunk", "wheel",
)  # fmt: skip


def _part(name: str) -> str:
    """A car part without its side: ``back_left_door`` -> ``back_door``, ``left_mirror`` -> ``mirror``."""
    return "_".join(w for w in name.split("_") if w not in ("left", "right"))


def read_car_parts(folder: Path) -> list[Record]:
    """dsmlr/Car-Parts-Segmentation ``trainingset/`` and ``testset/``: ``annotations.json`` (COCO polygons in pixels)
    beside ``JPEGImages/``, pooled (the protocol splits them its own way). An object drawn as several polygons (both
    wheels of a side) is joined into one, as Ultralytics' ``convert_coco`` joins them; the empty background category
    is left out, and parts lose their side (``CAR_PARTS``)."""
    from ultralytics.data.converter import merge_multi_segment

    records = []
    for part in ("trainingset", "testset"):
        ann = folder / part / "annotations.json"
        if not ann.is_file():
            raise FileNotFoundError(f"{ann} not found")
        data = json.loads(ann.read_text())
        names = {c["id"]: _part(c["name"]) for c in data["categories"] if c["name"] != "_background_"}
        if sorted(set(names.values())) != sorted(CAR_PARTS):
            raise ValueError(
                f"{ann}: categories {sorted(set(names.values()))} (sides dropped), expected {list(CAR_PARTS)}"
            )
        objects: dict[int, list[dict]] = {}
        for a in data["annotations"]:
            objects.setdefault(a["image_id"], []).append(a)
        for im in sorted(data["images"], key=lambda im: im["file_name"]):
            image = folder / part / "JPEGImages" / im["file_name"]
            w, h = _size(image, ann)
            classes, shapes = [], []
            for a in objects.get(im["id"], []):
                parts = [s for s in a["segmentation"] if len(s) >= 6]  # a polygon: 3+ points
                if not parts:
                    continue
                merged = merge_multi_segment(parts) if len(parts) > 1 else parts
                classes.append(names[a["category_id"]])
                shapes.append(np.concatenate(merged, dtype=np.float64).reshape(-1, 2))
            boxes = np.array([[*s.min(0), *s.max(0)] for s in shapes], np.float64).reshape(-1, 4)
            records.append(Record(image, w, h, classes, boxes, source=ann, shapes=shapes))
    return records


def read_tiger_pose(folder: Path) -> list[Record]:
    """Ultralytics' tiger-pose (a committed copy: ``{train,val}/{images,labels}``): one tiger per frame of one video,
    a YOLO pose row of 12 keypoints (x, y, normalized). Frames are pooled and grouped ten by ten, so the split keeps
    neighbouring, near-identical frames together."""
    records = []
    for label in sorted(folder.glob("*/labels/*.txt"), key=_frame):
        image = label.parent.parent / "images" / f"{label.stem}.jpg"
        w, h = _size(image, label)
        classes, boxes, shapes = [], [], []
        for i, row in _rows(label, None):
            values = _numbers(row, label, i, 5 + 12 * 2)
            xc, yc, bw, bh = values[1:5]
            classes.append("tiger")
            boxes.append(((xc - bw / 2) * w, (yc - bh / 2) * h, (xc + bw / 2) * w, (yc + bh / 2) * h))
            shapes.append(np.array(values[5:], np.float64).reshape(12, 2) * (w, h))
        start = _frame(label) // 10 * 10
        group = f"frames {start}-{start + 9}"
        records.append(
            Record(image, w, h, classes, np.array(boxes).reshape(-1, 4), source=label, shapes=shapes, group=group)
        )
    return records


def _frame(label: Path) -> int:
    """The frame number of a tiger-pose label, ``Frame_N.txt``."""
    return int(label.stem.rsplit("_", 1)[-1])


def read_text_lines(folder: Path) -> list[Record]:
    """MSRA-TD500 (a committed copy: ``{train,test}/IMG_N.JPG`` with ``IMG_N.gt``): one row per text line, ``index
    difficult x y w h angle``: the box's top-left corner and size before it turns by ``angle`` radians about its
    centre (image y pointing down), written as the four corners an OBB label holds; lines marked difficult are kept,
    as Ultralytics' DOTA converter keeps them. A photo whose EXIF orientation turns it is left out: its rows were drawn
    on the stored pixels, while Ultralytics' loader shows it turned."""
    records = []
    for gt in sorted(folder.glob("*/*.gt"), key=lambda p: p.name):
        image = gt.with_suffix(".JPG")
        w, h = _size(image, gt)
        with Image.open(image) as im:
            if im.getexif().get(0x0112, 1) != 1:  # EXIF orientation
                continue
        shapes = []
        for i, row in _rows(gt, None):
            _, _, x, y, bw, bh, angle = _numbers(row, gt, i, 7)
            cx, cy, c, s = x + bw / 2, y + bh / 2, np.cos(angle), np.sin(angle)
            d = np.array([[-bw, -bh], [bw, -bh], [bw, bh], [-bw, bh]]) / 2
            shapes.append(np.column_stack([cx + d[:, 0] * c - d[:, 1] * s, cy + d[:, 0] * s + d[:, 1] * c]))
        boxes = np.array([[*q.min(0), *q.max(0)] for q in shapes], np.float64).reshape(-1, 4)
        records.append(Record(image, w, h, ["text"] * len(shapes), boxes, source=gt, shapes=shapes))
    return records


def _class_folders(folders: list[Path], names: tuple[str, ...], where: Path) -> list[tuple[Path, str]]:
    """Every image in ``CLASS/`` folders under ``folders`` as (image, class), in order of path; the class folders must
    be ``names``."""
    from ultralytics.data.utils import IMG_FORMATS

    found = sorted({d.name for f in folders for d in f.iterdir() if d.is_dir()})
    if found != sorted(names):
        raise ValueError(f"{where}: class folders {found}, expected {sorted(names)}")
    return [
        (image, d.name)
        for f in folders
        for d in sorted(x for x in f.iterdir() if x.is_dir())
        for image in sorted(d.iterdir())
        if image.suffix[1:].lower() in IMG_FORMATS
    ]


def read_sign_digits(folder: Path) -> list[tuple[Path, str]]:
    """ardamavi/Sign-Language-Digits-Dataset ``Dataset/<digit>/*.JPG``: photos of a hand showing 0 to 9. Each of the
    students behind it took ten photos, and no file name says whose a photo is, so one student's photos can sit on
    both sides of the split."""
    return _class_folders([folder], SIGN_DIGITS, folder)


def read_clothing(folder: Path) -> list[tuple[Path, str]]:
    """alexeygrigorev/clothing-dataset-small ``{train,validation,test}/<class>/*.jpg``, pooled (the protocol splits
    them its own way)."""
    parts = [folder / p for p in ("train", "validation", "test")]
    if missing := [p for p in parts if not p.is_dir()]:
        raise FileNotFoundError(f"{missing[0]} not found")
    return _class_folders(parts, CLOTHING, folder)


SIGN_DIGITS = tuple("0123456789")
CLOTHING = ("dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts", "skirt", "t-shirt")


@dataclass(frozen=True)
class Source:
    """Where a confirm dataset comes from, how its annotations are read and what task they serve."""

    repo: str
    folder: str  # inside a clone of repo
    names: tuple[str, ...]
    read: Callable[[Path], list]  # Records; (image, class) pairs for classify
    task: str = "detect"
    keys: dict | None = None  # data.yaml keys of the task (a pose dataset's kpt_shape and flip_idx)


SOURCES = {
    "plates": Source("https://github.com/openalpr/benchmarks", "endtoend", ("plate",), read_plates),
    "drones": Source("https://github.com/creiser/drone-detection", "DataSets/Drones/positive", ("drone",), read_drones),
    "car-parts": Source(
        "https://github.com/dsmlr/Car-Parts-Segmentation", ".", CAR_PARTS, read_car_parts, "segment"
    ),
    "text-lines": Source(
        "https://github.com/rudolflam/comp_vision_project", "MSRA-TD500", ("text",), read_text_lines, "obb"
    ),
    "sign-digits": Source(
        "https://github.com/ardamavi/Sign-Language-Digits-Dataset", "Dataset", SIGN_DIGITS, read_sign_digits, "classify"
    ),
    "clothing": Source(
        "https://github.com/alexeygrigorev/clothing-dataset-small", ".", CLOTHING, read_clothing, "classify"
    ),
    "tiger-pose": Source(
        "https://github.com/yaty30/YOLO-model-trainer", "datasets/tiger-pose", ("tiger",), read_tiger_pose, "pose",
        {"kpt_shape": [12, 2], "flip_idx": list(range(12))},
    ),
}  # fmt: skip


def prepare(name: str, clone: str | Path, dst: str | Path) -> tuple[Path, dict[str, int], str]:
    """Write dataset ``name`` from a clone of its source repository; return (data YAML, or a classifier's folder;
    images per split; fingerprint)."""
    source = SOURCES[name]
    folder = Path(clone) / source.folder
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} not found: {clone} should be a clone of {source.repo} (git clone {source.repo})"
        )
    check_empty(Path(dst))  # before reading hundreds of images
    records = source.read(folder)
    if not records:
        raise FileNotFoundError(f"no annotations under {folder}: is {clone} a clone of {source.repo}?")
    if source.task == "classify":  # a folder of class folders per split, as `yolo classify train data=` takes
        images = write_class_folders(records, dst, SPLIT, SEED)
        return Path(dst).resolve(), images, data_fingerprint(Path(dst).resolve())
    done = write_yolo_dataset(records, dst, list(source.names), SPLIT, SEED, source.task, source.keys)
    return done.data_yaml, done.images, data_fingerprint(done.data_yaml)


# ------------------------------------------------------------------------- effdet-plugin prepare-data NAME SRC DST
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=sorted(SOURCES), help="the confirm dataset to write")
    p.add_argument("src", help="a clone of the dataset's source repository")
    p.add_argument("dst", help="output folder for the dataset (created; must be empty)")


def run(args: argparse.Namespace) -> int:
    """Write the dataset; print its data YAML, split sizes and fingerprint."""
    data_yaml, images, fingerprint = prepare(args.name, args.src, args.dst)
    sizes = ", ".join(f"{s} {n}" for s, n in images.items())
    print(f"{data_yaml}  ({sizes} images; data fingerprint {fingerprint})")
    return 0
