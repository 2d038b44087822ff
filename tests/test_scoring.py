"""Scoring segment, pose and OBB models on a held-out split: the COCO ground truth written from their YOLO labels, the
prediction rows pycocotools scores, the OKS it computes against the host's, the task's curve in a run, and one real
``accuracy`` sweep per task."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import PYTHON, run_cli
from pycocotools.cocoeval import COCOeval
from task_data import KPT_SHAPE, make_task_dataset

from effdet_plugin.commands.coco_eval import (
    KEYPOINT_STAT_NAMES,
    coco_stats,
    keypoints_to_coco,
    load_annotations,
    masks_to_coco,
)
from effdet_plugin.commands.heldout import AccuracyError, coco_ground_truth, data_fingerprint, dataset_name, eval_split
from effdet_plugin.commands.results import StoreError, load_record, write_record
from effdet_plugin.commands.runs import read_curve, run_record
from effdet_plugin.commands.scoring import METRICS, score_keys, sweep_task


@pytest.fixture(scope="module")
def task_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("scoring")
    return {
        t: make_task_dataset(root / t, t, n_train=8, n_val=6, size=96) for t in ("segment", "pose", "obb", "classify")
    }


def ground_truth(task_data, task, tmp_path):
    ann, _ = coco_ground_truth(task_data[task], "val", tmp_path / f"{task}.json", task)
    return ann, load_annotations(ann)


def test_segment_ground_truth_is_the_label_polygon(task_data, tmp_path):
    _, coco = ground_truth(task_data, "segment", tmp_path)
    first = coco.dataset["annotations"][0]
    row = (task_data["segment"].parent / "labels/val/000.txt").read_text().split("\n")[0].split()
    xy = np.array(row[1:], float).reshape(-1, 2) * 96  # the generated images are 96 px square
    assert first["segmentation"] == [pytest.approx(xy.ravel().tolist())]
    assert first["bbox"] == pytest.approx([*xy.min(0), *(xy.max(0) - xy.min(0))])
    # the area pycocotools would give the polygon's mask, within the rasterization's edge pixels
    mask_area = coco.annToMask(first).sum()
    assert first["area"] == pytest.approx(mask_area, rel=0.1)


def test_pose_ground_truth_carries_keypoints_and_sigmas(task_data, tmp_path):
    ann, coco = ground_truth(task_data, "pose", tmp_path)
    first = coco.dataset["annotations"][0]
    assert len(first["keypoints"]) == KPT_SHAPE[0] * 3 and first["num_keypoints"] == KPT_SHAPE[0]
    assert first["area"] == pytest.approx(first["bbox"][2] * first["bbox"][3] * 0.53)
    # four keypoints without COCO's 17: the host's validator takes 1/4 each
    assert json.loads(ann.read_text())["kpt_oks_sigmas"] == [0.25] * 4


def test_pose_needs_kpt_shape(task_data, tmp_path):
    data = yaml.safe_load(task_data["pose"].read_text())
    del data["kpt_shape"]
    bad = tmp_path / "data.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(AccuracyError, match=r"data.yaml: a pose dataset needs 'kpt_shape"):
        coco_ground_truth(bad, "val", tmp_path / "gt.json", "pose")


@pytest.mark.parametrize("task", ["segment", "pose"])
def test_ground_truth_as_predictions_scores_one(task_data, task, tmp_path):
    """The prediction rows of a perfect model (masks rasterized from the polygons, keypoints where labelled) score 1;
    one object left out scores below 1."""
    _, coco = ground_truth(task_data, task, tmp_path)
    cat_map = {c["id"] - 1: c["id"] for c in coco.dataset["categories"]}
    rows = []
    for a in coco.dataset["annotations"]:
        cls, score = [a["category_id"] - 1], [0.9]
        if task == "segment":
            rows += masks_to_coco(a["image_id"], [coco.annToMask(a)], score, cls, cat_map)
        else:
            xy = np.array(a["keypoints"]).reshape(-1, 3)[:, :2]
            rows += keypoints_to_coco(a["image_id"], [xy.tolist()], score, cls, cat_map)
    iou_type = {"segment": "segm", "pose": "keypoints"}[task]
    (tmp_path / "all.json").write_text(json.dumps(rows))
    stats = coco_stats(coco, tmp_path / "all.json", verbose=False, iou_type=iou_type)
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
    if task == "pose":
        assert set(stats) == set(KEYPOINT_STAT_NAMES)
    (tmp_path / "some.json").write_text(json.dumps(rows[1:]))
    assert coco_stats(coco, tmp_path / "some.json", verbose=False, iou_type=iou_type)["AP"] < 0.99


def test_oks_is_the_host_validators(task_data, tmp_path):
    """pycocotools' OKS on the written ground truth equals Ultralytics' ``kpt_iou`` with its sigmas and 0.53 box
    area, keypoint by keypoint moved off their labels."""
    from ultralytics.utils.metrics import kpt_iou

    ann, coco = ground_truth(task_data, "pose", tmp_path)
    gt = coco.dataset["annotations"][0]
    truth = np.array(gt["keypoints"], float).reshape(-1, 3)
    moved = truth[:, :2] + np.random.default_rng(0).normal(0, 8, truth[:, :2].shape)
    rows = keypoints_to_coco(gt["image_id"], [moved.tolist()], [0.9], [gt["category_id"] - 1], {0: 1, 1: 2})
    ev = COCOeval(coco, coco.loadRes(rows), iouType="keypoints")
    ev.params.kpt_oks_sigmas = np.array(json.loads(ann.read_text())["kpt_oks_sigmas"])
    ev.evaluate()
    key = gt["image_id"], gt["category_id"]
    theirs = ev.ious[key][0, [g["id"] for g in ev._gts[key]].index(gt["id"])]  # one detection, this image's objects
    sigma = np.array(json.loads(ann.read_text())["kpt_oks_sigmas"])
    ours = kpt_iou(torch.tensor(truth[None]), torch.tensor(moved[None]), torch.tensor([gt["area"]]), sigma)
    assert float(theirs) == pytest.approx(float(ours[0, 0]), abs=1e-6)
    assert 0.05 < float(ours[0, 0]) < 0.95  # moved enough to test the formula, not so far that both are 0


def _made_up(coco, task: str, rng: np.random.Generator) -> list[tuple[int, int, np.ndarray, float]]:
    """Predictions of a fair model: most objects found (some twice), masks shifted or keypoints jittered by a few
    pixels, random scores, some on background; (image id, class, mask or keypoints, score)."""
    preds = []
    for a in coco.dataset["annotations"]:
        for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):
            if task == "segment":
                shape = np.roll(coco.annToMask(a), tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
            else:
                shape = np.array(a["keypoints"], float).reshape(-1, 3)[:, :2] + rng.normal(0, 3, (KPT_SHAPE[0], 2))
            preds.append((a["image_id"], a["category_id"] - 1, shape, float(rng.uniform(0.05, 1))))
    for im in coco.dataset["images"]:
        for _ in range(int(rng.integers(0, 2))):  # on background, any class
            x, y = rng.integers(5, 70, 2)
            if task == "segment":
                shape = np.zeros((im["height"], im["width"]), np.uint8)
                shape[y : y + 15, x : x + 15] = 1
            else:
                shape = np.array([[x, y], [x + 15, y], [x + 15, y + 15], [x, y + 15]], float)
            preds.append((im["id"], int(rng.integers(2)), shape, float(rng.uniform(0.05, 1))))
    return preds


def _host_map(coco, task: str, preds, sigma: np.ndarray) -> tuple[float, float]:
    """(mAP50-95, mAP50) of the predictions by the host validator's arithmetic: its mask IoU or OKS (0.53 of the
    box as area), its matcher, its ``ap_per_class``."""
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.utils.metrics import ap_per_class, kpt_iou, mask_iou

    matcher = DetectionValidator()
    tp, conf, pred_cls, target_cls = [], [], [], []
    for im in coco.dataset["images"]:
        gts = [a for a in coco.dataset["annotations"] if a["image_id"] == im["id"]]
        mine = sorted((p for p in preds if p[0] == im["id"]), key=lambda p: -p[3])
        t_cls = torch.tensor([a["category_id"] - 1 for a in gts], dtype=torch.float32)
        target_cls.append(t_cls.numpy())
        if not mine:
            continue
        p_cls = torch.tensor([p[1] for p in mine], dtype=torch.float32)
        if task == "segment":
            gt_masks = torch.tensor(np.stack([coco.annToMask(a) for a in gts]), dtype=torch.float32).flatten(1)
            iou = mask_iou(gt_masks, torch.tensor(np.stack([p[2] for p in mine]), dtype=torch.float32).flatten(1))
        else:
            gt_k = torch.tensor(np.stack([np.array(a["keypoints"], float).reshape(-1, 3) for a in gts]))
            area = torch.tensor([a["bbox"][2] * a["bbox"][3] * 0.53 for a in gts], dtype=torch.float64)
            iou = kpt_iou(gt_k, torch.tensor(np.stack([p[2] for p in mine])), area, sigma)
        tp.append(matcher.match_predictions(p_cls, t_cls, iou).numpy())
        conf.append(np.array([p[3] for p in mine]))
        pred_cls.append(p_cls.numpy())
    ap = ap_per_class(np.concatenate(tp), np.concatenate(conf), np.concatenate(pred_cls), np.concatenate(target_cls))[5]
    return float(ap.mean()), float(ap[:, 0].mean())


@pytest.mark.parametrize("task", ["segment", "pose"])
@pytest.mark.parametrize("seed", [0, 1])
def test_map_agrees_with_the_host_validator(tmp_path, task, seed):
    """pycocotools' mask and keypoint mAP of made-up predictions agree with the host validator's arithmetic on the
    same masks and keypoints, within the two integration rules' difference (tests/test_coco_eval.py: TOLERANCE)."""
    data = make_task_dataset(tmp_path / "data", task, n_train=2, n_val=24, size=96, seed=seed)
    ann, _ = coco_ground_truth(data, "val", tmp_path / "gt.json", task)
    coco = load_annotations(ann)
    preds = _made_up(coco, task, np.random.default_rng(seed))
    cat_map = {0: 1, 1: 2}
    rows = []
    for image_id, cls, shape, score in preds:
        to_coco = masks_to_coco if task == "segment" else keypoints_to_coco
        rows += to_coco(image_id, [shape if task == "segment" else shape.tolist()], [score], [cls], cat_map)
    (tmp_path / "preds.json").write_text(json.dumps(rows))
    stats = coco_stats(coco, tmp_path / "preds.json", False, {"segment": "segm", "pose": "keypoints"}[task])
    sigma = np.array(json.loads(ann.read_text()).get("kpt_oks_sigmas", [1.0]))
    theirs, theirs50 = _host_map(coco, task, preds, sigma)
    assert 0.2 < stats["AP"] < 0.95, stats  # a case where matching and integration have something to do
    assert stats["AP"] == pytest.approx(theirs, abs=0.015) and stats["AP50"] == pytest.approx(theirs50, abs=0.015)


def test_curve_and_best_epoch_follow_the_task(tmp_path):
    """A segment run's curve is its mask mAP; its best epoch is where box plus mask mAP50-95 peaks, as the trainer's
    fitness."""
    (tmp_path / "results.csv").write_text(
        "epoch,time,metrics/mAP50(B),metrics/mAP50-95(B),metrics/mAP50(M),metrics/mAP50-95(M),train/seg_loss\n"
        "1,5,0.5,0.40,0.3,0.10,2.0\n2,9,0.4,0.20,0.4,0.25,1.5\n3,14,0.5,0.30,0.2,0.05,1.2\n"
    )
    curve = read_curve(tmp_path)
    assert curve["map50"] == [0.3, 0.4, 0.2] and curve["map50_95"] == [0.10, 0.25, 0.05]
    assert curve["losses"] == {"train/seg_loss": [2.0, 1.5, 1.2]}
    assert run_record(tmp_path) == (3, 14.0, 1)  # 0.50 at epoch 1, 0.45 at 2, 0.35 at 3


def test_a_classifiers_curve_and_best_epoch_are_its_accuracy(tmp_path):
    (tmp_path / "results.csv").write_text(
        "epoch,time,metrics/accuracy_top1,metrics/accuracy_top5,train/loss\n1,5,0.5,0.9,2.0\n2,9,0.6,0.7,1.5\n"
    )
    curve = read_curve(tmp_path)
    assert curve == {"epoch": [1, 2], "top1": [0.5, 0.6], "top5": [0.9, 0.7], "losses": {"train/loss": [2.0, 1.5]}}
    assert run_record(tmp_path) == (2, 9.0, 1)  # (top-1 + top-5) / 2: 0.70 at epoch 1, 0.65 at 2, as the trainer


def test_a_classifiers_record_reads_back_with_its_accuracy_as_its_score(tmp_path):
    run = {"seed": 0, "top1": 0.8, "top5": 0.95, "train_s": 10.0, "best_epoch": 2, "weights": "w.pt"}
    run["curve"] = {"epoch": [1, 2], "top1": [0.6, 0.8], "top5": [0.9, 0.95], "losses": {}}
    row = {"model": "yolo26n-cls.yaml", "dataset": "signs", "eval_split": "test", "metric": METRICS["classify"]}
    row.update(epochs=1, imgsz=64, batch=8, pretrained=False, progressive=False, checkpoint="best", runs=[run])
    write_record(tmp_path / "acc.json", "accuracy", [row])
    (score,) = load_record(tmp_path / "acc.json").scores
    assert score.metric == METRICS["classify"] and score.run.map50_95 is None
    assert (score.run.score, score.run.top5, score.run.curve.score) == (0.8, 0.95, (0.6, 0.8))
    del run["top5"]
    write_record(tmp_path / "acc.json", "accuracy", [row])
    with pytest.raises(StoreError, match=r"acc\.json: rows\[0\]\.runs\[0\]\.top5: missing"):
        load_record(tmp_path / "acc.json")


def test_a_classification_folder_is_a_dataset(tmp_path):
    folder = make_task_dataset(tmp_path / "signs", "classify", n_train=4, n_val=2, size=32)
    assert eval_split(folder) == "val" and dataset_name(folder) == "signs"
    with pytest.raises(
        AccuracyError, match=r"classification dataset .*signs has no 'test' folder to score on \(it has"
    ):
        eval_split(folder, "test")
    before = data_fingerprint(folder)
    image = next((folder / "val" / "square").iterdir())
    image.rename(folder / "train" / "square" / image.name)  # an image moved to another split
    assert data_fingerprint(folder) != before


def test_a_sweep_is_one_task():
    assert sweep_task(["yolo26n_effv2-seg.yaml", "yolo26n-seg.yaml"]) == "segment"
    assert sweep_task(["yolo26n_effv2-cls.yaml"]) == "classify"
    with pytest.raises(AccuracyError, match=r"--models mixes tasks \(yolo26n-seg.yaml: segment, yolo26n.yaml: detect"):
        sweep_task(["yolo26n-seg.yaml", "yolo26n.yaml"])


@pytest.mark.slow
@pytest.mark.parametrize(("task", "models"), [
    ("segment", ["yolo26n_effv2-seg.yaml", "yolo26n-seg.yaml"]),
    ("pose", ["yolo26n_effv2-pose.yaml"]),
    ("obb", ["yolo26n_effv2-obb.yaml"]),
    ("classify", ["yolo26n_effv2-cls.yaml"]),
])  # fmt: skip
def test_accuracy_sweep_per_task(task_data, task, models, tmp_path):
    """``effdet-plugin accuracy`` trains each model one epoch with the host's trainer and records the task's score:
    pycocotools on masks or keypoints, the host's validator on rotated boxes and classes."""
    argv = ["--models", *models, "--data", str(task_data[task]), "--epochs", "1", "--imgsz", "64", "--batch", "4"]
    argv += ["--seeds", "0", "--device", "cpu", "--workers", "0", "--repeats", "1", "--project", "runs"]
    run_cli([PYTHON, "-m", "effdet_plugin.commands.cli", "accuracy", *argv, "--json", "acc.json"], tmp_path)
    rows = load_record(tmp_path / "acc.json").rows
    assert [r["model"] for r in rows] == models and {r["metric"] for r in rows} == {METRICS[task]}
    first, second = score_keys(task)[:2]
    for r in rows:
        run = r["runs"][0]
        assert 0 <= run[first] <= run[second] <= 1 and len(run["curve"]["epoch"]) == 1
        scored = tmp_path / "runs" / f"{r['model'].removesuffix('.yaml')}_seed0" / "coco_eval" / "metrics.json"
        key = first if task in ("obb", "classify") else "AP"  # the host validator's scores; pycocotools' stats
        assert json.loads(scored.read_text())[key] == pytest.approx(run[first])
