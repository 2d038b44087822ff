"""Swap as a function: a YAML source gives the swapped model dict (``swap_backbone``), a trained checkpoint the swapped
model with its trained tensors (``swap_checkpoint``), whichever format the source is in (``format_of``).

Both build the result with the source's host and check it: a P3/P4/P5 model at strides 8/16/32, or a classifier.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from effdet_plugin.commands.swap import parts
from effdet_plugin.commands.swap.formats import Format, Trained, probe_strides
from effdet_plugin.commands.swap.graph import STRIDES, SwapError, check_source
from effdet_plugin.commands.swap.surgery import Swapped, scale_of, swap_rows
from effdet_plugin.commands.swap.transfer import Transfer, transfer
from effdet_plugin.commands.swap.ultralytics_format import UltralyticsFormat
from effdet_plugin.commands.swap.yolov5_format import YOLOv5Format, read_classic
from effdet_plugin.errors import first_line
from effdet_plugin.hosts.yolov5_discovery import pickled_module
from effdet_plugin.rows import model_source


@dataclass
class SwappedCheckpoint:
    """What ``swap_checkpoint`` made from a trained checkpoint."""

    yaml: dict  # the swapped model dict
    model: nn.Module  # the new FP32 model, with the source's class names (and training settings)
    transfer: Transfer  # which tensors kept their trained values
    source: Trained  # the checkpoint it came from
    format: Format  # the source's format, which writes the new checkpoint

    def save(self, path: Path, info: dict) -> None:
        """Write the new checkpoint atomically at ``path``, in the source's format; ``info``: how it was made."""
        self.format.write_checkpoint(self.model, self.source, info, path)


def format_of(source) -> Format:
    """The format that reads ``source``: classic YOLOv5 for a YAML or dict with top-level ``anchors`` or a checkpoint
    pickled from a YOLOv5 model module, Ultralytics for anything else. Nothing is imported yet."""
    path = Path(str(source))
    if not isinstance(source, dict) and path.suffix == ".pt":
        pickled = pickled_module(path) if path.is_file() else None
        return YOLOv5Format(source, pickled) if pickled else UltralyticsFormat()
    return YOLOv5Format(source) if read_classic(source) is not None else UltralyticsFormat()


def _swap(fmt: Format, d: dict, backbone: str, neck: str, scale: str | None) -> Swapped:
    head = check_source(d, fmt.heads, fmt.supported)
    scale = scale_of(d, scale)
    graft = parts.graft(backbone)
    parts.check_neck(neck)
    strides = probe_strides(d, fmt.parse)
    return swap_rows(d, strides, head, graft, neck, scale, fmt.supported, fmt.scale_tables)


def _build(fmt: Format, swapped: Swapped, source: str, trained: Trained | None = None) -> nn.Module:
    try:
        model = fmt.build(swapped.yaml, trained)
    except SwapError:
        raise
    except Exception as e:  # noqa: BLE001  whatever the host raises, one line naming the source
        raise SwapError(f"{source}: the swapped model does not build: {first_line(e)}") from None
    strides = [int(s) for s in model.stride.tolist()]
    if swapped.head.multi_level and strides != list(STRIDES):
        raise SwapError(f"{source}: the swapped model has strides {strides}, expected {list(STRIDES)}")
    return model


def swap_yaml(fmt: Format, source, backbone: str, neck: str, scale: str | None) -> Swapped:
    """``swap_backbone`` in the format ``fmt``, with where the source's rows went."""
    d = fmt.read_yaml(source)
    swapped = _swap(fmt, d, backbone, neck, scale)
    _build(fmt, swapped, model_source(d))
    return swapped


def swap_trained(fmt: Format, path: Path, backbone: str, neck: str, scale: str | None) -> SwappedCheckpoint:
    """``swap_checkpoint`` in the format ``fmt``."""
    trained = fmt.read_checkpoint(path)
    swapped = _swap(fmt, deepcopy(trained.yaml), backbone, neck, scale)
    model = _build(fmt, swapped, str(path), trained)
    report = transfer(trained.model, model, swapped.moved, swapped.first_kept)
    return SwappedCheckpoint(swapped.yaml, model, report, trained, fmt)


def swap_backbone(source, backbone: str = "effv2", neck: str = "keep", scale: str | None = None) -> dict:
    """Return the model YAML dict of ``source`` with its backbone replaced by the EfficientNet ``backbone``.

    Args:
        source (str | Path | dict): model YAML of any task (a built-in name such as ``yolov8s.yaml`` or
            ``yolo11n-seg.yaml``, a file, a dict), Ultralytics or classic YOLOv5.
        backbone (str): one of ``parts.BACKBONE_FILES``.
        neck (str): ``"keep"`` (the source's neck and head) or ``"bifpn"`` (BiFPN neck, the source's head row).
        scale (str, optional): scale letter for a source with ``scales:``; default the source's own.

    Returns:
        (dict): the swapped model dict (with a ``scale`` key when the source has ``scales:``); it is checked to build
            with strides [8, 16, 32] (a classifier: to build).
    """
    return swap_yaml(format_of(source), source, backbone, neck, scale).yaml


def swap_checkpoint(source, backbone: str = "effv2", neck: str = "keep", scale: str | None = None) -> SwappedCheckpoint:
    """Swap the backbone of a trained checkpoint (Ultralytics of any task, or classic YOLOv5) and carry over every
    tensor of the rows kept from it whose shape still matches; ``.save(path, info)`` writes the new checkpoint."""
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {source} not found")
    return swap_trained(format_of(path), path, backbone, neck, scale)
