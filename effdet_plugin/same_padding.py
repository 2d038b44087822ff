"""TensorFlow's ``SAME`` padding for the host's ``Conv``: what weights trained in TensorFlow (EfficientNet-Lite) expect.

A row argument ``padding`` picks it: ``auto`` (the default) is the host Conv's own ``k // 2`` on every side; ``same``
is TensorFlow's, which differs only at stride 2, where TensorFlow puts the odd pixel of padding at the bottom/right
(``k = 3``: 0 before, 1 after). There the conv becomes ``nn.ZeroPad2d`` followed by the host's Conv built with no
padding of its own, so the host's ``fuse()`` still folds its BatchNorm and exports see one constant Pad.

The pad is fixed, as the reference implementation's static ``Conv2dStaticSamePadding`` is: TensorFlow computes it from
the input size, and it equals this one for every even input size, which every stride-2 conv of a detector sees (the
hosts round image sizes to multiples of the largest stride, 32). An odd-sized input would be padded one pixel less.
"""

from __future__ import annotations

from torch import nn

PADDINGS = ("auto", "same")


def check_padding(padding) -> None:
    """``ValueError`` unless ``padding`` is one of ``PADDINGS``."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be 'auto' (k // 2 on every side) or 'same' (TensorFlow's), got {padding!r}")


def padded_conv(conv: type[nn.Module], c1: int, c2: int, k: int, s: int, padding: str = "auto", **kwargs) -> nn.Module:
    """The host's ``conv(c1, c2, k, s, **kwargs)`` with ``padding`` (see the module docstring)."""
    check_padding(padding)
    if padding == "auto" or s == 1:  # at stride 1 TensorFlow's SAME is k // 2 on every side too (odd k)
        return conv(c1, c2, k, s, **kwargs)
    total = k - s  # TensorFlow: (ceil(i / s) - 1) * s + k - i, for i a multiple of s
    before, after = total // 2, total - total // 2
    return nn.Sequential(nn.ZeroPad2d((before, after, before, after)), conv(c1, c2, k, s, p=0, **kwargs))


def conv_of(slot: nn.Module) -> tuple[str, nn.Module]:
    """The host Conv in a slot that ``padded_conv`` filled, and the prefix of its state-dict keys in that slot."""
    if isinstance(slot, nn.Sequential) and len(slot) == 2 and isinstance(slot[0], nn.ZeroPad2d):
        return "1.", slot[1]
    return "", slot


def is_same_padded(slot: nn.Module) -> bool:
    """Whether ``padded_conv`` gave this slot TensorFlow's stride-2 padding."""
    return conv_of(slot)[0] != ""
