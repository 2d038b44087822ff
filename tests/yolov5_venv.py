"""The classic YOLOv5 host's own interpreter: the pip package ``yolov5`` 7.0.14 in a virtual environment of its own.

Tests that need it run in subprocesses (so auto-activation is what is tested): make one with
``bash tools/setup_yolov5_env.sh DIR`` and set ``EFFDET_YOLOV5_PYTHON=DIR/bin/python``; without it they are skipped.
``EFFDET_YOLOV5_REPO=PATH`` (a clone of ultralytics/yolov5, run with that same python) adds the clone's tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

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


def yaml_args(name, output=None, fmt="ultralytics", force=False) -> argparse.Namespace:
    """The arguments ``effdet-plugin yaml`` parses, for calling ``export_yaml.run`` directly."""
    return argparse.Namespace(name=name, output=output, format=fmt, force=force)


def venv_env(tmp: Path, **extra: str) -> dict:
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


def venv_run(args: list, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=venv_env(cwd, **env),
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


def venv_script(code: str, cwd: Path, timeout: float = 300, **env: str) -> dict:
    """Run ``code`` with the venv's python; it prints one JSON line last."""
    out = venv_run([PY, "-c", textwrap.dedent(code)], cwd, timeout, **env).stdout.strip().splitlines()
    return json.loads(out[-1])


def package_train(cfg, root: Path) -> tuple[Path, Path]:
    """``yolov5 train`` (the package's command) for one epoch of ``cfg`` on data generated under ``root``:
    (best.pt, data YAML)."""
    from effdet_plugin.commands.demo import make_demo_dataset

    data = make_demo_dataset(root / "data", n_train=8, n_val=4, imgsz=64, seed=0)
    venv_run(
        [
            Path(PY).parent / "yolov5",
            "train",
            "--cfg",
            cfg,
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
    return best, data


def clone_train_args(start: list, data: Path, project: Path, name: str) -> list:
    """A clone's ``train.py`` for one epoch on ``data``, from ``start`` (``--cfg``/``--weights`` and their values)."""
    return [
        PY,
        "train.py",
        *start,
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
        project,
        "--name",
        name,
        "--exist-ok",
    ]
