"""``scale_rows:``: backbone rows of their own at some scale letters, applied before anything is built or checked."""

from __future__ import annotations

import copy

import pytest
import yaml
from torch import nn
from ultralytics.nn.tasks import DetectionModel

from effdet_plugin import scale_rows
from effdet_plugin.rows import ModelRowError

FUSED_4 = [-1, 2, "FusedMBConv", [96, 3, 2, 4, 0]]


def _model(**extra) -> dict:
    return {
        "nc": 3,
        "scales": {"n": [0.33, 0.25, 1024], "s": [0.33, 0.50, 1024]},
        "backbone": [
            [-1, 1, "stem", [24, 3, 2]],
            [-1, 2, "FusedMBConv", [48, 3, 2, 4, 0]],
            [-1, 2, "FusedMBConv", [64, 3, 2, 4, 0]],
            [-1, 2, "MBConv", [96, 3, 2, 4, 0.25]],
            [-1, 2, "MBConv", [128, 3, 2, 6, 0.25]],
            [-1, 1, "SPPF", [256, 5]],
        ],
        "head": [[[2, 3, 5], 1, "Detect", ["nc"]]],
        **extra,
    }


def _block(model, i: int) -> str:
    layer = model.model[i]
    return type(layer[0] if isinstance(layer, nn.Sequential) else layer).__name__


def _shapes(model) -> list:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("scale", ["n", "s"])
def test_a_scales_rows_build_as_if_written_in_backbone(scale):
    d = _model(scale_rows={"n": {3: FUSED_4}})
    written = _model()
    if scale == "n":
        written["backbone"][3] = FUSED_4
    got = DetectionModel({**copy.deepcopy(d), "scale": scale}, nc=3, verbose=False)
    want = DetectionModel({**written, "scale": scale}, nc=3, verbose=False)
    assert _shapes(got) == _shapes(want)
    assert _block(got, 3) == ("FusedMBConv" if scale == "n" else "MBConv")
    assert got.yaml["backbone"][3][2] == "MBConv"  # the model keeps its file's dict: the rows as written


def test_the_first_scale_is_ultralytics_default():
    got = DetectionModel(_model(scale_rows={"n": {3: FUSED_4}}), nc=3, verbose=False)  # no scale: Ultralytics takes n
    assert _block(got, 3) == "FusedMBConv"


def test_apply_leaves_the_dict_alone():
    d = _model(scale_rows={"n": {3: FUSED_4}})
    before = copy.deepcopy(d)
    out = scale_rows.apply(d, "n")
    assert d == before and out["backbone"][3] == FUSED_4 and out["backbone"][4] is d["backbone"][4]
    assert scale_rows.apply(d, "s") is d and scale_rows.apply(_model(), "n") == _model()


@pytest.mark.parametrize(
    "spec, extra, message",
    [
        ([3], {}, "must map scale letters to {backbone row index: row}"),
        ({"m": {3: FUSED_4}}, {}, "scale 'm' is not in 'scales:' (n, s)"),
        ({"n": [FUSED_4]}, {}, "n: must map backbone row indices to rows"),
        ({"n": {9: FUSED_4}}, {}, "n: 9 is not a backbone row index (0 to 5)"),
        ({"n": {"3": FUSED_4}}, {}, "n: '3' is not a backbone row index"),
        ({"n": {3: [-1, 2, "FusedMBConv"]}}, {}, "n: row 3: a row has 4 fields"),
        (
            {"n": {3: [1, 2, "FusedMBConv", [96, 3, 2, 4, 0]]}},
            {},
            "n: row 3: 'from' 1 differs from backbone row 3's -1",
        ),
        (
            {"n": {3: FUSED_4}},
            {"scales": None, "depth_multiple": 0.33, "width_multiple": 0.25},
            "needs a 'scales:' table",
        ),
    ],
)
def test_bad_scale_rows_name_the_file_and_key(tmp_path, spec, extra, message):
    path = tmp_path / "bad.yaml"
    d = {**_model(scale_rows=spec), **extra}
    path.write_text(yaml.safe_dump({k: v for k, v in d.items() if v is not None}, sort_keys=False))
    with pytest.raises(ModelRowError) as e:
        DetectionModel(str(path), nc=3, verbose=False)
    assert str(e.value).startswith(f"{path}: top-level 'scale_rows': ") and message in str(e.value), str(e.value)


def test_a_bad_row_given_for_a_scale_is_reported_like_a_backbone_row():
    with pytest.raises(ModelRowError, match=r"row 3 .*unknown module 'FusedMBconv'; did you mean 'FusedMBConv'"):
        DetectionModel(
            {**_model(scale_rows={"n": {3: [-1, 2, "FusedMBconv", [96, 3, 2, 4, 0]]}}), "scale": "n"},
            nc=3,
            verbose=False,
        )


@pytest.mark.parametrize(
    "scale, stride8, stride16, stride32",
    [
        ("n", (2, 2), "FusedMBConv", (5, 7)),
        ("s", (4, 1), "FusedMBConv", (3, 5)),
        ("m", (4, 2), "MBConv", (3, 8)),
    ],
)
def test_the_recommended_family_builds_its_own_rows_per_scale(scale, stride8, stride16, stride32):
    """yolov5_effv2.yaml's header, as built: Fused-MBConv in both stride-16 stages at n and s, MBConv from m up; at n
    the stride-8 stage is two blocks at expansion 2 (s: one at 4) and the stride-32 stage 7 blocks of 5x5 (s: 5 of 3x3).
    The model keeps the file's rows as written."""
    model = DetectionModel(f"yolov5{scale}_effv2.yaml", verbose=False)
    row3, row6 = model.model[3], model.model[6]
    blocks3 = list(row3) if isinstance(row3, nn.Sequential) else [row3]
    assert (blocks3[0].expand.conv.out_channels // blocks3[0].expand.conv.in_channels, len(blocks3)) == stride8
    assert [_block(model, i) for i in (4, 5)] == [stride16, stride16]
    assert (row6[0].dw.conv.kernel_size[0], len(row6)) == stride32
    assert [r[2] for r in model.yaml["backbone"][4:6]] == ["MBConv", "MBConv"]
