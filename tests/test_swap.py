"""``effdet-plugin swap`` / ``swap_backbone`` on detection sources: built-in sources, the text written against outputs
recorded before the swap package, exact backbones, BiFPN, checkpoints, refusals. Output files: tests/test_swap_outputs.py;
the other tasks: tests/test_swap_tasks.py."""

from __future__ import annotations

import argparse
import re
from copy import deepcopy
from pathlib import Path

import pytest
import torch
import yaml
from conftest import load_yaml, tiny_train  # (tests/ is on sys.path under pytest)
from ultralytics.nn import tasks
from ultralytics.nn.tasks import DetectionModel

from effdet_plugin import routing
from effdet_plugin.commands import swap
from effdet_plugin.commands.cli import main
from effdet_plugin.commands.swap import formats, parts, surgery, ultralytics_format, yaml_text
from effdet_plugin.paths import model_yaml_dir

RECORDED = Path(__file__).parent / "data" / "swap_main"  # swap's outputs before the swap package (commit 6bb36b5)

OWN_LAST_STAGE = {
    "yolov3u.yaml": 0,
    "yolov5su.yaml": 1,
    "yolo11s.yaml": 2,
    "yolov8s.yaml": 1,
    "yolo12s.yaml": 0,
    "yolo26s.yaml": 2,
}  # rows of SPPF/C2PSA the source's backbone ends in
SOURCES = [
    pytest.param("yolov3u.yaml", marks=pytest.mark.slow),  # a 60M-parameter source: ~5 s to build twice
    *("yolov5su.yaml", "yolo11s.yaml"),  # the fast set: one anchor-free C3 source and one C3k2/C2PSA source
    *(pytest.param(n, marks=pytest.mark.slow) for n in ("yolov8s.yaml", "yolo12s.yaml", "yolo26s.yaml")),
]


def _model(d: dict):
    return DetectionModel(deepcopy(d), ch=3, verbose=False)


def _head_inputs(model, n_backbone: int) -> list[list[tuple[str, int]]]:
    """For each head row, what each input is: ('head', row offset) or ('stride', s) of the backbone layer it reads.

    Strides come from a forward pass of the built model, independently of how swap found them.
    """
    sizes = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o, k=k: sizes.__setitem__(k, o.shape[-1]))
        for k, m in enumerate(list(model.model)[:n_backbone])
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 128, 128))
    for h in hooks:
        h.remove()
    out = []
    for m in list(model.model)[n_backbone:]:
        refs = [m.f] if isinstance(m.f, int) else m.f
        absolute = [m.i + j if j < 0 else j for j in refs]
        out.append([("head", a - n_backbone) if a >= n_backbone else ("stride", 128 // sizes[a]) for a in absolute])
    return out


@pytest.mark.parametrize("source", SOURCES)
def test_swap_builtin(source):
    """The swapped model builds with strides 8/16/32, runs, and its head is the source's re-pointed by stride."""
    src = tasks.yaml_model_load(source)
    d = swap.swap_backbone(source, "effv2")
    shipped = tasks.yaml_model_load("yolov5s_effv2.yaml")["backbone"]
    n_tail = OWN_LAST_STAGE[source]  # the source's SPPF (and C2PSA) stay; without them, the shipped YAML's SPPF
    assert d["backbone"] == (shipped[:-1] + src["backbone"][-n_tail:] if n_tail else shipped)
    assert d["nc"] == src["nc"] and d.get("scales") == src.get("scales") and d.get("scale") == (src["scale"] or None)
    assert len(d["head"]) == len(src["head"])
    for new, old in zip(d["head"], src["head"]):
        assert new[1:] == old[1:]  # repeats, module, args unchanged

    model, src_model = _model(d), _model(src)
    assert model.stride.tolist() == [8, 16, 32]
    assert _head_inputs(model, len(d["backbone"])) == _head_inputs(src_model, len(src["backbone"]))
    with torch.no_grad():
        y = model.eval()(torch.zeros(1, 3, 64, 64))
    y = y[0] if isinstance(y, (tuple, list)) else y
    assert y.shape[0] == 1 and torch.isfinite(y).all()


@pytest.mark.parametrize(
    "backbone",
    [
        name if name in ("effv2", "effb0") else pytest.param(name, marks=pytest.mark.slow)
        for name in parts.BACKBONE_FILES
    ],
)
def test_graft_strides_are_the_built_models(backbone):
    """The strides swap takes from the stage tables (no model built) are those a forward pass of the shipped YAML
    measures, row by row: the taps it re-points the head to are really at 8/16/32."""
    graft = parts.graft(backbone)
    d = tasks.yaml_model_load(model_yaml_dir() / parts.BACKBONE_FILES[backbone])
    measured = formats.probe_strides(d, ultralytics_format.UltralyticsFormat().parse)
    assert graft.strides + [32] == measured[: len(graft.stages) + 1]
    assert graft.rows(pool=True) == d["backbone"][: len(graft.stages) + 1] and graft.pool[2] == "SPPF"
    parser = argparse.ArgumentParser()
    swap.add_arguments(parser)
    assert backbone in next(a.choices for a in parser._actions if a.dest == "backbone")


def test_probe_strides_by_the_routing_walk(monkeypatch):
    """Strides of every backbone row come from the one routing walk (yolov8's backbone, measured)."""
    calls = []

    def counting_walk(*args, **kwargs):
        calls.append(kwargs.get("stop"))
        return routing.walk(*args, **kwargs)

    monkeypatch.setattr(formats, "walk", counting_walk)
    d = tasks.yaml_model_load("yolov8n.yaml")
    assert formats.probe_strides(d, ultralytics_format.UltralyticsFormat().parse) == [2, 4, 4, 8, 8, 16, 16, 32, 32, 32]
    assert calls == [len(d["backbone"]) - 1]  # the walk stops after the backbone


def test_wide_backbone_rows_and_drop_path_carried():
    """effv2-wide brings its widened rows and its drop_path 0.0 (replacing nothing else of the source)."""
    d = swap.swap_backbone("yolov8s.yaml", "effv2-wide")
    assert d["backbone"] == tasks.yaml_model_load("yolov5s_effv2-wide.yaml")["backbone"]
    assert d["drop_path"] == 0.0
    assert _model(d).stride.tolist() == [8, 16, 32]


def test_lite_backbone_brings_its_activation_others_keep_the_sources():
    """effv2-lite is designed for ReLU6 (no SE): the swapped model has it everywhere; another backbone keeps the
    source's own activation."""
    d = swap.swap_backbone("yolov8s.yaml", "effv2-lite")
    assert d["activation"] == "nn.ReLU6()"
    kinds = {type(m).__name__ for m in _model(d).modules()}
    assert "ReLU6" in kinds and "SiLU" not in kinds, kinds
    src = {**tasks.yaml_model_load("yolov8s.yaml"), "activation": "nn.LeakyReLU(0.1)"}
    assert swap.swap_backbone(src, "effv2-wide")["activation"] == "nn.LeakyReLU(0.1)"


@pytest.mark.slow
def test_exact_backbone_keys_carried(tmp_path):
    """An exact torchvision backbone keeps its rows and top-level scale_backbone / bn_eps, so ImageNet weights load."""
    path = model_yaml_dir() / parts.BACKBONE_FILES["effb0"]
    assert path.is_file(), f"{path} is not shipped"
    shipped = load_yaml(path.read_text())
    d = swap.swap_backbone("yolov8s.yaml", "effb0")
    sppf = next(i for i, r in enumerate(shipped["backbone"]) if r[2] == "SPPF")
    assert d["backbone"] == shipped["backbone"][: sppf + 1]
    assert d["scale_backbone"] is False and d["bn_eps"] == shipped["bn_eps"]
    model = _model(d)
    assert model.stride.tolist() == [8, 16, 32]
    n = len(d["backbone"])
    assert _head_inputs(model, n) == _head_inputs(_model(tasks.yaml_model_load("yolov8s.yaml")), 10)

    import torchvision

    from effdet_plugin import load_pretrained_backbone

    tv = torchvision.models.efficientnet_b0(weights=None)  # architecture only: the test never downloads
    torch.save(tv.state_dict(), tmp_path / "b0.pth")
    assert load_pretrained_backbone(model, tmp_path / "b0.pth", verbose=False) > 0
    assert torch.equal(next(model.model[0].parameters()), tv.features[0][0].weight)


def test_bifpn_neck():
    """--neck bifpn takes the BiFPN rows and keeps the source's Detect row."""
    assert list(model_yaml_dir().glob(f"*{parts.NECKS['bifpn']}.yaml")), "no BiFPN YAML is shipped"
    d = swap.swap_backbone("yolov8s.yaml", "effb0", neck="bifpn")
    modules = [r[2] for r in d["head"]]
    assert modules[0] == "BiFPN" and d["head"][0][0] == [3, 5, 8]  # effb0 taps: P3 row 3, P4 row 5, P5 SPPF row 8
    assert d["head"][-1][1:] == [1, "Detect", ["nc"]] and "bifpn_phi" in d
    assert _model(d).stride.tolist() == [8, 16, 32]


def test_bifpn_missing_is_clear(monkeypatch):
    monkeypatch.setitem(parts.NECKS, "bifpn", "_no_such_neck")
    with pytest.raises(swap.SwapError, match="--neck bifpn is not available"):
        swap.swap_backbone("yolov8s.yaml", "effv2", neck="bifpn")


@pytest.mark.parametrize(
    "source, why",
    [
        ("yolov8-p2.yaml", "not three levels P3/P4/P5"),
        ("yolov8-p6.yaml", "not three levels P3/P4/P5"),
        ("rtdetr-l.yaml", "RTDETRDecoder"),
        ("yolov8s-world.yaml", "WorldDetect"),
        ("yoloe-11s-seg.yaml", "YOLOESegment"),
        ("yolov8s-pose-p6.yaml", "not three levels P3/P4/P5"),
    ],
)
def test_refused_sources_write_nothing(source, why, tmp_path, capsys):
    with pytest.raises(swap.SwapError, match=re.escape(source) + ".*" + re.escape(why)):
        swap.swap_backbone(source, "effv2")
    assert main(["swap", source, "--backbone", "effv2", "-o", str(tmp_path / "out.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "supported: models whose head ends in" in err[0] and source in err[0]
    assert not list(tmp_path.iterdir())


def test_unknown_backbone_and_neck_are_one_line():
    with pytest.raises(swap.SwapError, match=r"^unknown backbone 'effv9'; choose one of effv2, .*effb0"):
        swap.swap_backbone("yolov8n.yaml", "effv9")
    with pytest.raises(swap.SwapError, match=r"^unknown neck 'fpn'; choose one of keep, bifpn$"):
        swap.swap_backbone("yolov8n.yaml", "effv2", neck="fpn")


# -------------------------------------------------------------------------------- the text against recorded outputs
def _recorded(name: str, tmp_path: Path) -> tuple[str, str]:
    """(the text recorded before the swap package, the text written now) of ``RECORDED/name``'s swap."""
    stem = name.removesuffix(".yaml")
    source, rest = stem.split("-", 1)
    neck = "bifpn" if rest.endswith("-bifpn") else "keep"
    out = tmp_path / name
    swap.swap_to_files(f"{source}.yaml", out, rest.removesuffix("-bifpn"), neck)
    return (RECORDED / name).read_text(), out.read_text()


@pytest.mark.parametrize(
    "name",
    [
        "yolov8s-effv2.yaml",
        "yolov8s-effb0.yaml",
        "yolov8n-effv2-bifpn.yaml",
        pytest.param("yolov5su-effv2-wide.yaml", marks=pytest.mark.slow),
    ],
)
def test_text_as_recorded(name, tmp_path):
    """A source whose backbone ends in SPPF alone writes the same text as before the swap package (its own SPPF row,
    kept now, is the one the shipped YAML brought then), but for one line added since: ``backbone_scales:``, the
    backbone file's own multipliers, where the source's ``scales:`` differ from them (never for exact backbones)."""
    before, now = _recorded(name, tmp_path)
    lines = now.splitlines(keepends=True)
    added = [line for line in lines if line.startswith("backbone_scales:")]
    assert "".join(line for line in lines if line not in added) == before
    backbone = parts.graft(name.split("-", 1)[1].removesuffix(".yaml").removesuffix("-bifpn"))
    source = tasks.yaml_model_load(f"{name.split('-')[0]}.yaml")
    own = backbone.backbone_scales(source["scales"])
    assert bool(added) == bool(own) and (not own or load_yaml(added[0])["backbone_scales"] == own)


def _with_own_last_stage(before: dict, tail: list) -> dict:
    """``before`` (the shipped YAML's SPPF closing the backbone) with the source's SPPF/C2PSA rows in its place."""
    n_old = len(before["backbone"])
    shift = len(tail) - 1

    def moved(j: int) -> int:
        return j if j < 0 else n_old - 1 + shift if j == n_old - 1 else j + shift if j >= n_old else j

    head = [[moved(f) if isinstance(f, int) else [moved(j) for j in f], *rest] for f, *rest in before["head"]]
    return {**before, "backbone": before["backbone"][:-1] + tail, "head": head}


@pytest.mark.parametrize(
    "name",
    [
        "yolo11n-effv2.yaml",
        "yolo11n-effb0.yaml",
        "yolo11n-effv2-lite-bifpn.yaml",
        pytest.param("yolo26n-effv2.yaml", marks=pytest.mark.slow),
    ],
)
def test_text_keeps_the_sources_last_stage(name, tmp_path):
    """YOLO11/YOLO26 sources keep their own SPPF and C2PSA rows (before the swap package, the shipped YAML's SPPF
    replaced both); everything else is written as before: the keys, the grafted rows, the head re-pointed."""
    before, now = _recorded(name, tmp_path)
    source = tasks.yaml_model_load(f"{name.split('-')[0]}.yaml")
    expected = _with_own_last_stage(load_yaml(before), source["backbone"][-2:])
    own = parts.graft(name.split("-", 1)[1].removesuffix(".yaml").removesuffix("-bifpn")).backbone_scales(
        source["scales"]
    )
    if own:  # added since: the backbone's own multipliers, where yolo11/yolo26's would size it otherwise
        expected["backbone_scales"] = own
    assert load_yaml(now) == expected
    keys = [line for line in now.splitlines() if not line.startswith(("  - ", "backbone_scales:"))]
    assert keys == [line for line in before.splitlines() if not line.startswith("  - ")]


def test_head_reading_p2_is_refused(tmp_path):
    """A user's YAML whose three-level Detect reads a stride-4 backbone layer is refused by its measured stride."""
    d = load_yaml((model_yaml_dir() / "yolov5_effv2.yaml").read_text())
    d["head"][2][0] = [-1, 2]  # the P4 concat now reads row 2, at stride 4
    f = tmp_path / "mine.yaml"
    f.write_text(yaml.safe_dump(d))
    with pytest.raises(swap.SwapError, match=r"mine.yaml: the head reads backbone layer 2 at stride 4 \(a P2 head\)"):
        swap.swap_backbone(str(f), "effv2")


def test_unreadable_source_yaml_is_one_line(tmp_path, capsys):
    """A source that is not YAML: one line naming the file, exit 2, nothing written."""
    bad = tmp_path / "broken.yaml"
    bad.write_text("backbone: [[-1, 1, Conv\nhead: {\n")
    with pytest.raises(swap.SwapError, match=re.escape(f"{bad}: cannot be read as a model YAML")):
        swap.swap_backbone(str(bad), "effv2")
    out = tmp_path / "out.yaml"
    assert main(["swap", str(bad), "--backbone", "effv2", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"effdet-plugin swap: error: {bad}: ")
    assert sorted(tmp_path.iterdir()) == [bad]


def test_missing_output_folder(tmp_path, capsys):
    out = tmp_path / "nope" / "out.yaml"
    assert main(["swap", "yolov8n.yaml", "--backbone", "effv2", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "does not exist" in err[0]
    assert not list(tmp_path.iterdir())


def _source_checkpoint(path: Path) -> None:
    """Save a yolov8n detector (3 classes, non-default BN statistics) the way Ultralytics' final checkpoints are."""
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import DEFAULT_CFG_DICT

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    for m in model.modules():  # make every transferred tensor distinguishable from a fresh initialization
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    model.names = {0: "circle", 1: "square", 2: "triangle"}
    torch.save({"model": model.half(), "train_args": {**DEFAULT_CFG_DICT, "imgsz": 64}, "epoch": -1}, path)


@pytest.mark.slow
def test_checkpoint_transfer_and_train(tmp_path, demo_data, cli):
    """A .pt source: head tensors transfer where shapes match, an unchanged layer computes the same, OUT.pt trains."""
    from ultralytics import YOLO

    src = tmp_path / "src.pt"
    _source_checkpoint(src)
    out = tmp_path / "v8n_effv2.yaml"
    proc = cli(["effdet-plugin", "swap", str(src), "--backbone", "effv2", "-o", str(out)], cwd=tmp_path)

    a, b = YOLO(src).model, YOLO(out.with_suffix(".pt")).model
    assert b.names == a.names and b.stride.tolist() == [8, 16, 32] and b.yaml["nc"] == 3
    shift = len(b.yaml["backbone"]) - len(a.yaml["backbone"])  # 7 EfficientNet rows replace 9 yolov8 rows
    sppf = len(b.yaml["backbone"]) - 1  # yolov8's own SPPF, kept
    head = [k for k in b.state_dict() if int(k.split(".")[1]) >= sppf]
    # yolov8 rows 12 and 15 read the backbone's P4/P3 through a Concat, whose width changes with the backbone;
    # only their first conv sees that width. SPPF's hidden width is half its input's: all of it but the output BN.
    # Everything else in the neck and head keeps its shape.
    skipped = {
        f"model.{12 + shift}.cv1.conv.weight",
        f"model.{15 + shift}.cv1.conv.weight",
        *(f"model.{sppf}.cv1.bn.{t}" for t in ("weight", "bias", "running_mean", "running_var")),
        f"model.{sppf}.cv1.conv.weight",
        f"model.{sppf}.cv2.conv.weight",
    }
    m = re.search(r"transferred (\d+)/(\d+) tensors after the new backbone", proc.stdout)
    assert m and (int(m[1]), int(m[2])) == (len(head) - len(skipped), len(head)), proc.stdout
    assert set(re.findall(r"not transferred (\S+):", proc.stdout)) == skipped

    sa, sb = a.state_dict(), b.state_dict()
    for k in head:
        if k not in skipped:
            old = f"model.{int(k.split('.')[1]) - shift}.{k.split('.', 2)[2]}"
            assert torch.equal(sa[old], sb[k]), k
    # Row 18 (C2f on the head's own P4 path) gets the same input in both models and must give the same output.
    x = torch.randn(1, a.model[18].cv1.conv.in_channels, 8, 8)
    with torch.no_grad():
        assert torch.equal(a.model[18].eval()(x), b.model[18 + shift].eval()(x))

    cli(tiny_train(out.with_suffix(".pt"), demo_data, tmp_path / "runs", "pt"), cwd=tmp_path)
    assert (tmp_path / "runs" / "pt" / "weights" / "last.pt").is_file()


@pytest.mark.slow
def test_cli_yaml_trains(tmp_path, demo_data, cli):
    """The swapped YAML of a built-in trains with `yolo train model=OUT.yaml` in a fresh process."""
    out = tmp_path / "yolo11n-effv2.yaml"
    cli(["effdet-plugin", "swap", "yolo11s.yaml", "--backbone", "effv2", "--scale", "n", "-o", str(out)], cwd=tmp_path)
    assert load_yaml(out.read_text())["scale"] == "n"
    proc = cli(tiny_train(out, demo_data, tmp_path / "runs", "y"), cwd=tmp_path)
    assert (tmp_path / "runs" / "y" / "weights" / "last.pt").is_file(), proc.stdout[-2000:]


def test_recommended_backbone_brings_its_per_scale_rows():
    """effv2's n and s rows (`scale_rows:`) come along, so a swapped n model has yolov5n_effv2's backbone; a source
    without `scales:` (classic YOLOv5) gets the rows of the YOLOv5 scale whose multiples it has, written in."""
    shipped = tasks.yaml_model_load("yolov5n_effv2.yaml")
    d = swap.swap_backbone("yolov8n.yaml", "effv2")
    assert d["scale"] == "n" and d["scale_rows"] == shipped["scale_rows"]
    text = yaml_text.dump_yaml(d)  # one row a line, before the rows it replaces, and read back as written
    assert "\nscale_rows:" in text and text.index("scale_rows:") < text.index("backbone:")
    assert (
        "\n  n:\n    3: [-1, 6, FusedMBConv, [192, 3, 2, 2, 0]]\n    4: [-1, 6, FusedMBConv, [192, 3, 2, 4, 0]]\n"
        in text
    )
    assert load_yaml(text)["scale_rows"] == shipped["scale_rows"]
    ours = _model(d)
    ref = DetectionModel("yolov5n_effv2.yaml", nc=ours.yaml["nc"], verbose=False)
    n = len(shipped["backbone"])
    assert [(k, v.shape) for k, v in ours.model[:n].state_dict().items()] == [
        (k, v.shape) for k, v in ref.model[:n].state_dict().items()
    ]
    classic = {k: v for k, v in d.items() if k not in ("scales", "scale")}
    for multiples, block in (((0.33, 0.25), "FusedMBConv"), ((0.67, 0.75), "MBConv"), ((0.5, 0.5), "MBConv")):
        c = {**deepcopy(classic), "depth_multiple": multiples[0], "width_multiple": multiples[1]}
        surgery.fit_scale_rows(c)
        assert "scale_rows" not in c and [r[2] for r in c["backbone"][4:6]] == [block] * 2, multiples


@pytest.mark.parametrize("source,backbone,shipped", [("yolo26n.yaml", "effv2", "yolo26n_effv2.yaml"),
                                                      pytest.param("yolo11s.yaml", "effv2", "yolo11s_effv2.yaml",
                                                                   marks=pytest.mark.slow),  # another head and scale
                                                      ("yolo26n.yaml", "effl0", "yolo26n_effl0.yaml")])  # fmt: skip
def test_swapping_todays_heads_builds_the_shipped_family(source, backbone, shipped):
    """swap of yolo26/yolo11 builds the model the shipped file builds: the same backbone rows (backbone_scales keeps
    the backbone's own multipliers), the source's own SPPF and C2PSA, its head."""
    d = swap.swap_backbone(source, backbone)
    ours, theirs = tasks.DetectionModel(d, nc=3, verbose=False), tasks.DetectionModel(shipped, nc=3, verbose=False)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.state_dict().items()
    ]
    assert [type(m).__name__ for m in ours.modules()] == [type(m).__name__ for m in theirs.modules()]
