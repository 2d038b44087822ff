"""load_pretrained_backbone and its errors, `pretrained=<torchvision .pth>` in training, freeze, the converter."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import (
    TINY_TRAIN,
    assert_untouched,
    logged,
    run_cli,
    snapshot,
    tiny_train,
)  # (tests/ is on sys.path under pytest)
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel, load_checkpoint

from effdet_plugin import load_pretrained_backbone
from effdet_plugin.commands.cli import main
from effdet_plugin.hosts.ultralytics_checkpoint import convert, save_checkpoint
from effdet_plugin.stages import EXACT_BACKBONES
from effdet_plugin.weights import PretrainedWeightsError, backbone_rows, read_state_dict, torchvision_key_map

B0_FREEZE = EXACT_BACKBONES["effb0"].freeze  # yolov5*_effb0.yaml: rows 0-7 are the backbone, SPPF is row 8
EXPECTS = "pretrained= / load_pretrained_backbone expects an EfficientNet state dict (torchvision's;"


@pytest.fixture(scope="module")
def b0(tmp_path_factory) -> tuple[dict, Path]:
    """torchvision efficientnet_b0 with random weights and BN statistics: its state dict and the file it is saved in."""
    torch.manual_seed(0)
    tv = torchvision.models.efficientnet_b0(weights=None)
    for m in tv.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.05, 1.0)
            m.weight.data.uniform_(0.5, 1.5)
    sd = tv.state_dict()
    path = tmp_path_factory.mktemp("tv") / "efficientnet_b0_rwightman-7f5810bc.pth"
    torch.save(sd, path)
    return sd, path


def b0_model() -> DetectionModel:
    return DetectionModel("yolov5n_effb0.yaml", nc=3, verbose=False)


@pytest.fixture(scope="module")
def untouched() -> DetectionModel:
    """A B0 model that only failed loads see (each test checks it was left as it was)."""
    return b0_model()


def assert_backbone_equals(model, sd: dict, atol: float = 0.0) -> None:
    ours = model.state_dict()
    for k, theirs in torchvision_key_map(model).items():
        torch.testing.assert_close(
            ours[k].float(), sd[theirs].float(), atol=atol, rtol=atol, msg=lambda m, k=k: f"{k}: {m}"
        )


def test_load_from_file_and_dict(b0):
    sd, path = b0
    model = b0_model()
    n = load_pretrained_backbone(model, path)
    assert n == len([k for k in sd if not k.startswith(("features.8.", "classifier."))]) == 352
    assert_backbone_equals(model, sd)

    yolo = YOLO("yolov5n_effb0.yaml")  # the YOLO wrapper and an in-memory state dict work too
    assert load_pretrained_backbone(yolo, dict(sd), verbose=False) == n
    assert_backbone_equals(yolo.model, sd)


def test_a_load_is_logged_by_whoever_loads(b0):
    """The core logs on the plugin's own logger; ``YOLO.load(<torchvision .pth>)``, through the Ultralytics adapter, on
    Ultralytics' logger."""
    sd, path = b0
    line = f"Loaded 352 backbone tensors ({{:,}} parameters) of torchvision efficientnet_b0 from {path}"
    model = b0_model()
    params = sum(p.numel() for row in backbone_rows(model) for p in row.parameters())
    with logged("effdet_plugin") as core, logged("ultralytics") as host:
        load_pretrained_backbone(model, path)
    assert core == [line.format(params)] and host == []
    yolo = YOLO("yolov5n_effb0.yaml")
    with logged("effdet_plugin") as core, logged("ultralytics") as host:
        yolo.load(str(path))
    assert core == [] and line.format(params) in host
    assert_backbone_equals(yolo.model, sd)


def test_another_architecture_says_expected_and_found(b0):
    _, path = b0
    model = DetectionModel("yolov5n_effv2-s.yaml", nc=3, verbose=False)
    before = snapshot(model)
    with pytest.raises(PretrainedWeightsError) as e:
        load_pretrained_backbone(model, path)
    msg = str(e.value)
    assert str(path) in msg and "expected torchvision efficientnet_v2_s" in msg and "found efficientnet_b0" in msg
    assert_untouched(model, before)

    b1 = torchvision.models.efficientnet_b1(weights=None).state_dict()  # same widths as B0, deeper
    with pytest.raises(PretrainedWeightsError, match=r"expected torchvision efficientnet_b0 .* found efficientnet_b1"):
        load_pretrained_backbone(b0_model(), b1)


def test_missing_unexpected_and_misshaped_keys_are_listed(b0, untouched):
    sd = dict(b0[0])
    del sd["features.4.2.block.1.1.running_var"], sd["features.6.0.block.2.fc2.bias"]
    sd["features.3.1.block.0.2.weight"] = torch.zeros(3)
    sd["features.5.0.block.2.fc1.weight"] = torch.zeros(7, 480, 1, 1)  # SE squeeze width 20 in B0
    model = untouched
    before = snapshot(model)
    with pytest.raises(PretrainedWeightsError) as e:
        load_pretrained_backbone(model, sd)
    msg = str(e.value)
    assert "missing keys: features.4.2.block.1.1.running_var, features.6.0.block.2.fc2.bias" in msg
    assert "unexpected keys: features.3.1.block.0.2.weight" in msg
    assert "features.5.0.block.2.fc1.weight (7, 480, 1, 1) (expected (20, 480, 1, 1))" in msg
    assert_untouched(model, before)


def test_classifier_is_ignored_and_backbone_only_dict_loads(b0):
    sd = {k: v for k, v in b0[0].items() if not k.startswith(("features.8.", "classifier."))}
    assert load_pretrained_backbone(b0_model(), sd, verbose=False) == 352


@pytest.fixture(scope="module")
def ultralytics_checkpoint(tmp_path_factory) -> Path:
    """An untrained yolov5n detector saved as an Ultralytics checkpoint: the wrong kind of file for pretrained=."""
    return save_checkpoint(YOLO("yolov5n.yaml"), tmp_path_factory.mktemp("ckpt") / "yolov5n-trained.pt")


NOT_TORCH = "not a torch checkpoint/state dict"
UNREADABLE = {  # file content -> what the message says it is
    "truncated": (None, "a damaged torch checkpoint/state dict (truncated?)"),
    "empty": (b"", f"an empty file, {NOT_TORCH}"),
    "text": (b"not a checkpoint, just text\n", f"{NOT_TORCH} (a text file starting 'not a checkpoint"),
    "yaml": (b"epochs: 3\nimgsz: 64\n", f"{NOT_TORCH} (a text file starting 'epochs: 3"),  # torch.load: IndexError
    "binary": (bytes(range(1, 64)) * 4, f"{NOT_TORCH} (it starts with bytes 01 02 03"),
}


@pytest.mark.parametrize("kind", UNREADABLE)
def test_unreadable_file(b0, tmp_path, kind, untouched):
    """Whatever torch.load raises (UnpicklingError, EOFError, IndexError, KeyError...), one message says what it is."""
    content, says = UNREADABLE[kind]
    path = tmp_path / "broken.pth"
    path.write_bytes(b0[1].read_bytes()[: b0[1].stat().st_size // 2] if content is None else content)
    model = untouched
    before = snapshot(model)
    with pytest.raises(PretrainedWeightsError) as e:
        load_pretrained_backbone(model, path)
    assert str(e.value).startswith(f"{path}: {says}") and len(str(e.value).splitlines()) == 1, str(e.value)
    assert_untouched(model, before)
    with pytest.raises(PretrainedWeightsError, match=re.escape(f"{path}: {says}")):
        read_state_dict(path)


def test_ultralytics_checkpoint_is_named(ultralytics_checkpoint, b0, tmp_path, untouched):
    """A detection checkpoint given as ImageNet weights: said to be one, and what pretrained= expects instead."""
    model = untouched
    before = snapshot(model)
    with pytest.raises(PretrainedWeightsError) as e:
        load_pretrained_backbone(model, ultralytics_checkpoint)
    msg = str(e.value)
    assert msg.startswith(f"{ultralytics_checkpoint}: an Ultralytics detection checkpoint") and EXPECTS in msg
    assert "truncated" not in msg and len(msg.splitlines()) == 1
    assert_untouched(model, before)

    # the same checkpoint with its model as a state dict (loadable with weights_only): the same diagnosis
    sd_ckpt = tmp_path / "as_state_dict.pt"
    torch.save({"model": DetectionModel("yolov5n.yaml", verbose=False).state_dict(), "train_args": {}}, sd_ckpt)
    with pytest.raises(
        PretrainedWeightsError,
        match=re.escape(f"{sd_ckpt}: an Ultralytics detection checkpoint") + ".*" + re.escape(EXPECTS),
    ):
        load_pretrained_backbone(model, sd_ckpt)
    assert_untouched(model, before)


def test_pickled_model_is_not_a_state_dict(b0, tmp_path, untouched):
    """torch.save(model) instead of torch.save(model.state_dict()): named, with the classes it holds."""
    path = tmp_path / "whole_model.pth"
    torch.save(torchvision.models.efficientnet_b0(weights=None), path)
    model = untouched
    before = snapshot(model)
    with pytest.raises(
        PretrainedWeightsError,
        match=re.escape(f"{path}: holds pickled Python objects (")
        + ".*not a state dict of tensors.*save model.state_dict",
    ):
        load_pretrained_backbone(model, path)
    assert_untouched(model, before)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_weights_are_refused(b0, tmp_path, bad, untouched):
    """A NaN/inf anywhere (even in a BatchNorm buffer) is refused, naming the file and the first such key."""
    sd = {k: v.clone() for k, v in b0[0].items()}
    first, later = "features.3.1.block.1.1.running_var", "features.6.0.block.0.0.weight"
    sd[first].view(-1)[5] = bad
    sd[later].view(-1)[0] = float("nan")
    path = tmp_path / "diverged.pth"
    torch.save(sd, path)
    model = untouched
    before = snapshot(model)
    what = "NaN" if math.isnan(bad) else "inf"
    with pytest.raises(PretrainedWeightsError) as e:
        load_pretrained_backbone(model, path)
    assert str(e.value) == f"{path}: tensor {first} holds {what} values; refusing non-finite weights"
    assert_untouched(model, before)
    with pytest.raises(PretrainedWeightsError, match=re.escape(f"state dict: tensor {first} holds {what}")):
        load_pretrained_backbone(model, sd)
    assert_untouched(model, before)


def test_convert_writes_nothing_on_bad_weights(ultralytics_checkpoint, tmp_path):
    """The converter (ultralytics_checkpoint.convert) refuses a detection checkpoint as ImageNet weights and writes
    nothing."""
    out = tmp_path / "x.pt"
    with pytest.raises(PretrainedWeightsError, match=re.escape(f"{ultralytics_checkpoint}: an Ultralytics detection")):
        convert("yolov5n_effb0.yaml", ultralytics_checkpoint, out, nc=3)
    assert not list(tmp_path.iterdir())


def test_missing_path_and_wrong_inputs(tmp_path, b0, untouched):
    with pytest.raises(FileNotFoundError, match="pretrained weights not found: .*nope.pth"):
        load_pretrained_backbone(untouched, tmp_path / "nope.pth")
    with pytest.raises(PretrainedWeightsError, match=re.escape(f"{tmp_path}: is a folder")):
        load_pretrained_backbone(untouched, tmp_path)
    with pytest.raises(PretrainedWeightsError, match=r"not an EfficientNet state dict in torchvision naming .*conv1"):
        load_pretrained_backbone(untouched, torchvision.models.resnet18(weights=None).state_dict())
    with pytest.raises(TypeError, match="expected an Ultralytics YOLO or DetectionModel"):
        load_pretrained_backbone(torchvision.models.efficientnet_b0(weights=None), b0[0])
    with pytest.raises(PretrainedWeightsError, match="row 0 must be a plugin 'stem' row"):
        load_pretrained_backbone(DetectionModel("yolov5nu.yaml", nc=3, verbose=False), b0[0])


def test_trainer_rejects_weights_of_another_architecture(b0, demo_data, tmp_path):
    """`pretrained=<.pth>` of the wrong architecture fails at model setup with the same message."""
    model = YOLO("yolov5n_effb1.yaml")
    with pytest.raises(PretrainedWeightsError, match="expected torchvision efficientnet_b1 .* found efficientnet_b0"):
        model.train(
            data=str(demo_data), pretrained=str(b0[1]), **TINY_TRAIN, project=str(tmp_path), name="bad", val=False
        )


@pytest.mark.slow
def test_train_pretrained_freeze(b0, demo_data, tmp_path):
    """pretrained=<torchvision .pth> seeds the backbone; freeze=8 freezes exactly the backbone, which then stays put."""
    sd, path = b0
    seen = {}

    def on_train_start(trainer):
        seen["frozen"] = {k for k, p in trainer.model.named_parameters() if not p.requires_grad}
        seen["all"] = {k for k, _ in trainer.model.named_parameters()}
        assert_backbone_equals(trainer.model, sd)  # exactly the file's tensors, before any step
        assert_backbone_equals(trainer.ema.ema, sd)

    model = YOLO("yolov5n_effb0.yaml")
    model.add_callback("on_train_start", on_train_start)
    model.train(
        data=str(demo_data),
        pretrained=str(path),
        freeze=B0_FREEZE,
        **TINY_TRAIN,
        project=str(tmp_path),
        name="run",
        val=False,
    )
    backbone = {k for k in seen["all"] if int(k.split(".")[1]) < B0_FREEZE}
    always = {k for k in seen["all"] if ".dfl" in k}  # Ultralytics always freezes Detect's DFL conv
    assert backbone and seen["frozen"] == backbone | always

    trained = load_checkpoint(tmp_path / "run" / "weights" / "last.pt")[0]
    assert_backbone_equals(trained, sd, atol=2e-3)  # frozen weights and BN statistics; checkpoint is FP16


@pytest.mark.slow
def test_yolo_train_cli_pretrained(b0, demo_data, tmp_path):
    """`yolo train model=<yaml> pretrained=<torchvision .pth> freeze=8` in a fresh process (auto-activation)."""
    sd, path = b0
    args = tiny_train("yolov5n_effb0.yaml", demo_data, tmp_path, "cli", pretrained=path, freeze=B0_FREEZE, val=False)
    run_cli(args, cwd=tmp_path)
    assert_backbone_equals(load_checkpoint(tmp_path / "cli" / "weights" / "last.pt")[0], sd, atol=2e-3)


@pytest.mark.slow
def test_convert_tool_then_train(b0, demo_data, tmp_path):
    """`effdet-plugin convert-weights` writes a checkpoint that training (`yolo train model=that.pt`) starts from."""
    sd, path = b0
    out = tmp_path / "yolov5n_effb0-imagenet.pt"
    run_cli(
        [
            "effdet-plugin",
            "convert-weights",
            "--model",
            "yolov5n_effb0.yaml",
            "--weights",
            str(path),
            "--out",
            str(out),
            "--nc",
            "3",
        ],
        cwd=tmp_path,
    )
    converted = load_checkpoint(out)[0]
    assert_backbone_equals(converted, sd)  # FP32, bit-exact
    assert converted.yaml["nc"] == 3 and len(backbone_rows(converted)) == B0_FREEZE

    YOLO(out).train(
        data=str(demo_data),
        epochs=1,
        imgsz=64,
        batch=8,
        workers=0,
        plots=False,
        device="cpu",
        project=str(tmp_path),
        name="ft",
        freeze=B0_FREEZE,
        val=False,
    )
    assert_backbone_equals(load_checkpoint(tmp_path / "ft" / "weights" / "last.pt")[0], sd, atol=2e-3)


@pytest.mark.parametrize("kind", ["architecture", "text", "ultralytics"])
def test_convert_tool_errors(kind, b0, ultralytics_checkpoint, tmp_path, capsys):
    """Wrong architecture, a text file, a detection checkpoint: one line naming the file, exit 2, nothing written."""
    weights, says = {
        "architecture": (b0[1], "found efficientnet_b0"),
        "text": (tmp_path / "notes.pth", "not a torch checkpoint/state dict"),
        "ultralytics": (ultralytics_checkpoint, "an Ultralytics detection checkpoint"),
    }[kind]
    if kind == "text":
        weights.write_text("epochs: 3\n")
    out = tmp_path / "x.pt"
    argv = [
        "convert-weights",
        "--model",
        "yolov5n_effv2-s.yaml" if kind == "architecture" else "yolov5n_effb0.yaml",
        "--weights",
        str(weights),
        "--out",
        str(out),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == ([weights] if kind == "text" else [])
    assert err.startswith(f"effdet-plugin convert-weights: error: {weights}: ") and says in err, err
    assert len(err.splitlines()) == 1
