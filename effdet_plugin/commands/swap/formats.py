"""A swap format: how one host reads a source, measures it, builds the swapped model and writes its checkpoint.

Two formats implement ``Format``: Ultralytics' (``ultralytics_format``) and classic YOLOv5's (``yolov5_format``). The
swap itself (``surgery``) sees only model dicts and strides; everything that needs a host goes through this protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from effdet_plugin.commands.swap.graph import SwapError
from effdet_plugin.errors import first_line
from effdet_plugin.routing import stride_of, walk
from effdet_plugin.rows import model_source

PROBE = 256  # input size of the stride probe; large enough to see a stride-64 (P6) layer


@dataclass(frozen=True)
class Trained:
    """A trained checkpoint as its format read it."""

    path: Path
    model: nn.Module  # FP32
    yaml: dict  # the model's dict, ``yaml_file`` naming the checkpoint
    checkpoint: dict  # everything the file held (the writer takes the training options from it)


class Format(Protocol):
    """One host's side of a swap."""

    heads: Mapping[str, str]  # the last-row modules a source may end in -> their task
    supported: str  # what the format takes, ending every refusal of a source
    scale_tables: bool  # whether the host reads per-scale tables (``bifpn_phi: {n: 0, ...}``) in a row's args

    def read_yaml(self, source) -> dict:
        """The model dict of a YAML source (a file, a name the host resolves, or a dict), ``yaml_file`` naming it."""

    def read_checkpoint(self, path: Path) -> Trained:
        """The model of a trained checkpoint and its dict."""

    def parse(self, d: dict) -> nn.Sequential:
        """The host's layers for ``d`` (every ``from`` as written), for ``probe_strides``."""

    def build(self, d: dict, trained: Trained | None = None) -> nn.Module:
        """The model of the swapped dict ``d``, of its task's class; with ``trained``, its class names and training
        settings too."""

    def write_checkpoint(self, model: nn.Module, trained: Trained, info: dict, path: Path) -> None:
        """Write ``model`` atomically at ``path`` as a checkpoint of ``trained``'s kind; ``info``: how it was made."""

    def check_output(self, out: Path, backbone: str) -> None:
        """Refuse, before any work, an output YAML name the host would not load as that file."""

    def for_file(self, d: dict, out: Path) -> dict:
        """``d`` as written to ``out`` (the host may read part of the model from the file name)."""

    def usage(self, out: Path, pt: Path | None, task: str) -> str:
        """The command that trains from the written files."""


def probe_strides(d: dict, parse) -> list[int | None]:
    """The output stride of each backbone row of ``d`` (None where it is not one feature map), from a forward pass of
    ``parse(d)``'s layers (the whole model is parsed, as a model with plugin rows needs its head to validate) that
    stops after the last backbone row."""
    name = model_source(d)
    try:
        layers = parse(d)
    except Exception as e:  # noqa: BLE001  the source's own YAML error, reported with its file
        message = first_line(e)
        raise SwapError(
            message if message.startswith(name) else f"{name}: the model does not build: {message}"
        ) from None
    last = len(d["backbone"]) - 1
    try:
        return [stride_of(y, PROBE) for _, _, y in walk(layers, torch.zeros(1, 3, PROBE, PROBE), stop=last)]
    except Exception as e:  # noqa: BLE001  one line naming the source
        raise SwapError(f"{name}: the backbone does not run on a {PROBE}x{PROBE} input: {first_line(e)}") from None
