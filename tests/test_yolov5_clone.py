"""Classic YOLOv5 host in a clone of ultralytics/yolov5 (``EFFDET_YOLOV5_REPO``): train.py, val.py, detect.py,
export.py and two-rank DDP with the classic YAMLs."""

from __future__ import annotations

from pathlib import Path

import pytest
from yolov5_venv import PY, REPO, clone_train_args, needs_clone, venv_run, yaml_args

from effdet_plugin import classic
from effdet_plugin.commands import export_yaml
from effdet_plugin.paths import model_yaml_dir

CLASSIC = model_yaml_dir() / classic.FOLDER


# -------------------------------------------------------------------------------------- a clone of the repository
@pytest.mark.slow
@needs_clone
def test_clone_train_val_detect_export(tmp_path):
    """In a clone of ultralytics/yolov5: train.py, val.py, detect.py and export.py with a classic YAML (models.yolo)."""
    from effdet_plugin.commands.demo import make_demo_dataset

    repo = Path(REPO)
    data = make_demo_dataset(tmp_path / "data", n_train=8, n_val=4, imgsz=64, seed=0)
    cfg = tmp_path / "yolov5n_effv2_bifpn.yaml"
    export_yaml.run(yaml_args("yolov5n_effv2_bifpn.yaml", cfg, "yolov5"))
    runs = tmp_path / "runs"
    venv_run(clone_train_args(["--cfg", cfg, "--weights", ""], data, runs, "exp"), repo, timeout=600)
    best = runs / "exp" / "weights" / "best.pt"
    venv_run(
        [PY, "val.py", "--weights", best, "--data", data, "--img", "64", "--device", "cpu", "--project", runs], repo
    )
    venv_run(
        [
            PY,
            "detect.py",
            "--weights",
            best,
            "--source",
            data.parent / "images" / "val",
            "--img",
            "64",
            "--device",
            "cpu",
            "--project",
            runs,
        ],
        repo,
    )
    venv_run(
        [PY, "export.py", "--weights", best, "--include", "onnx", "torchscript", "--img", "64", "--device", "cpu"],
        repo,
        timeout=600,
    )
    assert best.with_suffix(".onnx").is_file() and best.with_suffix(".torchscript").is_file()


CLONE_DDP = r"""
import json, os, sys
import torch, torch.distributed as dist, torch.multiprocessing as mp
import yaml


def work(rank, world, port, repo, cfg, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    sys.path.insert(0, repo)
    from models.yolo import Model  # no plugin import: the spawned worker gets it from the .pth hook
    from utils.loss import ComputeLoss

    torch.manual_seed(0)
    model = Model(cfg, ch=3, nc=3).train()
    model.hyp = yaml.safe_load(open(os.path.join(repo, "data", "hyps", "hyp.scratch-low.yaml")))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    g = torch.Generator().manual_seed(rank)
    imgs = torch.rand(2, 3, 64, 64, generator=g)
    targets = torch.tensor([[0, 0, 0.5, 0.5, 0.3, 0.3], [1, 2, 0.4, 0.6, 0.2, 0.4]])  # image, class, xywh
    loss, _ = ComputeLoss(model)(ddp(imgs), targets)
    loss.sum().backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    kinds = sorted({type(m).__name__ for m in model.modules()} & {"Stem", "FusedMBConv", "MBConv"})
    torch.save({"grads": grads, "kinds": kinds, "stride": model.stride.tolist()}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    port, repo, cfg, out = sys.argv[1:]
    mp.spawn(work, args=(2, int(port), repo, cfg, out), nprocs=2, join=True)
"""


@pytest.mark.slow
@needs_clone
def test_clone_two_rank_gloo_ddp(tmp_path):
    """YOLOv5's own train.py refuses DDP without CUDA (it asserts torch.cuda.device_count() > LOCAL_RANK), so the
    2-process gloo check runs the clone's own Model and ComputeLoss under DistributedDataParallel instead: both
    spawned ranks build the plugin's blocks by auto-activation and end with the same averaged gradients."""
    import socket

    import torch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "yolov5n_effv2.yaml"
    export_yaml.run(yaml_args("yolov5n_effv2.yaml", cfg, "yolov5"))
    script = tmp_path / "ddp.py"
    script.write_text(CLONE_DDP)
    venv_run([PY, script, port, REPO, cfg, tmp_path], tmp_path, timeout=600)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["kinds"] == r1["kinds"] == ["FusedMBConv", "MBConv", "Stem"]
    assert r0["stride"] == [8.0, 16.0, 32.0]
    assert torch.allclose(r0["grads"], r1["grads"], atol=1e-6) and r0["grads"].abs().sum() > 0
