"""Classic YOLOv5 host: the adapter (hosts/yolov5.py), the classic YAMLs (classic.py) and ``effdet-plugin yaml``.

The first tests run here. The rest run the real pip package ``yolov5`` 7.0.14 in its own virtual environment, in
subprocesses (so auto-activation is what is tested): make one with ``bash tools/setup_yolov5_env.sh DIR`` and set
``EFFDET_YOLOV5_PYTHON=DIR/bin/python``; without it they are skipped. ``EFFDET_YOLOV5_REPO=PATH`` (a clone of
ultralytics/yolov5, run with that same python) adds the clone's train.py/val.py/detect.py/export.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import textwrap
import types
from pathlib import Path

import pytest
import yaml
from torch import nn

from effdet_plugin import assemble, classic, scale_rows
from effdet_plugin.bifpn import PHI_BY_SCALE, bifpn_size
from effdet_plugin.commands import export_yaml
from effdet_plugin.hosts import yolov5 as host
from effdet_plugin.paths import model_yaml_dir
from effdet_plugin.rows import ModelRowError
from effdet_plugin.stages import SCALES, main, stale_yamls

PY = os.environ.get("EFFDET_YOLOV5_PYTHON")
REPO = os.environ.get("EFFDET_YOLOV5_REPO")
_package = pytest.mark.skipif(
    not PY,
    reason="EFFDET_YOLOV5_PYTHON is unset: the yolov5 pip package runs in its own venv "
    "(bash tools/setup_yolov5_env.sh DIR, then EFFDET_YOLOV5_PYTHON=DIR/bin/python)",
)


def needs_package(test):
    """Runs in the yolov5 venv: a fresh interpreter importing torch and yolov5 per call, so it counts as slow."""
    return pytest.mark.slow(_package(test))


needs_clone = pytest.mark.skipif(
    not (PY and REPO), reason="EFFDET_YOLOV5_REPO (a clone of ultralytics/yolov5) and EFFDET_YOLOV5_PYTHON are needed"
)
CLASSIC = model_yaml_dir() / classic.FOLDER


# ------------------------------------------------------------------------------------------- here: YAMLs, command
def test_classic_yamls_follow_the_tables():
    """Fifteen files: rows and depth/width multiples as the Ultralytics file's scale (the recommended family's differ
    from yolov5's own at m/l/x, BiFPN's are yolov5's), YOLOv5's anchors, Detect [nc, anchors] or Segment [nc, anchors,
    32, 256] as yolov5s-seg.yaml's, BiFPN's phi per scale."""
    unified = {
        n: yaml.safe_load((model_yaml_dir() / n).read_text())
        for n in ("yolov5_effv2.yaml", "yolov5_effv2-seg.yaml", "yolov5_effv2_bifpn.yaml")
    }
    assert sorted(p.name for p in CLASSIC.glob("*.yaml")) == sorted(classic.CLASSIC_YAMLS)
    assert len(classic.CLASSIC_YAMLS) == 15
    assert sum(spec.task == "segment" for spec in classic.CLASSIC_YAMLS.values()) == 5
    for name, spec in classic.CLASSIC_YAMLS.items():
        d = yaml.safe_load((CLASSIC / name).read_text(encoding="ascii", errors="ignore"))  # as YOLOv5 reads it
        source = unified[spec.ultralytics_file]["scales"][spec.scale][:2]
        assert [d["depth_multiple"], d["width_multiple"]] == source, (name, source)
        if spec.neck == "bifpn":
            assert tuple(source) == classic.SCALES[spec.scale] == SCALES[spec.scale][:2]
        assert d["anchors"] == [list(a) for a in classic.ANCHORS] and "scales" not in d
        src = scale_rows.apply({**unified[spec.ultralytics_file], "scale": spec.scale}, spec.scale)
        assert d["backbone"] == src["backbone"], name  # the scale's own rows where `scale_rows:` gives some
        output = ["Segment", ["nc", "anchors", 32, 256]] if spec.task == "segment" else ["Detect", ["nc", "anchors"]]
        assert d["head"][-1][2:] == output, name
        if spec.neck == "bifpn":
            assert d["head"][0][2:] == ["BiFPN", [PHI_BY_SCALE[spec.scale], "fastattn"]]
            assert f"width {bifpn_size(PHI_BY_SCALE[spec.scale])[0]}" in (CLASSIC / name).read_text()
        else:
            assert [r[:3] for r in d["head"]] == [r[:3] for r in unified[spec.ultralytics_file]["head"]], name


def test_a_task_yolov5_builds_no_model_of_is_refused():
    with pytest.raises(ValueError, match="classic YOLOv5 builds no 'pose' model from a YAML"):
        classic.ClassicYaml("effv2", "pan", "n", "a table", task="pose")


def test_one_command_regenerates_and_checks_the_classic_files(tmp_path, capsys):
    assert stale_yamls(model_yaml_dir()) == []
    assert main(["--dir", str(tmp_path)]) == 0 and (tmp_path / "yolov5" / "yolov5s_effv2.yaml").is_file()
    (tmp_path / "yolov5" / "yolov5m_effv2_bifpn.yaml").write_text("stale\n")
    capsys.readouterr()
    assert main(["--check", "--dir", str(tmp_path)]) == 1
    assert "yolov5m_effv2_bifpn.yaml" in capsys.readouterr().out
    assert main(["--dir", str(tmp_path)]) == 0 and stale_yamls(tmp_path) == []


def _args(name, output=None, fmt="ultralytics", force=False):
    return argparse.Namespace(name=name, output=output, format=fmt, force=force)


def test_yaml_command_writes_refuses_and_suggests(tmp_path, capsys):
    out = tmp_path / "models" / "yolov5s_effv2.yaml"
    assert export_yaml.run(_args("yolov5s_effv2.yaml", out, "yolov5")) == 0
    assert out.read_text() == (CLASSIC / "yolov5s_effv2.yaml").read_text()
    out.write_text("mine\n")
    with pytest.raises(ValueError, match="exists; pass --force"):
        export_yaml.run(_args("yolov5s_effv2.yaml", out, "yolov5"))
    assert out.read_text() == "mine\n"
    assert export_yaml.run(_args("yolov5s_effv2", out, "yolov5", force=True)) == 0  # .yaml optional
    assert out.read_text() == (CLASSIC / "yolov5s_effv2.yaml").read_text()
    seg = tmp_path / "models" / "segment" / "yolov5n_effv2-seg.yaml"  # where a clone keeps yolov5n-seg.yaml
    assert export_yaml.run(_args("yolov5n_effv2-seg.yaml", seg, "yolov5")) == 0
    assert seg.read_text() == (CLASSIC / "yolov5n_effv2-seg.yaml").read_text()
    with pytest.raises(
        ValueError,
        match=r"unknown --format yolov5 model 'yolov5s_efv2'; did you mean "
        r"'yolov5s_effv2\.yaml'",
    ):
        export_yaml.run(_args("yolov5s_efv2", tmp_path / "x.yaml", "yolov5"))
    with pytest.raises(ValueError, match="it is a --format ultralytics model"):
        export_yaml.run(_args("yolov5_effb0.yaml", tmp_path / "x.yaml", "yolov5"))
    # Ultralytics format: the file with every scale; a scale-lettered name picks the unified file
    capsys.readouterr()
    assert export_yaml.run(_args("yolov5s_effv2_bifpn.yaml", tmp_path / "yolov5s_effv2_bifpn.yaml")) == 0
    written = (tmp_path / "yolov5s_effv2_bifpn.yaml").read_text()
    assert written == (model_yaml_dir() / "yolov5_effv2_bifpn.yaml").read_text()
    assert "note:" not in capsys.readouterr().out
    assert export_yaml.run(_args("yolov5s_effv2_bifpn.yaml", tmp_path / "mine.yaml")) == 0
    assert "scale letter" in capsys.readouterr().out  # mine.yaml would train at the first scale: say so
    assert not list(tmp_path.glob("x.yaml"))


def test_yaml_command_through_the_cli(tmp_path, capsys):
    from effdet_plugin.commands import cli

    if "yaml" not in cli.COMMANDS:
        pytest.skip("the 'yaml' subcommand is not registered in effdet_plugin.commands.cli yet")
    out = tmp_path / "y.yaml"
    assert cli.main(["yaml", "yolov5n_effv2_bifpn.yaml", "--format", "yolov5", "-o", str(out)]) == 0
    assert cli.main(["yaml", "yolov5n_effv2_bifpn.yaml", "--format", "yolov5", "-o", str(out)]) == 2
    assert cli.main(["yaml", "yolov5n_efv2.yaml", "--format", "yolov5", "-o", str(tmp_path / "z.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--force" in err[0] and "did you mean 'yolov5n_effv2.yaml'" in err[1]


# ------------------------------------------------------------------------------------- here: fingerprint, rules
def _fake_yolo(kind: str = "yolov5") -> types.ModuleType:
    """A module shaped like YOLOv5's models/yolo.py (or a fork's): only what the fingerprint reads."""
    mod = types.ModuleType("models.yolo")

    class Conv(nn.Module):
        default_act = nn.SiLU()

    class Concat(nn.Module):
        pass

    if kind == "yolov9":  # YOLOv9: anchor-free Detect(nc, ch), DDetect

        class Detect(nn.Module):
            def __init__(self, nc=80, ch=(), inplace=True):
                super().__init__()

        mod.DDetect = Detect
    else:

        class Detect(nn.Module):
            def __init__(self, nc=80, anchors=(), ch=(), inplace=True):
                super().__init__()

    class DetectionModel(nn.Module):
        def __init__(self, cfg="yolov5s.yaml", ch=3, nc=None, anchors=None):
            super().__init__()

    def parse_model(d, ch):
        return None

    def make_divisible(x, divisor):
        return math.ceil(x / divisor) * divisor

    vars(mod).update(
        Conv=Conv,
        Concat=Concat,
        Detect=Detect,
        DetectionModel=DetectionModel,
        parse_model=parse_model,
        make_divisible=make_divisible,
        LOGGER=logging.getLogger("yolov5"),
        nn=nn,
    )
    if kind == "yolov7":  # YOLOv7: IDetect and friends, a module-level `logger`, no LOGGER
        mod.IDetect = Detect
        del mod.LOGGER
    return mod


def test_fingerprint_tells_yolov5_from_the_forks():
    assert host.is_yolov5(_fake_yolo())
    assert not host.is_yolov5(_fake_yolo("yolov7"))
    assert not host.is_yolov5(_fake_yolo("yolov9"))
    other = _fake_yolo()
    other.parse_model = lambda cfg, ch, verbose=True: None  # another parser signature
    assert not host.is_yolov5(other)
    assert not host.is_yolov5(types.ModuleType("models.yolo"))


def test_rules_scale_as_yolov5_and_find_standin_widths():
    d = {
        "nc": 80,
        "depth_multiple": 0.33,
        "width_multiple": 0.25,
        "anchors": [[10, 13, 16, 30, 33, 23]] * 3,
        "backbone": [],
        "head": [],
    }
    rules = host.Rules(_fake_yolo(), d)
    s = rules.scaling(d)
    assert [s.width(c) for c in (24, 48, 64, 128, 255, 256)] == [8, 16, 16, 32, 255, 64]  # 255 = no: left as written
    assert [s.depth(n) for n in (1, 2, 4, 9, 15)] == [1, 1, 1, 3, 5]
    for w in range(8, 2049, 8):
        assert rules.width(rules.conv_arg(w)) == w
    assert rules.conv_arg(255) == 255
    with pytest.raises(ValueError, match="multiples of 8"):
        rules.conv_arg(20)
    with pytest.raises(ModelRowError, match="width_multiple"):
        host.Rules(_fake_yolo(), {**d, "width_multiple": "big"}).scaling(d)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("nc"), "'nc': missing; the number of classes must be set"),
        (lambda d: d.pop("depth_multiple"), "'depth_multiple': missing; YOLOv5 needs a positive number"),
        (lambda d: d.update(depth_multiple="a"), "'depth_multiple': must be a positive number .*got 'a'"),
        (lambda d: d.update(width_multiple=0), "'width_multiple': must be a positive number .*got 0"),
        (lambda d: d.pop("anchors"), "'anchors': missing; YOLOv5 needs a list of"),
        (lambda d: d.update(anchors="x"), r"'anchors': must be a list of \[w, h, ...\] anchors per level or an anchor"),
        (lambda d: d.update(anchors=[[10, 13, 16]]), "'anchors': must be a list of"),
        (lambda d: d.update(ch="x"), "'ch': must be a positive integer"),
        (lambda d: d.update(channel_multiple=0), "'channel_multiple': must be a positive integer"),
        (lambda d: d.update(inplace="x"), "'inplace': must be true or false"),
        (lambda d: d.update(drop_path=2), r"'drop_path': must be a number in \[0, 1\)"),
        (lambda d: d.update(activation="relu"), r"'activation': must be a torch activation .*got 'relu'"),
        (lambda d: d.update(backbone_activation="relu6"), r"'backbone_activation': must be a torch activation"),
        (lambda d: d.update(backbone=5), "'backbone': must be a non-empty list"),
    ],
)
def test_rules_check_every_key_yolov5_reads(edit, message):
    d = yaml.safe_load((CLASSIC / "yolov5n_effv2.yaml").read_text())
    d["yaml_file"] = "mine.yaml"
    assert assemble.check_keys(d, host.Rules(_fake_yolo(), d)) is None  # YOLOv5 has no scale letter
    edit(d)
    with pytest.raises(ModelRowError, match=f"^mine.yaml: top-level {message}"):
        assemble.check_keys(d, host.Rules(_fake_yolo(), d))


# --------------------------------------------------------------------------------------- the yolov5 pip package
def _env(tmp: Path, **extra: str) -> dict:
    # the venv is self-contained: no PYTHONPATH (CI's second pass points it at another Ultralytics) and the plugin on
    env = {k: v for k, v in os.environ.items() if k not in ("EFFDET_PLUGIN_DISABLE", "PYTHONPATH")}
    venv = Path(PY).parent.parent if PY else Path(".")
    env.update(
        YOLO_OFFLINE="1",
        TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1",
        PYTHONWARNINGS="ignore",
        MPLBACKEND="Agg",
        YOLO_CONFIG_DIR=str(tmp / "ultralytics-config"),
        PYTHONUNBUFFERED="1",
    )
    env.setdefault("YOLOV5_CONFIG_DIR", str(venv / "yolov5-config"))  # holds Arial.ttf (setup_yolov5_env.sh)
    env.update(extra)
    return env


def _run(args: list, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=_env(cwd, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def _script(code: str, cwd: Path, timeout: float = 300, **env: str) -> dict:
    """Run ``code`` with the venv's python; it prints one JSON line last."""
    out = _run([PY, "-c", textwrap.dedent(code)], cwd, timeout, **env).stdout.strip().splitlines()
    return json.loads(out[-1])


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
    out = _script(f"FOLDER = {str(CLASSIC)!r}\n" + BUILD, tmp_path)
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
    on = _script(COUNTS, tmp_path)
    off = _script(COUNTS, tmp_path, EFFDET_PLUGIN_DISABLE="1")
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
    proc = _run([PY, "-c", ERRORS, *(tmp_path / n for n in cases)], tmp_path)
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
    proc = _run([PY, "-c", code, *(tmp_path / n for n in cases)], tmp_path)
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
    out = json.loads(_run([PY, "-c", DISABLED, f], tmp_path, EFFDET_PLUGIN_DISABLE="1").stdout.strip().splitlines()[-1])
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
        env = _env(tmp_path, EFFDET_PLUGIN_TRACEBACK=shown)
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
    from effdet_plugin.commands.demo import make_demo_dataset

    root = tmp_path_factory.mktemp("yolov5-train")
    data = make_demo_dataset(root / "data", n_train=8, n_val=4, imgsz=64, seed=0)
    _run(
        [
            Path(PY).parent / "yolov5",
            "train",
            "--cfg",
            CLASSIC / "yolov5n_effv2.yaml",
            "--weights",
            "",
            "--data",
            data,
            "--imgsz",
            "64",
            "--epochs",
            "1",
            "--batch_size",
            "4",
            "--device",
            "cpu",
            "--workers",
            "0",
            "--noplots",
            "--project",
            root / "runs",
            "--name",
            "exp",
            "--exist_ok",
        ],
        root,
        timeout=600,
    )
    best = root / "runs" / "exp" / "weights" / "best.pt"
    assert best.is_file()
    return best


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
    out = _script(RELOAD.replace("sys.argv[1]", repr(str(trained))), tmp_path)
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
    _run(
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
    out = _script(
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
    _run([PY, "-m", "yolov5.classify.train", *args], tmp_path, timeout=600)
    out = _script(CLASSIFIER.replace("sys.argv[1]", repr(str(runs / "exp" / "weights" / "best.pt"))), tmp_path)
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
    _run([PY, "-m", "yolov5.segment.train", *train, "--project", runs, "--name", "exp", "--exist-ok"], tmp_path)
    best = runs / "exp" / "weights" / "best.pt"
    _run([PY, "-m", "yolov5.export", "--weights", best, "--include", "onnx", "--img", "64"], tmp_path, timeout=600)
    out = _script(
        SEGMENT.replace("sys.argv[1]", repr(str(best))).replace("sys.argv[2]", repr(str(best.with_suffix(".onnx")))),
        tmp_path,
    )
    assert out["class"] == "SegmentationModel" and {"Stem", "FusedMBConv", "MBConv", "Segment"} <= set(out["types"])
    assert out["stride"] == [8.0, 16.0, 32.0]
    anchors = 3 * sum((64 // s) ** 2 for s in (8, 16, 32))
    assert out["shapes"] == [[1, anchors, 5 + 2 + 32], [1, 32, 16, 16]]  # 2 classes; prototypes at stride 4
    assert max(out["diff"]) < 1e-3, out["diff"]


# -------------------------------------------------------------------------------------- a clone of the repository
@pytest.mark.slow
@needs_clone
def test_clone_train_val_detect_export(tmp_path):
    """In a clone of ultralytics/yolov5: train.py, val.py, detect.py and export.py with a classic YAML (models.yolo)."""
    from effdet_plugin.commands.demo import make_demo_dataset

    repo = Path(REPO)
    data = make_demo_dataset(tmp_path / "data", n_train=8, n_val=4, imgsz=64, seed=0)
    cfg = tmp_path / "yolov5n_effv2_bifpn.yaml"
    export_yaml.run(_args("yolov5n_effv2_bifpn.yaml", cfg, "yolov5"))
    runs = tmp_path / "runs"
    _run(
        [
            PY,
            "train.py",
            "--cfg",
            cfg,
            "--weights",
            "",
            "--data",
            data,
            "--img",
            "64",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--workers",
            "0",
            "--noplots",
            "--project",
            runs,
            "--name",
            "exp",
            "--exist-ok",
        ],
        repo,
        timeout=600,
    )
    best = runs / "exp" / "weights" / "best.pt"
    _run([PY, "val.py", "--weights", best, "--data", data, "--img", "64", "--device", "cpu", "--project", runs], repo)
    _run(
        [
            PY,
            "detect.py",
            "--weights",
            best,
            "--source",
            data.parent / "images" / "val",
            "--img",
            "64",
            "--device",
            "cpu",
            "--project",
            runs,
        ],
        repo,
    )
    _run(
        [PY, "export.py", "--weights", best, "--include", "onnx", "torchscript", "--img", "64", "--device", "cpu"],
        repo,
        timeout=600,
    )
    assert best.with_suffix(".onnx").is_file() and best.with_suffix(".torchscript").is_file()


CLONE_DDP = r"""
import json, os, sys
import torch, torch.distributed as dist, torch.multiprocessing as mp
import yaml


def work(rank, world, port, repo, cfg, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    sys.path.insert(0, repo)
    from models.yolo import Model  # no plugin import: the spawned worker gets it from the .pth hook
    from utils.loss import ComputeLoss

    torch.manual_seed(0)
    model = Model(cfg, ch=3, nc=3).train()
    model.hyp = yaml.safe_load(open(os.path.join(repo, "data", "hyps", "hyp.scratch-low.yaml")))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    g = torch.Generator().manual_seed(rank)
    imgs = torch.rand(2, 3, 64, 64, generator=g)
    targets = torch.tensor([[0, 0, 0.5, 0.5, 0.3, 0.3], [1, 2, 0.4, 0.6, 0.2, 0.4]])  # image, class, xywh
    loss, _ = ComputeLoss(model)(ddp(imgs), targets)
    loss.sum().backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    kinds = sorted({type(m).__name__ for m in model.modules()} & {"Stem", "FusedMBConv", "MBConv"})
    torch.save({"grads": grads, "kinds": kinds, "stride": model.stride.tolist()}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    port, repo, cfg, out = sys.argv[1:]
    mp.spawn(work, args=(2, int(port), repo, cfg, out), nprocs=2, join=True)
"""


@pytest.mark.slow
@needs_clone
def test_clone_two_rank_gloo_ddp(tmp_path):
    """YOLOv5's own train.py refuses DDP without CUDA (it asserts torch.cuda.device_count() > LOCAL_RANK), so the
    2-process gloo check runs the clone's own Model and ComputeLoss under DistributedDataParallel instead: both
    spawned ranks build the plugin's blocks by auto-activation and end with the same averaged gradients."""
    import socket

    import torch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "yolov5n_effv2.yaml"
    export_yaml.run(_args("yolov5n_effv2.yaml", cfg, "yolov5"))
    script = tmp_path / "ddp.py"
    script.write_text(CLONE_DDP)
    _run([PY, script, port, REPO, cfg, tmp_path], tmp_path, timeout=600)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["kinds"] == r1["kinds"] == ["FusedMBConv", "MBConv", "Stem"]
    assert r0["stride"] == [8.0, 16.0, 32.0]
    assert torch.allclose(r0["grads"], r1["grads"], atol=1e-6) and r0["grads"].abs().sum() > 0
