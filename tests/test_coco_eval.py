"""``effdet-plugin coco-eval``: mAP against hand-computed values and Ultralytics' own mAP, mapping, one-line errors.

The metrics are checked against references that do not run pycocotools on our own output: (a) small cases whose AP is
worked out by hand below, (b) Ultralytics' validator arithmetic (its matcher and ``ap_per_class``) on the same boxes.
Predictions reach ``evaluate`` as genuine Ultralytics ``Results`` from a stand-in predictor, so everything after the
network (image matching, box conversion, category mapping, JSON, COCOeval) is the code that runs for a real model.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from effdet_plugin.commands import cli, coco_eval
from effdet_plugin.commands.coco_eval import (
    STAT_NAMES,
    CocoEvalError,
    category_map,
    coco80_names,
    coco_stats,
    detections_to_coco,
    evaluate,
    load_annotations,
    write_json,
)
from effdet_plugin.commands.demo import CLASSES, make_demo_dataset

SIZES = ((160, 96), (96, 160), (128, 112))  # non-square, mixed: letterbox-to-original mapping differs per image


def make_coco(root: Path, split: str, per_size: int, seed: int) -> Path:
    """Write ``root/images/<split>/*.jpg`` and ``root/annotations/instances_<split>.json``; return the JSON path.

    Category ids are 1..3 (COCO style, 1-based), image ids start at 1000 so they are not file-name numbers.
    """
    out = root / "images" / split
    out.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for j, (w, h) in enumerate(SIZES):
        gen = root / f"_gen_{split}{j}"
        src = make_demo_dataset(gen, n_train=per_size, n_val=1, imgsz=(w, h), seed=seed + j).parent
        for label in sorted((src / "labels" / "train").glob("*.txt")):
            name = f"{split}_{w}x{h}_{label.stem}.jpg"
            shutil.move(src / "images" / "train" / f"{label.stem}.jpg", out / name)
            image_id = 1000 + len(images)
            images.append({"id": image_id, "file_name": name, "width": w, "height": h})
            for row in label.read_text().splitlines():
                c, cx, cy, bw, bh = map(float, row.split())
                box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": int(c) + 1,
                        "bbox": box,
                        "area": box[2] * box[3],
                        "iscrowd": 0,
                    }
                )
        shutil.rmtree(src)
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES)]
    ann = root / "annotations" / f"instances_{split}.json"
    ann.parent.mkdir(exist_ok=True)
    ann.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann


def relabel(ann: Path, dst: Path, new_ids: dict[int, int]) -> Path:
    """Copy ``ann`` with category ids renumbered (and listed in another order): name mapping must not care."""
    data = json.loads(ann.read_text())
    for a in data["annotations"]:
        a["category_id"] = new_ids[a["category_id"]]
    data["categories"] = [{**c, "id": new_ids[c["id"]]} for c in reversed(data["categories"])]
    dst.write_text(json.dumps(data))
    return dst


@pytest.fixture(scope="module")
def coco_data(tmp_path_factory) -> Path:
    """A COCO-format dataset root: images/{train,val}, annotations/instances_{train,val}.json (24 + 12 images)."""
    root = tmp_path_factory.mktemp("coco")
    make_coco(root, "train", per_size=8, seed=0)
    make_coco(root, "val", per_size=4, seed=100)
    return root


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> Path:
    """An untrained yolov5n_effv2 with the dataset's 3 class names, saved as an Ultralytics checkpoint.

    Scoring code needs a loadable model with the right names, not a good one: no training here.
    """
    from ultralytics.nn.tasks import DetectionModel

    from effdet_plugin import register
    from effdet_plugin.hosts.ultralytics_checkpoint import save_checkpoint

    register()
    model = DetectionModel("yolov5n_effv2.yaml", nc=len(CLASSES), verbose=False)
    model.names = dict(enumerate(CLASSES))
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "untrained.pt")


def fake_predictor(boxes: dict[str, list[tuple[float, ...]]]):
    """A stand-in for ``coco_eval.predict``: yields real ``Results`` holding ``boxes[file name]``.

    Rows are (x1, y1, x2, y2, score, class) in original-image pixels, as Ultralytics' predictor returns them.
    """
    import torch
    from ultralytics.engine.results import Results

    def predict(model, files, out, **predict_args):
        for f in files:
            rows = torch.tensor(boxes.get(Path(f).name, []), dtype=torch.float32).reshape(-1, 6)
            yield Results(cv2.imread(f), path=f, names=model.names, boxes=rows)

    return predict


# ------------------------------------------------------------------------------------ (a) hand-computed AP
# Two 100x80 images. Circles: g1, g2 in image A, g3 in image B; one square in B; no triangle (a category without
# ground truth is left out of the mean, by COCO's rule). Boxes are x1, y1, x2, y2 in pixels.
G1, G2, G3, SQ = (10, 10, 40, 40), (50, 20, 80, 50), (20, 30, 50, 60), (60, 10, 90, 40)
FALSE = (0, 50, 20, 78)  # overlaps nothing
SHIFTED_G3 = (25, 30, 55, 60)  # g3 moved 5 px: IoU = 25*30 / (2*900 - 25*30) = 0.714, a match up to IoU 0.70 only
CIRCLE, SQUARE = 0, 1

# AP of one category is COCO's 101-point interpolated precision: at each recall threshold t in 0, 0.01, ..., 1 the
# highest precision reached at any recall >= t (0 if recall t is never reached), averaged over the 101 thresholds.
HAND_CASES = {
    # every object found once, nothing else: precision 1 at every recall, at every IoU threshold
    "perfect": (
        {"A.jpg": [(*G1, 0.9, CIRCLE), (*G2, 0.8, CIRCLE)], "B.jpg": [(*G3, 0.7, CIRCLE), (*SQ, 0.6, SQUARE)]},
        {"AP": 1.0, "AP50": 1.0, "AP75": 1.0},
    ),
    # circles ranked TP, FP, TP, TP: precision 1, 1/2, 2/3, 3/4 at recall 1/3, 1/3, 2/3, 1. The best precision at
    # recall >= t is 1 for t <= 1/3 (thresholds 0.00..0.33: 34 of them) and 3/4 above (67), at every IoU threshold:
    # circle AP = (34 + 67 * 0.75) / 101; square AP = 1; mAP = mean of the two categories
    "false_positive_second": (
        {
            "A.jpg": [(*G1, 0.9, CIRCLE), (*FALSE, 0.8, CIRCLE), (*G2, 0.7, CIRCLE)],
            "B.jpg": [(*G3, 0.6, CIRCLE), (*SQ, 0.5, SQUARE)],
        },
        dict.fromkeys(("AP", "AP50", "AP75"), (1 + (34 + 67 * 0.75) / 101) / 2),
    ),
    # g3 found with IoU 0.714: a match at IoU 0.50..0.70 (5 thresholds, circle AP 1), a false positive at 0.75..0.95
    # (5 thresholds) where circles rank TP, TP, FP: recall reaches 2/3 at precision 1, so thresholds 0.00..0.66 (67)
    # score 1 and 0.67..1.00 score 0: circle AP 67/101. mAP50-95 averages the 10 IoU thresholds, then the categories
    "loose_box": (
        {"A.jpg": [(*G1, 0.9, CIRCLE), (*G2, 0.8, CIRCLE)], "B.jpg": [(*SHIFTED_G3, 0.7, CIRCLE), (*SQ, 0.6, SQUARE)]},
        {"AP": (1 + (5 + 5 * 67 / 101) / 10) / 2, "AP50": 1.0, "AP75": (1 + 67 / 101) / 2},
    ),
}


@pytest.fixture(scope="module")
def hand_data(tmp_path_factory) -> tuple[Path, Path]:
    """The two-image COCO dataset of ``HAND_CASES``: (annotation file, image folder)."""
    root = tmp_path_factory.mktemp("hand")
    for name in ("A.jpg", "B.jpg"):
        cv2.imwrite(str(root / name), np.full((80, 100, 3), 127, np.uint8))
    gt = [(7, G1, 1), (7, G2, 1), (9, G3, 1), (9, SQ, 2)]
    data = {
        "images": [
            {"id": 7, "file_name": "A.jpg", "width": 100, "height": 80},
            {"id": 9, "file_name": "B.jpg", "width": 100, "height": 80},
        ],
        "annotations": [
            {
                "id": k + 1,
                "image_id": i,
                "category_id": c,
                "iscrowd": 0,
                "area": 900.0,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
            }
            for k, (i, (x1, y1, x2, y2), c) in enumerate(gt)
        ],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)],
    }
    (root / "ann.json").write_text(json.dumps(data))
    return root / "ann.json", root


@pytest.mark.parametrize("case", list(HAND_CASES))
def test_map_equals_hand_computed(case, hand_data, untrained, tmp_path, monkeypatch):
    boxes, expected = HAND_CASES[case]
    monkeypatch.setattr(coco_eval, "predict", fake_predictor(boxes))
    ann, images = hand_data
    stats = evaluate(untrained, ann, images, tmp_path, verbose=False)
    for key, value in expected.items():
        assert stats[key] == pytest.approx(value, abs=1e-9), (case, key)
    assert json.loads((tmp_path / "metrics.json").read_text()) == stats


# --------------------------------------------------------------------------- (b) Ultralytics' own mAP arithmetic
def ultralytics_map(gt: dict[str, list[tuple]], boxes: dict[str, list[tuple]], tmp_path: Path) -> tuple[float, float]:
    """(mAP50-95, mAP50) by Ultralytics' validator arithmetic: its IoU, its matcher, its ``ap_per_class``.

    ``gt[file]``: (x1, y1, x2, y2, class) rows; ``boxes[file]``: (x1, y1, x2, y2, score, class) rows.
    """
    import torch
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.utils.metrics import ap_per_class, box_iou

    validator = DetectionValidator(save_dir=tmp_path / "val")  # holds the IoU thresholds 0.50:0.05:0.95
    tp, conf, pred_cls, target_cls = [], [], [], []
    for name, truth in gt.items():
        t = torch.tensor(truth, dtype=torch.float32).reshape(-1, 5)
        p = torch.tensor(sorted(boxes.get(name, []), key=lambda r: -r[4]), dtype=torch.float32).reshape(-1, 6)
        target_cls.append(t[:, 4])
        if len(p):  # the validator's predictions arrive sorted by confidence, as NMS returns them
            tp.append(validator.match_predictions(p[:, 5], t[:, 4], box_iou(t[:, :4], p[:, :4])).numpy())
            conf.append(p[:, 4].numpy())
            pred_cls.append(p[:, 5].numpy())
    ap = ap_per_class(
        np.concatenate(tp), np.concatenate(conf), np.concatenate(pred_cls), torch.cat(target_cls).numpy()
    )[5]
    return float(ap.mean()), float(ap[:, 0].mean())


def jittered(coco_root: Path, seed: int, split: str) -> tuple[dict, dict]:
    """Ground truth of ``split`` and made-up predictions: most objects found, boxes jittered so IoUs span
    0.5-1, random scores, some duplicates and some boxes on background; returns (gt, boxes) keyed by file name."""
    rng = np.random.default_rng(seed)
    data = json.loads((coco_root / f"annotations/instances_{split}.json").read_text())
    gt, boxes = {}, {}
    for im in data["images"]:
        w, h = im["width"], im["height"]
        rows = [
            (x, y, x + bw, y + bh, a["category_id"] - 1)
            for a in data["annotations"]
            if a["image_id"] == im["id"]
            for x, y, bw, bh in [a["bbox"]]
        ]
        gt[im["file_name"]] = rows
        preds = []
        for x1, y1, x2, y2, c in rows:
            for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):  # missed, found, found twice
                d = rng.normal(0, 0.08, 4) * [x2 - x1, y2 - y1, x2 - x1, y2 - y1]
                preds.append((x1 + d[0], y1 + d[1], x2 + d[2], y2 + d[3], rng.uniform(0.05, 1), c))
        for _ in range(int(rng.integers(0, 3))):  # on background, any class
            x, y = rng.uniform(0, w - 20), rng.uniform(0, h - 20)
            preds.append((x, y, x + rng.uniform(8, 20), y + rng.uniform(8, 20), rng.uniform(0.05, 1), rng.integers(3)))
        # what reaches COCO (3-decimal boxes, 5-decimal scores, as Ultralytics' JSON writer) is what both sides score
        boxes[im["file_name"]] = [(*np.round(r[:4], 3), round(float(r[4]), 5), int(r[5])) for r in preds]
    return gt, boxes


# Both libraries sample the same precision envelope (best precision at recall >= r) at the same 101 recall points
# 0, 0.01, ..., 1, after the same greedy, score-ordered matching. COCO averages the samples, 1/101 each; Ultralytics
# integrates them with the trapezoid rule (spacing 0.01, both end samples at half weight) and its curve is forced to 0
# at recall 1 by a sentinel, so a perfect detector scores 0.995 there and 1.0 in COCO. The two weightings differ by at
# most about 0.01 in total; a recall value landing exactly on a grid point can put one more sample on the other side
# of a precision drop. Hence a tolerance of 0.015 on mAP50-95 and mAP50 (seen: 0.001 to 0.005).
TOLERANCE = 0.015


@pytest.mark.parametrize("case", [*HAND_CASES, "jittered0", "jittered1", "jittered2"])
def test_map_agrees_with_ultralytics(case, hand_data, coco_data, untrained, tmp_path, monkeypatch):
    if case in HAND_CASES:
        boxes = HAND_CASES[case][0]
        gt = {"A.jpg": [(*G1, CIRCLE), (*G2, CIRCLE)], "B.jpg": [(*G3, CIRCLE), (*SQ, SQUARE)]}
        ann, images = hand_data
    else:  # 24 images, 54 objects, mAP50-95 about 0.3: a case where the integration rule has something to do
        gt, boxes = jittered(coco_data, seed=int(case[-1]), split="train")
        ann, images = coco_data / "annotations/instances_train.json", coco_data / "images/train"
    monkeypatch.setattr(coco_eval, "predict", fake_predictor(boxes))
    stats = evaluate(untrained, ann, images, tmp_path, verbose=False)
    theirs, theirs50 = ultralytics_map(gt, boxes, tmp_path)
    assert stats["AP"] == pytest.approx(theirs, abs=TOLERANCE)
    assert stats["AP50"] == pytest.approx(theirs50, abs=TOLERANCE)
    if case not in HAND_CASES:
        assert 0.2 < stats["AP"] < 0.9 and 0.4 < stats["AP50"] < 0.95, stats


# ------------------------------------------------------------------------------------------------- companion route
def to_yolo(coco_root: Path, dst: Path) -> Path:
    """The companion route: Ultralytics' own ``convert_coco`` writes labels; images are copied beside; data.yaml."""
    from ultralytics.data.converter import convert_coco

    convert_coco(str(coco_root / "annotations"), str(dst), cls91to80=False)  # ids 1..3 -> classes 0..2
    for split in ("train", "val"):
        shutil.copytree(coco_root / "images" / split, dst / "images" / split, dirs_exist_ok=True)
    data = {"path": str(dst), "train": "images/train", "val": "images/val", "names": dict(enumerate(CLASSES))}
    (dst / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return dst / "data.yaml"


def test_convert_coco_gives_the_same_yolo_labels(coco_data, tmp_path):
    """Ultralytics' convert_coco turns the COCO file back into the normalized YOLO rows it was made from."""
    to_yolo(coco_data, tmp_path / "yolo")
    gt = json.loads((coco_data / "annotations/instances_val.json").read_text())
    for im in gt["images"]:
        want = sorted(
            (
                a["category_id"] - 1,
                (a["bbox"][0] + a["bbox"][2] / 2) / im["width"],
                (a["bbox"][1] + a["bbox"][3] / 2) / im["height"],
                a["bbox"][2] / im["width"],
                a["bbox"][3] / im["height"],
            )
            for a in gt["annotations"]
            if a["image_id"] == im["id"]
        )
        label = tmp_path / "yolo/labels/val" / Path(im["file_name"]).with_suffix(".txt")
        got = sorted(tuple(float(v) for v in row.split()) for row in label.read_text().splitlines())
        assert len(got) == len(want) > 0
        np.testing.assert_allclose(np.array(got), np.array(want), atol=1e-5)


# ------------------------------------------------------------------------------------------------ mapping, writer
def test_ground_truth_as_predictions_scores_one(coco_data, tmp_path):
    """GT boxes through the same writer give AP = AR = 1; the same boxes shifted by half a width do not."""
    ann = relabel(coco_data / "annotations/instances_val.json", tmp_path / "ann.json", {1: 17, 2: 5, 3: 42})
    coco = load_annotations(ann)
    cat_map = category_map(dict(enumerate(CLASSES)), coco.dataset["categories"])
    assert cat_map == {0: 17, 1: 5, 2: 42}
    cls_of = {v: k for k, v in cat_map.items()}
    for shift, expect_one in ((0.0, True), (0.5, False)):
        rows = []
        for image_id in coco.getImgIds():
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
            xyxy = [[x + shift * w, y, x + w + shift * w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
            classes = [cls_of[a["category_id"]] for a in anns]
            rows += detections_to_coco(image_id, xyxy, [0.9] * len(anns), classes, cat_map)
        stats = coco_stats(coco, write_json(rows, tmp_path / f"pred{shift}.json"), verbose=False)
        for k in ("AP", "AP50", "AP75", "AR10", "AR100"):  # AR1 caps at 1 box per image
            assert (stats[k] == pytest.approx(1.0)) is expect_one, (shift, k, stats[k])


def test_category_ids_follow_names(hand_data, untrained, tmp_path, monkeypatch):
    """Renumbered category ids: the same metrics, predictions carry the new ids."""
    boxes, expected = HAND_CASES["loose_box"]
    monkeypatch.setattr(coco_eval, "predict", fake_predictor(boxes))
    ann, images = hand_data
    ann = relabel(ann, tmp_path / "ann.json", {1: 17, 2: 5, 3: 42})
    stats = evaluate(untrained, ann, images, tmp_path, verbose=False)
    assert stats["AP"] == pytest.approx(expected["AP"], abs=1e-9)
    preds = json.loads((tmp_path / "predictions.json").read_text())
    assert sorted((p["image_id"], p["category_id"]) for p in preds) == [(7, 17), (7, 17), (9, 5), (9, 17)]


def test_coco80_to_coco91_mapping():
    """A COCO-80 model on COCO's 91-id categories gets Ultralytics' table; contiguous named ids go by name."""
    from ultralytics.data.converter import coco80_to_coco91_class

    table, names = coco80_to_coco91_class(), coco80_names()
    model_names = dict(enumerate(names))
    coco91 = [{"id": cid, "name": n} for cid, n in zip(table, names)]
    assert category_map(model_names, coco91) == dict(enumerate(table))
    assert category_map(model_names, [{"id": c["id"]} for c in coco91]) == dict(enumerate(table))  # names absent
    subset = [c for c in coco91 if c["name"] in ("person", "stop sign", "toothbrush")]  # ids 1, 13, 90
    assert category_map(model_names, subset) == {0: 1, 11: 13, 79: 90}
    contiguous = [{"id": i + 1, "name": n} for i, n in enumerate(names)]  # 1..80, e.g. 'stop sign' = 12
    assert category_map(model_names, contiguous) == {i: i + 1 for i in range(80)}


def test_category_names_that_match_nothing():
    with pytest.raises(CocoEvalError, match=r"none of the model's 3 class names \(circle, square, triangle\) match"):
        category_map(dict(enumerate(CLASSES)), [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}], "x.json")


def test_no_detections_scores_zero_and_succeeds(hand_data, untrained, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(coco_eval, "predict", fake_predictor({}))
    ann, images = hand_data
    metrics = evaluate(untrained, ann, images, tmp_path)
    assert metrics == dict.fromkeys(STAT_NAMES, 0.0)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert json.loads((tmp_path / "predictions.json").read_text()) == []
    assert "made no detections on 2 images" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "text, message",
    [
        ("not json {", r"not a COCO annotation file: invalid JSON at line 1"),
        ("[1, 2]", r"not a COCO annotation file: expected an object .* found a JSON list"),
        ('{"images": [], "annotations": []}', r"expected an object .* found keys annotations, images"),
        (
            '{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [], "categories": [{"id": 1}]}',
            r"images\[0\] lacks 'width', 'height'",
        ),
        (
            (
                '{"images": [{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}], "categories": [{"id": 1}], '
                '"annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}]}'
            ),
            r"annotations\[0\] bbox \[1, 2, 3\] is not \[x, y, width, height\]",
        ),
        (
            (
                '{"images": [{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}], "categories": [{"id": 1}], '
                '"annotations": [{"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4]}]}'
            ),
            r"refers to image_id 7",
        ),
    ],
)
def test_bad_annotation_file(tmp_path, text, message):
    ann = tmp_path / "bad.json"
    ann.write_text(text)
    with pytest.raises(CocoEvalError, match=message) as e:
        evaluate(tmp_path / "never_loaded.pt", ann, tmp_path, tmp_path / "out")
    assert str(ann) in str(e.value)


def test_images_missing_on_disk(coco_data, tmp_path):
    data = json.loads((coco_data / "annotations/instances_val.json").read_text())
    extra = [{"id": 1 + k, "file_name": f"gone_{k}.jpg", "width": 64, "height": 64} for k in range(7)]
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({**data, "images": data["images"] + extra}))
    message = r"7 of 19 images listed in .*ann.json are missing from .*: gone_0.jpg, gone_1.jpg, .*gone_4.jpg, \.\.\.$"
    with pytest.raises(CocoEvalError, match=message):
        evaluate(tmp_path / "never_loaded.pt", ann, coco_data / "images/val", tmp_path / "out")


def test_class_names_matching_nothing_is_one_error(hand_data, untrained, tmp_path):
    ann = json.loads(hand_data[0].read_text())
    ann["categories"] = [{**c, "name": f"thing{c['id']}"} for c in ann["categories"]]
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    with pytest.raises(CocoEvalError, match=r"none of the model's 3 class names .* match the 3 category names in"):
        evaluate(untrained, tmp_path / "ann.json", hand_data[1], tmp_path / "out")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ann", "ann.json"], r"ann\.json: not a COCO annotation file"),
        (["--ann", "ann.json", "--conf", "2"], r"need --imgsz >= 32, .* got .* --conf 2\.0"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ann.json").write_text("{}")
    assert cli.main(["coco-eval", "--weights", "w.pt", "--images", ".", "--out", "o", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("effdet-plugin coco-eval: error: "), err
    assert re.search(message, err), err


# --------------------------------------------------------------------------------------- end to end (real model)
def test_cli_real_predictor(untrained, coco_data, tmp_path, capsys, monkeypatch):
    """The real predictor: standard summary printed, 12 stats written, boxes in original-image pixels."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "eval"
    args = [
        "coco-eval",
        "--weights",
        untrained,
        "--ann",
        coco_data / "annotations/instances_val.json",
        "--images",
        coco_data / "images/val",
        "--out",
        out,
        "--imgsz",
        "96",
        "--batch",
        "5",
        "--device",
        "cpu",
    ]
    assert cli.main(list(map(str, args))) == 0
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == list(STAT_NAMES) and all(-1 <= v <= 1 for v in metrics.values())
    assert not list(out.glob(".*"))  # no temp files left behind

    # boxes reach beyond the 96 px network input on the 160 px side of each image, never beyond the image
    gt = json.loads((coco_data / "annotations/instances_val.json").read_text())
    size = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    preds = json.loads((out / "predictions.json").read_text())
    assert preds and {p["category_id"] for p in preds} <= {1, 2, 3} and {p["image_id"] for p in preds} <= set(size)
    assert all(set(p) == {"image_id", "category_id", "bbox", "score"} for p in preds)
    far = {(160, 96): 0, (96, 160): 0}
    for p in preds:
        x, y, w, h = p["bbox"]
        iw, ih = size[p["image_id"]]
        assert -1e-3 <= x and -1e-3 <= y and x + w <= iw + 1e-3 and y + h <= ih + 1e-3
        if (iw, ih) in far:
            far[(iw, ih)] = max(far[(iw, ih)], x + w if iw == 160 else y + h)
    assert far[(160, 96)] > 120 and far[(96, 160)] > 120, far
