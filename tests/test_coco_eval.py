"""tools/coco_eval.py: pycocotools metrics of real predictions, category/image mapping, companion COCO->YOLO route."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from effdet_plugin.demo import CLASSES, make_demo_dataset
from conftest import PYTHON, run_cli

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))
from coco_eval import (  # noqa: E402
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
                    {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(c) + 1, "bbox": box,
                     "area": box[2] * box[3], "iscrowd": 0}
                )  # fmt: skip
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


def pycocotools_direct(ann: Path, predictions: Path) -> list[float]:
    """The reference: pycocotools run by hand on the tool's predictions.json."""
    gt = COCO(str(ann))
    ev = COCOeval(gt, gt.loadRes(str(predictions)), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return [float(v) for v in ev.stats]


@pytest.fixture(scope="module")
def coco_data(tmp_path_factory) -> Path:
    """A COCO-format dataset root: images/{train,val}, annotations/instances_{train,val}.json (24 + 12 images)."""
    root = tmp_path_factory.mktemp("coco")
    make_coco(root, "train", per_size=8, seed=0)
    make_coco(root, "val", per_size=4, seed=100)
    return root


def to_yolo(coco_root: Path, dst: Path) -> Path:
    """The companion route: Ultralytics' own ``convert_coco`` writes labels; images are copied beside; data.yaml."""
    from ultralytics.data.converter import convert_coco

    convert_coco(str(coco_root / "annotations"), str(dst), cls91to80=False)  # ids 1..3 -> classes 0..2
    for split in ("train", "val"):
        shutil.copytree(coco_root / "images" / split, dst / "images" / split, dirs_exist_ok=True)
    data = {"path": str(dst), "train": "images/train", "val": "images/val", "names": dict(enumerate(CLASSES))}
    (dst / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return dst / "data.yaml"


@pytest.fixture(scope="module")
def trained(coco_data, tmp_path_factory) -> Path:
    """A yolov5nu trained 1 epoch on the converted COCO data (64 px, CPU); returns last.pt."""
    from ultralytics import YOLO

    tmp = tmp_path_factory.mktemp("train")
    data = to_yolo(coco_data, tmp / "yolo")
    YOLO("yolov5nu.yaml").train(
        data=str(data), epochs=1, imgsz=64, batch=8, workers=0, plots=False, device="cpu", val=False,
        project=str(tmp), name="run", exist_ok=True, seed=0,
    )  # fmt: skip
    return tmp / "run" / "weights" / "last.pt"


@pytest.fixture(scope="module")
def cli_run(trained, coco_data, tmp_path_factory):
    """One run of the command line tool on the val split: (out folder, stdout)."""
    out = tmp_path_factory.mktemp("eval")
    args = ["--weights", trained, "--ann", coco_data / "annotations/instances_val.json", "--images",
            coco_data / "images/val", "--out", out, "--imgsz", "96", "--batch", "5", "--device", "cpu"]  # fmt: skip
    proc = run_cli([PYTHON, TOOLS / "coco_eval.py", *map(str, args)], cwd=out, timeout=300)
    return out, proc.stdout


# ------------------------------------------------------------------------------------------------- companion route
def test_convert_coco_gives_the_same_yolo_labels(coco_data, tmp_path):
    """Ultralytics' convert_coco turns the COCO file back into the normalized YOLO rows it was made from."""
    to_yolo(coco_data, tmp_path / "yolo")
    gt = json.loads((coco_data / "annotations/instances_val.json").read_text())
    for im in gt["images"]:
        want = sorted(
            (a["category_id"] - 1, (a["bbox"][0] + a["bbox"][2] / 2) / im["width"],
             (a["bbox"][1] + a["bbox"][3] / 2) / im["height"], a["bbox"][2] / im["width"], a["bbox"][3] / im["height"])
            for a in gt["annotations"] if a["image_id"] == im["id"]
        )  # fmt: skip
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


# ------------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "text, message",
    [
        ("not json {", r"not a COCO annotation file: invalid JSON at line 1"),
        ("[1, 2]", r"not a COCO annotation file: expected an object .* found a JSON list"),
        ('{"images": [], "annotations": []}', r"expected an object .* found keys annotations, images"),
        ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [], "categories": [{"id": 1}]}',
         r"images\[0\] lacks 'width', 'height'"),
        ('{"images": [{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}], "categories": [{"id": 1}], '
         '"annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}]}',
         r"annotations\[0\] bbox \[1, 2, 3\] is not \[x, y, width, height\]"),
        ('{"images": [{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}], "categories": [{"id": 1}], '
         '"annotations": [{"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4]}]}', r"refers to image_id 7"),
    ],
)  # fmt: skip
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


# ------------------------------------------------------------------------------------------ end to end (trained)
@pytest.mark.slow
def test_metrics_equal_pycocotools_on_predictions(cli_run, coco_data):
    out, stdout = cli_run
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in stdout  # the standard summary
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == list(STAT_NAMES)
    direct = pycocotools_direct(coco_data / "annotations/instances_val.json", out / "predictions.json")
    assert [metrics[k] for k in STAT_NAMES] == direct
    assert not list(out.glob(".*"))  # no temp files left behind


@pytest.mark.slow
def test_predictions_are_in_original_image_pixels(cli_run, coco_data):
    """Boxes reach beyond the 96 px network input on the 160 px side of each image, never beyond the image."""
    out, _ = cli_run
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


@pytest.mark.slow
def test_category_ids_follow_names(trained, cli_run, coco_data, tmp_path):
    """Renumbered category ids: same metrics, predictions carry the new ids."""
    out, _ = cli_run
    ann = relabel(coco_data / "annotations/instances_val.json", tmp_path / "ann.json", {1: 17, 2: 5, 3: 42})
    metrics = evaluate(trained, ann, coco_data / "images/val", tmp_path, imgsz=96, batch=5, device="cpu", verbose=False)
    assert metrics == json.loads((out / "metrics.json").read_text())
    new, old = (json.loads(p.read_text()) for p in (tmp_path / "predictions.json", out / "predictions.json"))
    back = {17: 1, 5: 2, 42: 3}
    assert sorted((p["image_id"], back[p["category_id"]], p["score"]) for p in new) == sorted(
        (p["image_id"], p["category_id"], p["score"]) for p in old
    )


@pytest.mark.slow
def test_no_detections_scores_zero_and_succeeds(trained, coco_data, tmp_path, capsys):
    ann = coco_data / "annotations/instances_val.json"
    metrics = evaluate(trained, ann, coco_data / "images/val", tmp_path, imgsz=64, conf=1.0, device="cpu")
    assert metrics == dict.fromkeys(STAT_NAMES, 0.0)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert json.loads((tmp_path / "predictions.json").read_text()) == []
    assert "made no detections on 12 images" in capsys.readouterr().out


@pytest.mark.slow
def test_class_names_matching_nothing_is_one_error(trained, coco_data, tmp_path):
    ann = json.loads((coco_data / "annotations/instances_val.json").read_text())
    ann["categories"] = [{**c, "name": f"thing{c['id']}"} for c in ann["categories"]]
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    with pytest.raises(CocoEvalError, match=r"none of the model's 3 class names .* match the 3 category names in"):
        evaluate(trained, tmp_path / "ann.json", coco_data / "images/val", tmp_path / "out", device="cpu")


@pytest.mark.slow
def test_cli_bad_input_is_one_line(tmp_path):
    (tmp_path / "ann.json").write_text("{}")
    args = [PYTHON, str(TOOLS / "coco_eval.py"), "--weights", "w.pt", "--ann", "ann.json", "--images", "."]
    args += ["--out", "o"]
    with pytest.raises(AssertionError) as e:
        run_cli(args, cwd=tmp_path, timeout=120)
    assert "exited 2" in str(e.value) and "Traceback" not in str(e.value)
    assert "coco_eval: error: ann.json: not a COCO annotation file" in str(e.value)
