"""Progressive learning (EfficientNetV2, Tan & Le 2021, Algorithm 1) for Ultralytics training: ``progressive=True``.

Training is split into K stages. Stage k (0-based) trains on images of size ``min + (imgsz - min) * k / (K - 1)``
(rounded to the model stride) with regularization grown the same way from weak to the configured values: the plugin
blocks' stochastic-depth rate (the model YAML's ``drop_path``), ``mixup`` and the geometric/colour magnitudes
``scale``, ``translate``, ``hsv_h``, ``hsv_s``, ``hsv_v``. The last stage is exactly a normal run; validation always
uses ``imgsz``.

This module is the plan alone, with no trainer in it: ``schedule`` (a pure function), its stages, and the checks of
its arguments. The trainer glue that follows the plan (callbacks, the dataset and loader changes, the config keys) is
the Ultralytics adapter's: ``effdet_plugin.hosts.ultralytics_training``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

KEYS = {"progressive": False, "progressive_stages": 4, "progressive_min_imgsz": None}  # new Ultralytics config keys
AUGMENT_KEYS = ("mixup", "scale", "translate", "hsv_h", "hsv_s", "hsv_v")  # Ultralytics hyperparameters we schedule
# Weakest value of each knob as a fraction of its configured value. Mixup and stochastic depth start off, as in the
# paper's table 6 (mixup 0 -> max); augmentation magnitudes start at half, as its RandAugment magnitude (5 -> 10).
WEAK = {"drop_path": 0.0, "mixup": 0.0, "scale": 0.5, "translate": 0.5, "hsv_h": 0.5, "hsv_s": 0.5, "hsv_v": 0.5}


class ProgressiveError(ValueError):
    """Progressive-learning arguments that cannot make a plan."""


@dataclass(frozen=True)
class ProgressiveStage:
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
) -> list[ProgressiveStage]:
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
        (list[ProgressiveStage]): The stages in order; the last has ``imgsz`` and exactly ``final``.
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
        plan.append(ProgressiveStage(k, stages, k * epochs // stages, (k + 1) * epochs // stages - 1, size, hyp))
    return plan


def stage_at(plan: list[ProgressiveStage], epoch: int) -> ProgressiveStage:
    """Return the stage that trains ``epoch`` (0-based); epochs past the plan stay in the last stage."""
    return next((s for s in plan if epoch <= s.last), plan[-1])
