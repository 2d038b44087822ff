"""The protocol's confirm datasets, rebuilt from their public sources with one command and one fixed split.

    git clone https://github.com/creiser/drone-detection
    effdet-plugin prepare-data drones drone-detection data/drones-v2

Each source's annotations are read as they come (the plates' text rows, the drones' box lists), in the order of their
files' paths, and written by ``write_yolo_dataset`` with the protocol's 70/15/15 split and seed 0, so the same clone
gives the same files and the same ``data_fingerprint`` that protocol records carry.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from effdet_plugin.commands.heldout import data_fingerprint
from effdet_plugin.commands.yolo_dataset import Record, check_empty, write_yolo_dataset

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


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """The non-blank rows of a tab-separated file, each with its line number (for messages)."""
    return [(i, line.split("\t")) for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]


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


@dataclass(frozen=True)
class Source:
    """Where a confirm dataset comes from and how its annotations are read."""

    repo: str
    folder: str  # inside a clone of repo
    names: tuple[str, ...]
    read: Callable[[Path], list[Record]]


SOURCES = {
    "plates": Source("https://github.com/openalpr/benchmarks", "endtoend", ("plate",), read_plates),
    "drones": Source("https://github.com/creiser/drone-detection", "DataSets/Drones/positive", ("drone",), read_drones),
}


def prepare(name: str, clone: str | Path, dst: str | Path) -> tuple[Path, dict[str, int], str]:
    """Write dataset ``name`` from a clone of its source repository; return (data YAML, images per split,
    fingerprint)."""
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
    done = write_yolo_dataset(records, dst, list(source.names), SPLIT, SEED)
    return done.data_yaml, done.images, data_fingerprint(done.data_yaml)


# ------------------------------------------------------------------------- effdet-plugin prepare-data NAME SRC DST
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=sorted(SOURCES), help="the confirm dataset to write")
    p.add_argument("src", help="a clone of the dataset's source repository")
    p.add_argument("dst", help="output folder for the YOLO dataset (created; must be empty)")


def run(args: argparse.Namespace) -> int:
    """Write the dataset; print its data YAML, split sizes and fingerprint."""
    data_yaml, images, fingerprint = prepare(args.name, args.src, args.dst)
    sizes = ", ".join(f"{s} {n}" for s, n in images.items())
    print(f"{data_yaml}  ({sizes} images; data fingerprint {fingerprint})")
    return 0
