"""A host command that stops on a plugin error prints its one line; every other error keeps Python's traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ultralytics.cfg import entrypoint
from ultralytics.nn.tasks import DetectionModel

from effdet_plugin import errors
from effdet_plugin.paths import model_yaml_dir
from effdet_plugin.rows import ModelRowError

LINE = "ModelRowError: bad.yaml: row 1 [-1, 2, FusedMBConv, [-24, 3, 1, 1, 0]]: args must start with c_out"


@pytest.fixture
def bad_yaml(tmp_path, monkeypatch) -> Path:
    """yolo26_effv2.yaml with a negative width in its first FusedMBConv row, in the working directory."""
    text = (model_yaml_dir() / "yolo26_effv2.yaml").read_text()
    assert "FusedMBConv, [24," in text
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace("FusedMBConv, [24,", "FusedMBConv, [-24,", 1))
    monkeypatch.chdir(tmp_path)
    return path


def raised(fn, *args):
    with pytest.raises(Exception) as e:  # whatever it raises goes to the hook as Python would
        fn(*args)
    return e.value


def via_yolo(*argv: str) -> BaseException:
    """What ``yolo ARGV`` raises, run through Ultralytics' own entry point in this process."""
    return raised(entrypoint, " ".join(["yolo", *argv]))


def hook_output(e: BaseException, capsys) -> str:
    capsys.readouterr()
    sys.excepthook(type(e), e, e.__traceback__)
    return capsys.readouterr().err


def test_the_hook_is_on_after_ultralytics_loads():
    assert getattr(sys.excepthook, "effdet_plugin", False)


def test_yolo_ending_on_a_plugin_error_prints_one_line(bad_yaml, capsys):
    e = via_yolo("train", f"model={bad_yaml.name}", "data=coco8.yaml", "epochs=1")
    assert isinstance(e, ModelRowError)
    out = hook_output(e, capsys)
    assert out.startswith(LINE) and len(out.strip().splitlines()) == 1, out


def test_the_variable_brings_the_traceback_back(bad_yaml, monkeypatch, capsys):
    e = via_yolo("train", f"model={bad_yaml.name}", "data=coco8.yaml", "epochs=1")
    monkeypatch.setenv(errors.TRACEBACK_VARIABLE, "1")
    out = hook_output(e, capsys)
    assert (
        out.startswith("Traceback") and "in entrypoint" in out and "effdet_plugin.rows.ModelRowError: bad.yaml" in out
    )


def test_host_errors_and_errors_in_a_script_keep_their_traceback(bad_yaml, capsys):
    """Ultralytics' own error in ``yolo``; the plugin's error raised in a user's script (not through ``yolo``)."""
    missing = via_yolo("train", "model=missing.yaml", "data=coco8.yaml", "epochs=1")
    assert not errors.is_plugin_error(missing)
    out = hook_output(missing, capsys)
    assert out.startswith("Traceback") and "missing.yaml" in out.splitlines()[-1]
    in_script = raised(DetectionModel, str(bad_yaml))
    assert isinstance(in_script, ModelRowError)
    out = hook_output(in_script, capsys)
    assert out.startswith("Traceback") and "bad.yaml: row 1" in out.splitlines()[-1]


@pytest.mark.slow  # a fresh interpreter importing torch and Ultralytics; the tests above run the same entry point
def test_the_yolo_command_prints_one_line(bad_yaml):
    """The installed ``yolo`` command in a fresh process: exit 1, one line on stderr, nothing on stdout about it."""
    yolo = Path(sys.executable).parent / "yolo"
    if not yolo.is_file():
        pytest.skip("the yolo command is not installed beside this python")
    proc = subprocess.run(
        [str(yolo), "train", "model=bad.yaml", "data=coco8.yaml", "epochs=1"],
        cwd=bad_yaml.parent,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "YOLO_OFFLINE": "1"},
        check=False,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith(LINE), proc.stderr
