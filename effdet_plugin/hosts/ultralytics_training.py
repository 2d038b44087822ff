"""Progressive learning in Ultralytics' trainer: the callbacks and dataset glue that follow ``progressive.schedule``.

Installed by the Ultralytics adapter (``effdet_plugin.hosts.ultralytics``), without editing Ultralytics: three keys
join Ultralytics' default config (so ``yolo train ... progressive=True`` and ``YOLO.train(progressive=True)`` validate,
and unknown keys keep Ultralytics' error), and ``CALLBACKS`` join the module-level ``default_callbacks`` that every
trainer copies; they do nothing unless ``trainer.args.progressive`` is true. At each stage change the train dataset
gets the stage's ``imgsz`` and rebuilt transforms (as Ultralytics' ``close_mosaic`` rebuilds them) and the loader is
reset, so the next batches really have the stage's size, with or without dataloader workers.

Ultralytics is imported inside the functions: this module loads while ``ultralytics.cfg`` is still importing.
"""

from __future__ import annotations

from copy import copy

from effdet_plugin.blocks import DEFAULT_DROP_PATH, set_drop_path
from effdet_plugin.progressive import (
    AUGMENT_KEYS,
    ProgressiveError,
    ProgressiveStage,
    check_args,
    schedule,
    stage_at,
)


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


def _apply(trainer, stage: ProgressiveStage) -> None:
    """Give the model the stage's drop-path rate and the train dataset its size and augmentation; reset the loader."""
    from ultralytics.utils.torch_utils import unwrap_model

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
