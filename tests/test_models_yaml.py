"""Shipped model YAMLs: the families differ from each other only where their headers say; every YAML grows
n < ... < x."""

from __future__ import annotations

import pytest
from conftest import load_yaml  # (tests/ is on sys.path under pytest)
from torch import nn
from torchvision.models._utils import _make_divisible
from ultralytics.nn.tasks import (
    ClassificationModel,
    DetectionModel,
    OBBModel,
    PoseModel,
    SegmentationModel,
    guess_model_task,
)

from effdet_plugin.paths import model_yaml_dir

SHIPPED = sorted(model_yaml_dir().glob("*.yaml"))
MODELS = {
    "detect": DetectionModel,
    "segment": SegmentationModel,
    "pose": PoseModel,
    "obb": OBBModel,
    "classify": ClassificationModel,
}


def _load(name: str) -> dict:
    return load_yaml((model_yaml_dir() / name).read_text())


def test_wide_widens_only_the_stride_16_and_32_stages():
    plain, wide = _load("yolov5_effv2-plain.yaml"), _load("yolov5_effv2-wide.yaml")
    same = lambda d: {k: v for k, v in d.items() if k not in ("backbone", "drop_path")}
    assert same(wide) == same(plain) and wide["drop_path"] == 0.0 < plain["drop_path"]
    for i, (p, w) in enumerate(zip(plain["backbone"], wide["backbone"])):
        widened = i in (4, 5, 6)  # MBConv stages at strides 16/16/32
        expected = _make_divisible(p[3][0] * 1.5, 8) if widened else p[3][0]  # torchvision's adjust_channels rounding
        assert w[:3] == p[:3] and w[3][1:] == p[3][1:] and w[3][0] == expected, (i, p, w)


def test_recommended_is_the_wide_table_one_depth_step_shallower_from_m_fused_through_p4_and_wider_at_p3_at_n_s():
    rec, wide = _load("yolov5_effv2.yaml"), _load("yolov5_effv2-wide.yaml")
    assert rec["backbone"] == wide["backbone"] and rec["head"] == wide["head"] and rec["drop_path"] == 0.0
    for k in "ns":
        assert rec["scales"][k] == wide["scales"][k]
    for k in "mlx":  # same width and channel cap, less depth
        (d, w, c), (wd, ww, wc) = rec["scales"][k], wide["scales"][k]
        assert (w, c) == (ww, wc) and d < wd, k
    # n and s: row 3 (the stride-8 stage) 3x wider, at s nothing else of it changed, at n 6 repeats (2 blocks) at
    # expansion 2; rows 4-5 (the stride-16 stages) Fused-MBConv at expansion 4, widths, repeats and strides kept; at n
    # row 6 (the stride-32 stage) with 5x5 kernels and 21 repeats (7 blocks), nothing else of it changed
    assert set(rec["scale_rows"]) == set("ns")
    for k in "ns":
        rows = dict(rec["scale_rows"][k])
        assert sorted(rows) == ([3, 4, 5, 6] if k == "n" else [3, 4, 5]), rows
        p3, base = rows.pop(3), rec["backbone"][3]
        c, kernel, stride, _, se = base[3]
        assert p3[0] == base[0] and p3[2] == base[2], (k, p3)
        assert p3[1:2] + p3[3] == ([6, 3 * c, kernel, stride, 2, se] if k == "n" else [base[1], 3 * c, *base[3][1:]])
        if k == "n":
            p5, base = rows.pop(6), rec["backbone"][6]
            assert p5[::2] == base[::2] and p5[1] == 21 and p5[3] == [base[3][0], 5, *base[3][2:]], p5
        for i, row in rows.items():
            base = rec["backbone"][i]
            assert row[:2] == base[:2] and row[2] == "FusedMBConv" and base[2] == "MBConv", (k, i, row)
            assert row[3][:3] == base[3][:3] and row[3][3:] == [4, 0], (k, i, row)

    def blocks(m, rows: range) -> list[str]:
        if isinstance(m, str):
            m = DetectionModel(m, nc=3, verbose=False)
        return [type(m.model[i][0] if isinstance(m.model[i], nn.Sequential) else m.model[i]).__name__ for i in rows]

    n = DetectionModel("yolov5n_effv2.yaml", nc=3, verbose=False)
    assert blocks(n, range(1, 7)) == ["FusedMBConv"] * 5 + ["MBConv"]
    assert blocks("yolov5s_effv2.yaml", range(1, 7)) == ["FusedMBConv"] * 5 + ["MBConv"]
    assert len(n.model[3]) == 2 and len(n.model[6]) == 7 and {b.dw.conv.kernel_size for b in n.model[6]} == {(5, 5)}
    assert blocks("yolov5n_effv2-wide.yaml", range(1, 7)) == ["FusedMBConv"] * 3 + ["MBConv"] * 3
    # m/l/x build the wide table's rows: the same model as -wide at the shallower depth
    m = DetectionModel("yolov5m_effv2.yaml", nc=3, verbose=False)
    assert [type(layer).__name__ for layer in m.model[:8]] == [
        type(layer).__name__ for layer in DetectionModel("yolov5m_effv2-wide.yaml", nc=3, verbose=False).model[:8]
    ]


def test_lite_is_the_recommended_table_without_se_and_with_relu6():
    rec, lite = _load("yolov5_effv2.yaml"), _load("yolov5_effv2-lite.yaml")
    assert lite["scales"] == rec["scales"] and lite["head"] == rec["head"] and lite["activation"] == "nn.ReLU6()"
    for r, li in zip(rec["backbone"], lite["backbone"]):
        assert li[:3] == r[:3] and li[3][:4] == r[3][:4], (r, li)
        assert li[3][4:] in ([], [0]), li  # SE ratio 0 (SPPF and stem rows have no 5th arg)
    # n and s: the same Fused-MBConv rows 4-5 (they have no SE already); the recommended n/s's stride-8 stage and n's
    # 5x5 stride-32 stage were measured in PyTorch only, so Lite keeps the rows its OpenVINO INT8 figures were measured
    # with
    assert {k: {i: r for i, r in v.items() if i not in (3, 6)} for k, v in rec["scale_rows"].items()} == lite[
        "scale_rows"
    ]

    def kinds(name: str) -> set[str]:
        return {type(m).__name__ for m in DetectionModel(name, nc=3, verbose=False).modules()}

    lite_kinds, rec_kinds = kinds("yolov5n_effv2-lite.yaml"), kinds("yolov5n_effv2.yaml")
    assert "ReLU6" in lite_kinds and not {"SiLU", "SqueezeExcite"} & lite_kinds, lite_kinds
    assert {"SiLU", "SqueezeExcite"} <= rec_kinds and "ReLU6" not in rec_kinds, rec_kinds
    assert {"FusedMBConv", "MBConv"} <= lite_kinds  # rows 4-5 Fused-MBConv at n, row 6 MBConv
    lite_n = DetectionModel("yolov5n_effv2-lite.yaml", nc=3, verbose=False)
    assert [type(lite_n.model[i][0]).__name__ for i in (4, 5, 6)] == ["FusedMBConv", "FusedMBConv", "MBConv"]


def test_a_lite_model_leaves_the_next_models_activation_alone():
    # Ultralytics up to ~8.4.9x left Conv.default_act at the last parsed `activation:` (process-wide state)
    from ultralytics.nn.modules import Conv

    before = Conv.default_act
    DetectionModel("yolov5n_effv2-lite.yaml", nc=3, verbose=False)
    assert Conv.default_act is before
    kinds = {type(m).__name__ for m in DetectionModel("yolov5nu.yaml", nc=3, verbose=False).modules()}
    assert "SiLU" in kinds and "ReLU6" not in kinds, kinds


def test_wide_builds_with_detection_at_strides_8_16_32():
    model = DetectionModel("yolov5s_effv2-wide.yaml", nc=3, verbose=False)
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    p5 = [m for m in model.model[6].modules() if isinstance(m, nn.Conv2d)][-1]  # the last block's projection
    assert p5.out_channels == _make_divisible(384 * 0.5, 8)  # 384 x width 0.5


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_yaml_grows_with_the_scale_letter(path):
    d = load_yaml(path.read_text())
    task = guess_model_task(path)  # from the name, as Ultralytics reads it
    params = []
    for scale in ("n", "s", "m", "l", "x"):
        model = MODELS[task]({**d, "scale": scale}, nc=80, verbose=False)
        params.append(sum(p.numel() for p in model.parameters()))
        assert task == "classify" or model.stride.tolist() == [8.0, 16.0, 32.0], (path.name, scale)
    assert params == sorted(params) and len(set(params)) == 5, (path.name, params)
