"""Progressive learning (EfficientNetV2, Tan & Le 2021, Algorithm 1) for Ultralytics training: ``progressive=True``.

Training is split into K stages. Stage k (0-based) trains on images of size ``min + (imgsz - min) * k / (K - 1)``
(rounded to the model stride) with regularization grown the same way from weak to the configured values: the plugin
blocks' stochastic-depth rate (the model YAML's ``drop_path``), ``mixup`` and the geometric/colour magnitudes
``scale``, ``translate``, ``hsv_h``, ``hsv_s``, ``hsv_v``. The last stage is exactly a normal run; validation always
uses ``imgsz``.

``schedule`` is the plan as a pure function. The rest is trainer glue that the Ultralytics adapter installs
(``effdet_plugin.hosts.ultralytics``), without editing Ultralytics: three keys join Ultralytics' default config (so ``yolo train ... progressive=True`` and
``YOLO.train(progressive=True)`` validate, and unknown keys keep Ultralytics' error), and callbacks join the
module-level ``default_callbacks`` that every trainer copies; they do nothing unless ``trainer.args.progressive`` is
true. At each stage change the train dataset gets the stage's ``imgsz`` and rebuilt transforms (as Ultralytics'
``close_mosaic`` rebuilds them) and the loader is reset, so the next batches really have the stage's size, with or
without dataloader workers.
"""

from __future__ import annotations

import math
from copy import copy
from dataclasses import dataclass, field

KEYS = {"progressive": False, "progressive_stages": 4, "progressive_min_imgsz": None}  # new Ultralytics config keys
AUGMENT_KEYS = ("mixup", "scale", "translate", "hsv_h", "hsv_s", "hsv_v")  # Ultralytics hyperparameters we schedule
# Weakest value of each knob as a fraction of its configured value. Mixup and stochastic depth start off, as in the
# paper's table 6 (mixup 0 -> max); augmentation magnitudes start at half, as its RandAugment magnitude (5 -> 10).
WEAK = {"drop_path": 0.0, "mixup": 0.0, "scale": 0.5, "translate": 0.5, "hsv_h": 0.5, "hsv_s": 0.5, "hsv_v": 0.5}


class ProgressiveError(ValueError):
    """Progressive-learning arguments that cannot make a plan."""


@dataclass(frozen=True)
class Stage:
    """One stage of a progressive run: epochs ``first``..``last`` (0-based, inclusive) at ``imgsz`` with ``hyp``."""

    index: int
    count: int
    first: int
    last: int
    imgsz: int
    hyp: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """Return the stage's log line (1-based stage and epoch numbers)."""
        knobs = " ".join(f"{k}={v:.3g}" for k, v in self.hyp.items())
        epochs = f"epochs {self.first + 1}-{self.last + 1}"
        return f"progressive: stage {self.index + 1}/{self.count} {epochs} imgsz={self.imgsz} {knobs}"


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def round_to_stride(size: float, stride: int) -> int:
    """Return ``size`` rounded half-up to a multiple of ``stride``, at least one stride."""
    return max(stride, math.floor(size / stride + 0.5) * stride)


def check_args(epochs, stages, imgsz, min_imgsz) -> None:
    """Raise ``ProgressiveError`` naming the argument if these settings cannot make a progressive plan."""
    if not _is_int(stages) or stages < 1:
        raise ProgressiveError(f"progressive: progressive_stages must be a positive integer, got {stages!r}")
    if _is_int(epochs) and epochs < stages:
        raise ProgressiveError(
            f"progressive: epochs={epochs} is fewer than progressive_stages={stages}; "
            f"train for at least {stages} epochs or lower progressive_stages"
        )
    if min_imgsz is not None and (not _is_int(min_imgsz) or min_imgsz < 1):
        raise ProgressiveError(f"progressive: progressive_min_imgsz must be a positive integer, got {min_imgsz!r}")
    if min_imgsz is not None and _is_int(imgsz) and min_imgsz > imgsz:
        raise ProgressiveError(f"progressive: progressive_min_imgsz={min_imgsz} is above imgsz={imgsz}")


def schedule(
    epochs: int,
    imgsz: int,
    stride: int,
    final: dict[str, float],
    stages: int = 4,
    min_imgsz: int | None = None,
    weak: dict[str, float] = WEAK,
) -> list[Stage]:
    """Return the ``stages`` stages of an ``epochs``-epoch progressive run (EfficientNetV2 Algorithm 1).

    Args:
        epochs (int): Total training epochs; each stage gets ``epochs / stages`` of them (earlier stages round down).
        imgsz (int): Final (normal) training size, a multiple of ``stride``.
        stride (int): Model stride; every stage size is a multiple of it.
        final (dict): Configured value of each scheduled knob, reached in the last stage.
        stages (int): Number of stages K.
        min_imgsz (int | None): First-stage size before rounding; default half of ``imgsz``.
        weak (dict): First-stage value of each knob as a fraction of its configured value (missing: 0).

    Returns:
        (list[Stage]): The stages in order; the last has ``imgsz`` and exactly ``final``.
    """
    check_args(epochs, stages, imgsz, min_imgsz)
    if not _is_int(epochs) or epochs < 1:
        raise ProgressiveError(f"progressive: epochs must be a positive integer, got {epochs!r}")
    if not _is_int(stride) or stride < 1 or not _is_int(imgsz) or imgsz % stride:
        raise ProgressiveError(f"progressive: imgsz={imgsz!r} must be a positive multiple of the model stride {stride}")
    low = round_to_stride(imgsz / 2 if min_imgsz is None else min_imgsz, stride)
    plan = []
    for k in range(stages):
        t = k / (stages - 1) if stages > 1 else 1.0
        hyp = {}
        for name, value in final.items():
            start = value * weak.get(name, 0.0)
            hyp[name] = value if t == 1.0 else start + (value - start) * t  # exact configured value at the end
        size = imgsz if t == 1.0 else round_to_stride(low + (imgsz - low) * t, stride)
        plan.append(Stage(k, stages, k * epochs // stages, (k + 1) * epochs // stages - 1, size, hyp))
    return plan


def stage_at(plan: list[Stage], epoch: int) -> Stage:
    """Return the stage that trains ``epoch`` (0-based); epochs past the plan stay in the last stage."""
    return next((s for s in plan if epoch <= s.last), plan[-1])


# ------------------------------------------------------------------------------------------------------ trainer glue
def _enabled(args) -> bool:
    value = getattr(args, "progressive", False)
    if not isinstance(value, bool):
        raise ProgressiveError(f"progressive must be True or False, got {value!r}")
    return value


def _check_trainer_args(args) -> None:
    """Check the run's arguments before the dataset scan (the stride-dependent part waits for the model)."""
    check_args(args.epochs, args.progressive_stages, args.imgsz, args.progressive_min_imgsz)
    # These resize or reshape training batches after the dataset, from the final imgsz, which would undo the stages.
    if args.multi_scale:
        raise ProgressiveError(f"progressive=True cannot be combined with multi_scale={args.multi_scale}; use one")
    if args.rect:
        raise ProgressiveError("progressive=True cannot be combined with rect=True (fixed batch shapes); use one")
    if args.time:
        raise ProgressiveError(f"progressive=True needs a fixed epoch count; time={args.time} re-plans epochs")


def _datasets(dataset) -> list:
    """Return the datasets behind a train loader (several for a concatenated dataset)."""
    return list(getattr(dataset, "datasets", [dataset]))


def _drop_cached_images(ds) -> None:
    """Forget images already resized to the previous stage's size (RAM caches are refilled at the new size)."""
    if getattr(ds, "cache", None) == "ram":
        ds.ims, ds.im_hw0, ds.im_hw = [None] * ds.ni, [None] * ds.ni, [None] * ds.ni
        ds.cache_images()
    else:
        for j in ds.buffer:
            ds.ims[j], ds.im_hw0[j], ds.im_hw[j] = None, None, None
        ds.buffer.clear()


def _apply(trainer, stage: Stage) -> None:
    """Give the model the stage's drop-path rate and the train dataset its size and augmentation; reset the loader."""
    from ultralytics.utils.torch_utils import unwrap_model

    from effdet_plugin.blocks import set_drop_path

    if "drop_path" in stage.hyp:
        set_drop_path(unwrap_model(trainer.model), stage.hyp["drop_path"])
    closed = trainer.args.close_mosaic and trainer.epoch >= trainer.epochs - trainer.args.close_mosaic
    for ds in _datasets(trainer.train_loader.dataset):
        hyp = copy(trainer.args)
        ds.progressive_hyp = {k: stage.hyp[k] for k in AUGMENT_KEYS}  # read back by the close_mosaic wrapper
        vars(hyp).update(ds.progressive_hyp)
        ds.imgsz = stage.imgsz
        _drop_cached_images(ds)
        if closed:  # past Ultralytics' close_mosaic point: rebuild the way it does
            ds.mosaic = False
            ds.close_mosaic(hyp)
        else:
            ds.transforms = ds.build_transforms(hyp)
        ds.progressive_stage = stage.index
    # Persistent workers hold copies of the dataset: dropping the iterator makes the next epoch fork fresh ones.
    trainer.train_loader.reset()


def close_mosaic_wrapper(close_mosaic):
    """``YOLODataset.close_mosaic`` that keeps the stage's augmentation magnitudes (Ultralytics passes its args)."""

    def close_mosaic_keeping_stage(self, hyp):
        vars(hyp).update(getattr(self, "progressive_hyp", None) or {})
        return close_mosaic(self, hyp)

    close_mosaic_keeping_stage.__wrapped__ = close_mosaic
    return close_mosaic_keeping_stage


def on_pretrain_routine_start(trainer) -> None:
    """Reject bad progressive arguments before the dataset scan."""
    if _enabled(trainer.args):
        _check_trainer_args(trainer.args)


def on_pretrain_routine_end(trainer) -> None:
    """Plan the stages once the model stride and the final ``imgsz`` are known (also on resume)."""
    if not _enabled(trainer.args):
        return
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.utils.torch_utils import unwrap_model

    from effdet_plugin.blocks import DEFAULT_DROP_PATH, set_drop_path

    _check_trainer_args(trainer.args)  # again: DDP workers and resumed runs skip or replace the earlier check
    for ds in _datasets(trainer.train_loader.dataset):
        if not isinstance(ds, YOLODataset):
            kind = type(ds).__name__
            raise ProgressiveError(f"progressive=True needs a YOLODataset (detect/segment/pose/obb), got {kind}")
    model = unwrap_model(trainer.model)
    rate = float((getattr(model, "yaml", None) or {}).get("drop_path", DEFAULT_DROP_PATH))
    final = {"drop_path": rate} if set_drop_path(model, rate) else {}  # only models with plugin blocks have it
    final.update({k: float(getattr(trainer.args, k)) for k in AUGMENT_KEYS})
    trainer.progressive_plan = schedule(
        trainer.epochs,
        trainer.args.imgsz,
        trainer.stride,
        final,
        trainer.args.progressive_stages,
        trainer.args.progressive_min_imgsz,
    )
    trainer.progressive_stage = None


def on_train_epoch_start(trainer) -> None:
    """Enter the epoch's stage: log it once, and (re)apply it wherever the dataset does not carry it yet."""
    plan = getattr(trainer, "progressive_plan", None)
    if not plan:
        return
    stage = stage_at(plan, trainer.epoch)
    # A rebuilt loader (Ultralytics' out-of-memory retry) brings a fresh dataset at the final size: apply again.
    if any(getattr(ds, "progressive_stage", None) != stage.index for ds in _datasets(trainer.train_loader.dataset)):
        _apply(trainer, stage)
    if trainer.progressive_stage != stage.index:
        from ultralytics.utils import LOGGER

        resumed = trainer.progressive_stage is None and trainer.epoch > 0
        LOGGER.info(stage.describe() + (f" (resumed at epoch {trainer.epoch + 1})" if resumed else ""))
        trainer.progressive_stage = stage.index


CALLBACKS = {
    "on_pretrain_routine_start": on_pretrain_routine_start,
    "on_pretrain_routine_end": on_pretrain_routine_end,
    "on_train_epoch_start": on_train_epoch_start,
}

