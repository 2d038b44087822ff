"""One forward walk over a parsed YOLO layer list, routed exactly as the hosts' ``_predict_once`` routes it.

Both Ultralytics and YOLOv5 give every layer ``f`` (``-1``: the previous output, an index, or a list of them); the
walk yields each layer's output so that callers read widths and strides from real tensors instead of module
internals. The row assembly (plugin rows built in place) and ``swap``'s stride probe use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn


def layer_input(f, x, y: list):
    """The input of a layer reading ``f``, given the previous output ``x`` and all outputs ``y`` so far."""
    if f == -1:
        return x
    return y[f] if isinstance(f, int) else [x if j == -1 else y[j] for j in f]


def walk(
    layers: nn.Sequential,
    x: torch.Tensor,
    replace: Callable[[int, object], nn.Module] | None = None,
    stop: int | None = None,
) -> Iterator[tuple[int, object, object]]:
    """Run ``layers`` on ``x`` (eval mode, no grad) and yield ``(index, input, output)`` for each layer.

    ``replace(i, input)`` may return a module that takes layer ``i``'s place (set in ``layers``) before it runs, or
    None to keep the layer. The walk ends after layer ``stop`` if given. The model's train/eval mode is restored.
    """
    was = layers.training
    layers.eval()
    y: list = []
    try:
        with torch.no_grad():
            for i, m in enumerate(layers):
                inp = layer_input(m.f, x, y)
                new = replace(i, inp) if replace else None
                if new is not None:
                    layers[i] = m = new
                    m.eval()
                x = m(inp)
                y.append(x)
                yield i, inp, x
                if stop is not None and i >= stop:
                    break
    finally:
        layers.train(was)


def stride_of(x, size: int) -> int | None:
    """Output stride of a 4-D feature map from a ``size`` x ``size`` input; None for anything else."""
    ok = isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[-1] > 0 and size % x.shape[-1] == 0
    return size // x.shape[-1] if ok else None
