"""Classic YOLOv5 host, here: the adapter's rules (hosts/yolov5.py), the classic YAMLs (classic.py) and
``effdet-plugin yaml``. The pip package runs in test_yolov5_package.py, a clone of the repository in
test_yolov5_clone.py."""

from __future__ import annotations

import logging
import math
import types

import pytest
import yaml
from torch import nn
from yolov5_venv import yaml_args

from effdet_plugin import assemble, classic, scale_rows
from effdet_plugin.bifpn import PHI_BY_SCALE, bifpn_size
from effdet_plugin.commands import export_yaml
from effdet_plugin.hosts import yolov5 as host
from effdet_plugin.paths import model_yaml_dir
from effdet_plugin.rows import ModelRowError
from effdet_plugin.stages import SCALES, main, stale_yamls

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


def test_yaml_command_writes_refuses_and_suggests(tmp_path, capsys):
    out = tmp_path / "models" / "yolov5s_effv2.yaml"
    assert export_yaml.run(yaml_args("yolov5s_effv2.yaml", out, "yolov5")) == 0
    assert out.read_text() == (CLASSIC / "yolov5s_effv2.yaml").read_text()
    out.write_text("mine\n")
    with pytest.raises(ValueError, match="exists; pass --force"):
        export_yaml.run(yaml_args("yolov5s_effv2.yaml", out, "yolov5"))
    assert out.read_text() == "mine\n"
    assert export_yaml.run(yaml_args("yolov5s_effv2", out, "yolov5", force=True)) == 0  # .yaml optional
    assert out.read_text() == (CLASSIC / "yolov5s_effv2.yaml").read_text()
    seg = tmp_path / "models" / "segment" / "yolov5n_effv2-seg.yaml"  # where a clone keeps yolov5n-seg.yaml
    assert export_yaml.run(yaml_args("yolov5n_effv2-seg.yaml", seg, "yolov5")) == 0
    assert seg.read_text() == (CLASSIC / "yolov5n_effv2-seg.yaml").read_text()
    with pytest.raises(
        ValueError,
        match=r"unknown --format yolov5 model 'yolov5s_efv2'; did you mean "
        r"'yolov5s_effv2\.yaml'",
    ):
        export_yaml.run(yaml_args("yolov5s_efv2", tmp_path / "x.yaml", "yolov5"))
    with pytest.raises(ValueError, match="it is a --format ultralytics model"):
        export_yaml.run(yaml_args("yolov5_effb0.yaml", tmp_path / "x.yaml", "yolov5"))
    # Ultralytics format: the file with every scale; a scale-lettered name picks the unified file
    capsys.readouterr()
    assert export_yaml.run(yaml_args("yolov5s_effv2_bifpn.yaml", tmp_path / "yolov5s_effv2_bifpn.yaml")) == 0
    written = (tmp_path / "yolov5s_effv2_bifpn.yaml").read_text()
    assert written == (model_yaml_dir() / "yolov5_effv2_bifpn.yaml").read_text()
    assert "note:" not in capsys.readouterr().out
    assert export_yaml.run(yaml_args("yolov5s_effv2_bifpn.yaml", tmp_path / "mine.yaml")) == 0
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
