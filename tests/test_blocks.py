"""Block unit tests: shapes, shortcut and drop-path rules, SE width, fusion."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from effdet_plugin.blocks import ConvBNAct, DropPath, FusedMBConv, MBConv, SqueezeExcite, Stem, set_drop_path


def test_stem_shape():
    assert Stem(3, 24, 3, 2)(torch.zeros(2, 3, 64, 48)).shape == (2, 24, 32, 24)


@pytest.mark.slow
def test_blocks_outside_a_host_use_the_core_conv():
    """Without a host's ``Conv`` (outside a parser) the blocks and the BiFPN build from ``ConvBNAct``, and building
    them imports no host."""
    code = """
import sys, torch
from effdet_plugin.bifpn import BiFPN
from effdet_plugin.blocks import ConvBNAct, MBConv, Stem
net = torch.nn.Sequential(Stem(3, 16), MBConv(16, 16, 3, 1, 4, 0.25))
bifpn = BiFPN([16, 24, 32], 64, 0)
convs = {type(m).__name__ for m in [*net.modules(), *bifpn.modules()] if hasattr(m, "bn")}
print(sorted(convs), sorted({m.split(".")[0] for m in sys.modules} & {"ultralytics", "yolov5", "models"}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "['ConvBNAct'] []"


def test_core_conv_has_the_host_conv_interface():
    conv = ConvBNAct(8, 16, 3, 2)
    c = conv.conv
    assert (c.kernel_size, c.stride, c.padding, c.bias) == ((3, 3), (2, 2), (1, 1), None)
    assert conv.act is ConvBNAct.default_act and isinstance(conv.act, nn.SiLU)
    assert isinstance(ConvBNAct(8, 8, act=False).act, nn.Identity)
    assert isinstance(ConvBNAct(8, 8, act=nn.ReLU6()).act, nn.ReLU6)
    assert ConvBNAct(8, 8, 3, g=8).conv.groups == 8
    x = torch.randn(2, 8, 16, 16)
    assert conv(x).shape == conv.forward_fuse(x).shape == (2, 16, 8, 8)


@pytest.mark.parametrize("cls", [FusedMBConv, MBConv])
@pytest.mark.parametrize("c1,c2,s,shortcut", [(16, 16, 1, True), (16, 24, 1, False), (16, 16, 2, False)])
def test_shapes_and_shortcut(cls, c1, c2, s, shortcut):
    block = cls(c1, c2, 3, s, 4, 0.25 if cls is MBConv else 0)
    y = block(torch.randn(2, c1, 32, 32))
    assert y.shape == (2, c2, 32 // s, 32 // s)
    assert block.shortcut is shortcut


def test_fused_expansion_one_is_single_conv():
    block = FusedMBConv(24, 24, 3, 1, 1, 0)
    assert isinstance(block.project, nn.Identity) and block.expand.conv.kernel_size == (3, 3)
    assert sum(isinstance(m, nn.Conv2d) for m in block.modules()) == 1


def test_mbconv_layout_and_se_width():
    block = MBConv(40, 80, 5, 2, 6, 0.25)
    assert block.expand.conv.out_channels == 240
    assert block.dw.conv.groups == 240 and block.dw.conv.kernel_size == (5, 5)
    assert isinstance(block.se, SqueezeExcite)
    assert block.se.reduce.out_channels == 10  # squeeze from the block INPUT width: 40 * 0.25, not 240 * 0.25
    assert isinstance(block.project.act, nn.Identity)  # projection without activation
    assert isinstance(MBConv(16, 16, 3, 1, 1, 0.25).expand, nn.Identity)  # MBConv1: no expansion conv


def test_drop_path_rules():
    torch.manual_seed(0)
    dp = DropPath(0.5).train()
    x = torch.ones(64, 4, 2, 2)
    y = dp(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}  # whole samples dropped, survivors rescaled by 1/keep
    assert (per_sample == per_sample[:, :1]).all()
    assert torch.equal(dp.eval()(x), x)  # identity at eval


def test_drop_path_only_on_shortcut_blocks():
    torch.manual_seed(0)
    no_shortcut = MBConv(16, 24, 3, 1, 4, 0.25)
    no_shortcut.drop_path.p = 0.9
    no_shortcut.train()
    x = torch.randn(8, 16, 8, 8)
    with torch.no_grad():
        a, b = no_shortcut(x), no_shortcut(x)
    assert torch.allclose(a, b)  # nothing dropped: drop path never applies without a shortcut


def test_set_drop_path_linear_in_global_index():
    model = nn.Sequential(*(MBConv(16, 16, 3, 1, 4, 0.25) for _ in range(4)), FusedMBConv(16, 16, 3, 1, 4, 0))
    assert set_drop_path(model, 0.2) == 5
    assert [round(m.drop_path.p, 6) for m in model] == [0.0, 0.04, 0.08, 0.12, 0.16]


@pytest.mark.parametrize(
    "args,message",
    [
        ((16, 16, 4, 1, 4, 0.25), "kernel must be a positive odd integer"),
        ((16, 16, 0, 1, 4, 0.25), "kernel must be a positive odd integer"),
        ((16, 16, 3, 3, 4, 0.25), "stride must be 1 or 2"),
        ((16, 16, 3, 1, 0.5, 0.25), "expansion must be in"),
        ((16, 16, 3, 1, 4, 1.0), "se_ratio must be in"),
        ((16, 16, 3, 1, 4, -0.1), "se_ratio must be in"),
    ],
)
def test_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        MBConv(*args)


def test_fused_rejects_se():
    with pytest.raises(ValueError, match="FusedMBConv has no squeeze-excitation"):
        FusedMBConv(16, 16, 3, 1, 4, 0.25)


def test_fuse_folds_every_bn_and_keeps_outputs():
    from ultralytics import YOLO

    model = YOLO("yolov5n_effv2.yaml").model.eval()
    for m in model.modules():  # non-trivial BN statistics so folding is really exercised
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        before = model(x)[0]
        model.fuse(verbose=False)
        after = model(x)[0]
    plugin = [
        m
        for m in model.model
        if type(m).__module__.startswith("effdet_plugin")
        or any(type(c).__module__.startswith("effdet_plugin") for c in m.modules())
    ]
    assert plugin and not any(isinstance(c, nn.BatchNorm2d) for m in plugin for c in m.modules())
    assert (before - after).abs().max() < 1e-5 * max(1.0, before.abs().max().item())
