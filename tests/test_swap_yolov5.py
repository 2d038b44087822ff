"""``effdet-plugin swap`` on classic YOLOv5 sources: a YOLOv5 YAML (``anchors``, ``Detect [nc, anchors]``) or a
checkpoint trained by YOLOv5's train.py. The result is classic too; it is built, loaded and validated by YOLOv5 itself.

The refusals run here (no YOLOv5 importable in this python). The rest run in the yolov5 venv of tests/yolov5_venv.py
(``EFFDET_YOLOV5_PYTHON``, skipped without it), and in a clone of ultralytics/yolov5 with ``EFFDET_YOLOV5_REPO``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from yolov5_venv import (
    PY,
    REPO,
    clone_train_args,
    needs_clone,
    needs_package,
    package_train,
    venv_env,
    venv_run,
    venv_script,
)

from effdet_plugin.classic import FOLDER
from effdet_plugin.commands import swap
from effdet_plugin.hosts.yolov5_discovery import pickled_module
from effdet_plugin.paths import model_yaml_dir

CLASSIC_YAML = model_yaml_dir() / FOLDER / "yolov5n_effv2.yaml"  # a classic YOLOv5 YAML shipped with the plugin
no_yolov5_here = pytest.mark.skipif(
    importlib.util.find_spec("yolov5") is not None,
    reason="the yolov5 package is importable in this python: nothing to refuse",
)


def _swap_cmd() -> list:
    """``effdet-plugin swap`` of the venv: its console script (the working directory is not on sys.path there)."""
    script = Path(PY).parent / "effdet-plugin"
    return [script, "swap"] if script.is_file() else [PY, "-m", "effdet_plugin.commands.cli", "swap"]


# ------------------------------------------------------------------------------------------ here: the refusals
@no_yolov5_here
@pytest.mark.slow  # a fresh interpreter running the installed command
def test_classic_yaml_without_yolov5_is_refused_in_one_line(tmp_path):
    """This python has no YOLOv5: exit 2, one line naming the source and how to run the swap; nothing written."""
    out = tmp_path / "out.yaml"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "effdet_plugin.commands.cli",
            "swap",
            str(CLASSIC_YAML),
            "--backbone",
            "effb0",
            "-o",
            str(out),
        ],
        cwd=tmp_path,
        env={**env, "YOLO_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        f"effdet-plugin swap: error: {CLASSIC_YAML}: a classic YOLOv5 YAML is built with "
        f"YOLOv5 itself, and none is importable here;"
    )
    assert "clone of ultralytics/yolov5" in lines[0] and "yolov5 package" in lines[0]
    assert list(tmp_path.iterdir()) == []


def _fake_checkpoint(path: Path, module: str) -> None:
    """A torch checkpoint whose model is pickled from ``module`` (made importable only while it is saved)."""
    names = [module.rsplit(".", k)[0] for k in range(module.count(".") + 1)][::-1]  # yolov5, yolov5.models, ...
    saved = {n: sys.modules.get(n) for n in names}
    mod = types.ModuleType(module)

    class DetectionModel(nn.Module):
        pass

    DetectionModel.__module__, DetectionModel.__qualname__ = module, "DetectionModel"
    mod.DetectionModel = DetectionModel
    try:
        sys.modules.update({n: types.ModuleType(n) for n in names[:-1]})
        sys.modules[module] = mod
        torch.save({"model": DetectionModel(), "ema": None, "opt": {}}, path)
    finally:
        for n, m in saved.items():
            sys.modules.pop(n) if m is None else sys.modules.__setitem__(n, m)


@no_yolov5_here
def test_classic_checkpoints_without_yolov5_are_refused(tmp_path, monkeypatch):
    """The YOLOv5 module a checkpoint needs is read from its pickle without unpickling it; an existing output is
    refused before anything else is looked at."""
    monkeypatch.chdir(tmp_path)  # no clone here
    _fake_checkpoint(tmp_path / "pkg.pt", "yolov5.models.yolo")
    _fake_checkpoint(tmp_path / "clone.pt", "models.yolo")
    assert pickled_module(tmp_path / "pkg.pt") == "yolov5.models.yolo"
    assert pickled_module(tmp_path / "clone.pt") == "models.yolo"
    with pytest.raises(
        swap.SwapError,
        match=r"pkg\.pt: a checkpoint of the yolov5 package \(its model is pickled "
        r"from yolov5\.models\.yolo\), which is not installed here; install it",
    ):
        swap.swap_to_files(tmp_path / "pkg.pt", tmp_path / "a.yaml", "effv2")
    with pytest.raises(
        swap.SwapError,
        match=r"clone\.pt: a classic YOLOv5 checkpoint is built with YOLOv5 itself.*"
        r"folder of a clone of ultralytics/yolov5, or install the yolov5 package",
    ):
        swap.swap_to_files(tmp_path / "clone.pt", tmp_path / "a.yaml", "effv2")
    (tmp_path / "b.pt").write_bytes(b"mine")
    with pytest.raises(swap.SwapError, match=r"b\.pt: already exists; pass --force"):
        swap.swap_to_files(tmp_path / "pkg.pt", tmp_path / "b.yaml", "effv2")
    with pytest.raises(swap.SwapError, match="is the source file itself"):
        swap.swap_to_files(CLASSIC_YAML, CLASSIC_YAML, "effv2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.pt", "clone.pt", "pkg.pt"]
    assert pickled_module(CLASSIC_YAML) is None  # not a torch zip file


# ------------------------------------------------------------------------------------- the yolov5 pip package
ROOT = "import json, yolov5; from pathlib import Path; print(json.dumps(str(Path(yolov5.__file__).parent)))"

BUILD = """
import json, logging, torch
import yolov5.models.yolo as y
from effdet_plugin.blocks import FusedMBConv, MBConv
from effdet_plugin.commands.swap import swap_to_files
logging.getLogger("yolov5").setLevel(logging.ERROR)


def inputs(m):
    # each head row's inputs: ["head", offset] or ["stride", s] of the backbone layer it reads (from a forward pass)
    n, sizes = len(m.yaml["backbone"]), {}
    hooks = [layer.register_forward_hook(lambda mod, i, o, k=k: sizes.__setitem__(k, o.shape[-1]))
             for k, layer in enumerate(list(m.model)[:n])]
    with torch.no_grad():
        m.eval()(torch.zeros(1, 3, 128, 128))
    for h in hooks:
        h.remove()
    out = []
    for layer in list(m.model)[n:]:
        absolute = [layer.i + j if j < 0 else j for j in ([layer.f] if isinstance(layer.f, int) else layer.f)]
        out.append([["head", a - n] if a >= n else ["stride", 128 // sizes[a]] for a in absolute])
    return out


def summary(m):
    det = m.model[-1]
    return {"stride": m.stride.tolist(), "detect": type(det).__name__,
            "blocks": sorted({type(k).__name__ for k in m.modules() if isinstance(k, (FusedMBConv, MBConv))}),
            "anchors": (det.anchors * det.stride.view(-1, 1, 1)).view(det.nl, -1).tolist(),
            "bifpn": [k.phi for k in m.modules() if type(k).__name__ == "BiFPN"]}


src, new = y.DetectionModel(SRC), y.DetectionModel(OUT)
swap_to_files(NANO, BIFPN, "effv2", neck="bifpn")  # the Python API, BiFPN neck on yolov5n: phi of scale n
out = {"new": summary(new), "src_inputs": inputs(src), "new_inputs": inputs(new),
       "bifpn": summary(y.DetectionModel(BIFPN))}
print(json.dumps(out))
"""


@needs_package
def test_swap_package_yaml(tmp_path):
    """The package's yolov5s.yaml on EfficientNetV2: the classic result builds in YOLOv5 at strides 8/16/32 with
    FusedMBConv/MBConv and an anchor Detect; its head is the source's, re-pointed by stride."""
    root = Path(venv_script(ROOT, tmp_path))
    src_file, out = root / "models" / "yolov5s.yaml", tmp_path / "yolov5s-effv2.yaml"
    proc = venv_run([*_swap_cmd(), src_file, "--backbone", "effv2", "-o", out], tmp_path)
    assert proc.stdout.strip().splitlines()[-1] == f"wrote {out}"
    src, new = (yaml.safe_load(p.read_text(encoding="utf-8")) for p in (src_file, out))
    for k in ("nc", "depth_multiple", "width_multiple", "anchors"):
        assert new[k] == src[k], k
    assert "scales" not in new and new["drop_path"] == 0.0  # the recommended table's
    # the shipped classic s file's backbone: the recommended rows with its s rows (scale_rows:) written in
    shipped = yaml.safe_load((model_yaml_dir() / "yolov5" / "yolov5s_effv2.yaml").read_text())
    assert new["backbone"] == shipped["backbone"]
    assert len(new["head"]) == len(src["head"]) and new["head"][-1][2:] == ["Detect", ["nc", "anchors"]]
    assert [r[1:] for r in new["head"]] == [r[1:] for r in src["head"]]  # only `from` changed
    assert [r[0] for r in new["head"]] != [r[0] for r in src["head"]]

    code = (
        f"SRC, OUT = {str(src_file)!r}, {str(out)!r}\nNANO = {str(root / 'models' / 'yolov5n.yaml')!r}\n"
        f"BIFPN = {str(tmp_path / 'yolov5n-bifpn.yaml')!r}\n" + BUILD
    )
    res = venv_script(code, tmp_path)
    assert res["new"]["stride"] == [8.0, 16.0, 32.0] and res["new"]["detect"] == "Detect"
    assert res["new"]["blocks"] == ["FusedMBConv", "MBConv"]
    assert res["new"]["anchors"] == [[float(v) for v in a] for a in src["anchors"]]
    assert res["new_inputs"] == res["src_inputs"]  # every head row reads the same strides / head rows as before
    assert res["bifpn"]["stride"] == [8.0, 16.0, 32.0] and res["bifpn"]["bifpn"] == [0]
    text = (tmp_path / "yolov5n-bifpn.yaml").read_text()
    assert "BiFPN, [0, fastattn]" in text and "bifpn_phi" not in text and "depth_multiple: 0.33" in text


@pytest.fixture(scope="module")
def trained_yolov5n(tmp_path_factory) -> tuple[Path, Path]:
    """``yolov5 train`` for one epoch of the package's own yolov5n.yaml on generated data: (best.pt, data YAML)."""
    root = tmp_path_factory.mktemp("yolov5n-train")
    return package_train(Path(venv_script(ROOT, root)) / "models" / "yolov5n.yaml", root)


LOAD = """
import json, sys, torch
from yolov5.models.experimental import attempt_load
m = attempt_load(OUT, device="cpu", fuse=False)  # a fresh process: as val.py / detect.py load weights
ckpt = torch.load(OUT, map_location="cpu", weights_only=False)
src = torch.load(SRC, map_location="cpu", weights_only=False)
src = (src.get("ema") or src["model"]).float()
a, b = src.model[-1].state_dict(), m.model[-1].state_dict()
with torch.no_grad():
    y = m.eval()(torch.rand(1, 3, 64, 64))[0]
print(json.dumps({
    "keys": sorted(ckpt), "epoch": ckpt["epoch"], "half": next(ckpt["model"].parameters()).dtype == torch.float16,
    "opt_imgsz": (ckpt["opt"] or {}).get("imgsz"), "names": m.names, "stride": m.stride.tolist(),
    "model_class": type(ckpt["model"]).__module__, "yaml_backbone": ckpt["model"].yaml["backbone"][1][2],
    "detect_keys": sorted(a) == sorted(b), "detect_equal": all(torch.equal(a[k], b[k]) for k in a),
    "detect_tensors": len(a), "finite": bool(torch.isfinite(y).all()),
}))
"""


@pytest.mark.slow
@needs_package
def test_swap_trained_checkpoint(trained_yolov5n, tmp_path):
    """A trained best.pt: OUT.yaml and OUT.pt (YOLOv5's checkpoint format); attempt_load reads it in a fresh process,
    its Detect tensors are the trained ones, and ``yolov5 val`` runs on it."""
    best, data = trained_yolov5n
    out = tmp_path / "yolov5n-effv2.yaml"
    proc = venv_run([*_swap_cmd(), best, "--backbone", "effv2", "-o", out], tmp_path)
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == f"wrote {out}" and lines[-1] == f"wrote {out.with_suffix('.pt')}"
    transferred, total = map(int, lines[1].split()[1].split("/"))
    assert lines[1].endswith("tensors after the new backbone from the source checkpoint") and 0 < transferred < total
    d = yaml.safe_load(out.read_text())
    assert d["nc"] == 3 and d["anchors"] and d["head"][-1][2:] == ["Detect", ["nc", "anchors"]]

    res = venv_script(f"SRC, OUT = {str(best)!r}, {str(out.with_suffix('.pt'))!r}\n" + LOAD, tmp_path)
    assert res["keys"] == sorted(
        ["epoch", "best_fitness", "model", "ema", "updates", "optimizer", "opt", "git", "date", "effdet_swap"]
    )
    assert res["epoch"] == -1 and res["half"] and res["opt_imgsz"] == 64 and len(res["names"]) == 3
    assert res["model_class"] == "yolov5.models.yolo" and res["yaml_backbone"] == "FusedMBConv"
    assert res["stride"] == [8.0, 16.0, 32.0] and res["finite"]
    assert res["detect_keys"] and res["detect_equal"] and res["detect_tensors"] >= 7  # anchors, 3 convs x 2

    val = venv_run(
        [
            Path(PY).parent / "yolov5",
            "val",
            "--weights",
            out.with_suffix(".pt"),
            "--data",
            data,
            "--imgsz",
            "64",
            "--device",
            "cpu",
            "--workers",
            "0",
            "--project",
            tmp_path / "runs",
            "--name",
            "val",
            "--exist_ok",
        ],
        tmp_path,
        timeout=600,
    )
    assert " all " in val.stdout + val.stderr

    # this python has no YOLOv5: the package's checkpoint is refused in one line, and nothing is written
    if importlib.util.find_spec("yolov5") is None:
        env = {k: v for k, v in venv_env(tmp_path).items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
        refused = subprocess.run(
            [
                sys.executable,
                "-m",
                "effdet_plugin.commands.cli",
                "swap",
                str(best),
                "--backbone",
                "effv2",
                "-o",
                str(tmp_path / "x.yaml"),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "a checkpoint of the yolov5 package" in refused.stderr and not (tmp_path / "x.yaml").exists()


# -------------------------------------------------------------------------------------- a clone of the repository
CLONE_CKPT = """
import json, logging, sys, torch
from models.yolo import Model
logging.getLogger("yolov5").setLevel(logging.ERROR)
m = Model("models/yolov5n.yaml", nc=3)  # the demo data's classes
m.names, m.nc = {0: "circle", 1: "square", 2: "triangle"}, 3
torch.save({"epoch": 0, "best_fitness": 0.0, "model": m.half(), "ema": None, "updates": 0, "optimizer": None,
            "opt": {"imgsz": 64}, "date": ""}, OUT)
print(json.dumps({"module": type(m).__module__}))
"""

CLONE_LOAD = """
import json, torch
from models.experimental import attempt_load
m = attempt_load(OUT, device="cpu", fuse=True)
src = torch.load(SRC, map_location="cpu", weights_only=False)["model"].float()
ckpt = torch.load(OUT, map_location="cpu", weights_only=False)
a, b = src.model[-1].state_dict(), ckpt["model"].float().model[-1].state_dict()
print(json.dumps({"module": type(ckpt["model"]).__module__, "file": __import__("models.yolo").yolo.__file__,
                  "stride": m.stride.tolist(), "detect_equal": all(torch.equal(a[k], b[k]) for k in a)}))
"""


@pytest.mark.slow  # starts the venv's python four times, one of them a one-epoch train.py
@needs_clone
def test_swap_clone_checkpoint(tmp_path):
    """In a clone's folder, a checkpoint pickled from the clone's models.yolo is swapped with that module (not the
    package's): OUT.pt pickles models.yolo, the clone's attempt_load reads it (Detect tensors unchanged), and its
    train.py fine-tunes from it with every tensor transferred."""
    from effdet_plugin.commands.demo import make_demo_dataset

    repo = Path(REPO)
    src = tmp_path / "clone-n.pt"
    made = venv_script(f"OUT = {str(src)!r}\n" + CLONE_CKPT, repo)
    assert made["module"] == "models.yolo"
    out = tmp_path / "clone-n-effv2.yaml"
    venv_run([*_swap_cmd(), src, "--backbone", "effv2", "-o", out], repo)
    res = venv_script(f"SRC, OUT = {str(src)!r}, {str(out.with_suffix('.pt'))!r}\n" + CLONE_LOAD, repo)
    assert res["module"] == "models.yolo" and Path(res["file"]).resolve().is_relative_to(repo.resolve())
    assert res["stride"] == [8.0, 16.0, 32.0] and res["detect_equal"]
    data = make_demo_dataset(tmp_path / "data", n_train=8, n_val=4, imgsz=64, seed=0)
    train = venv_run(
        clone_train_args(["--weights", out.with_suffix(".pt")], data, tmp_path / "runs", "ft"),
        repo,
        timeout=600,
        YOLO_VERBOSE="True",
    )  # the clone logs through Ultralytics' LOGGER (conftest quiets it)
    n = re.search(r"Transferred (\d+)/(\d+) items", train.stdout + train.stderr)
    assert n and n[1] == n[2], (train.stdout + train.stderr)[-2000:]


# ---------------------------------------------------------------------------- classic tasks, recorded outputs
def test_classic_classifier_yaml_is_refused(tmp_path, capsys):
    """YOLOv5 builds no classifier from a YAML: a classic file ending in Classify is refused in one line naming it
    and what to do instead, before any YOLOv5 is looked for; nothing is written."""
    d = yaml.safe_load(CLASSIC_YAML.read_text())
    d["head"] = [[-1, 1, "Classify", ["nc"]]]
    src = tmp_path / "mine-cls.yaml"
    src.write_text(yaml.safe_dump(d))
    from effdet_plugin.commands.cli import main

    assert main(["swap", str(src), "--backbone", "effv2", "-o", str(tmp_path / "out.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"effdet-plugin swap: error: {src}: the head ends in 'Classify';")
    assert "classify/train.py --model DETECTION.pt" in err[0] and sorted(tmp_path.iterdir()) == [src]


RECORD = """
import json, yolov5
from pathlib import Path
from effdet_plugin.commands.swap import swap_to_files
models = Path(yolov5.__file__).parent / "models"
swap_to_files(models / "yolov5s.yaml", "yolov5s-effv2-classic.yaml", "effv2")
swap_to_files(models / "yolov5n.yaml", "yolov5n-effb0-bifpn-classic.yaml", "effb0", "bifpn")
print(json.dumps("ok"))
"""


@needs_package
def test_classic_text_as_recorded(tmp_path):
    """The classic files swap writes for the package's yolov5s (effv2) and yolov5n (effb0, BiFPN) are the text they
    were before the swap package: their own SPPF row, kept now, is the one the shipped YAML brought then."""
    venv_script(RECORD, tmp_path)
    recorded = Path(__file__).parent / "data" / "swap_main"
    for name in ("yolov5s-effv2-classic.yaml", "yolov5n-effb0-bifpn-classic.yaml"):
        assert (tmp_path / name).read_text() == (recorded / name).read_text(), name


SEGMENT = """
import json, logging, torch
import yolov5.models.yolo as y
from pathlib import Path
from yolov5.models.experimental import attempt_load
logging.getLogger("yolov5").setLevel(logging.ERROR)
models = Path(y.__file__).parent
torch.manual_seed(0)
m = y.SegmentationModel(str(models / "segment" / "yolov5n-seg.yaml"), nc=3)
for k in m.modules():  # every transferred tensor distinguishable from a fresh initialization
    if isinstance(k, torch.nn.BatchNorm2d):
        k.running_mean.uniform_(-1, 1)
        k.weight.data.uniform_(0.5, 1.5)
m.names = {0: "circle", 1: "square", 2: "triangle"}
torch.save({"epoch": 0, "model": m.half(), "ema": None, "optimizer": None, "opt": {"imgsz": 64}}, "seg.pt")
cls = y.ClassificationModel(model=y.DetectionModel(str(models / "yolov5n.yaml")), nc=3)  # as classify/train.py cuts it
torch.save({"epoch": 0, "model": cls.half(), "ema": None, "optimizer": None}, "cls.pt")
print(json.dumps({"yaml": str(models / "segment" / "yolov5n-seg.yaml")}))
"""

SEGMENT_LOAD = """
import json, torch
from pathlib import Path
from yolov5.models.experimental import attempt_load
src = torch.load("seg.pt", map_location="cpu", weights_only=False)["model"].float()
new = attempt_load(str(Path("seg-effv2.pt").resolve()), device="cpu", fuse=False)  # a bare name: a hub model
a, b = src.model[-1].state_dict(), new.model[-1].state_dict()
built = __import__("yolov5.models.yolo", fromlist=["x"]).SegmentationModel("from-yaml-effv2.yaml")
with torch.no_grad():
    out = new.eval()(torch.rand(1, 3, 64, 64))
print(json.dumps({"class": type(new).__name__, "head": type(new.model[-1]).__name__, "stride": new.stride.tolist(),
                  "names": new.names, "equal": sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a),
                  "built": [type(built).__name__, type(built.model[-1]).__name__, built.stride.tolist()],
                  "proto": list(out[1].shape)}))
"""


@needs_package
def test_classic_segment_yaml_and_checkpoint(tmp_path):
    """Classic YOLOv5 segmentation: the package's yolov5n-seg.yaml swaps to a file its SegmentationModel builds
    (Segment on strides 8/16/32); a segment checkpoint keeps its Segment tensors and names in a checkpoint
    attempt_load reads; a classifier cut from a detection model is refused in one line."""
    made = venv_script(SEGMENT, tmp_path)
    venv_run([*_swap_cmd(), made["yaml"], "--backbone", "effv2", "-o", tmp_path / "from-yaml-effv2.yaml"], tmp_path)
    d = yaml.safe_load((tmp_path / "from-yaml-effv2.yaml").read_text())
    assert d["head"][-1][2:] == ["Segment", ["nc", "anchors", 32, 256]] and d["backbone"][-1][2] == "SPPF"
    text = (tmp_path / "from-yaml-effv2.yaml").read_text()
    assert "# Use: python segment/train.py --cfg from-yaml-effv2.yaml" in text
    proc = venv_run([*_swap_cmd(), "seg.pt", "--backbone", "effv2", "-o", "seg-effv2.yaml"], tmp_path)
    m = re.search(r"transferred (\d+)/(\d+) tensors after the new backbone", proc.stdout)
    assert m and 0 < int(m[1]) < int(m[2]), proc.stdout  # the rows reading the new backbone change width
    res = venv_script(SEGMENT_LOAD, tmp_path)
    assert res["class"] == "SegmentationModel" and res["head"] == "Segment" and res["equal"]
    assert res["stride"] == [8.0, 16.0, 32.0] and len(res["names"]) == 3 and res["proto"][1] == 32
    assert res["built"] == ["SegmentationModel", "Segment", [8.0, 16.0, 32.0]]

    refused = subprocess.run(
        [str(a) for a in (*_swap_cmd(), "cls.pt", "--backbone", "effv2", "-o", "cls-effv2.yaml")],
        cwd=tmp_path,
        env=venv_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert "cls.pt: its ClassificationModel was not built from a model YAML" in lines[0]
    assert not (tmp_path / "cls-effv2.yaml").exists()
