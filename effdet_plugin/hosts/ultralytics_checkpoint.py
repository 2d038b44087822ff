"""Ultralytics checkpoints as the plugin writes them: one atomic writer for every command that makes a ``.pt``
(``effdet-plugin swap``, ``effdet-plugin convert-weights``), and the converter that seeds an exact EfficientNet backbone
with torchvision's ImageNet weights.

A checkpoint is what Ultralytics' own final ones hold (``strip_optimizer``): the model with frozen parameters, no EMA,
no optimizer, epoch -1, and the training arguments ``YOLO(path)`` restores. ``YOLO(path)`` and
``yolo train model=path`` read it.
"""

from __future__ import annotations

from copy import deepcopy
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from effdet_plugin.atomic import atomic_open


def _base_model(model) -> nn.Module:
    """The ``BaseModel`` of a ``YOLO`` wrapper, or ``model`` itself."""
    from ultralytics.nn.tasks import BaseModel

    inner = getattr(model, "model", None)
    if isinstance(model, BaseModel):
        return model
    if isinstance(inner, BaseModel):
        return inner
    raise TypeError(f"expected an Ultralytics YOLO or model (DetectionModel, ...), got {type(model).__name__}")


def save_checkpoint(
    model, path: str | Path, *, half: bool = False, train_args: dict | None = None, extra: dict | None = None
) -> Path:
    """Write ``model`` (a ``YOLO`` or ``BaseModel``) atomically as an Ultralytics checkpoint; return the path.

    Args:
        model: the model to save (copied; the caller's model is left as it is).
        path: the ``.pt`` file; its folder is created if missing. On any error nothing is left at ``path``.
        half: FP16 as Ultralytics' own final checkpoints; the default FP32 keeps copied weights bit-exact.
        train_args: the training arguments ``YOLO(path)`` restores (``task``, ``imgsz``, ...), keys of Ultralytics'
            default config only; Ultralytics fills in its defaults for the rest when loading.
        extra: more top-level entries, e.g. where the checkpoint came from.
    """
    from ultralytics import __version__
    from ultralytics.utils import DEFAULT_CFG_KEYS

    net = deepcopy(_base_model(model))
    net = net.half() if half else net.float()
    for p in net.parameters():
        p.requires_grad = False
    ckpt = {
        "date": datetime.now().astimezone().isoformat(),
        "version": __version__,
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "epoch": -1,
        "model": net,
        "ema": None,
        "train_args": {k: v for k, v in (train_args or {}).items() if k in DEFAULT_CFG_KEYS},
        **(extra or {}),
    }
    with atomic_open(path, "wb") as f:
        torch.save(ckpt, f)
    return Path(path)


def convert(cfg: str | Path, weights, out: str | Path, nc: int = 80) -> Path:
    """Build ``cfg`` with ``nc`` classes, load torchvision ``weights`` into its exact EfficientNet backbone, and save it
    (FP32) as an Ultralytics checkpoint at ``out``; the neck and head are freshly initialized."""
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import LOGGER

    from effdet_plugin.weights import load_backbone

    model = DetectionModel(str(cfg), nc=nc, verbose=False)
    LOGGER.info(load_backbone(model, weights).describe())
    return save_checkpoint(model, out)
