"""The head families and tasks (effdet_plugin.heads): every generated YAML against the installed Ultralytics' own
files, the frozen YOLO26 candidate, names as Ultralytics reads them, and a build of each file at n."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import ultralytics
from conftest import load_yaml  # (tests/ is on sys.path under pytest)
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel, guess_model_scale, guess_model_task, yaml_model_load

from effdet_plugin import heads
from effdet_plugin.paths import model_yaml_dir
from effdet_plugin.stages import MODEL_YAMLS, VARIANTS

CFG = Path(ultralytics.__file__).parent / "cfg" / "models"
DATA = Path(__file__).parent / "data"
GENERATED = {f: s for f, s in MODEL_YAMLS.items() if (s.neck, s.task) not in (("pan", "detect"), ("bifpn", "detect"))}
PLUGIN_KEYS = {
    "drop_path",
    "activation",
    "scale_rows",
    "scale_backbone",
    "bn_eps",
    "backbone_scales",
    "backbone_activation",
}
STRIDED = {"Conv", "stem", "FusedMBConv", "MBConv"}  # row modules whose args[2] is a stride


def _load(path: Path) -> dict:
    return load_yaml(path.read_text(encoding="utf-8"))


def _taps(backbone: list) -> tuple[int, int, int]:
    """The last backbone rows at strides 8 and 16, and the last backbone row, read from the rows' own strides."""
    stride, last = 1, {}
    for i, (_, _, module, args) in enumerate(backbone):
        stride *= args[2] if module in STRIDED and len(args) > 2 else 1
        last[stride] = i
    return last[8], last[16], len(backbone) - 1


def _reindexed(rows: list, theirs: tuple[int, int, int], ours: tuple[int, int, int]) -> list:
    """Ultralytics' head rows with every ``from`` moved from their backbone's taps onto ours."""
    src = dict(zip(theirs, ours))

    def ref(j: int) -> int:
        return j if j == -1 else src[j] if j in src else j - theirs[2] + ours[2]

    return [[[ref(j) for j in f] if isinstance(f, list) else ref(f), *rest] for f, *rest in rows]


def _ultralytics_file(family: str, task: str) -> Path:
    suffix = heads.TASKS[task].suffix
    return {"yolo11": CFG / "11" / f"yolo11{suffix}.yaml", "yolo26": CFG / "26" / f"yolo26{suffix}.yaml"}[family]


@pytest.mark.parametrize("family", ["yolo11", "yolo26"])
@pytest.mark.parametrize("task", list(heads.TASKS))
def test_rows_and_keys_are_ultralytics_own(family, task):
    """Our yolo11/yolo26 files carry Ultralytics' own last backbone rows, neck and head rows (re-indexed onto our taps)
    and top-level keys; classification keeps the detection files' SPPF before C2PSA (heads.py says why)."""
    theirs = _load(_ultralytics_file(family, task))
    ours = _load(model_yaml_dir() / f"{family}_effv2{heads.TASKS[task].suffix}.yaml")
    assert {k: v for k, v in ours.items() if k not in PLUGIN_KEYS | {"backbone", "head"}} == {
        k: v for k, v in theirs.items() if k not in ("backbone", "head")
    }
    detect = _load(_ultralytics_file(family, "detect"))
    sppf, c2psa = detect["backbone"][-2:]
    if task == "classify":
        assert theirs["backbone"][-1] == c2psa and ours["backbone"][-2:] == [sppf, c2psa]
        assert ours["head"] == theirs["head"] == [[-1, 1, "Classify", ["nc"]]]
        return
    assert ours["backbone"][-2:] == theirs["backbone"][-2:] == [sppf, c2psa]
    assert ours["head"] == _reindexed(theirs["head"], _taps(theirs["backbone"]), _taps(ours["backbone"]))


def test_yolov5_family_is_yolov5u_with_ultralytics_v8_heads():
    """The YOLOv5 head family's rows are Ultralytics' yolov5.yaml's (yolov5u); its task heads are the rows Ultralytics'
    v8 task files end with, and -cls ends the backbone with Classify on the last stage, as yolov8-cls.yaml does."""
    v5 = _load(CFG / "v5" / "yolov5.yaml")
    for base in ("yolov5_effv2", "yolov5_effv2-lite"):
        for task, spec in heads.TASKS.items():
            ours = _load(model_yaml_dir() / f"{base}{spec.suffix}.yaml")
            if task == "classify":
                v8 = _load(CFG / "v8" / "yolov8-cls.yaml")
                assert ours["head"] == v8["head"] and ours["nc"] == v8["nc"] == 1000
                assert ours["backbone"] == _load(model_yaml_dir() / f"{base}.yaml")["backbone"][:-1]  # SPPF dropped
                continue
            assert ours["backbone"][-1] == v5["backbone"][-1]  # SPPF [1024, 5]
            want = _reindexed(v5["head"], _taps(v5["backbone"]), _taps(ours["backbone"]))
            if task != "detect":
                v8 = _load(CFG / "v8" / f"yolov8{spec.suffix}.yaml")
                want[-1] = [want[-1][0], *v8["head"][-1][1:]]
                assert {k: ours.get(k) for k in ("kpt_shape",)} == {k: v8.get(k) for k in ("kpt_shape",)}
            assert ours["head"] == want, (base, task)


def test_head_text_names_a_row_it_cannot_place():
    with pytest.raises(ValueError, match=r"the bifpn family has no segment head \(it has detect\)"):
        heads.head_text(heads.BIFPN, "segment", (3, 5, 7))
    broken = heads.Neck(**{**heads.PAN.__dict__, "groups": ((heads.Row([-1, 2], 1, "Concat", [1]),),)})
    with pytest.raises(ValueError, match=r"pan: row 2 of v5/yolov5.yaml is a backbone row that is not a tap"):
        heads.head_text(broken, "detect", (3, 5, 7))


def test_generated_variants_follow_the_table():
    """Every (backbone, family, task) of VARIANTS is generated, named as Ultralytics names its own files."""
    want = {
        f"{heads.NECKS[neck].prefix}_{MODEL_YAMLS[base].backbone_key}{heads.TASKS[t].suffix}.yaml"
        for base, neck, tasks in VARIANTS
        for t in tasks
    }
    assert want == set(GENERATED) and len(want) == sum(len(t) for _, _, t in VARIANTS)
    assert {
        "yolo11_effv2.yaml",
        "yolo26_effv2.yaml",
        "yolo26_effv2-seg.yaml",
        "yolo26_effv2-pose.yaml",
        "yolo26_effv2-obb.yaml",
        "yolo26_effv2-cls.yaml",
        "yolov5_effv2-seg.yaml",
        "yolov5_effv2-lite-obb.yaml",
        "yolo26_effb0.yaml",
    } <= want
    for f in want:
        assert (model_yaml_dir() / f).is_file(), f


@pytest.mark.parametrize("file", sorted(GENERATED))
def test_names_resolve_from_any_folder(file, tmp_path, monkeypatch):
    """Each scale letter's bare name: Ultralytics' task and scale guesses, and the plugin's yaml_model_load seam."""
    monkeypatch.chdir(tmp_path)
    prefix, rest = file.split("_", 1)
    for letter in "nsmlx":
        name = f"{prefix}{letter}_{rest}"
        assert guess_model_task(name) == GENERATED[file].task and guess_model_scale(name) == letter, name
        d = yaml_model_load(name)
        assert d["scale"] == letter and d["yaml_file"] == name
        assert d["backbone"] == _load(model_yaml_dir() / file)["backbone"]


def _head_class(spec) -> str:
    return "Classify" if spec.task == "classify" else heads.NECKS[spec.neck].heads[spec.task][0]


@pytest.mark.parametrize("file", sorted(GENERATED))
def test_every_generated_yaml_builds_at_n(file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = GENERATED[file]
    prefix, rest = file.split("_", 1)
    yolo = YOLO(f"{prefix}n_{rest}")
    model = yolo.model
    assert yolo.task == spec.task
    assert type(model.model[-1]).__name__ == _head_class(spec)
    assert any(type(m).__module__ == "effdet_plugin.blocks" for m in model.modules())
    if spec.task == "classify":
        x = torch.rand(1, 3, 64, 64)
        feats = model.model[:-1](x)  # the backbone ends at stride 32 and Classify gives one score per class
        out = model.eval()(x)
        assert feats.shape[-1] == 2 and (out[0] if isinstance(out, tuple) else out).shape == (1, 1000)
    else:
        assert model.stride.tolist() == [8.0, 16.0, 32.0]
    if heads.NECKS[spec.neck].keys and spec.task != "classify":
        assert getattr(model.model[-1], "one2one_cv2", None) is not None  # YOLO26's end-to-end branch


@pytest.mark.slow  # builds two 20 M-parameter models
def test_c3k2_builds_c3k_from_m_as_for_the_builtins():
    """Ultralytics' own per-scale switch applies to our files' C3k2 rows as to yolo11's."""
    from ultralytics.nn.modules.block import C3k

    def c3k(name: str) -> list[bool]:
        rows = [m for m in DetectionModel(name, nc=2, verbose=False).model if type(m).__name__ == "C3k2"]
        return [isinstance(r.m[0], C3k) for r in rows]

    assert c3k("yolo11m_effv2.yaml") == c3k("yolo11m.yaml")[-4:] == [True] * 4  # the neck's four
    assert c3k("yolo11n_effv2.yaml") == c3k("yolo11n.yaml")[-4:] == [False, False, False, True]


@pytest.mark.parametrize("name", ["yolo26n_effv2", "yolo26n_effl0"])
def test_yolo26_families_build_the_frozen_candidates(name):
    """The shipped files build the models the frozen candidate YAMLs built (the ones measured on real data): the same
    state-dict keys and shapes, the same module classes in order (activations included), and the same parameters per
    layer at nc 80 and nc 2 (tests/data/NAME_frozen.json)."""
    frozen = json.loads((DATA / f"{name}_frozen.json").read_text())
    for nc in (80, 2):
        model = DetectionModel(f"{name}.yaml", nc=nc, verbose=False)
        sd = model.state_dict()
        lines = "\n".join(f"{k} {tuple(v.shape)}" for k, v in sd.items())
        kinds = "\n".join(type(m).__name__ for m in model.model.modules())
        got = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "tensors": len(sd),
            "sha256": hashlib.sha256(lines.encode()).hexdigest(),
            "modules_sha256": hashlib.sha256(kinds.encode()).hexdigest(),
            "layer_parameters": [sum(p.numel() for p in layer.parameters()) for layer in model.model],
        }
        assert got == frozen[f"nc{nc}"], nc
