"""Classic YOLOv5 host: the real pip package ``yolov5`` 7.0.14 in its own virtual environment (tests/yolov5_venv.py)
builds, trains, reloads and exports the classic YAMLs; skipped without ``EFFDET_YOLOV5_PYTHON``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from yolov5_venv import PY, needs_package, package_train, venv_env, venv_run, venv_script

from effdet_plugin import classic
from effdet_plugin.paths import model_yaml_dir

CLASSIC = model_yaml_dir() / classic.FOLDER


BUILD = """
import json, logging, torch
import yolov5.models.yolo as a
import models.yolo as b  # the same source imported again under the clone's name: a second module, its own seams
from effdet_plugin.bifpn import PHI_BY_SCALE, bifpn_size
from effdet_plugin.blocks import FusedMBConv, MBConv
from effdet_plugin.hosts import rebind, yolov5 as host
logging.getLogger("yolov5").setLevel(logging.ERROR)
out = {"fingerprint": [host.is_yolov5(a), host.is_yolov5(b)],
       "rebound": [rebind.is_rebound(a, "parse_model"), rebind.is_rebound(b, "parse_model")],
       "own_seams": a is not b and rebind.original(a, "parse_model") is not rebind.original(b, "parse_model")}
# a Conv row of c_out conv_arg(w) is w wide in YOLOv5, checked with YOLOv5's own make_divisible
d = {"nc": 80, "depth_multiple": 0.33, "width_multiple": 0.25, "anchors": 3}
bad = []
for gw in (0.25, 0.5, 0.75, 1.0, 1.25):
    r = host.Rules(a, {**d, "width_multiple": gw})
    bad += [(gw, w) for w in range(8, 1281, 8) if a.make_divisible(r.conv_arg(w) * gw, 8) != w]
out["conv_arg_mismatches"] = bad
models = {}
for mod, name in [(a, "yolov5n_effv2"), (a, "yolov5s_effv2"), (a, "yolov5n_effv2_bifpn"), (a, "yolov5s_effv2_bifpn"),
                  (b, "yolov5n_effv2"), (a, "yolov5n_effv2-seg")]:
    model = mod.SegmentationModel if name.endswith("-seg") else mod.DetectionModel  # as segment/train.py builds it
    m = model(f"{FOLDER}/{name}.yaml", nc=3).eval()
    gd, gw = m.yaml["depth_multiple"], m.yaml["width_multiple"]
    no = 3 * (m.yaml["nc"] + 5)  # YOLOv5 leaves a row of this width unscaled: 24 with 3 classes, as the stem's
    x = torch.rand(1, 3, 128, 128)
    y, outs = m(x)[0], []
    feats, h = [], x
    for layer in m.model:  # widths and repeats of the plugin rows against YOLOv5's rule for a Conv/C3 row
        inp = h if layer.f == -1 else (feats[layer.f] if isinstance(layer.f, int) else [feats[j] for j in layer.f])
        h = layer(inp)
        feats.append(h)
    rows = m.yaml["backbone"] + m.yaml["head"]
    widths = []
    for i, (f, n, name_, args) in enumerate(rows):
        if name_ in ("stem", "FusedMBConv", "MBConv"):
            blocks = len(m.model[i]) if isinstance(m.model[i], torch.nn.Sequential) else 1
            want = args[0] if args[0] == no else a.make_divisible(args[0] * gw, 8)
            widths.append([feats[i].shape[1], want, blocks, max(round(n * gd), 1) if n > 1 else n])
        if name_ == "BiFPN":
            widths.append([feats[i][0].shape[1], bifpn_size(PHI_BY_SCALE[name[6]])[0], 1, 1])
    convs = [k for k in m.modules() if type(k).__name__ == "Conv"]
    models[f"{mod.__name__}:{name}"] = {
        "params": sum(p.numel() for p in m.parameters()), "stride": m.stride.tolist(), "widths": widths,
        "blocks": sorted({type(k).__name__ for k in m.modules() if isinstance(k, (FusedMBConv, MBConv))}),
        "host_conv": all(type(k) is mod.Conv for k in convs),
        "table": sum(type(k).__module__.startswith("effdet_plugin") for k in m.model),
    }
    m.fuse()
    models[f"{mod.__name__}:{name}"].update(
        bn_after_fuse=sum(isinstance(k, torch.nn.BatchNorm2d) for k in m.modules()),
        fused_diff=float((m(x)[0] - y).abs().max() / y.abs().max()))
out["models"] = models
# `activation:` reaches YOLOv5's Conv rows and the plugin's blocks, and is not left set for the next model
import yaml
lite = {**yaml.safe_load(open(f"{FOLDER}/yolov5n_effv2.yaml")), "activation": "nn.ReLU6()"}
before = a.Conv.default_act
kinds = lambda m: sorted({type(k).__name__ for k in m.modules() if type(k).__name__ in ("SiLU", "ReLU6")})
out["activation"] = [kinds(a.DetectionModel(lite, nc=3)), a.Conv.default_act is before,
                     kinds(a.DetectionModel(f"{FOLDER}/yolov5n_effv2.yaml", nc=3))]
print(json.dumps(out))
"""


@needs_package
def test_package_builds_classic_yamls(tmp_path):
    """Both copies of YOLOv5's model module (yolov5.models.yolo and models.yolo) are fingerprinted and rebound with
    their own seams; the classic YAMLs build with YOLOv5's widths, repeats, Conv and strides (the -seg file's backbone
    as the detection file's); fuse() folds every BN."""
    out = venv_script(f"FOLDER = {str(CLASSIC)!r}\n" + BUILD, tmp_path)
    assert out["fingerprint"] == [True, True] and out["rebound"] == [True, True] and out["own_seams"]
    assert out["conv_arg_mismatches"] == []
    for name, m in out["models"].items():
        assert m["stride"] == [8.0, 16.0, 32.0], name
        assert all(got == want and blocks == repeats for got, want, blocks, repeats in m["widths"]), (name, m["widths"])
        assert m["blocks"] == ["FusedMBConv", "MBConv"] and m["host_conv"], name
        assert m["bn_after_fuse"] == 0 and m["fused_diff"] < 1e-4, name
    models = out["models"]
    assert models["models.yolo:yolov5n_effv2"]["params"] == models["yolov5.models.yolo:yolov5n_effv2"]["params"]
    assert (
        models["yolov5.models.yolo:yolov5n_effv2-seg"]["widths"] == models["yolov5.models.yolo:yolov5n_effv2"]["widths"]
    )
    assert out["models"]["yolov5.models.yolo:yolov5n_effv2"]["widths"][0][0] == 24  # c_out == no (3 classes): unscaled
    assert out["activation"] == [["ReLU6"], True, ["SiLU"]]


COUNTS = """
import json, logging
from pathlib import Path
import yolov5.models.yolo as y
logging.getLogger("yolov5").setLevel(logging.ERROR)
out = {"parse_model": y.parse_model.__name__}
for f in sorted(Path(y.__file__).parent.glob("yolov5*.yaml")):
    out[f.name] = sum(p.numel() for p in y.DetectionModel(str(f)).parameters())
print(json.dumps(out))
"""


@needs_package
def test_package_own_yamls_identical_with_plugin_on_and_off(tmp_path):
    on = venv_script(COUNTS, tmp_path)
    off = venv_script(COUNTS, tmp_path, EFFDET_PLUGIN_DISABLE="1")
    assert on.pop("parse_model") == "parse_model_with_plugin" and off.pop("parse_model") == "parse_model_disabled"
    assert sorted(on) == [f"yolov5{s}.yaml" for s in "lmnsx"]
    assert on == off and on["yolov5s.yaml"] == 7235389  # YOLOv5s, 80 classes: README's 7.2M


ERRORS = """
import json, sys
from yolov5.models.yolo import DetectionModel
out = {}
for f in sys.argv[1:]:
    try:
        DetectionModel(f)
        out[f] = "built"
    except Exception as e:
        out[f] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


@needs_package
def test_bad_rows_name_file_row_and_value(tmp_path):
    text = (CLASSIC / "yolov5n_effv2.yaml").read_text()
    bifpn = (CLASSIC / "yolov5n_effv2_bifpn.yaml").read_text()
    cases = {
        "stride.yaml": text.replace("[48, 3, 2, 4, 0]", "[48, 3, 3, 4, 0]"),
        "typo.yaml": text.replace(" MBConv, [384", " MBConvv, [384"),
        "odd.yaml": text.replace("stem, [24, 3, 2]", "stem, [20, 3, 2]").replace(
            "drop_path", "scale_backbone: false\ndrop_path"
        ),
        "direct.yaml": bifpn.replace("[[9, 10, 11], 1, Detect", "[[8, 10, 11], 1, Detect"),
    }
    for name, t in cases.items():
        (tmp_path / name).write_text(t)
    proc = venv_run([PY, "-c", ERRORS, *(tmp_path / n for n in cases)], tmp_path)
    msg = {Path(k).name: v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
    for name, v in msg.items():
        assert v.startswith(f"ModelRowError: {tmp_path / name}: row "), v
    assert "row 2 [-1, 4, FusedMBConv, [48, 3, 3, 4, 0]]: stride must be 1 or 2, got 3" in msg["stride.yaml"]
    assert (
        "row 6 [-1, 21, MBConvv, [384, 5, 2, 6, 0.25]]: unknown module 'MBConvv'; did you mean 'MBConv'?"
        in msg["typo.yaml"]
    )
    assert (
        "row 0 [-1, 1, stem, [20, 3, 2]]: YOLOv5's parser carries only widths that are multiples of 8"
        in msg["odd.yaml"]
    )
    assert (
        "row 12 [[8, 10, 11], 1, Detect, [nc, anchors]]: YOLOv5's parser cannot size a row that reads BiFPN "
        "(row 8)" in msg["direct.yaml"]
    )


@needs_package
def test_bad_keys_name_file_and_key(tmp_path):
    """YOLOv5's model class reads ``ch`` and (given ``nc=``) ``nc`` before its parser: each bad key of a plugin file is
    one message naming the file, however early YOLOv5 reads it."""
    text = (CLASSIC / "yolov5n_effv2.yaml").read_text()
    cases = {
        "nc.yaml": text.replace("nc: 80 #", "# "),
        "ch.yaml": text.replace("nc: 80 #", "ch: many\nnc: 80 #"),
        "depth_multiple.yaml": text.replace("depth_multiple: 0.33", "depth_multiple: a"),
        "anchors.yaml": text.replace("anchors:\n", "anchors: x\nold_anchors:\n"),
    }
    for name, t in cases.items():
        (tmp_path / name).write_text(t)
    code = ERRORS.replace("DetectionModel(f)", "DetectionModel(f, nc=3)")
    proc = venv_run([PY, "-c", code, *(tmp_path / n for n in cases)], tmp_path)
    msg = {Path(k).name: v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
    for name, v in msg.items():
        assert v.startswith(f"ModelRowError: {tmp_path / name}: top-level '{name[:-5]}': "), v
    assert "missing; the number of classes must be set" in msg["nc.yaml"]
    assert "must be a positive integer (input channels), got 'many'" in msg["ch.yaml"]


DISABLED = """
import json, logging, sys
from yolov5.models.yolo import DetectionModel
logging.getLogger("yolov5").setLevel(logging.ERROR)
out = {}
try:
    DetectionModel(sys.argv[1])
except Exception as e:
    out["off"] = f"{type(e).__name__}: {e}"
import effdet_plugin
effdet_plugin.register()  # turns the plugin on in this process after all
out["after_register"] = sum(p.numel() for p in DetectionModel(sys.argv[1]).parameters())
print(json.dumps(out))
"""


@needs_package
def test_disabled_plugin_names_the_variable(tmp_path):
    f = CLASSIC / "yolov5n_effv2.yaml"
    out = json.loads(
        venv_run([PY, "-c", DISABLED, f], tmp_path, EFFDET_PLUGIN_DISABLE="1").stdout.strip().splitlines()[-1]
    )
    assert out["off"].startswith(f"PluginDisabledError: {f} uses effdet-plugin rows")
    assert "EFFDET_PLUGIN_DISABLE=1" in out["off"] and out["after_register"] > 0


@needs_package
def test_train_ending_on_a_bad_row_prints_one_line(tmp_path):
    """``yolov5 train`` (the package's command, through its ``train.py``'s ``main``) stopping on a bad row: exit 1 with
    the row's one line last and no traceback; ``EFFDET_PLUGIN_TRACEBACK=1`` brings the traceback back."""
    from effdet_plugin.commands.demo import make_demo_dataset

    data = make_demo_dataset(tmp_path / "data", n_train=4, n_val=2, imgsz=64, seed=0)
    bad = tmp_path / "bad.yaml"
    bad.write_text((CLASSIC / "yolov5n_effv2.yaml").read_text().replace("[48, 3, 2, 4, 0]", "[48, 3, 3, 4, 0]"))
    argv = [Path(PY).parent / "yolov5", "train", "--cfg", bad, "--weights", "", "--data", data, "--imgsz", "64"]
    argv += ["--epochs", "1", "--device", "cpu", "--workers", "0", "--noplots", "--project", tmp_path / "runs"]
    runs = {}
    for shown in ("", "1"):
        env = venv_env(tmp_path, EFFDET_PLUGIN_TRACEBACK=shown)
        runs[shown] = subprocess.run(
            [str(a) for a in argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
        )
    line = f"ModelRowError: {bad}: row 2 [-1, 4, FusedMBConv, [48, 3, 3, 4, 0]]: stride must be 1 or 2, got 3"
    one, traced = runs[""], runs["1"]
    assert one.returncode == 1 and one.stderr.strip().splitlines()[-1] == line, one.stderr[-3000:]
    assert "Traceback" not in one.stderr, one.stderr[-3000:]
    assert traced.returncode == 1 and "Traceback" in traced.stderr and "in main" in traced.stderr, traced.stderr[-3000:]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """``yolov5 train`` (the package's command) for one epoch on generated data; returns best.pt."""
    return package_train(CLASSIC / "yolov5n_effv2.yaml", tmp_path_factory.mktemp("yolov5-train"))[0]


RELOAD = """
import json, sys, torch
ckpt = torch.load(sys.argv[1], map_location="cpu")  # a fresh process: the checkpoint unpickles the plugin's blocks
m = ckpt["model"].float().eval()
types = {type(k).__name__ for k in m.modules()}
x = torch.rand(1, 3, 64, 64)
y = m(x)[0]
m.fuse()
y2 = m(x)[0]
print(json.dumps({"types": sorted(types), "stride": m.stride.tolist(), "yaml": m.yaml["backbone"][1][2],
                  "bn": sum(isinstance(k, torch.nn.BatchNorm2d) for k in m.modules()),
                  "diff": float((y - y2).abs().max() / y.abs().max())}))
"""


@pytest.mark.slow
@needs_package
def test_train_one_epoch_and_reload(trained, tmp_path):
    out = venv_script(RELOAD.replace("sys.argv[1]", repr(str(trained))), tmp_path)
    assert {"Stem", "FusedMBConv", "MBConv", "Conv", "Detect"} <= set(out["types"])
    assert out["stride"] == [8.0, 16.0, 32.0] and out["yaml"] == "FusedMBConv"
    assert out["bn"] == 0 and out["diff"] < 1e-3


ONNX = """
import json, sys, numpy as np, onnxruntime as ort, torch
from yolov5.models.experimental import attempt_load
m = attempt_load(sys.argv[1], device="cpu", fuse=True)
x = torch.rand(1, 3, 64, 64)
want = m(x)[0].detach().numpy()
sess = ort.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
ts = torch.jit.load(sys.argv[3])(x)[0].detach().numpy()
print(json.dumps({"onnx": float(np.abs(got - want).max() / np.abs(want).max()),
                  "torchscript": float(np.abs(ts - want).max() / np.abs(want).max())}))
"""


@pytest.mark.slow
@needs_package
def test_export_onnx_and_torchscript(trained, tmp_path):
    """The package's export (python -m yolov5.export) on the trained checkpoint; both files give the model's output."""
    venv_run(
        [
            PY,
            "-m",
            "yolov5.export",
            "--weights",
            trained,
            "--include",
            "onnx",
            "torchscript",
            "--img",
            "64",
            "--device",
            "cpu",
        ],
        tmp_path,
        timeout=600,
    )
    onnx, ts = trained.with_suffix(".onnx"), trained.with_suffix(".torchscript")
    assert onnx.is_file() and ts.is_file(), "export failed (ONNX on torch >= 2.9 needs onnxscript in the venv)"
    out = venv_script(
        ONNX.replace("sys.argv[1]", repr(str(trained)))
        .replace("sys.argv[2]", repr(str(onnx)))
        .replace("sys.argv[3]", repr(str(ts))),
        tmp_path,
    )
    assert out["onnx"] < 1e-3 and out["torchscript"] < 1e-3


CLASSIFIER = """
import json, sys, torch
m = torch.load(sys.argv[1], map_location="cpu")["model"].float().eval()  # a fresh process
print(json.dumps({"class": type(m).__name__, "last": [type(k).__name__ for k in m.model][-2:],
                  "blocks": sorted({type(k).__name__ for k in m.modules()} & {"Stem", "FusedMBConv", "MBConv"}),
                  "out": list(m(torch.rand(1, 3, 64, 64)).shape)}))
"""


@pytest.mark.slow
@needs_package
def test_classifier_cut_from_the_trained_detector(trained, tmp_path):
    """The package's classify/train.py on the trained detection checkpoint, cut where the file's header says: the
    classifier keeps every backbone row, the last (SPPF) replaced by YOLOv5's Classify, and trains."""
    from task_data import make_task_dataset

    header = (CLASSIC / "yolov5n_effv2.yaml").read_text().split("\n\n")[0]
    cutoff = int(header.split("classify/train.py --model best.pt --cutoff ")[1].split()[0])
    rows = yaml.safe_load((CLASSIC / "yolov5n_effv2.yaml").read_text())["backbone"]
    assert cutoff == len(rows) and rows[-1][2] == "SPPF"
    data = make_task_dataset(tmp_path / "data", "classify", n_train=8, n_val=4, size=64)
    args = ["--model", trained, "--cutoff", cutoff, "--data", data, "--epochs", "1", "--img", "64", "--batch-size", "4"]
    runs = tmp_path / "runs"
    args += ["--device", "cpu", "--workers", "0", "--project", runs, "--name", "exp", "--exist-ok"]
    venv_run([PY, "-m", "yolov5.classify.train", *args], tmp_path, timeout=600)
    out = venv_script(CLASSIFIER.replace("sys.argv[1]", repr(str(runs / "exp" / "weights" / "best.pt"))), tmp_path)
    assert out["class"] == "ClassificationModel" and out["last"] == ["Sequential", "Classify"]
    assert out["blocks"] == ["FusedMBConv", "MBConv", "Stem"] and out["out"] == [1, 2]


SEGMENT = """
import json, sys, numpy as np, onnxruntime as ort, torch
from yolov5.models.experimental import attempt_load
ckpt = torch.load(sys.argv[1], map_location="cpu")  # a fresh process: the checkpoint unpickles the plugin's blocks
m = ckpt["model"].float().eval()
fused = attempt_load(sys.argv[1], device="cpu", fuse=True)
x = torch.rand(1, 3, 64, 64)
want = [t.detach().numpy() for t in fused(x)[:2]]  # boxes with mask coefficients, prototypes
sess = ort.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
print(json.dumps({"class": type(m).__name__, "types": sorted({type(k).__name__ for k in m.modules()}),
                  "stride": m.stride.tolist(), "shapes": [list(g.shape) for g in got],
                  "diff": [float(np.abs(g - w).max() / np.abs(w).max()) for g, w in zip(got, want)]}))
"""


@pytest.mark.slow
@needs_package
def test_segment_train_reload_and_export(tmp_path):
    """The package's segment/train.py on a shipped classic -seg file and generated masks, then, in fresh processes,
    ``yolov5.export`` to ONNX and a reload: a SegmentationModel with the plugin's blocks, whose two ONNX outputs (boxes
    with mask coefficients, prototypes) are the fused model's. ``python -m yolov5.segment.train``, since 7.0.14's
    ``yolov5 segment train`` parses its options and returns without training."""
    from task_data import make_task_dataset

    data = make_task_dataset(tmp_path / "data", "segment", n_train=8, n_val=4, size=64)
    runs = tmp_path / "runs"
    train = ["--cfg", CLASSIC / "yolov5n_effv2-seg.yaml", "--weights", "", "--data", data, "--imgsz", "64"]
    train += ["--epochs", "1", "--batch-size", "4", "--device", "cpu", "--workers", "0", "--noplots"]
    venv_run([PY, "-m", "yolov5.segment.train", *train, "--project", runs, "--name", "exp", "--exist-ok"], tmp_path)
    best = runs / "exp" / "weights" / "best.pt"
    venv_run([PY, "-m", "yolov5.export", "--weights", best, "--include", "onnx", "--img", "64"], tmp_path, timeout=600)
    out = venv_script(
        SEGMENT.replace("sys.argv[1]", repr(str(best))).replace("sys.argv[2]", repr(str(best.with_suffix(".onnx")))),
        tmp_path,
    )
    assert out["class"] == "SegmentationModel" and {"Stem", "FusedMBConv", "MBConv", "Segment"} <= set(out["types"])
    assert out["stride"] == [8.0, 16.0, 32.0]
    anchors = 3 * sum((64 // s) ** 2 for s in (8, 16, 32))
    assert out["shapes"] == [[1, anchors, 5 + 2 + 32], [1, 32, 16, 16]]  # 2 classes; prototypes at stride 4
    assert max(out["diff"]) < 1e-3, out["diff"]
