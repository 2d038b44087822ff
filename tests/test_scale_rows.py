"""``scale_rows:``: backbone rows of their own at some scale letters, applied before anything is built or checked."""

from __future__ import annotations

import copy

import pytest
import yaml
from torch import nn
from ultralytics.nn.tasks import DetectionModel

from effdet_plugin import scale_rows
from effdet_plugin.paths import model_yaml_dir
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


@pytest.mark.parametrize("spec, extra, message", [
    ([3], {}, "must map scale letters to {backbone row index: row}"),
    ({"m": {3: FUSED_4}}, {}, "scale 'm' is not in 'scales:' (n, s)"),
    ({"n": [FUSED_4]}, {}, "n: must map backbone row indices to rows"),
    ({"n": {9: FUSED_4}}, {}, "n: 9 is not a backbone row index (0 to 5)"),
    ({"n": {"3": FUSED_4}}, {}, "n: '3' is not a backbone row index"),
    ({"n": {3: [-1, 2, "FusedMBConv"]}}, {}, "n: row 3: a row has 4 fields"),
    ({"n": {3: [1, 2, "FusedMBConv", [96, 3, 2, 4, 0]]}}, {}, "n: row 3: 'from' 1 differs from backbone row 3's -1"),
    ({"n": {3: FUSED_4}}, {"scales": None, "depth_multiple": 0.33, "width_multiple": 0.25}, "needs a 'scales:' table"),
])
def test_bad_scale_rows_name_the_file_and_key(tmp_path, spec, extra, message):
    path = tmp_path / "bad.yaml"
    d = {**_model(scale_rows=spec), **extra}
    path.write_text(yaml.safe_dump({k: v for k, v in d.items() if v is not None}, sort_keys=False))
    with pytest.raises(ModelRowError) as e:
        DetectionModel(str(path), nc=3, verbose=False)
    assert str(e.value).startswith(f"{path}: top-level 'scale_rows': ") and message in str(e.value), str(e.value)


def test_a_bad_row_given_for_a_scale_is_reported_like_a_backbone_row():
    with pytest.raises(ModelRowError, match=r"row 3 .*unknown module 'FusedMBconv'; did you mean 'FusedMBConv'"):
        DetectionModel({**_model(scale_rows={"n": {3: [-1, 2, "FusedMBconv", [96, 3, 2, 4, 0]]}}), "scale": "n"},
                       nc=3, verbose=False)


def test_shipped_rows_for_a_scale_match_the_tables():
    d = yaml.safe_load((model_yaml_dir() / "yolov5_effv2.yaml").read_text())
    from effdet_plugin.stages import EFFICIENTNET_V2_WIDE_FUSED, EFFICIENTNET_V2_WIDE_FUSED_N, MODEL_YAMLS

    spec = MODEL_YAMLS["yolov5_effv2.yaml"]
    assert spec.table_at("n") is EFFICIENTNET_V2_WIDE_FUSED_N and spec.table_at("s") is EFFICIENTNET_V2_WIDE_FUSED
    assert spec.table_at("m") is spec.table
    for letter in "ns":
        rows = scale_rows.apply({**d, "scale": letter}, letter)["backbone"][1:7]
        assert [[r[1], r[2], r[3]] for r in rows] == [[s.repeats, s.block, s.args] for s in spec.table_at(letter).stages]
