"""Parser hook: plugin rows scale like built-in rows, built-ins stay identical, bad rows get one clear message."""

from __future__ import annotations

import copy
import json
import logging
import sys

import pytest
import torch
import yaml
from torch import nn
from ultralytics.nn.tasks import DetectionModel

import effdet_plugin
from effdet_plugin.registry import ModelRowError, model_yaml_dir

from conftest import run_cli

EFFV2 = yaml.safe_load((model_yaml_dir() / "yolov5_effv2.yaml").read_text())
TINY_HEAD = [[-1, 1, "Conv", [64, 1, 1]], [[-1, -1, -1], 1, "Detect", ["nc"]]]


def _model(backbone, head=TINY_HEAD, **top) -> DetectionModel:
    return DetectionModel({"nc": 2, "backbone": backbone, "head": copy.deepcopy(head), **top}, verbose=False)


def _out_channels(layer: nn.Module) -> int:
    return [m for m in layer.modules() if isinstance(m, nn.Conv2d)][-1].out_channels  # projection is registered last


@pytest.mark.parametrize("scale", list(EFFV2["scales"]))
def test_rows_scale_like_conv_and_c3(scale):
    from ultralytics.nn import tasks

    d = copy.deepcopy(EFFV2)
    d["scale"] = scale
    ours = DetectionModel(d, verbose=False)
    # the same rows as built-in C3 rows with the same c_out and repeats, scaled by Ultralytics' own parser
    ref = copy.deepcopy(d)
    ref["backbone"] = [[f, n, "C3", [a[0]]] if m in ("MBConv", "FusedMBConv", "stem") else [f, n, m, a]
                       for f, n, m, a in ref["backbone"]]
    built, _ = tasks.parse_model(ref, ch=3, verbose=False)
    for i in range(7):
        layer, ref_layer = ours.model[i], built[i]
        assert _out_channels(layer) == ref_layer.cv3.conv.out_channels, f"row {i}"
        n = len(layer) if isinstance(layer, nn.Sequential) else 1
        assert n == len(ref_layer.m), f"row {i}"
    assert ours.stride.tolist() == [8, 16, 32]


def test_verbose_table_shows_plugin_modules(caplog):
    d = copy.deepcopy(EFFV2)
    d["scale"] = "n"
    from ultralytics.utils import LOGGER

    LOGGER.propagate, old = True, LOGGER.propagate
    try:
        with caplog.at_level(logging.INFO, logger=LOGGER.name):
            DetectionModel(d, verbose=True)
    finally:
        LOGGER.propagate = old
    text = caplog.text
    assert "effdet_plugin.blocks.MBConv" in text and "effdet_plugin.blocks.Stem" in text
    assert "[3, 8, 3, 2]" in text  # stem row with its resolved c1, c2
    assert "[40, 64, 3, 2, 6, 0.25]" in text  # last MBConv stage: c1 = 160 * 0.25 from row 5, c2 = 256 * 0.25
    assert "ultralytics.nn.modules.conv.Conv             [3, 8" not in text  # no stand-in shown


def test_register_idempotent_and_user_block():
    effdet_plugin.register()
    effdet_plugin.register()

    class Doubler(nn.Module):
        def __init__(self, c1, c2, k=3, s=1):
            super().__init__()
            self.conv = nn.Conv2d(c1, c2, k, s, k // 2)

        def forward(self, x):
            return self.conv(x)

    effdet_plugin.register_module(Doubler, stride_arg=1)
    m = _model([[-1, 1, "Conv", [16, 3, 2]], [-1, 3, "Doubler", [32, 3, 2]], [-1, 1, "Conv", [32, 3, 2]],
                [-1, 1, "Conv", [32, 3, 2]]], head=[[[1, 2, 3], 1, "Detect", ["nc"]]], width_multiple=0.5)
    layer = m.model[1]
    assert [b.conv.stride for b in layer] == [(2, 2), (1, 1), (1, 1)]
    assert layer[0].conv.in_channels == 8 and layer[0].conv.out_channels == 16 == layer[2].conv.in_channels
    assert "Doubler" in effdet_plugin.registered_modules()


@pytest.mark.parametrize(
    "row,message",
    [
        ([-1, 1, "MBConv", [64, 4, 2, 4, 0.25]], r"row 1 \[-1, 1, MBConv, \[64, 4, 2, 4, 0.25\]\]: kernel must be a positive odd"),
        ([-1, 1, "MBConv", [64, 3, 3, 4, 0.25]], "row 1 .*stride must be 1 or 2, got 3"),
        ([-1, 1, "MBConv", [64, -3, 1, 4, 0.25]], "row 1 .*kernel must be a positive odd integer, got -3"),
        ([-1, 1, "MBConv", [64, 3, 1, 0.5, 0.25]], "row 1 .*expansion must be in"),
        ([-1, 1, "MBConv", [64, 3, 1, 4, 1.5]], "row 1 .*se_ratio must be in"),
        ([-1, 1, "FusedMBConv", [64, 3, 1, 4, 0.25]], "row 1 .*FusedMBConv has no squeeze-excitation"),
        ([-1, 1, "MBConv", [64, 3, 1, 4, 0.25, 9, 9]], "row 1 .*MBConv.*(positional argument|takes from)"),
        ([-1, 1, "MBConv", ["wide", 3, 1, 4, 0.25]], "row 1 .*c_out must be a positive integer, got 'wide'"),
        ([-1, 1, "MBConv", 64], "row 1 .*args must be a list"),
        ([-1, 0, "MBConv", [64]], "row 1 .*repeats must be a positive integer, got 0"),
        ([[-1, 0], 1, "MBConv", [64]], "row 1 .*'from' must be a single layer index"),
        ([-1, 1, "stem", [64, 2, 2]], "row 1 .*kernel must be a positive odd integer, got 2"),
    ],
)
def test_bad_rows_name_row_module_and_value(row, message):
    with pytest.raises(ModelRowError, match=message):
        _model([[-1, 1, "stem", [16, 3, 2]], row, [-1, 1, "Conv", [64, 3, 2]]])


def test_bad_drop_path_key():
    with pytest.raises(ModelRowError, match="drop_path"):
        _model([[-1, 1, "stem", [16, 3, 2]], [-1, 2, "MBConv", [16, 3, 1, 4, 0.25]]], drop_path=1.5)


def test_drop_path_from_yaml():
    m = _model([[-1, 1, "stem", [16, 3, 2]], [-1, 4, "MBConv", [16, 3, 1, 4, 0.25]]], drop_path=0.4)
    assert [round(b.drop_path.p, 6) for b in m.model[1]] == [0.0, 0.1, 0.2, 0.3]


def test_unsupported_version_message(monkeypatch):
    import ultralytics

    from effdet_plugin import registry

    monkeypatch.setattr(ultralytics, "__version__", "9.0.0")
    with pytest.raises(registry.UnsupportedUltralyticsError, match="supports ultralytics >=8.4.0,<8.5.0, found 9.0.0"):
        effdet_plugin.register()


BUILTINS_SCRIPT = r"""
import json, sys
from pathlib import Path
import ultralytics
from ultralytics.nn.tasks import DetectionModel, yaml_model_load
root = Path(ultralytics.__file__).parent / "cfg" / "models"
out = {}
for f in sorted(root.rglob("*.yaml")):
    d = yaml_model_load(f)
    head = str(d["head"][-1][2])
    if head not in ("Detect", "v10Detect"):
        continue
    for scale in (d.get("scales") or {"": None}):
        d["scale"] = scale
        out[f"{f.relative_to(root)}:{scale}"] = sum(p.numel() for p in DetectionModel(dict(d), verbose=False).parameters())
print(json.dumps({"plugin": "effdet_plugin.registry" in sys.modules, "params": out}))
"""


@pytest.mark.slow
def test_builtin_yamls_build_identically(tmp_path):
    """Every built-in detection YAML at every scale: same parameter count with the plugin active and disabled."""
    runs = {}
    for disabled in ("0", "1"):
        proc = run_cli([sys.executable, "-c", BUILTINS_SCRIPT], tmp_path, env={"EFFDET_PLUGIN_DISABLE": disabled})
        runs[disabled] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert runs["0"]["plugin"] and not runs["1"]["plugin"]
    with_plugin, without = runs["0"]["params"], runs["1"]["params"]
    families = {k.split("/")[0] for k in with_plugin}
    assert {"v3", "v5", "v6", "v8", "v9", "v10", "11", "12", "26"} <= families, families
    assert any("p2" in k for k in with_plugin) and any("p6" in k for k in with_plugin)
    assert with_plugin == without
