"""Classic YOLOv5 checkpoints: reading the model a ``train.py`` run saved, and writing one atomically in YOLOv5's final
format (``strip_optimizer``), which ``attempt_load``, ``--weights`` and ``val.py`` read."""

from __future__ import annotations

from copy import deepcopy
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from effdet_plugin.atomic import atomic_open
from effdet_plugin.errors import first_line
from effdet_plugin.hosts.yolov5_discovery import YOLOv5SourceError


def load_checkpoint(path: Path) -> tuple[nn.Module, dict]:
    """The FP32 model of a YOLOv5 checkpoint (its EMA if saved, else its model) and everything the file holds.

    Raises ``YOLOv5SourceError`` (one line naming the file) for a file YOLOv5 cannot load, or one whose model was
    not built from a model YAML (a classifier cut from a detection model by ``classify/train.py``).
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001  torch's and the unpickler's errors alike
        raise YOLOv5SourceError(f"{path}: not a loadable YOLOv5 checkpoint: {first_line(e)}") from None
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(model, nn.Module):
        raise YOLOv5SourceError(f"{path}: holds no YOLOv5 model ('model' or 'ema')")
    if not isinstance(getattr(model, "yaml", None), dict):
        raise YOLOv5SourceError(
            f"{path}: its {type(model).__name__} was not built from a model YAML (YOLOv5 cuts classifiers from "
            f"detection models); use the detection checkpoint it was cut from"
        )
    return model.float(), ckpt


def save_checkpoint(model: nn.Module, path: str | Path, opt: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``model`` (FP16, frozen, as YOLOv5's final checkpoints) atomically at ``path``; ``opt``: the training
    options YOLOv5 keeps beside it (``--imgsz``, ...); ``extra``: more top-level entries. Nothing is left at ``path``
    on error."""
    net = deepcopy(model).half()
    for p in net.parameters():
        p.requires_grad = False
    ckpt = {
        "epoch": -1,
        "best_fitness": None,
        "model": net,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "opt": opt,
        "git": None,
        "date": datetime.now().isoformat(),
        **(extra or {}),
    }
    with atomic_open(path, "wb") as f:
        torch.save(ckpt, f)
    return Path(path)
