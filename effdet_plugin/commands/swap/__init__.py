"""Swap the backbone of a model (YAML or trained checkpoint) for an EfficientNet one: an Ultralytics model of any task
(detect, segment, pose, OBB, classify), or a classic YOLOv5 one (``anchors`` and ``Detect``/``Segment [nc, anchors,
...]``; a clone of ultralytics/yolov5 or the yolov5 package).

The source is built by its own host, and a forward pass reads the stride of every backbone row. Its backbone is
replaced up to its own last stage (SPPF, C2PSA and the like, which belong to its neck/head family and stay); every
reference into the replaced rows is re-pointed by stride (P3/8, P4/16, P5/32) to the EfficientNet row at that stride,
every other ``from`` index moves by the change in length; a classifier's ``Classify`` reads the new backbone's last
row. The EfficientNet rows end in an SPPF unless the source has its own. Nothing about row positions is assumed, so
user YAMLs work as well as the built-ins. With a checkpoint source, every tensor of a kept row whose shape still
matches keeps its trained value.

Examples:
    effdet-plugin swap yolo11n-seg.yaml --backbone effv2 -o yolo11n-seg-effv2.yaml
    effdet-plugin swap runs/pose/train/weights/best.pt --backbone effb0 -o pose-effb0.yaml  # and pose-effb0.pt

    >>> from effdet_plugin.commands.swap import swap_backbone, swap_checkpoint
    >>> d = swap_backbone("yolo11n-seg.yaml", "effv2")  # YAML dict; SegmentationModel(d) builds it
    >>> res = swap_checkpoint("runs/detect/train/weights/best.pt", "effb0")  # res.yaml, res.model, res.transfer
"""

# The package, from the bottom: graph (the row graph: heads, taps, re-indexing), parts (the EfficientNet rows and the
# BiFPN neck, from the shipped YAMLs), surgery (the swap on model dicts), formats (the one protocol a host's format
# implements) with ultralytics_format and yolov5_format, transfer (trained tensors), yaml_text, api (swap_backbone,
# swap_checkpoint), files (swap_to_files) and command (the CLI).
from effdet_plugin.commands.swap.api import SwappedCheckpoint, swap_backbone, swap_checkpoint
from effdet_plugin.commands.swap.command import add_arguments, run
from effdet_plugin.commands.swap.files import Written, swap_to_files
from effdet_plugin.commands.swap.graph import SwapError
from effdet_plugin.commands.swap.transfer import Transfer

__all__ = [
    "SwapError",
    "SwappedCheckpoint",
    "Transfer",
    "Written",
    "add_arguments",
    "run",
    "swap_backbone",
    "swap_checkpoint",
    "swap_to_files",
]
