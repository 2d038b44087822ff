"""A dataset YAML's held-out split, as Ultralytics lists it and pycocotools scores it.

``accuracy`` and ``protocol`` score a trained model on one split of a YOLO dataset: this module picks the split,
lists its images exactly as Ultralytics' loaders do and writes its labels as a COCO annotation file for ``coco_eval``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import yaml

from effdet_plugin.atomic import write_json
from effdet_plugin.errors import first_line
from effdet_plugin.quiet import quieted


class AccuracyError(ValueError):
    """Bad accuracy-run input (dataset without a held-out split, unknown model, another recipe): one line."""


def dataset_name(data_yaml: str | Path) -> str:
    """The name records give a dataset: its YAML's folder for a ``data.yaml`` (``cards/data.yaml`` -> ``cards``),
    else the YAML's stem (``coco8.yaml`` -> ``coco8``)."""
    path = Path(data_yaml)
    return path.resolve().parent.name if path.stem == "data" else path.stem


def eval_split(data_yaml: str | Path, want: str | None = None) -> str:
    """Return the split to score on: ``want`` if given, else ``test`` if the data YAML has one, else ``val``; raise if
    the data YAML lacks it (``want``) or has neither."""
    path = Path(data_yaml)
    if not path.is_file():
        raise AccuracyError(f"data YAML {path} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise AccuracyError(f"data YAML {path} is not valid YAML: {first_line(e)}") from None
    if not isinstance(data, dict):
        raise AccuracyError(f"data YAML {path} is not a mapping of keys (path, train, val, test, names)")
    if want is not None:
        if not data.get(want):
            raise AccuracyError(f"--split {want}: data YAML {path} has no '{want}' split (keys: {', '.join(data)})")
        return want
    for split in ("test", "val"):
        if data.get(split):
            return split
    raise AccuracyError(f"data YAML {path} has no 'test' or 'val' split to score on (keys: {', '.join(data)})")


def dataset(data_yaml: str | Path) -> dict:
    """Return Ultralytics' checked dataset dict (resolved paths, names, nc), its failure as one ``AccuracyError``."""
    from ultralytics.data.utils import check_det_dataset

    try:
        return check_det_dataset(str(data_yaml))
    except Exception as e:  # noqa: BLE001  SyntaxError/FileNotFoundError/TypeError..., multi-line, emoji-laden
        raise AccuracyError(f"data YAML {data_yaml}: {first_line(e)}") from None


def split_images(data_yaml: str | Path, split: str) -> list[Path]:
    """Return the image files of ``split`` exactly as Ultralytics' training/validation datasets list them.

    The listing is ``BaseDataset.get_img_files`` itself (folders searched recursively, ``.txt`` lists with ``./``
    lines relative to the list), called without building a dataset: building one would read every label and write
    ``.cache`` files beside them. The method reads only ``prefix`` and ``fraction`` from its instance.
    """
    from ultralytics.data.base import BaseDataset
    from ultralytics.data.utils import IMG_FORMATS

    data = dataset(data_yaml)  # paths resolved against 'path:' exactly as training does
    listing = SimpleNamespace(prefix="", fraction=1.0)  # the whole split
    try:
        files = BaseDataset.get_img_files(listing, data[split])
    except FileNotFoundError as e:  # Ultralytics' text spans lines and ends in a help link; its cause says what failed
        cause = e.__cause__ or e
        if isinstance(cause, AssertionError):  # the listing came back empty
            why = f"no image files ({', '.join(sorted(IMG_FORMATS))})"
        else:
            why = first_line(cause)
        raise AccuracyError(f"{data_yaml}: '{split}' split {data[split]}: {why}") from None
    return sorted(map(Path, files))


def split_labels(data_yaml: str | Path, split: str) -> tuple[Path, list[tuple[Path, list[list[str]]]]]:
    """Return the images' common folder and each image of ``split`` with its label rows (split on whitespace, blank
    rows left out; none for an image without a label file), images listed and labels found as Ultralytics does."""
    from ultralytics.data.utils import img2label_paths

    files = split_images(data_yaml, split)
    labelled = []
    for img, lbl in zip(files, img2label_paths([str(f) for f in files])):
        rows = Path(lbl).read_text().split("\n") if Path(lbl).is_file() else []
        labelled.append((img, [row for row in (r.split() for r in rows) if row]))
    return Path(os.path.commonpath([f.parent for f in files])), labelled


def coco_ground_truth(data_yaml: str | Path, split: str, out: str | Path) -> tuple[Path, Path]:
    """Write the YOLO labels of ``split`` as a COCO annotation JSON; return (JSON path, folder its file_names are in).

    Ids count from 1, boxes are pixel [x, y, w, h], ``file_name`` is relative to the images' common folder and
    categories carry the dataset's class names (``coco_eval`` matches model classes to them by name).
    """
    from PIL import Image
    from ultralytics.data.utils import exif_size

    names = dataset(data_yaml)["names"]
    root, labelled = split_labels(data_yaml, split)
    images, annotations = [], []
    for img_id, (img, rows) in enumerate(labelled, 1):
        with Image.open(img) as im:
            w, h = exif_size(im)  # EXIF-rotated size, as Ultralytics' loader sees the image
        images.append({"id": img_id, "file_name": img.relative_to(root).as_posix(), "width": w, "height": h})
        for row in rows:
            c, xc, yc, bw, bh = int(row[0]), *(float(v) for v in row[1:5])  # detection labels: first 5 columns
            box = [(xc - bw / 2) * w, (yc - bh / 2) * h, bw * w, bh * h]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": img_id,
                    "category_id": c + 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": n} for i, n in names.items()]
    return write_json({"images": images, "annotations": annotations, "categories": categories}, out, indent=2), root


def _rounded(value: str) -> float | str:
    try:
        return round(float(value), 6)
    except ValueError:  # a malformed row still counts, as written (Ultralytics reports it when it loads the split)
        return value


def data_fingerprint(data_yaml: str | Path) -> str:
    """A hash of what a model trains and is scored on: the class names and, per split, each image's bytes and its
    label rows (numbers rounded to 6 decimals, so a relabelled box or an image moved to another split changes it,
    another float formatting or another folder does not). Protocol records carry it, so scores of two different
    splits of one source never pool under one dataset name."""
    data = dataset(data_yaml)
    parts: dict = {"names": [data["names"][i] for i in sorted(data["names"])]}
    for split in ("train", "val", "test"):
        if not data.get(split):
            continue
        with quieted("ultralytics"):  # the listing logs a disk-speed line per split
            root, labelled = split_labels(data_yaml, split)
        parts[split] = [
            [
                img.relative_to(root).as_posix(),
                hashlib.sha256(img.read_bytes()).hexdigest(),
                sorted(([_rounded(v) for v in row] for row in rows), key=json.dumps),
            ]
            for img, rows in labelled
        ]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
