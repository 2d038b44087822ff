"""A dataset's held-out split, as Ultralytics lists it and pycocotools scores it.

``accuracy`` and ``protocol`` score a trained model on one split of a YOLO dataset (a data YAML) or of a
classification dataset (a folder of ``train/``, ``val/`` and ``test/`` class folders, as ``yolo classify`` takes it):
this module picks the split, lists its images exactly as Ultralytics' loaders do and writes its labels as a COCO
annotation file for ``coco_eval``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
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
    """Return the split to score on: ``want`` if given, else ``test`` if the data YAML (or classification folder) has
    one, else ``val``; raise if the data lacks it (``want``) or has neither."""
    path = Path(data_yaml)
    if path.is_dir():  # a classification dataset: its splits are folders
        have = [s for s in ("train", "val", "test") if (path / s).is_dir()]
        for split in [want] if want else ["test", "val"]:
            if split in have:
                return split
        need = f"'{want}'" if want else "'test' or 'val'"
        raise AccuracyError(f"classification dataset {path} has no {need} folder to score on (it has {have or 'none'})")
    if not path.is_file():
        raise AccuracyError(f"data YAML or classification folder {path} not found")
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
    """Return Ultralytics' checked dataset dict (resolved paths, names, nc) of a data YAML or a classification folder,
    its failure as one ``AccuracyError``."""
    from ultralytics.data.utils import check_cls_dataset, check_det_dataset

    folder = Path(data_yaml).is_dir()
    try:
        if folder:
            with quieted("ultralytics"):  # the classification check logs every split's file count
                return check_cls_dataset(str(data_yaml))
        return check_det_dataset(str(data_yaml))
    except Exception as e:  # noqa: BLE001  SyntaxError/FileNotFoundError/TypeError..., multi-line, emoji-laden
        raise AccuracyError(f"{'dataset' if folder else 'data YAML'} {data_yaml}: {first_line(e)}") from None


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


def _object(row: list[str], w: int, h: int, task: str, kpt_shape: list[int] | None) -> dict:
    """One YOLO label row of ``task`` as a COCO annotation's geometry, in pixels: ``bbox`` and ``area``; a polygon's
    ``segmentation``; a pose row's ``keypoints`` (x, y, v per keypoint) and ``num_keypoints``."""
    values = np.array([float(v) for v in row[1:]], np.float64)
    if task == "segment":  # class, then the polygon's normalized x y pairs
        xy = values[: len(values) // 2 * 2].reshape(-1, 2) * (w, h)
        (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
        x, y = xy[:, 0], xy[:, 1]
        area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))  # the polygon's, as COCO's
        return {"bbox": [x0, y0, x1 - x0, y1 - y0], "area": area, "segmentation": [xy.ravel().tolist()]}
    xc, yc, bw, bh = values[:4]  # detection and pose rows start with the box
    box = [(xc - bw / 2) * w, (yc - bh / 2) * h, bw * w, bh * h]
    if task != "pose":
        return {"bbox": box, "area": box[2] * box[3]}
    nkpt, ndim = kpt_shape
    kpts = values[4 : 4 + nkpt * ndim].reshape(nkpt, ndim)
    visible = kpts[:, 2] if ndim == 3 else np.full(nkpt, 2.0)  # two columns: every keypoint labelled
    xyv = np.column_stack([kpts[:, 0] * w, kpts[:, 1] * h, visible])
    xyv[visible == 0] = 0  # COCO's "not labelled"
    return {
        "bbox": box,
        # COCO's area is the instance's mask; without one, Ultralytics' pose validator takes 0.53 of the box for OKS
        "area": box[2] * box[3] * 0.53,
        "keypoints": xyv.ravel().tolist(),
        "num_keypoints": int((visible > 0).sum()),
    }


def coco_ground_truth(data_yaml: str | Path, split: str, out: str | Path, task: str = "detect") -> tuple[Path, Path]:
    """Write the YOLO labels of ``split`` as a COCO annotation JSON; return (JSON path, folder its file_names are in).

    Ids count from 1, boxes are pixel [x, y, w, h], ``file_name`` is relative to the images' common folder and
    categories carry the dataset's class names (``coco_eval`` matches model classes to them by name). ``task``
    ``segment`` reads polygon rows into ``segmentation``; ``pose`` reads box-and-keypoint rows (the data YAML's
    ``kpt_shape``) into ``keypoints``, with the OKS sigmas the host's validator uses under ``kpt_oks_sigmas``.
    """
    from PIL import Image
    from ultralytics.data.utils import exif_size

    data = dataset(data_yaml)
    kpt_shape = data.get("kpt_shape")
    if task == "pose" and not (isinstance(kpt_shape, list) and len(kpt_shape) == 2 and kpt_shape[1] in (2, 3)):
        raise AccuracyError(f"data YAML {data_yaml}: a pose dataset needs 'kpt_shape: [keypoints, 2 or 3]'")
    root, labelled = split_labels(data_yaml, split)
    images, annotations = [], []
    for img_id, (img, rows) in enumerate(labelled, 1):
        with Image.open(img) as im:
            w, h = exif_size(im)  # EXIF-rotated size, as Ultralytics' loader sees the image
        images.append({"id": img_id, "file_name": img.relative_to(root).as_posix(), "width": w, "height": h})
        for row in rows:
            geometry = _object(row, w, h, task, kpt_shape)
            ids = {"id": len(annotations) + 1, "image_id": img_id, "category_id": int(row[0]) + 1}
            annotations.append({**ids, **geometry, "iscrowd": 0})
    categories = [{"id": i + 1, "name": n} for i, n in data["names"].items()]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    if task == "pose":
        coco["kpt_oks_sigmas"] = oks_sigmas(data)
    return write_json(coco, out, indent=2), root


def oks_sigmas(data: dict) -> list[float]:
    """The OKS sigma of each keypoint, as Ultralytics' pose validator takes them: the data's ``kpt_oks_sigmas``, else
    COCO's for 17 keypoints with visibility, else 1/keypoints each."""
    from ultralytics.utils.metrics import OKS_SIGMA

    nkpt = data["kpt_shape"][0]
    if sigmas := data.get("kpt_oks_sigmas"):
        return [float(v) for v in np.asarray(sigmas, np.float64).ravel()]
    return [float(v) for v in (OKS_SIGMA if data["kpt_shape"] == [17, 3] else np.ones(nkpt) / nkpt)]


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
    if Path(data_yaml).is_dir():  # a classification dataset: each image's bytes under its split and class folder
        for split in ("train", "val", "test"):
            if (Path(data_yaml) / split).is_dir():
                root = Path(data_yaml) / split
                files = sorted(f for f in root.rglob("*") if f.is_file())
                parts[split] = [
                    [f.relative_to(root).as_posix(), hashlib.sha256(f.read_bytes()).hexdigest()] for f in files
                ]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
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
