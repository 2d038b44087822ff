"""``effdet-plugin swap`` on segment, pose, OBB and classify sources (YOLOv8, YOLO11, YOLO26): the swapped model is
built by Ultralytics' own model class of the task, its head is the source's, re-pointed by stride, and it runs; the
source's own last stage (SPPF, C2PSA) stays; a trained checkpoint of each task keeps its head tensors."""

from __future__ import annotations

import re
from copy import deepcopy
from pathlib import Path

import pytest
import torch
from conftest import load_yaml, tiny_train  # (tests/ is on sys.path under pytest)
from task_data import make_task_dataset
from ultralytics.nn import tasks

from effdet_plugin.commands import swap
from effdet_plugin.commands.cli import main
from effdet_plugin.hosts import ultralytics as host

# The Ultralytics adapter builds plugin rows into a model only when it ends in a head it knows; Classify comes with
# the task families (issue 43, item 1). Until it does, a classifier on a plugin backbone does not build.
needs_classify = pytest.mark.skipif(
    "Classify" not in host.HEADS, reason="the Ultralytics adapter does not build plugin rows under a Classify head"
)

MODELS = {
    "segment": tasks.SegmentationModel,
    "pose": tasks.PoseModel,
    "obb": tasks.OBBModel,
    "classify": tasks.ClassificationModel,
}
TASK_SOURCES = {  # source -> (task, head module, rows of SPPF/C2PSA its backbone ends in)
    "yolo11n-seg.yaml": ("segment", "Segment", 2),
    "yolo26n-pose.yaml": ("pose", "Pose26", 2),
    "yolo11n-obb.yaml": ("obb", "OBB", 2),
    "yolo26n-cls.yaml": ("classify", "Classify", 1),
    "yolov8n-seg.yaml": ("segment", "Segment", 1),
    "yolo26n-seg.yaml": ("segment", "Segment26", 2),
    "yolo11n-pose.yaml": ("pose", "Pose", 2),
    "yolo26n-obb.yaml": ("obb", "OBB26", 2),
    "yolo11n-cls.yaml": ("classify", "Classify", 1),
    "yolov8n-pose.yaml": ("pose", "Pose", 1),
    "yolov8n-obb.yaml": ("obb", "OBB", 1),
}
FAST = ("yolo11n-seg.yaml", "yolo26n-pose.yaml", "yolo11n-obb.yaml", "yolo26n-cls.yaml")  # one source per task


def _build(d: dict, task: str):
    return MODELS[task](deepcopy(d), ch=3, verbose=False)


def _inputs(model, n_backbone: int, size: int = 128) -> list[list[tuple[str, int]]]:
    """For each row after the backbone, what it reads: ('row', offset after the backbone) or ('stride', s) of the
    backbone row, measured by a forward pass of the built model."""
    sizes = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o, k=k: sizes.__setitem__(k, o.shape[-1]))
        for k, m in enumerate(list(model.model)[:n_backbone])
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    out = []
    for m in list(model.model)[n_backbone:]:
        absolute = [m.i + j if j < 0 else j for j in ([m.f] if isinstance(m.f, int) else m.f)]
        out.append([("row", a - n_backbone) if a >= n_backbone else ("stride", size // sizes[a]) for a in absolute])
    return out


def _marks(source: str) -> list:
    return ([] if source in FAST else [pytest.mark.slow]) + ([needs_classify] if "-cls" in source else [])


def _first_tensor(y):
    return y if isinstance(y, torch.Tensor) else _first_tensor(y[0])


@pytest.mark.parametrize("source", [pytest.param(s, marks=_marks(s)) for s in TASK_SOURCES])
def test_swap_task_yaml(source):
    """Ultralytics' class of the task builds the swapped YAML; its head module, args and task keys (kpt_shape, YOLO26's
    end2end and reg_max) are the source's; the SPPF/C2PSA rows stay; it reads the same strides and runs."""
    task, head, n_tail = TASK_SOURCES[source]
    src = tasks.yaml_model_load(source)
    d = swap.swap_backbone(source, "effv2")
    assert d["backbone"][0][2] == "stem" and d["backbone"][-n_tail:] == src["backbone"][-n_tail:]
    assert [r[1:] for r in d["head"]] == [r[1:] for r in src["head"]]
    assert {k: v for k, v in d.items() if k in ("nc", "kpt_shape", "end2end", "reg_max", "scales", "scale")} == {
        k: v for k, v in src.items() if k in ("nc", "kpt_shape", "end2end", "reg_max", "scales", "scale")
    }

    model, src_model = _build(d, task), _build(src, task)
    assert type(model.model[-1]).__name__ == head and tasks.guess_model_task(model) == task
    if task != "classify":
        assert model.stride.tolist() == [8, 16, 32]
    n_src, n_new = len(src["backbone"]) - n_tail, len(d["backbone"]) - n_tail  # the rows after the replaced ones
    assert _inputs(model, n_new) == _inputs(src_model, n_src)
    with torch.no_grad():
        y = model.eval()(torch.rand(1, 3, 64, 64))
    assert torch.isfinite(_first_tensor(y)).all()
    if "end2end" in src:  # YOLO26's head keeps its one-to-one (NMS-free) branch
        assert getattr(model.model[-1], "one2one_cv2", None) is not None


@needs_classify
@pytest.mark.parametrize("source, own", [("yolov8n-cls.yaml", []), ("yolo11n-cls.yaml", ["C2PSA"])])
def test_classifier_reads_a_pooled_p5(source, own):
    """yolov8-cls ends in a C2f stage, yolo11-cls in C2PSA, which keeps its input width: both get the shipped YAML's
    SPPF after the EfficientNet stages, as a detection source without its own does; Classify reads stride 32."""
    d = swap.swap_backbone(source, "effb0")
    shipped = tasks.yaml_model_load("yolov5n_effb0.yaml")["backbone"]
    assert d["backbone"][: len(shipped)] == shipped and [r[2] for r in d["backbone"][len(shipped) :]] == own
    assert d["head"] == [[-1, 1, "Classify", ["nc"]]]
    assert _inputs(_build(d, "classify"), len(d["backbone"]), size=64) == [[("stride", 32)]]


def test_classifier_refuses_a_neck(tmp_path, capsys):
    out = tmp_path / "cls.yaml"
    assert main(["swap", "yolo11n-cls.yaml", "--backbone", "effv2", "--neck", "bifpn", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "yolo11n-cls.yaml: --neck bifpn replaces a P3/P4/P5 neck" in err[0]
    assert not list(tmp_path.iterdir())


def test_bifpn_neck_feeds_the_task_head():
    """--neck bifpn on a segment source: BiFPN reads the P3/P4 stages and the kept C2PSA, Segment reads its levels."""
    d = swap.swap_backbone("yolo11n-seg.yaml", "effv2", neck="bifpn")
    n = len(d["backbone"])
    assert [r[2] for r in d["backbone"][-2:]] == ["SPPF", "C2PSA"] and d["head"][0][0] == [3, 5, n - 1]
    assert d["head"][-1][2:] == ["Segment", ["nc", 32, 256]]
    assert _build(d, "segment").stride.tolist() == [8, 16, 32]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One checkpoint per task, each trained for an epoch on generated data by `yolo TASK train`."""
    from conftest import run_cli

    made = {}

    def train(task: str, source: str) -> Path:
        if task not in made:
            root = tmp_path_factory.mktemp(task)
            data = make_task_dataset(root / "data", task)
            run_cli(tiny_train(source, data, root / "runs", "t", task=task, batch=4), cwd=root)
            made[task] = root / "runs" / "t" / "weights" / "last.pt"
            assert made[task].is_file()
        return made[task]

    return train


@pytest.mark.slow
@pytest.mark.parametrize(
    "task, source",
    [
        ("segment", "yolo11n-seg.yaml"),
        ("pose", "yolo26n-pose.yaml"),
        ("obb", "yolo11n-obb.yaml"),
        pytest.param("classify", "yolo26n-cls.yaml", marks=needs_classify),
    ],
)
def test_trained_checkpoint_keeps_its_head(task, source, trained, tmp_path, capsys):
    """A checkpoint of each task: every tensor of its head (and of the rows whose inputs keep their widths) comes over
    unchanged; OUT.pt loads as that task's model, with its class names, and predicts. Only the rows that read the new
    backbone lose tensors (a classifier's C2PSA reads the grafted SPPF at its own width: it loses none)."""
    from ultralytics import YOLO

    src_pt = trained(task, source)
    out = tmp_path / f"{task}-effv2.yaml"
    assert main(["swap", str(src_pt), "--backbone", "effv2", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    m = re.search(r"transferred (\d+)/(\d+) tensors after the new backbone", printed)
    skipped = re.findall(r"not transferred (\S+):", printed)
    assert m and int(m[1]) == int(m[2]) - len(skipped) > 0 and (task == "classify") == (not skipped), printed

    a, b = YOLO(src_pt), YOLO(out.with_suffix(".pt"))
    assert b.task == task and b.names == a.names and type(b.model.model[-1]) is type(a.model.model[-1])
    assert b.model.yaml == {**load_yaml(out.read_text()), "channels": 3}
    head_a, head_b = a.model.model[-1].state_dict(), b.model.model[-1].state_dict()
    assert head_a.keys() == head_b.keys() and all(torch.equal(head_a[k], head_b[k]) for k in head_a)
    last = len(b.model.model) - 1
    assert all(int(k.split(".")[1]) < last for k in skipped)  # only rows that read the new backbone

    res = b.predict(torch.rand(1, 3, 64, 64), imgsz=64, device="cpu", verbose=False)[0]
    assert {
        "segment": res.masks is not None or res.boxes is not None,
        "pose": res.keypoints is not None,
        "obb": res.obb is not None,
        "classify": res.probs is not None,
    }[task]
