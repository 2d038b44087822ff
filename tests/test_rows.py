"""Plugin rows through Ultralytics' parser: scaling like built-in rows, the model table, users' blocks, the
validation pass (one message naming file, row and value for every bad input) and ``activation:``."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
import yaml
from conftest import load_yaml  # (tests/ is on sys.path under pytest)
from torch import nn
from ultralytics.nn.tasks import DetectionModel

import effdet_plugin
from effdet_plugin.paths import model_yaml_dir
from effdet_plugin.rows import ModelRowError

EFFV2 = load_yaml((model_yaml_dir() / "yolov5_effv2-plain.yaml").read_text())
BIFPN = load_yaml((model_yaml_dir() / "yolov5_effv2_bifpn.yaml").read_text())
TINY_HEAD = [[-1, 1, "Conv", [64, 1, 1]], [[-1, -1, -1], 1, "Detect", ["nc"]]]


def _model(backbone, head=TINY_HEAD, **top) -> DetectionModel:
    d = {"nc": 2, "backbone": copy.deepcopy(backbone), "head": copy.deepcopy(head), **top}
    return DetectionModel(d, verbose=False)


def _out_channels(layer: nn.Module) -> int:
    return [m for m in layer.modules() if isinstance(m, nn.Conv2d)][-1].out_channels  # projection is registered last


@pytest.mark.parametrize(
    "scale", [s if s in "ns" else pytest.param(s, marks=pytest.mark.slow) for s in EFFV2["scales"]]
)
def test_rows_scale_like_conv_and_c3(scale):
    from ultralytics.nn import tasks

    d = copy.deepcopy(EFFV2)
    d["scale"] = scale
    ours = DetectionModel(d, verbose=False)
    # the same rows as built-in C3 rows with the same c_out and repeats, scaled by Ultralytics' own parser
    ref = copy.deepcopy(d)
    ref["backbone"] = [
        [f, n, "C3", [a[0]]] if m in ("MBConv", "FusedMBConv", "stem") else [f, n, m, a]
        for f, n, m, a in ref["backbone"]
    ]
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
    assert "ultralytics.nn.modules.block.Index" not in text  # no stand-in shown
    assert "ultralytics.nn.modules.block.SPPF" in text  # the host's own rows are still there


@pytest.fixture
def doubler():
    class Doubler(nn.Module):
        def __init__(self, c1, c2, k=3, s=1):
            super().__init__()
            self.conv = nn.Conv2d(c1, c2, k, s, k // 2)

        def forward(self, x):
            return self.conv(x)

    effdet_plugin.register_module(Doubler, stride_arg=1)
    yield Doubler
    effdet_plugin.unregister_module("Doubler")


def test_register_idempotent_and_user_block(doubler):
    effdet_plugin.register()
    effdet_plugin.register()
    m = _model(
        [
            [-1, 1, "Conv", [16, 3, 2]],
            [-1, 3, "Doubler", [32, 3, 2]],
            [-1, 1, "Conv", [32, 3, 2]],
            [-1, 1, "Conv", [32, 3, 2]],
        ],
        head=[[[1, 2, 3], 1, "Detect", ["nc"]]],
        width_multiple=0.5,
    )
    layer = m.model[1]
    assert [b.conv.stride for b in layer] == [(2, 2), (1, 1), (1, 1)]
    assert layer[0].conv.in_channels == 8 and layer[0].conv.out_channels == 16 == layer[2].conv.in_channels
    assert "Doubler" in effdet_plugin.registered_modules()


def test_unregister_forgets_the_name(doubler):
    effdet_plugin.unregister_module("Doubler")
    assert "Doubler" not in effdet_plugin.registered_modules()
    with pytest.raises(KeyError):
        _model([[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Doubler", [32, 3, 2]]])  # Ultralytics' own error again


def test_stride_arg_past_the_arguments_is_refused_at_registration():
    class FourArgs(nn.Module):
        def __init__(self, c1, c2, k=3, s=1):
            super().__init__()

    with pytest.raises(ValueError, match=r"FourArgs\): stride_arg=7 is past its arguments after c1, c2 \(k, s\)"):
        effdet_plugin.register_module(FourArgs, stride_arg=7)
    assert "FourArgs" not in effdet_plugin.registered_modules()


# --------------------------------------------------------------------------------------------------------- errors
STEM = [-1, 1, "stem", [16, 3, 2]]


@pytest.mark.parametrize(
    "row,message",
    [
        ([-1, 1, "MBConv", [64, 4, 2, 4, 0.25]], r"row 1 \[-1, 1, MBConv, \[64, 4, 2, 4, 0.25\]\]: kernel must be a"),
        ([-1, 1, "MBConv", [64, 3, 3, 4, 0.25]], "row 1 .*stride must be 1 or 2, got 3"),
        ([-1, 1, "MBConv", [64, -3, 1, 4, 0.25]], "row 1 .*kernel must be a positive odd integer, got -3"),
        ([-1, 1, "MBConv", [64, 3, 1, 0.5, 0.25]], "row 1 .*expansion must be in"),
        ([-1, 1, "MBConv", [64, 3, 1, 4, 1.5]], "row 1 .*se_ratio must be in"),
        ([-1, 1, "FusedMBConv", [64, 3, 1, 4, 0.25]], "row 1 .*FusedMBConv has no squeeze-excitation"),
        ([-1, 1, "MBConv", [64, 3, 1, 4, 0.25, 9, 9]], "row 1 .*(positional argument|takes from)"),
        ([-1, 1, "MBConv", ["wide", 3, 1, 4, 0.25]], "row 1 .*args must start with c_out, a positive integer"),
        ([-1, 1, "MBConv", 64], "row 1 .*args must be a list"),
        ([-1, 0, "MBConv", [64]], "row 1 .*repeats must be a positive integer, got 0"),
        ([[-1, 0], 1, "MBConv", [64]], "row 1 .*'from' must be a single layer index"),
        ([-1, 1, "stem", [64, 2, 2]], "row 1 .*kernel must be a positive odd integer, got 2"),
        ([99, 1, "MBConv", [64]], r"row 1 \[99, 1, MBConv, \[64\]\]: 'from' 99 is out of range; row 1 may read -1"),
        ([-1, 1, "MBConvv", [64]], r"row 1 .*unknown module 'MBConvv'; did you mean 'MBConv'\?"),
        ([-1, 1, "MBConv"], r"row 1 \[-1, 1, MBConv\]: a row has 4 fields \[from, repeats, module, args\]"),
        ([-1, 1, "Cnov", [64, 3, 2]], r"row 1 .*unknown module 'Cnov'; did you mean 'Conv'\?"),
    ],
)
def test_bad_rows_name_file_row_and_value(tmp_path, row, message):
    path = tmp_path / "yolov5n_mine.yaml"
    path.write_text(
        yaml.safe_dump(
            {"nc": 2, "backbone": [STEM, row, [-1, 1, "Conv", [64, 3, 2]]], "head": TINY_HEAD}, sort_keys=False
        )
    )
    with pytest.raises(ModelRowError, match=message) as e:
        DetectionModel(str(path), verbose=False)
    assert str(e.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: d.pop("nc"), r"top-level 'nc': missing; the number of classes must be set"),
        (lambda d: d.update(nc="abc"), r"top-level 'nc': must be a positive integer, got 'abc'"),
        (lambda d: d.update(nc=0), r"top-level 'nc': must be a positive integer, got 0"),
        (lambda d: d.pop("head"), r"top-level 'head': must be a non-empty list"),
        (lambda d: d.update(head=[[-1, 1, "Conv", [64, 1, 1]]]), r"top-level 'head': has no output head row"),
        (lambda d: d.update(drop_path=1.5), r"top-level 'drop_path': must be a number in \[0, 1\), got 1.5"),
        (lambda d: d.update(drop_path="x"), r"top-level 'drop_path': must be a number in \[0, 1\), got 'x'"),
        (lambda d: d.update(bn_eps=2), r"top-level 'bn_eps': must be a number in \(0, 1\), got 2"),
        (lambda d: d.update(scale_backbone="no"), r"top-level 'scale_backbone': must be true or false, got 'no'"),
        (lambda d: d.update(activation="os.system('x')"), r"top-level 'activation': must be a torch activation"),
        (lambda d: d.update(activation=5), r"top-level 'activation': must be a torch activation .* got 5"),
        (
            lambda d: d.update(activation="nn.LeakyReLU(x)"),
            r"top-level 'activation': must be .*got 'nn.LeakyReLU\(x\)'",
        ),
        (
            lambda d: d.update(backbone_activation="relu6"),
            (
                r"top-level 'backbone_activation': must be a torch "
                r"activation .*such as nn.ReLU\(\) .*got 'relu6'"
            ),
        ),
        (lambda d: d.update(backbone_activation=6), r"top-level 'backbone_activation': must be a torch .*got 6"),
        (lambda d: d.update(backbone_activation="nn.ReLU6(1, 2, 3)"), r"top-level 'backbone_activation': must be"),
        (lambda d: d.update(backbone_activation="nn.Nope()"), r"top-level 'backbone_activation': must be .*Nope"),
        (lambda d: d.update(backbone_scales=[1]), r"top-level 'backbone_scales': must be a mapping of scale letters"),
        (lambda d: d.update(backbone_scales={"s": [0.33, "x", 1]}), r"top-level 'backbone_scales': must be .*'x'"),
        (
            lambda d: d.update(backbone_scales={"n": [0.33, 0.25, 1024]}),
            r"top-level 'backbone_scales': needs 'scales:' and an entry for scale 's' \(it has n\)",
        ),
        # the host's own keys, in a file with plugin rows
        (
            lambda d: d.update(backbone={"a": 1}, head=BIFPN["head"]),
            (
                r"top-level 'backbone': must be a non-empty list "
                r"of \[from, repeats"
            ),
        ),
        (lambda d: d.update(backbone=[], head=BIFPN["head"]), r"top-level 'backbone': must be a non-empty list"),
        (lambda d: d.update(head="x"), r"top-level 'head': must be a non-empty list .*got 'x'"),
        (lambda d: d["head"].append(5), r"row 23 5: a row has 4 fields \[from, repeats, module, args\], got 5"),
        (
            lambda d: d.update(scales=[1, 2]),
            (
                r"top-level 'scales': must be a mapping of scale letters to \[depth, "
                r"width, max_channels\], each a positive number, got \[1, 2\]"
            ),
        ),
        (lambda d: d.update(scales={"s": "a"}), r"top-level 'scales': must be a mapping .*got \{'s': 'a'\}"),
        (lambda d: d.update(scales={"s": [0.33, 0.5]}), r"top-level 'scales': must be .*got \{'s': \[0.33, 0.5\]"),
        (lambda d: d.update(scales={"s": [0.33, -0.5, 1024]}), r"top-level 'scales': must be a mapping .*-0.5"),
        (lambda d: d.update(scales={"s": [0.33, "x", 1024]}), r"top-level 'scales': must be a mapping .*'x'"),
        (lambda d: d.update(scales={"n": [0.33, 0.25, 1024]}), r"top-level 'scales': has no scale 's' \(it has n\)"),
        (
            lambda d: (d.pop("scales"), d.update(depth_multiple="a")),
            (
                r"top-level 'depth_multiple': must be a "
                r"positive number, got 'a'"
            ),
        ),
        (
            lambda d: (d.pop("scales"), d.update(width_multiple=-1)),
            (
                r"top-level 'width_multiple': must be a "
                r"positive number, got -1"
            ),
        ),
        (lambda d: d.update(kpt_shape="x"), r"top-level 'kpt_shape': must be \[keypoints, 2 or 3\] .*got 'x'"),
        (lambda d: d.update(kpt_shape=[17, 4]), r"top-level 'kpt_shape': must be \[keypoints, 2 or 3\]"),
        (lambda d: d.update(channels="x"), r"top-level 'channels': must be a positive integer \(input channels\)"),
        (lambda d: d.update(end2end="yes"), r"top-level 'end2end': must be true or false, got 'yes'"),
        (lambda d: d.update(reg_max="a"), r"top-level 'reg_max': must be a positive integer .*got 'a'"),
        (lambda d: d.update(reg_max=0), r"top-level 'reg_max': must be a positive integer .*got 0"),
        (lambda d: d.update(reg_max=None), r"top-level 'reg_max': must be a positive integer .*got None"),
        (lambda d: d.update(inplace="x"), r"top-level 'inplace': must be true or false, got 'x'"),
    ],
)
def test_bad_top_level_keys_name_file_and_key(tmp_path, edit, message):
    d = copy.deepcopy(EFFV2)
    edit(d)
    path = tmp_path / "yolov5s_mine.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    with pytest.raises(ModelRowError, match=message) as e:
        DetectionModel(str(path), nc=None, verbose=False)
    assert str(e.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    "level,message",
    [
        ([8, 1, "Level", []], r"row 9 \[8, 1, Level, \[\]\]: Level takes \[k\], one output index of row 8, 0 to 2"),
        ([8, 1, "Level", [5]], r"row 9 .*Level takes \[k\], one output index of row 8, 0 to 2; got \[5\]"),
        ([8, 1, "Level", ["top"]], r"row 9 .*Level takes \[k\].*got \['top'\]"),
        ([8, 1, "Level", [-7]], r"row 9 .*Level takes \[k\].*got \[-7\]"),
        ([8, 1, "Level", [1]], r"row 10 \[8, 1, Level, \[1\]\]: output 1 of row 8 is already picked by row 9"),
        (
            [7, 1, "Level", [0]],
            (
                r"row 9 \[7, 1, Level, \[0\]\]: Level must read a multi-output row \(such as "
                r"BiFPN\); row 7 is not one"
            ),
        ),
    ],
)
def test_bad_level_rows(tmp_path, level, message):
    d = copy.deepcopy(BIFPN)
    d["head"][1] = level  # row 9: the first Level row
    path = tmp_path / "yolov5s_lv.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    with pytest.raises(ModelRowError, match=message) as e:
        DetectionModel(str(path), verbose=False)
    assert str(e.value).startswith(f"{path}: ")


def test_level_rows_detect_each_stride_once():
    model = DetectionModel("yolov5s_effv2_bifpn.yaml", verbose=False)
    assert model.stride.tolist() == [8, 16, 32]


def test_a_scale_letter_given_in_code_is_checked():
    with pytest.raises(ModelRowError, match=r"^model YAML: top-level 'scale': must be a scale letter .*got 5"):
        DetectionModel({**copy.deepcopy(EFFV2), "scale": 5}, verbose=False)


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda d: d.pop("nc"), "'nc': missing"),
        (lambda d: d.update(backbone={"a": 1}), "'backbone': must be a non-empty list"),
        (lambda d: d.pop("backbone"), "'backbone': must be a non-empty list"),
    ],
)  # (the BiFPN rows of the head make it a file with plugin rows)
def test_keys_the_model_class_reads_before_parsing_are_checked_on_load(tmp_path, edit, key):
    """Ultralytics' model class indexes ``nc`` (given ``nc=``) and ``backbone`` before its parser runs: a file with
    plugin rows is checked as it loads."""
    d = copy.deepcopy(BIFPN)
    edit(d)
    path = tmp_path / "yolov5s_mine.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    with pytest.raises(ModelRowError, match=f"^{path}: top-level {key}"):
        DetectionModel(str(path), nc=3, verbose=False)


def test_a_classic_yolov5_file_in_ultralytics_is_one_line():
    """The classic-YOLOv5 twin of a shipped model, passed to Ultralytics by path, names its anchor-based head row."""
    path = model_yaml_dir() / "yolov5" / "yolov5n_effv2.yaml"
    with pytest.raises(ModelRowError) as e:
        DetectionModel(str(path), verbose=False)
    assert str(e.value).startswith(f"{path}: row 22 [[15, 18, 21], 1, Detect, [nc, anchors]]: 'anchors' is classic")
    assert str(e.value).endswith("the shipped models load by bare name, e.g. yolov5n_effv2.yaml)")


def test_host_keys_of_a_file_without_plugin_rows_reach_the_host(tmp_path):
    """The same bad key in a host-only file is the host's business: its own error (or none), never the plugin's."""
    from ultralytics.nn.tasks import yaml_model_load

    d = {
        "nc": 3,
        "reg_max": "a",
        "inplace": "x",
        "kpt_shape": "x",
        "backbone": [[-1, 1, "Conv", [16, 3, 2]]],
        "head": [[[0], 1, "Detect", ["nc"]]],
    }
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    assert {k: yaml_model_load(str(path))[k] for k in ("reg_max", "inplace")} == {"reg_max": "a", "inplace": "x"}
    with pytest.raises(TypeError) as e:
        DetectionModel(str(path), verbose=False)
    assert not isinstance(e.value, ModelRowError) and "top-level" not in str(e.value)


def test_builtin_yaml_never_reaches_validation():
    # a built-in YAML with an odd but legal value keeps Ultralytics' own behaviour
    d = load_yaml((model_yaml_dir() / "yolov5_effv2.yaml").read_text())
    d["backbone"] = [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [64, 3, 2]]]
    d["head"] = [[[0, 1, 2], 1, "Detect", ["nc"]]]
    d.pop("drop_path")
    d["bn_eps"] = "anything"  # not our key without plugin rows: ignored, as Ultralytics ignores unknown keys
    DetectionModel(d, verbose=False)


# ----------------------------------------------------------------------------------------------------- activation
def _acts(model) -> set[type]:
    return {type(m) for m in model.modules() if isinstance(m, (nn.SiLU, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish))}


@pytest.mark.parametrize("name", ["yolov5n_effv2.yaml", "yolov5n_effv2_bifpn.yaml"])
def test_activation_key_reaches_every_plugin_block(name):
    d = load_yaml((model_yaml_dir() / name.replace("yolov5n_", "yolov5_")).read_text())
    default = DetectionModel({**d, "scale": "n"}, verbose=False)
    assert nn.SiLU in _acts(default)
    relu = DetectionModel({**d, "scale": "n", "activation": "nn.ReLU()"}, verbose=False)
    assert _acts(relu) == {nn.ReLU}  # head, SE's inner activation and BiFPN convs alike: no SiLU left
    leaky = DetectionModel({**d, "scale": "n", "activation": "torch.nn.LeakyReLU(0.1)"}, verbose=False)
    slopes = {m.negative_slope for m in leaky.modules() if isinstance(m, nn.LeakyReLU)}
    assert _acts(leaky) == {nn.LeakyReLU} and slopes == {0.1}


def test_backbone_scales_size_only_the_backbone_rows():
    """yolo26n_effv2: the backbone rows scale by backbone_scales (yolov5_effv2's n), the head by yolo26's scales."""
    from ultralytics.nn.tasks import yaml_model_load

    from effdet_plugin.blocks import FusedMBConv, MBConv

    ours, v5 = DetectionModel("yolo26n_effv2.yaml", verbose=False), DetectionModel("yolov5n_effv2.yaml", verbose=False)
    d = yaml_model_load("yolo26n_effv2.yaml")
    deep = DetectionModel({k: v for k, v in d.items() if k != "backbone_scales"}, verbose=False)

    def blocks(m):
        return [len(r) if isinstance(r, torch.nn.Sequential) else 1 for r in m.model[1:7]]

    rows = [list(r) if isinstance(r, torch.nn.Sequential) else [r] for r in ours.model[1:7]]
    assert all(isinstance(b, (FusedMBConv, MBConv)) for r in rows for b in r)
    assert blocks(ours) == blocks(v5) and blocks(deep) != blocks(ours)  # the head's depth 0.5 would deepen it
    # the head rows are yolo26n's either way
    assert [type(m).__name__ for m in ours.model[7:]] == [type(m).__name__ for m in deep.model[7:]]


def test_pose_model_takes_the_keypoint_shape_as_a_tuple():
    """Ultralytics' own example, ``PoseModel(..., data_kpt_shape=(17, 3))``, writes the tuple into the model dict: the
    plugin's key check takes it, on a plugin YAML as on the host's."""
    from ultralytics.nn.tasks import PoseModel

    for name in ("yolo26n_effv2-pose.yaml", "yolo26n-pose.yaml"):
        model = PoseModel(name, nc=2, data_kpt_shape=(4, 3), verbose=False)
        assert tuple(model.yaml["kpt_shape"]) == (4, 3) and model.model[-1].kpt_shape == (4, 3)
