"""Every shipped model YAML builds the model it built when its counts were recorded: the same parameter count at every
scale, in both hosts: the Ultralytics-format files (every family and task) through the model class of their task, as
``YOLO(name)`` picks it, the classic files through YOLOv5's ``Model``.

``tests/data/param_counts.json`` holds the counts, 80 classes. A refactor must leave them as they are. A new YAML (or
scale) is recorded with the first line below, which adds the entries that are missing and never changes a recorded
one; a YAML that is meant to change is named with ``--again``:

    PYTHONPATH=. python tests/test_param_counts.py                                  # add missing Ultralytics-format
    PYTHONPATH=. python tests/test_param_counts.py --classic                        # and classic (EFFDET_YOLOV5_PYTHON)
    PYTHONPATH=. python tests/test_param_counts.py --again yolov5_effv2.yaml        # re-record one family, every scale
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import load_yaml  # (tests/ is on sys.path under pytest)

from effdet_plugin import classic
from effdet_plugin.atomic import atomic_open
from effdet_plugin.naming import scaled_stem, unified_name
from effdet_plugin.paths import model_yaml_dir

COUNTS = Path(__file__).parent / "data" / "param_counts.json"
NC = 80
SAMPLE = "yolov5n_effv2_bifpn.yaml"  # the fast check: a BiFPN neck on plugin blocks, at the smallest scale
PY = os.environ.get("EFFDET_YOLOV5_PYTHON")


def unified_files() -> list[str]:
    """Every Ultralytics-format shipped YAML (one file per family and task)."""
    return sorted(p.name for p in model_yaml_dir().glob("*.yaml"))


def scaled_names() -> list[str]:
    """Every Ultralytics-format shipped YAML at every scale of its ``scales:``, as a user names it
    (``yolov5_effb0.yaml`` at n: ``yolov5n_effb0.yaml``, ``yolo26_effv2-seg.yaml`` at s: ``yolo26s_effv2-seg.yaml``)."""
    out = []
    for file in unified_files():
        for letter in load_yaml((model_yaml_dir() / file).read_text(encoding="utf-8"))["scales"]:
            name = scaled_stem(file[: -len(".yaml")], letter) + ".yaml"
            assert unified_name(name) == file, f"{file}: not named yolo[v]N_*.yaml, so no scale letter fits its name"
            out.append(name)
    return sorted(out)


def classic_names() -> list[str]:
    """Every classic YOLOv5 shipped YAML (one scale each), relative to the YAML folder."""
    return sorted(f"{classic.FOLDER}/{p.name}" for p in (model_yaml_dir() / classic.FOLDER).glob("*.yaml"))


def ultralytics_params(name: str) -> int:
    """Parameters of ``TaskModel(name, nc=80)``, ``TaskModel`` the class of the file's task (its output head, as
    ``guess_model_task`` reads it): the name's scale letter picks the scale."""
    from ultralytics.nn import tasks

    models = {
        "detect": tasks.DetectionModel,
        "segment": tasks.SegmentationModel,
        "pose": tasks.PoseModel,
        "obb": tasks.OBBModel,
        "classify": tasks.ClassificationModel,
    }
    task = tasks.guess_model_task(tasks.yaml_model_load(name))
    return sum(p.numel() for p in models[task](name, nc=NC, verbose=False).parameters())


_CLASSIC = """
import json, logging, sys
import yolov5.models.yolo as y
logging.getLogger("yolov5").setLevel(logging.ERROR)
print(json.dumps({f: sum(p.numel() for p in y.Model(str(sys.argv[1] + "/" + f), ch=3, nc=%d).parameters())
                  for f in sys.argv[2:]}))
"""


def classic_params(names: list[str]) -> dict[str, int]:
    """Parameters of each classic file as the pip ``yolov5`` package's ``Model(cfg, nc=80)`` builds it (in its venv)."""
    venv = Path(PY).parent.parent
    root = Path(__file__).resolve().parents[1]  # this checkout's effdet_plugin, not the venv's installed copy
    env = {
        **os.environ,
        "YOLO_OFFLINE": "1",
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
        "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": str(root),
        "YOLOV5_CONFIG_DIR": str(venv / "yolov5-config"),
    }
    env.pop("EFFDET_PLUGIN_DISABLE", None)
    proc = subprocess.run(
        [PY, "-c", textwrap.dedent(_CLASSIC % NC), str(model_yaml_dir()), *names],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def recorded() -> dict[str, dict[str, int]]:
    return json.loads(COUNTS.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------------------------- tests
def test_every_shipped_yaml_and_scale_has_a_recorded_count():
    counts = recorded()
    assert sorted(counts["ultralytics"]) == scaled_names() and len(counts["ultralytics"]) >= 215
    assert sorted(counts["yolov5"]) == classic_names() and len(counts["yolov5"]) == len(classic.CLASSIC_YAMLS)


def test_sample_builds_its_recorded_count():
    assert ultralytics_params(SAMPLE) == recorded()["ultralytics"][SAMPLE]


@pytest.mark.slow
@pytest.mark.parametrize("unified", unified_files())
def test_ultralytics_yamls_build_their_recorded_counts(unified):
    want = {k: v for k, v in recorded()["ultralytics"].items() if unified_name(k) == unified}
    assert want
    assert {name: ultralytics_params(name) for name in want} == want


@pytest.mark.slow
@pytest.mark.skipif(not PY, reason="EFFDET_YOLOV5_PYTHON is unset (bash tools/setup_yolov5_env.sh DIR)")
def test_classic_yamls_build_their_recorded_counts():
    want = recorded()["yolov5"]
    assert classic_params(sorted(want)) == want


# ------------------------------------------------------------------------------------------------------------ record
def main(argv: list[str]) -> int:
    """Record the counts that are missing (and those of the families after ``--again``); keep every other one."""
    classic_too = "--classic" in argv
    again = {unified_name(a) for a in argv if a.endswith(".yaml")} if "--again" in argv else set()
    counts = recorded() if COUNTS.is_file() else {"ultralytics": {}, "yolov5": {}}
    names = {"ultralytics": scaled_names(), "yolov5": classic_names() if classic_too else []}
    todo = {
        host: [n for n in ns if n not in counts[host] or unified_name(n.split("/")[-1]) in again]
        for host, ns in names.items()
    }
    if todo["yolov5"] and not PY:
        sys.exit("--classic needs EFFDET_YOLOV5_PYTHON (bash tools/setup_yolov5_env.sh DIR)")
    counts["ultralytics"].update({name: ultralytics_params(name) for name in todo["ultralytics"]})
    if todo["yolov5"]:
        counts["yolov5"].update(classic_params(todo["yolov5"]))
    with atomic_open(COUNTS, "w", encoding="utf-8") as f:
        f.write(json.dumps(counts, indent=1, sort_keys=True) + "\n")
    done = [*todo["ultralytics"], *todo["yolov5"]]
    print(f"recorded {len(done)} counts in {COUNTS}: {', '.join(done) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
