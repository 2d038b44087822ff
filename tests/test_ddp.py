"""Spawned workers see the plugin by auto-activation: a 2-rank gloo DDP step with equal gradients across ranks."""

from __future__ import annotations

import sys

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow

WORKER = r"""
import os, sys
import torch, torch.distributed as dist, torch.multiprocessing as mp


def work(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    from ultralytics import YOLO  # no plugin import: the spawned interpreter gets it from the .pth hook
    torch.manual_seed(0)
    model = YOLO("yolov5n_effv2.yaml").model.train()
    model.args = __import__("ultralytics").cfg.get_cfg()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    g = torch.Generator().manual_seed(rank)
    imgs = torch.rand(2, 3, 64, 64, generator=g)
    batch = {"img": imgs, "cls": torch.tensor([[0.0], [1.0]]), "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.3]] * 2),
             "batch_idx": torch.tensor([0.0, 1.0])}
    loss, _ = model.loss(batch, ddp(imgs))
    loss.sum().backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    torch.save({"grads": grads, "n": sum(p.grad is not None for p in model.parameters()),
                "plugin": "effdet_plugin.hosts.ultralytics" in sys.modules}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(work, args=(2, int(sys.argv[1]), sys.argv[2]), nprocs=2, join=True)
"""


def test_ddp_two_ranks_equal_gradients(tmp_path):
    import socket

    import torch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "ddp_worker.py"
    script.write_text(WORKER)
    run_cli([sys.executable, str(script), str(port), str(tmp_path)], tmp_path, timeout=600)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["plugin"] and r1["plugin"]
    assert r0["n"] == r1["n"] > 100
    assert torch.allclose(r0["grads"], r1["grads"], atol=1e-6)
    assert r0["grads"].abs().sum() > 0
