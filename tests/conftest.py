"""Shared fixtures: offline Ultralytics, a small generated dataset, a subprocess runner in a temp folder, the suite's
smallest real training, a log recorder."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

os.environ["YOLO_OFFLINE"] = "1"  # never download (set before ultralytics is imported by any test)
os.environ.setdefault("YOLO_VERBOSE", "False")
# OpenVINO's converter (behind `format=openvino` exports) reports usage to a web service from a child process
# unless it runs in a CI job; tests stay offline, so they run as one.
os.environ["CI"] = "true"


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """A tiny generated YOLO dataset (24 train / 8 val / 8 test images, 96 px); returns the data YAML path."""
    from effdet_plugin.commands.demo import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("demo"), n_train=24, n_val=8, n_test=8, imgsz=96, seed=0)


def load_yaml(text: str):
    """``yaml.safe_load`` through libyaml where PyYAML has it: the same documents, several times faster on the shipped
    model files the tests read by the hundred."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def snapshot(model) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s state dict, for ``assert_untouched`` after a load that must fail."""
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_untouched(model, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items()), "a failed load changed the model"


def run_cli(args: list[str], cwd: Path, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command in a fresh process (so auto-activation is exercised) and fail with its output if it fails."""
    full_env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "True", "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


TINY_TRAIN = {"epochs": 1, "imgsz": 64, "batch": 8, "workers": 0, "plots": False, "device": "cpu"}
"""The smallest real training the suite runs (one epoch at 64 px on the CPU, no plots), as `model.train` keywords."""


def tiny_train(model, data, project, name: str, task: str | None = None, **overrides) -> list[str]:
    """`yolo [TASK] train` with TINY_TRAIN's settings into PROJECT/NAME; OVERRIDES (``val=False``) replace or add keys."""
    args = {"model": model, "data": data, **TINY_TRAIN, "project": project, "name": name, "exist_ok": True}
    return ["yolo", *([task] if task else []), "train", *(f"{k}={v}" for k, v in {**args, **overrides}.items())]


@contextlib.contextmanager
def logged(name: str):
    """The messages of logger ``name`` at INFO and above while the block runs."""
    logger, messages = logging.getLogger(name), []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def cli():
    return run_cli


PYTHON = sys.executable
