"""COCO mAP of any Ultralytics detector, segmenter or pose model on a COCO-format dataset, computed by pycocotools.

    effdet-plugin coco-eval --weights best.pt --ann instances_val.json --images images/val --out runs/coco_eval \
        [--imgsz 640] [--batch 16] [--conf 0.001] [--iou 0.7] [--max-det 300] [--device cpu|0]

Images go through Ultralytics' own predictor (letterbox, NMS, boxes scaled back to original pixels); the tool writes
``OUT/predictions.json`` (COCO results format) and ``OUT/metrics.json`` (the COCOeval statistics) and prints
pycocotools' summary. A segment model is scored on masks (``segm``, its masks at the original resolution), a pose
model on keypoints (OKS, with the file's ``kpt_oks_sigmas``), as COCO scores those tasks. Other code calls
``effdet_plugin.commands.coco_eval.evaluate(weights, ann, images, out, ...)``, which returns the statistics as a dict;
see docs/benchmarking.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from effdet_plugin.atomic import write_json

# COCOeval.stats order, under the names papers use; keypoints have no small-object range and one recall limit
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
# what pycocotools scores a model of each Ultralytics task by, and the annotation key that ground truth needs
IOU_TYPES = {"detect": ("bbox", "bbox"), "segment": ("segm", "segmentation"), "pose": ("keypoints", "keypoints")}


class CocoEvalError(ValueError):
    """Bad evaluation input (annotation file, image folder, class names): reported as one line."""


def _first(items: Sequence[str], k: int = 5) -> str:
    return ", ".join(map(str, items[:k])) + (", ..." if len(items) > k else "")


def _norm(name: str) -> str:
    """Compare class names loosely: case, surrounding blanks and '_'/'-' vs ' ' do not matter."""
    return re.sub(r"[\s_-]+", " ", str(name).strip().lower())


# ------------------------------------------------------------------------------------------------------ annotations
def _check_rows(ann: Path, data: dict, key: str, fields: tuple[str, ...]) -> None:
    for k, row in enumerate(data[key]):
        if not isinstance(row, dict):
            raise CocoEvalError(f"{ann}: {key}[{k}] is not an object")
        missing = [f for f in fields if f not in row]
        if missing:
            raise CocoEvalError(f"{ann}: {key}[{k}] lacks {', '.join(map(repr, missing))}")


def load_annotations(ann: str | Path) -> COCO:
    """Read and check a COCO detection annotation file; return a pycocotools ``COCO`` index of it.

    Missing ``area`` (box area is used) and ``iscrowd`` (0) are filled in, as many exporters leave them out.
    """
    ann = Path(ann)
    if not ann.is_file():
        raise CocoEvalError(f"{ann}: annotation file not found")
    try:
        data = json.loads(ann.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CocoEvalError(f"{ann}: not a COCO annotation file (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise CocoEvalError(f"{ann}: not a COCO annotation file: invalid JSON at line {e.lineno}: {e.msg}") from None
    lists = ("images", "annotations", "categories")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in lists):
        have = f"keys {_first(sorted(data))}" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        raise CocoEvalError(
            f"{ann}: not a COCO annotation file: expected an object with 'images', 'annotations' and 'categories' "
            f"lists, found {have}"
        )
    if not data["images"]:
        raise CocoEvalError(f"{ann}: lists no images")
    if not data["categories"]:
        raise CocoEvalError(f"{ann}: lists no categories")
    _check_rows(ann, data, "images", ("id", "file_name", "width", "height"))
    _check_rows(ann, data, "categories", ("id",))
    _check_rows(ann, data, "annotations", ("image_id", "category_id", "bbox"))
    image_ids = {im["id"] for im in data["images"]}
    cat_ids = {c["id"] for c in data["categories"]}
    if len(image_ids) != len(data["images"]):
        raise CocoEvalError(f"{ann}: image ids are not unique")
    if len(cat_ids) != len(data["categories"]):
        raise CocoEvalError(f"{ann}: category ids are not unique")
    for k, a in enumerate(data["annotations"]):
        box = a["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise CocoEvalError(f"{ann}: annotations[{k}] bbox {box!r} is not [x, y, width, height]")
        if a["image_id"] not in image_ids:
            raise CocoEvalError(f"{ann}: annotations[{k}] refers to image_id {a['image_id']!r}, not in 'images'")
        if a["category_id"] not in cat_ids:
            cid = a["category_id"]
            raise CocoEvalError(f"{ann}: annotations[{k}] refers to category_id {cid!r}, not in 'categories'")
        a.setdefault("area", box[2] * box[3])
        a.setdefault("iscrowd", 0)
        a.setdefault("id", k + 1)  # pycocotools indexes annotations by id
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "creating index..."
        coco.createIndex()
    return coco


def image_files(coco: COCO, images: str | Path, ann: str | Path = "annotations") -> dict[str, int]:
    """Map each listed image's absolute path under ``images`` (by ``file_name``) to its image id; all must exist."""
    from ultralytics.data.utils import IMG_FORMATS

    images = Path(images)
    if not images.is_dir():
        raise CocoEvalError(f"{images}: image folder not found")
    found, missing, unreadable = {}, [], []
    for im in coco.dataset["images"]:
        name = str(im["file_name"])
        # file_name may carry a split folder ("val2017/x.jpg"); accept it under IMAGES or flat in IMAGES
        path = next((p for p in (images / name, images / Path(name).name) if p.is_file()), None)
        if path is None:
            missing.append(name)
        elif path.suffix[1:].lower() not in IMG_FORMATS:
            unreadable.append(name)
        else:
            found[str(path.absolute())] = im["id"]
    n = len(coco.dataset["images"])
    if missing:
        raise CocoEvalError(
            f"{len(missing)} of {n} images listed in {ann} are missing from {images}: {_first(missing)}"
        )
    if unreadable:
        raise CocoEvalError(
            f"{len(unreadable)} of {n} images listed in {ann} are not image files Ultralytics reads: "
            f"{_first(unreadable)}"
        )
    if len(found) != n:
        raise CocoEvalError(f"{ann}: {n - len(found)} images share a file name with another entry")
    return found


# --------------------------------------------------------------------------------------------------------- classes
def coco80_names() -> list[str]:
    """COCO's 80 detection class names in Ultralytics' order (from its bundled coco.yaml)."""
    from ultralytics.utils import ROOT, YAML

    names = YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"]
    return [names[i] for i in sorted(names)]


def category_map(names: dict[int, str], categories: list[dict], ann: str | Path = "annotations") -> dict[int, int]:
    """Map model class index -> dataset category id.

    A model with COCO's 80 class names on a file that uses COCO's 91-id scheme (every category id is one of COCO's and
    every named category carries COCO's name for that id) gets Ultralytics' ``coco80_to_coco91_class`` table; any other
    pair is matched by class name. Model classes without a match are left out of the predictions.
    """
    from ultralytics.data.converter import coco80_to_coco91_class

    ids = {c["id"] for c in categories}
    coco91, coco80 = coco80_to_coco91_class(), [_norm(n) for n in coco80_names()]
    if [_norm(names[i]) for i in sorted(names)] == coco80 and ids <= set(coco91):
        coco_name = dict(zip(coco91, coco80))
        if all(_norm(c["name"]) == coco_name[c["id"]] for c in categories if c.get("name")):
            return {i: cid for i, cid in enumerate(coco91) if cid in ids}
    by_name: dict[str, int] = {}
    for c in categories:
        if c.get("name") is None:
            continue
        key = _norm(c["name"])
        if key in by_name:
            raise CocoEvalError(f"{ann}: category name {c['name']!r} is used by ids {by_name[key]} and {c['id']}")
        by_name[key] = c["id"]
    mapping = {i: by_name[_norm(n)] for i, n in names.items() if _norm(n) in by_name}
    if not mapping:
        raise CocoEvalError(
            f"none of the model's {len(names)} class names ({_first(list(names.values()))}) match the "
            f"{len(categories)} category names in {ann} ({_first([str(c.get('name')) for c in categories])})"
        )
    return mapping


# ----------------------------------------------------------------------------------------------------- predictions
def detections_to_coco(image_id: int, xyxy: Iterable, scores: Iterable, classes: Iterable, cat_map: dict[int, int]):
    """Return COCO result rows for one image's boxes (x1, y1, x2, y2 in original pixels); unmapped classes dropped."""
    rows = []
    for (x1, y1, x2, y2), s, c in zip(xyxy, scores, classes):
        cid = cat_map.get(int(c))
        if cid is not None:
            box = [round(float(v), 3) for v in (x1, y1, x2 - x1, y2 - y1)]  # same rounding as Ultralytics' val JSON
            rows.append({"image_id": image_id, "category_id": cid, "bbox": box, "score": round(float(s), 5)})
    return rows


def masks_to_coco(image_id: int, masks: Iterable, scores: Iterable, classes: Iterable, cat_map: dict[int, int]):
    """Return COCO result rows for one image's instance masks (0/1 arrays at the original resolution), run-length
    encoded as pycocotools scores them; unmapped classes dropped."""
    rows = []
    for m, s, c in zip(masks, scores, classes):
        cid = cat_map.get(int(c))
        if cid is not None:
            rle = mask_utils.encode(np.asfortranarray(np.asarray(m) > 0.5, dtype=np.uint8))
            rle["counts"] = rle["counts"].decode("ascii")  # bytes in, JSON out
            rows.append({"image_id": image_id, "category_id": cid, "segmentation": rle, "score": round(float(s), 5)})
    return rows


def keypoints_to_coco(image_id: int, xy: Iterable, scores: Iterable, classes: Iterable, cat_map: dict[int, int]):
    """Return COCO result rows for one image's poses (each keypoint's x, y in original pixels; the instance score is
    its box's); unmapped classes dropped. pycocotools reads a result's x and y only."""
    rows = []
    for points, s, c in zip(xy, scores, classes):
        cid = cat_map.get(int(c))
        if cid is not None:
            flat = [round(float(v), 3) for x, y in points for v in (x, y, 1.0)]
            rows.append({"image_id": image_id, "category_id": cid, "keypoints": flat, "score": round(float(s), 5)})
    return rows


def result_to_coco(r: Any, image_id: int, cat_map: dict[int, int], task: str) -> list[dict]:
    """COCO result rows for one Ultralytics ``Results`` of a ``task`` model (``IOU_TYPES``)."""
    b = r.boxes
    if task == "segment":
        return [] if r.masks is None else masks_to_coco(image_id, r.masks.data.cpu().numpy(), b.conf, b.cls, cat_map)
    if task == "pose":
        return (
            [] if r.keypoints is None else keypoints_to_coco(image_id, r.keypoints.xy.tolist(), b.conf, b.cls, cat_map)
        )
    return detections_to_coco(image_id, b.xyxy.tolist(), b.conf.tolist(), b.cls.tolist(), cat_map)


def predict(model, files: Sequence[str], out: Path, **predict_args) -> Iterator[Any]:
    """Yield Ultralytics ``Results`` for ``files`` through the model's own predictor, batched, with a progress bar."""
    from ultralytics.utils import TQDM

    # A .txt manifest is the predictor's batched file source (a Python list would be decoded all at once into memory)
    fd, manifest = tempfile.mkstemp(prefix=".coco_eval_images.", suffix=".txt", dir=out)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(f"{p}\n" for p in files))
        stream = model.predict(source=manifest, stream=True, verbose=False, save=False, **predict_args)
        yield from TQDM(stream, total=len(files), desc="coco_eval", unit="img")
    finally:
        Path(manifest).unlink(missing_ok=True)


def coco_stats(coco: COCO, predictions: str | Path, verbose: bool = True, iou_type: str = "bbox") -> dict[str, float]:
    """Run pycocotools' COCOeval (``iou_type`` bbox, segm or keypoints) of a results file against ``coco``; return its
    stats by name (``STAT_NAMES``, ``KEYPOINT_STAT_NAMES`` for keypoints)."""
    with contextlib.redirect_stdout(io.StringIO()):  # loadRes/evaluate/accumulate progress chatter
        ev = COCOeval(coco, coco.loadRes(str(predictions)), iouType=iou_type)
        if iou_type == "keypoints" and "kpt_oks_sigmas" in coco.dataset:  # else COCO's 17 person keypoints
            ev.params.kpt_oks_sigmas = np.asarray(coco.dataset["kpt_oks_sigmas"], np.float64)
        ev.evaluate()
        ev.accumulate()
    with contextlib.redirect_stdout(sys.stdout if verbose else io.StringIO()):
        ev.summarize()
    names = KEYPOINT_STAT_NAMES if iou_type == "keypoints" else STAT_NAMES
    return {k: float(v) for k, v in zip(names, ev.stats)}


def evaluate(
    weights: str | Path,
    ann: str | Path,
    images: str | Path,
    out: str | Path,
    imgsz: int = 640,
    batch: int = 16,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    device: str | None = None,
    verbose: bool = True,
) -> dict[str, float]:
    """Predict every image of a COCO annotation file, score with pycocotools, write ``out/{predictions,metrics}.json``.

    Returns the COCOeval statistics by name (``STAT_NAMES``: AP, AP50, ..., ARl; ``KEYPOINT_STAT_NAMES`` for a pose
    model); -1 means the dataset has no object in that area range, as in pycocotools. A segment model is scored on its
    masks, a pose model on its keypoints (the annotations must carry ``segmentation`` or ``keypoints``). A model with
    no detections scores all zeros and still succeeds.
    """
    say = print if verbose else (lambda *a, **k: None)
    out = Path(out)
    coco = load_annotations(ann)
    files = image_files(coco, images, ann)
    weights = Path(weights)
    if not weights.exists():
        raise CocoEvalError(f"{weights}: weights not found")
    from ultralytics import YOLO

    model = YOLO(str(weights))
    if model.task not in IOU_TYPES:
        raise CocoEvalError(f"{weights}: a {model.task} model; pycocotools scores detect, segment and pose models")
    iou_type, needs = IOU_TYPES[model.task]
    lacking = next((k for k, a in enumerate(coco.dataset["annotations"]) if needs not in a), None)
    if lacking is not None:
        raise CocoEvalError(f"{ann}: annotations[{lacking}] has no '{needs}', which a {model.task} model is scored on")
    categories = coco.dataset["categories"]
    cat_map = category_map(model.names, categories, ann)
    unmapped = [n for i, n in model.names.items() if i not in cat_map]
    if unmapped:
        say(f"coco_eval: {len(unmapped)} model classes have no dataset category and are dropped: {_first(unmapped)}")
    mapped = set(cat_map.values())
    unscored = [str(c.get("name", c["id"])) for c in categories if c["id"] not in mapped]
    if unscored:
        say(f"coco_eval: {len(unscored)} dataset categories have no model class (they score 0): {_first(unscored)}")

    out.mkdir(parents=True, exist_ok=True)
    shape = {im["id"]: (im["height"], im["width"]) for im in coco.dataset["images"]}
    rows, seen, resized = [], set(), []
    args = {"imgsz": imgsz, "batch": batch, "conf": conf, "iou": iou, "max_det": max_det, "device": device}
    if model.task == "segment":  # masks at the original resolution, as the annotations' polygons are
        args["retina_masks"] = True
    for r in predict(model, list(files), out, **args):
        image_id = files[str(Path(r.path).absolute())]
        seen.add(image_id)
        if tuple(r.orig_shape) != tuple(shape[image_id]):
            resized.append(Path(r.path).name)
        rows += result_to_coco(r, image_id, cat_map, model.task)
    unread = [Path(p).name for p, i in files.items() if i not in seen]
    if unread:
        raise CocoEvalError(f"{len(unread)} of {len(files)} images could not be decoded: {_first(unread)}")
    if resized:
        say(
            f"coco_eval: WARNING {len(resized)} images differ in size from their 'width'/'height' in {ann}, so their "
            f"boxes do not line up with the annotations: {_first(resized)}"
        )

    pred_path = write_json(rows, out / "predictions.json")
    if rows:
        metrics = coco_stats(coco, pred_path, verbose, iou_type)
    else:  # pycocotools cannot load an empty result list
        metrics = dict.fromkeys(KEYPOINT_STAT_NAMES if iou_type == "keypoints" else STAT_NAMES, 0.0)
        say(f"coco_eval: the model made no detections on {len(files)} images (conf={conf}); all metrics are 0")
    write_json(metrics, out / "metrics.json")
    say(f"coco_eval: {len(rows)} detections on {len(files)} images; wrote {pred_path} and {out / 'metrics.json'}")
    return metrics


# ------------------------------------------------------------------------------- effdet-plugin coco-eval
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``coco-eval`` options to ``p``."""
    p.add_argument("--weights", required=True, help="Ultralytics checkpoint or exported model")
    p.add_argument("--ann", required=True, help="COCO annotation JSON (instances_*.json style)")
    p.add_argument("--images", required=True, help="folder holding the images named by the annotation file_name")
    p.add_argument("--out", required=True, help="output folder for predictions.json and metrics.json")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--conf", type=float, default=0.001)
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=300)
    p.add_argument("--device", default=None, help="cpu, 0, 0,1, ... (default: Ultralytics' choice)")


def run(args: argparse.Namespace) -> int:
    """Evaluate as the options say; bad input raises ``CocoEvalError`` (one line, exit 2)."""
    a = args
    if a.imgsz < 32 or a.batch < 1 or a.max_det < 1 or not (0 <= a.conf <= 1 and 0 < a.iou <= 1):
        raise CocoEvalError(
            f"need --imgsz >= 32, --batch >= 1, --max-det >= 1, 0 <= --conf <= 1 and 0 < --iou <= 1; got --imgsz "
            f"{a.imgsz}, --batch {a.batch}, --max-det {a.max_det}, --conf {a.conf}, --iou {a.iou}"
        )
    from effdet_plugin import register

    register()  # a checkpoint of a plugin model needs the plugin's rows, also with auto-activation off
    evaluate(a.weights, a.ann, a.images, a.out, a.imgsz, a.batch, a.conf, a.iou, a.max_det, a.device)
    return 0
