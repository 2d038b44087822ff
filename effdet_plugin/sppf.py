"""SPPF with its hidden width set by the row: YAML name ``WideSPPF``, args ``[c_out, kernel, e]``.

YOLOv5's SPPF squeezes its input to half its width before pooling, which suits YOLOv5's own backbone: its last stage is
as wide as SPPF's output. An EfficientNetV2 stride-32 stage at small scales is far narrower (96 channels at n, where
yolov5nu feeds SPPF 256), so SPPF pools 48 channels where yolov5nu pools 128 and P5's boxes come out looser
(docs/accuracy.md). Here the hidden width is ``int(c_out * e)``: a fraction of the output, which the scale letter sizes,
so ``[1024, 5, 0.5]`` pools 128 channels at n exactly as yolov5nu's SPPF does, whatever the stage in front of it.
Otherwise it is SPPF: 1x1 conv, three chained ``kernel`` max-pools, concat, 1x1 conv, both convs activated as in
YOLOv5's SPPF and Ultralytics' SPPELAN (Ultralytics 8.4's SPPF leaves the first linear). It is one class for both hosts,
built from the host's ``Conv`` (so ``fuse()`` folds it), because classic YOLOv5 has no SPPF with a hidden width.
"""

from __future__ import annotations

import torch
from torch import nn

from effdet_plugin.blocks import host_conv

__all__ = ("WideSPPF",)


class WideSPPF(nn.Module):
    """Spatial pyramid pooling (fast) from ``c1`` to ``c2`` channels through ``int(c2 * e)`` hidden channels."""

    def __init__(self, c1: int, c2: int, k: int = 5, e: float = 0.5, *, conv: type[nn.Module] | None = None,
                 act: nn.Module | None = None):
        """Initialize with max-pool kernel ``k`` (odd) and hidden width ``e`` times ``c2``."""
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ValueError(f"kernel must be a positive odd integer, got {k!r}")
        if isinstance(e, bool) or not isinstance(e, (int, float)) or int(c2 * e) < 1:
            raise ValueError(f"e must be a positive number leaving at least one hidden channel at c_out={c2}, got {e!r}")
        c_ = int(c2 * e)
        conv = conv or host_conv()
        a = act if act is not None else conv.default_act
        self.cv1 = conv(c1, c_, 1, 1, act=a)
        self.cv2 = conv(c_ * 4, c2, 1, 1, act=a)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool the squeezed map three times in a row and project the four maps together."""
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))
