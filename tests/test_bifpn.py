"""BiFPN neck: fusion math, layer graph, compound scaling per scale letter, bad rows, fuse/ONNX/pickle, training."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import PYTHON, load_yaml, run_cli, tiny_train
from ultralytics.nn.tasks import DetectionModel

from effdet_plugin.bifpn import EPS, NODES, BiFPN, Fusion, bifpn_size, fusion_weights
from effdet_plugin.paths import model_yaml_dir
from effdet_plugin.rows import ModelRowError

ROOT = Path(__file__).resolve().parents[1]
PHI = {"n": 0, "s": 1, "m": 2, "l": 3, "x": 4}
# EfficientDet table 1
SIZES = {0: (64, 3), 1: (88, 4), 2: (112, 5), 3: (160, 6), 4: (224, 7), 5: (288, 7), 6: (384, 8), 7: (384, 8)}


def _bifpn(model: DetectionModel) -> BiFPN:
    (m,) = [m for m in model.model if isinstance(m, BiFPN)]
    return m


def _randomize(model: torch.nn.Module) -> None:
    """Give BatchNorms and fusion weights non-trivial values, as after training."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        if isinstance(m, Fusion):
            m.weight.data.copy_(torch.rand(m.n, generator=g) * 2 - 0.5)


# ---------------------------------------------------------------------------------------------------------- fusion
def test_fast_normalized_fusion_math():
    fuse = Fusion(3)
    assert fuse.eps == EPS == 1e-4 and torch.equal(fuse.weight.data, torch.ones(3))  # weights start at 1
    with torch.no_grad():
        fuse.weight.copy_(torch.tensor([2.0, -1.0, 1.0]))
    w = fuse.normalized_weights()
    assert (w >= 0).all() and w[1] == 0
    assert torch.allclose(w, torch.tensor([2.0, 0.0, 1.0]) / (3.0 + EPS))
    assert 1 - EPS < w.sum() <= 1  # sums to 1 up to eps

    xs = [torch.randn(2, 4, 5, 5, requires_grad=True) for _ in range(3)]
    out = fuse(xs)
    assert torch.allclose(out, (2 * xs[0] + xs[2]) / (3 + EPS), atol=1e-6)
    xs2 = [xs[0], xs[1] + 100.0, xs[2]]  # the input with a negative raw weight contributes 0
    assert torch.equal(fuse(xs2), out)

    out.square().sum().backward()
    g = fuse.weight.grad
    assert g is not None and g[0] != 0 and g[2] != 0  # gradients reach the raw weights
    assert g[1] == 0  # ReLU: a negative weight gets no gradient (and stays switched off)
    assert xs[1].grad.abs().sum() == 0


def test_other_fusion_modes():
    xs = [torch.randn(1, 2, 3, 3) for _ in range(2)]
    attn = Fusion(2, "attn")
    assert torch.allclose(attn.normalized_weights().sum(), torch.tensor(1.0))
    assert torch.allclose(attn(xs), (xs[0] + xs[1]) / 2, atol=1e-6)
    plain = Fusion(2, "sum")
    assert plain.weight is None and torch.allclose(plain(xs), xs[0] + xs[1])
    with pytest.raises(ValueError, match="fusion mode"):
        Fusion(2, "max")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fusion_keeps_the_input_dtype(dtype):
    """Under AMP the maps arrive in half precision while the fusion weights stay float32 parameters."""
    fuse = Fusion(2)
    xs = [torch.ones(1, 2, 4, 4, dtype=dtype), torch.full((1, 2, 4, 4), 3.0, dtype=dtype)]
    out = fuse(xs)
    assert out.dtype == dtype and fuse.weight.dtype == torch.float32
    torch.testing.assert_close(out.float(), torch.full((1, 2, 4, 4), 2.0), atol=1e-2, rtol=0)


@pytest.mark.parametrize("phi", sorted(SIZES))
def test_compound_scaling(phi):
    assert bifpn_size(phi) == SIZES[phi]


@pytest.mark.parametrize("phi", [-1, 8, 9, 1.0, True])
def test_phi_outside_the_paper_rejected(phi):
    with pytest.raises(ValueError, match=r"phi must be an integer from 0 to 7 \(EfficientDet D0-D7\)"):
        bifpn_size(phi)


# ----------------------------------------------------------------------------------------------------------- graph
def test_layer_graph_and_output_shapes():
    net = BiFPN([16, 40, 256], 64, 0, strides=[8, 16, 32]).eval()
    assert net.depth == len(net.layers) == 3
    for k, layer in enumerate(net.layers):
        assert list(layer.nodes) == [name for name, _, _ in NODES]
        for name, _, inputs in NODES:  # 1x1 conv + BN only on first-layer edges from narrower/wider backbone maps
            node = layer.nodes[name]
            assert len(node.resample) == node.fuse.n == len(inputs)
            has_conv = [any(isinstance(m, torch.nn.Conv2d) for m in r.modules()) for r in node.resample]
            assert has_conv == [k == 0 and n in ("P3", "P4", "P5") for n in inputs]
    p4_out = {n: i for n, _, i in NODES}["P4_out"]
    assert p4_out == ("P4", "P4_td", "P3_out")  # the extra same-level edge on the intermediate level
    xs = [torch.randn(2, 16, 32, 32), torch.randn(2, 40, 16, 16), torch.randn(2, 256, 8, 8)]
    with torch.no_grad():
        out = net(xs)
    assert [tuple(o.shape) for o in out] == [(2, 64, 32, 32), (2, 64, 16, 16), (2, 64, 8, 8)]


@pytest.mark.parametrize("scale", [s if s == "n" else pytest.param(s, marks=pytest.mark.slow) for s in PHI])
def test_every_scale_builds_and_runs(scale):
    model = DetectionModel(f"yolov5{scale}_effv2_bifpn.yaml", verbose=False)  # bare name -> unified YAML + letter
    assert model.yaml["scale"] == scale
    net = _bifpn(model)
    width, depth = SIZES[PHI[scale]]
    assert (net.phi, net.width, net.depth, len(net.layers)) == (PHI[scale], width, depth, depth)
    assert model.model[-1].f == [9, 10, 11] and model.stride.tolist() == [8, 16, 32]
    assert set(model.save) >= {3, 5, 7, 8, 9, 10, 11}  # every BiFPN input and output is kept for later rows
    weights = fusion_weights(model)
    assert len(weights) == depth * len(NODES) and all(
        w["weights"] == [1 / len(w["inputs"])] * len(w["inputs"])
        or np.allclose(w["weights"], 1 / (len(w["inputs"]) + EPS))
        for w in weights
    )

    seen = {}
    net.register_forward_hook(lambda m, i, o: seen.update(out=o))
    model.eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 64, 64))[0]
    assert [tuple(o.shape) for o in seen["out"]] == [(1, width, 8, 8), (1, width, 4, 4), (1, width, 2, 2)]
    assert tuple(y.shape) == (1, 4 + 80, 8 * 8 + 4 * 4 + 2 * 2)


@pytest.mark.slow
def test_named_phi_follows_the_hosts_scale_letter():
    """A named phi is read at the letter the host builds at: Ultralytics' first scale for a dict without one, the
    letter of a file without ``scales:``; the row itself never picks a letter."""
    d = load_yaml((model_yaml_dir() / "yolov5_effv2_bifpn.yaml").read_text())
    d["scales"] = {"m": d["scales"]["m"], "n": d["scales"]["n"]}
    assert _bifpn(DetectionModel(d, verbose=False)).phi == PHI["m"]  # no letter: Ultralytics builds its first scale
    d.pop("scales")
    assert _bifpn(DetectionModel({**d, "scale": "l"}, verbose=False)).phi == PHI["l"]  # no table: the name's letter
    with pytest.raises(
        ModelRowError,
        match=r"row 8 .*'bifpn_phi' maps scale letters to phi, but this model has no "
        r"scale letter",
    ):
        DetectionModel({**d, "scale": ""}, verbose=False)
    assert BiFPN.yaml_args(["bifpn_phi"], {**d, "scale": "x"}) == [SIZES[PHI["x"]][0], PHI["x"], "fastattn"]
    with pytest.raises(ValueError, match="no scale letter"):
        BiFPN.yaml_args(["bifpn_phi"], {**d, "scales": {"s": [0.33, 0.5, 1024]}})  # the host's letter, not a guess


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, source, taps", [("yolov5_effv2-s", "yolov5_effv2-s", [3, 5, 7]), ("yolov5_effb0", "yolov5_effb0", [3, 5, 8])]
)
def test_exact_backbone_variants(name, source, taps):
    folder = model_yaml_dir()
    ours = load_yaml((folder / f"{name}_bifpn.yaml").read_text())
    theirs = load_yaml((folder / f"{source}.yaml").read_text())
    assert ours["backbone"] == theirs["backbone"]  # copied verbatim: pretrained weights map the same way
    assert {k: ours[k] for k in ("scale_backbone", "bn_eps", "scales")} == {
        k: theirs[k] for k in ("scale_backbone", "bn_eps", "scales")
    }
    assert ours["head"][0][0] == taps
    for scale in "ns":
        model = DetectionModel(f"yolov5{scale}_{name[7:]}_bifpn.yaml", verbose=False)
        assert _bifpn(model).phi == PHI[scale] and model.stride.tolist() == [8, 16, 32]
    pan = DetectionModel(f"yolov5s_{source[7:]}.yaml", verbose=False)
    n_bb = len(ours["backbone"]) - 1  # all rows before SPPF are identical modules, SPPF is sized by the scale alike
    shapes = [[p.shape for p in m.model[: n_bb + 1].parameters()] for m in (model, pan)]
    assert shapes[0] == shapes[1]


# ------------------------------------------------------------------------------------------------------- bad input
def _variant(tmp_path: Path, name: str, edit) -> Path:
    d = load_yaml((model_yaml_dir() / "yolov5_effv2_bifpn.yaml").read_text())
    edit(d)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def _set_row(i, row):
    return lambda d: d["head"].__setitem__(i, row)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            _set_row(0, [[5, 7], 1, "BiFPN", ["bifpn_phi"]]),
            r"row 8 \[\[5, 7\].*needs 3 input levels \(P3, P4, P5\), got 2",
        ),
        (_set_row(0, [[3, 5, 5], 1, "BiFPN", ["bifpn_phi"]]), r"row 8 .*strides s, 2s, 4s .*got strides \[8, 16, 16\]"),
        (_set_row(0, [[5, 3, 7], 1, "BiFPN", ["bifpn_phi"]]), r"row 8 .*got strides \[16, 8, 32\]"),
        (lambda d: d["bifpn_phi"].__setitem__("s", -1), r"row 8 .*phi must be an integer from 0 to 7 .*got -1"),
        (_set_row(0, [[3, 5, 7], 1, "BiFPN", [-2]]), r"row 8 .*phi must be an integer from 0 to 7 .*got -2"),
        (_set_row(0, [[3, 5, 7], 1, "BiFPN", [9]]), r"row 8 .*phi must be an integer from 0 to 7 .*got 9"),
        (lambda d: d.pop("bifpn_phi"), r"row 8 .*'bifpn_phi' names no top-level mapping"),
        (_set_row(0, [[3, 5, 7], 1, "BiFPN", ["bifpn_phi", "max"]]), r"row 8 .*fusion mode must be one of"),
        (_set_row(0, [7, 1, "BiFPN", ["bifpn_phi"]]), r"row 8 .*'from' must be a list of layer indices"),
        (_set_row(0, [[3, 5, 7], 2, "BiFPN", ["bifpn_phi"]]), r"row 8 .*repeats must be 1"),
        (
            _set_row(0, [[3, 5, 17], 1, "BiFPN", ["bifpn_phi"]]),
            r"row 8 .*'from' 17 is out of range; row 8 may read -8 to",
        ),
        (_set_row(1, [[8], 1, "Level", [0]]), r"row 9 .*'from' must be a single layer index for Level"),
    ],
)
def test_bad_rows_name_the_row(tmp_path, edit, message):
    path = _variant(tmp_path, "yolov5s_bad.yaml", edit)
    with pytest.raises(ModelRowError, match=message) as e:
        DetectionModel(str(path), verbose=False)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------------------------- fuse, pickle, ONNX
@pytest.mark.slow
def test_fuse_and_pickle_keep_outputs():
    model = DetectionModel("yolov5n_effv2_bifpn.yaml", verbose=False)
    _randomize(model)
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)[0]
        clone = pickle.loads(pickle.dumps(model))  # DDP/checkpoints pickle the modules
        assert torch.equal(clone(x)[0], ref)
        model.fuse(verbose=False)
        assert not any(hasattr(m, "bn") for m in model.modules())
        assert torch.allclose(model(x)[0], ref, rtol=1e-4, atol=1e-3)


@pytest.mark.slow
def test_onnx_export_matches_pytorch(tmp_path, monkeypatch):
    import onnxruntime as ort
    from ultralytics import YOLO

    monkeypatch.chdir(tmp_path)
    yolo = YOLO("yolov5n_effv2_bifpn.yaml")
    _randomize(yolo.model)
    path = yolo.export(format="onnx", imgsz=64, device="cpu")  # exports a fused copy, as every export does
    model = yolo.model.eval().fuse(verbose=False)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)[0].numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert out.shape == ref.shape == (1, 4 + 80, 84)
    np.testing.assert_allclose(out[:, 4:], ref[:, 4:], rtol=0, atol=1e-4)  # class scores
    np.testing.assert_allclose(out[:, :4], ref[:, :4], rtol=1e-6, atol=1e-4)  # boxes in pixels (up to ~500 here)


# ------------------------------------------------------------------------------------------------ registry, train
@pytest.mark.slow
def test_train_one_epoch_and_print_weights(tmp_path, demo_data):
    run_cli(tiny_train("yolov5n_effv2_bifpn.yaml", demo_data, tmp_path, "run"), cwd=tmp_path, timeout=600)
    weights = tmp_path / "run" / "weights" / "last.pt"
    assert weights.is_file()
    tool = [PYTHON, str(ROOT / "tools" / "bifpn_weights.py"), str(weights)]
    rows = json.loads(run_cli([*tool, "--json"], cwd=tmp_path).stdout)
    assert len(rows) == 3 * len(NODES)  # phi 0: 3 layers x 4 nodes
    for r in rows:
        assert len(r["weights"]) == len(r["inputs"]) and min(r["weights"]) >= 0
        assert 1 - 1e-3 < sum(r["weights"]) <= 1
    assert any(abs(w - 1 / len(r["weights"])) > 1e-6 for r in rows for w in r["weights"])  # training moved them
    table = run_cli(tool, cwd=tmp_path).stdout
    assert "layer 2  P4_out  P4 " in table and "P3_out" in table
