"""How ``accuracy`` and ``protocol`` score a trained model of each Ultralytics task on the held-out split.

Detect, segment and pose models are scored by pycocotools (``coco_eval``): the split's YOLO labels are written once as
a COCO annotation file (boxes; polygons; keypoints with the host's OKS sigmas) and every checkpoint's predictions are
scored on boxes, masks or keypoints, as COCO scores those tasks. pycocotools has no rotated-box metric, so an OBB model
is scored by the host's own OBB validator on the same split (``yolo obb val split=test``: rotated IoU, the same
101-point mAP). Every task but classification yields mAP50-95, mAP50 and mAP75, which records keep under those names
with ``metric`` saying which mAP they are; a classifier is scored by the host's classify validator on the split's
folder, as ``yolo classify val split=test`` scores it: top-1 and top-5 accuracy (``top1``, ``top5``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from effdet_plugin.atomic import write_json
from effdet_plugin.commands.heldout import AccuracyError, coco_ground_truth

# what a record's scores (``score_keys``) measure for a model of each task
METRICS = {
    "detect": "box mAP, pycocotools",
    "segment": "mask mAP, pycocotools",
    "pose": "keypoint OKS mAP, pycocotools",
    "obb": "rotated-box mAP, Ultralytics' OBB validator",
    "classify": "top-1 accuracy, Ultralytics' classify validator",
}


def score_keys(task: str) -> tuple[str, ...]:
    """The scores a record keeps for a model of ``task``, the one verdicts compare first."""
    return ("top1", "top5") if task == "classify" else ("map50_95", "map50", "map75")


def model_task(model: str) -> str:
    """The Ultralytics task of a model YAML name or ``.pt`` file, as the host reads it from the head."""
    from ultralytics.nn.tasks import guess_model_task

    from effdet_plugin.commands.benchmark import load_model

    return guess_model_task(load_model(model))


def sweep_task(models: list[str]) -> str:
    """The one task every model of a sweep has; mixed tasks are refused."""
    tasks = {m: model_task(m) for m in models}
    if len(set(tasks.values())) > 1:
        raise AccuracyError(
            "--models mixes tasks (" + ", ".join(f"{Path(m).name}: {t}" for m, t in tasks.items()) + "); a sweep "
            "compares models of one task on one dataset"
        )
    task = tasks[models[0]]
    if task not in METRICS:
        raise AccuracyError(
            f"--models {Path(models[0]).name} is a {task} model: these commands score {', '.join(METRICS)}"
        )
    return task


@dataclass(frozen=True)
class HeldOut:
    """A dataset's held-out split, ready to score checkpoints of one task on: its COCO annotation file and image
    folder for pycocotools, none for OBB and classification (the host's validator reads the dataset)."""

    task: str
    data: str
    split: str
    ann: Path | None = None
    images: Path | None = None

    @classmethod
    def prepare(cls, task: str, data: str, split: str, folder: Path) -> HeldOut:
        """Write the split's ground truth into ``folder`` once, for every checkpoint of the sweep."""
        if task in ("obb", "classify"):
            return cls(task, data, split)
        name = f"{split}_ground_truth" + ("" if task == "detect" else f"_{task}")
        ann, images = coco_ground_truth(data, split, Path(folder) / f"{name}.json", task)
        return cls(task, data, split, ann, images)

    @property
    def metric(self) -> str:
        """What the scores are (``METRICS``)."""
        return METRICS[self.task]

    def score(self, weights: Path, imgsz: int, batch: int, device: str, out: Path) -> dict[str, float]:
        """Return the scores of ``weights`` on the split by name (``score_keys``); ``out`` receives ``metrics.json``
        (and, from pycocotools, ``predictions.json``)."""
        if self.ann is not None:
            from effdet_plugin.commands.coco_eval import evaluate

            stats = evaluate(weights, self.ann, self.images, out, imgsz=imgsz, batch=batch, device=device)
            return {"map50_95": stats["AP"], "map50": stats["AP50"], "map75": stats["AP75"]}
        from ultralytics import YOLO

        out = Path(out)
        # the validator's own defaults (conf 0.001, IoU 0.7), as coco_eval predicts with them
        metrics = YOLO(str(weights)).val(
            data=self.data,
            split=self.split,
            imgsz=imgsz,
            batch=batch,
            device=device,
            **({} if self.task == "classify" else {"conf": 0.001, "iou": 0.7}),
            plots=False,
            verbose=False,
            project=str(out.parent),
            name=out.name,
            exist_ok=True,
        )
        if self.task == "classify":
            stats = {"top1": float(metrics.top1), "top5": float(metrics.top5)}
        else:
            box = metrics.box
            stats = {"map50_95": float(box.map), "map50": float(box.map50), "map75": float(box.map75)}
        write_json(stats, out / "metrics.json")
        return stats
