"""Every task end to end through Ultralytics' own CLI and trainer, in fresh processes with no import in user code: a
short training on the generated demo data of the task, a reload that validates and predicts, ONNX export parity with
PyTorch; YOLO26's end-to-end head exported as yolo26n's is; and a DDP-spawned pose step."""

from __future__ import annotations

import copy
import csv
import json
import math
import shutil
import socket
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import ultralytics
import yaml
from conftest import run_cli

from effdet_plugin.commands.demo import make_demo_dataset

pytestmark = pytest.mark.slow

IMGSZ = 64
# task -> (model, the Results attribute its predictions fill): one model per head family and task kind
CASES = {
    "segment": ("yolo26n_effv2-seg.yaml", "masks"),
    "pose": ("yolo11n_effv2-pose.yaml", "keypoints"),
    "obb": ("yolov5n_effv2-obb.yaml", "obb"),
    "classify": ("yolov5n_effv2-lite-cls.yaml", "probs"),
    "detect": ("yolo26n_effv2.yaml", "boxes"),
}
RELOAD = r"""
import json, sys
from ultralytics import YOLO
best, data, images, runs, field = sys.argv[1:]
m = YOLO(best)
r = m.val(data=data, imgsz=64, batch=8, workers=0, device="cpu", plots=False, project=runs, name="val", exist_ok=True)
p = m.predict(images, imgsz=64, conf=0.0, device="cpu", verbose=False)
print("RESULT", json.dumps({
    "task": m.task, "plugin": any(type(x).__module__ == "effdet_plugin.blocks" for x in m.model.modules()),
    "fitness": float(r.fitness), "predictions": len(p), "filled": all(getattr(q, field) is not None for q in p)}))
"""


def _images(root: Path, task: str) -> Path:
    return root / "val" / "circle" if task == "classify" else root / "images" / "val"


def _tensors(paths: list[Path]) -> torch.Tensor:
    return torch.stack(
        [torch.from_numpy(cv2.imread(str(p))[..., ::-1].copy()).permute(2, 0, 1).float() / 255 for p in paths]
    )


@pytest.mark.parametrize("task", list(CASES))
def test_train_reload_val_predict_export(task, tmp_path):
    model, field = CASES[task]
    data = make_demo_dataset(tmp_path / "data", n_train=16, n_val=8, imgsz=IMGSZ, seed=0, task=task)
    root = data if task == "classify" else data.parent
    runs = tmp_path / "runs"
    run_cli(
        [
            "yolo",
            task,
            "train",
            f"model={model}",
            f"data={data}",
            "epochs=1",
            "batch=8",
            "workers=0",
            f"imgsz={IMGSZ}",
            "device=cpu",
            f"project={runs}",
            "name=train",
            "exist_ok=True",
            "plots=False",
        ],
        tmp_path,
    )
    best = runs / "train" / "weights" / "best.pt"
    assert best.is_file()
    (row,) = csv.DictReader((runs / "train" / "results.csv").open())
    losses = {k.strip(): float(v) for k, v in row.items() if "loss" in k}
    assert losses and all(math.isfinite(v) and v >= 0 for v in losses.values()), losses

    # a fresh process reloads the checkpoint (pickled plugin blocks), validates and predicts
    out = run_cli(
        [sys.executable, "-c", RELOAD, str(best), str(data), str(_images(root, task)), str(runs), field], tmp_path
    ).stdout
    result = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT"))[len("RESULT") :])
    assert result["task"] == task and result["plugin"] and result["filled"], result
    assert result["predictions"] == len(list(_images(root, task).glob("*.jpg"))) > 0, result
    assert 0 <= result["fitness"] <= 1 + 1e-6, result

    # the user's export, in a fresh process; then parity on the reloaded model with a trained model's numerics
    run_cli(["yolo", "export", f"model={best}", "format=onnx", f"imgsz={IMGSZ}", "device=cpu"], tmp_path)
    images = sorted(_images(root, task).glob("*.jpg"))[:2]
    _compare_onnx(
        best.with_suffix(".onnx"), _outputs(ultralytics.YOLO(str(best)).model, _tensors(images)), images, signal=False
    )
    yolo = ultralytics.YOLO(str(best))
    _condition(yolo.model, _tensors(images))
    refs = _outputs(yolo.model, _tensors(images))
    _compare_onnx(Path(yolo.export(format="onnx", imgsz=IMGSZ, device="cpu")), refs, images, signal=True)


def _condition(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Give a barely trained model a trained one's numerics, in place: after one epoch on 16 images its outputs hardly
    depend on the image (BatchNorm statistics near their initial values), so parity would prove little. Random
    BatchNorm affine parameters, and statistics measured on a batch that holds ``x``, as tests/test_export_parity.py
    does for every detection family."""
    g = torch.Generator().manual_seed(0)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
    model.float().eval()
    for m in bns:
        m.train()
    with torch.no_grad():
        model(torch.cat([x, torch.rand(6, *x.shape[1:], generator=g)]))
    model.eval()


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """What the exported graph returns, computed by the fused PyTorch model: its inference output(s)."""
    fused = copy.deepcopy(model).float().eval().fuse(verbose=False)
    with torch.no_grad():
        out = fused(x)[0]
    return [t.numpy() for t in (out if isinstance(out, (list, tuple)) else [out])]


def _compare_onnx(onnx_file: Path, refs: list[np.ndarray], images: list[Path], signal: bool) -> None:
    """The exported graph's outputs equal ``refs``, output by output, image by image; ``signal``: the two images'
    reference outputs differ by far more than the tolerance (else parity checks little)."""
    import onnxruntime as ort

    x = _tensors(images)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    got = [np.concatenate(o) for o in zip(*(session.run(None, {name: x[k : k + 1].numpy()}) for k in range(len(x))))]
    assert len(got) == len(refs), ([o.shape for o in got], [r.shape for r in refs])
    for ref, o in zip(refs, got):
        tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
        assert o.shape == ref.shape and o.dtype == np.float32 and np.isfinite(o).all()
        assert not signal or np.abs(ref[0] - ref[1]).max() > 100 * tol, (np.abs(ref[0] - ref[1]).max(), tol)
        assert np.abs(o - ref).max() < tol, (onnx_file.name, np.abs(o - ref).max(), tol)


def _yaml_at_nc(src: Path, dst: Path, nc: int) -> Path:
    d = yaml.safe_load(src.read_text())
    dst.write_text(yaml.safe_dump({**d, "nc": nc}, sort_keys=False))
    return dst


def test_yolo26_end_to_end_head_exports_and_predicts_as_yolo26n(tmp_path, monkeypatch):
    """At the same nc, both export modes (raw one-to-one outputs, and nms=False: top-k boxes, no NMS) give yolo26n's
    output shapes, and predict returns the same kind of results."""
    from ultralytics import YOLO

    from effdet_plugin.paths import model_yaml_dir

    monkeypatch.chdir(tmp_path)
    cfg = Path(ultralytics.__file__).parent / "cfg" / "models" / "26" / "yolo26.yaml"
    ours = _yaml_at_nc(model_yaml_dir() / "yolo26_effv2.yaml", tmp_path / "yolo26n_effv2.yaml", 3)
    theirs = _yaml_at_nc(cfg, tmp_path / "yolo26n.yaml", 3)
    image = make_demo_dataset(tmp_path / "data", n_train=1, n_val=1, imgsz=IMGSZ).parent / "images" / "val"
    shapes, kinds = {}, {}
    for path in (ours, theirs):
        import onnxruntime as ort

        for nms in (None, False):
            folder = tmp_path / f"{path.stem}-{nms}"
            folder.mkdir()
            shutil.copy(path, folder / path.name)
            monkeypatch.chdir(folder)
            yolo = YOLO(path.name)
            assert yolo.model.yaml["end2end"] is True and len(yolo.names) == 3
            f = yolo.export(format="onnx", imgsz=IMGSZ, device="cpu", nms=nms)
            shapes[path.stem, nms] = [o.shape for o in ort.InferenceSession(f).get_outputs()]
        r = YOLO(str(path)).predict(str(image), imgsz=IMGSZ, conf=0.0, device="cpu", verbose=False)[0]
        kinds[path.stem] = (type(r.boxes).__name__, r.boxes.data.shape[1], r.masks, r.keypoints)
    assert shapes["yolo26n_effv2", None] == shapes["yolo26n", None] == [[1, 7, 84]]  # 4 box + 3 classes, 84 anchors
    assert shapes["yolo26n_effv2", False] == shapes["yolo26n", False] == [[1, 84, 6]]  # top-k (x1 y1 x2 y2 score cls)
    assert kinds["yolo26n_effv2"] == kinds["yolo26n"]


DDP_WORKER = r"""
import os, sys
import torch, torch.distributed as dist, torch.multiprocessing as mp


def work(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    from ultralytics import YOLO  # no plugin import: the spawned interpreter gets it from the .pth hook
    torch.manual_seed(0)
    model = YOLO("yolo26n_effv2-pose.yaml").model.train()
    model.args = __import__("ultralytics").cfg.get_cfg()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    g = torch.Generator().manual_seed(rank)  # each rank its own images and keypoints
    imgs = torch.rand(2, 3, 64, 64, generator=g)
    kpts = torch.cat([torch.rand(2, 17, 2, generator=g) * 0.3 + 0.35, torch.full((2, 17, 1), 2.0)], -1)
    batch = {"img": imgs, "cls": torch.tensor([[0.0], [1.0]]), "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.3]] * 2),
             "batch_idx": torch.tensor([0.0, 1.0]), "keypoints": kpts}
    loss, items = model.loss(batch, ddp(imgs))
    loss.sum().backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    torch.save({"grads": grads, "n": sum(p.grad is not None for p in model.parameters()), "loss": loss.detach(),
                "head": type(model.model[-1]).__name__, "plugin": "effdet_plugin.hosts.ultralytics" in sys.modules},
               f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(work, args=(2, int(sys.argv[1]), sys.argv[2]), nprocs=2, join=True)
"""


def test_ddp_pose_two_ranks_equal_gradients(tmp_path):
    """Two spawned gloo ranks, each with its own pose batch: different losses, gradients all-reduced to equal."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "ddp_pose.py"
    script.write_text(DDP_WORKER)
    run_cli([sys.executable, str(script), str(port), str(tmp_path)], tmp_path, timeout=600)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["plugin"] and r1["plugin"] and r0["head"] == "Pose26"
    assert not torch.allclose(r0["loss"], r1["loss"])
    assert r0["n"] == r1["n"] > 100
    assert torch.allclose(r0["grads"], r1["grads"], atol=1e-6) and r0["grads"].abs().sum() > 0
