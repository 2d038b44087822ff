"""The ``effdet-plugin`` command line: every subcommand answers --help, the installed command works outside a clone,
tools/*.py forward to it, user errors are one line, and a broken subcommand module breaks only itself."""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PYTHON, run_cli

from effdet_plugin.commands import cli

ROOT = Path(__file__).resolve().parents[1]
TOOLS = {
    "benchmark": "benchmark",
    "accuracy": "accuracy",
    "coco_eval": "coco-eval",
    "convert_weights": "convert-weights",
    "bifpn_weights": "bifpn-weights",
}


def installed_command() -> str:
    """The ``effdet-plugin`` script of this interpreter's environment (pip puts it beside python)."""
    beside = Path(sys.executable).parent / "effdet-plugin"
    found = str(beside) if beside.is_file() else shutil.which("effdet-plugin")
    if not found:
        pytest.skip("effdet-plugin is not installed as a command (pip install -e .)")
    return found


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_subcommand_answers_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([name, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith(f"usage: effdet-plugin {name} "), out


def test_top_level_help_imports_no_subcommand():
    """``effdet-plugin --help`` lists every subcommand without importing one (nor torch): instant, and immune to a
    subcommand module that fails to import."""
    code = (
        "import sys\nfrom effdet_plugin.commands.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
        "    pass\nprint(sorted(m for m in sys.modules if m.startswith('effdet_plugin.commands.')),\n"
        "      'torch' in sys.modules)"
    )
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert all(f"    {name}" in out for name in cli.COMMANDS), out
    assert out.strip().splitlines()[-1] == "['effdet_plugin.commands.cli'] False"


def test_broken_module_breaks_only_itself(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "broken", ("effdet_plugin.commands.no_such_module", "never importable"))
    with pytest.raises(SystemExit) as e:
        cli.main(["demo-data", "--help"])
    assert e.value.code == 0 and "usage: effdet-plugin demo-data" in capsys.readouterr().out
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):  # a bug, not bad input: the full traceback
        cli.main(["broken", "x"])


@pytest.fixture
def fake_command(tmp_path, monkeypatch):
    """A subcommand ``fake`` whose ``run`` raises the exception named by its argument."""
    (tmp_path / "fake_cmd.py").write_text(
        "def add_arguments(p):\n    p.add_argument('kind')\n\n"
        "def run(args):\n"
        "    if args.kind == 'value':\n        raise ValueError('bad value 7 in x.yaml\\n\\nsee https://docs\\n')\n"
        "    if args.kind == 'missing':\n        raise FileNotFoundError('x.pt: not found')\n"
        "    if args.kind == 'bug':\n        raise KeyError('internal')\n"
        "    return 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "fake", ("fake_cmd", "a test command"))


@pytest.mark.parametrize("kind, line", [("value", "bad value 7 in x.yaml"), ("missing", "x.pt: not found")])
def test_user_error_is_one_line_exit_2(fake_command, capsys, kind, line):
    assert cli.main(["fake", kind]) == 2
    assert capsys.readouterr().err == f"effdet-plugin fake: error: {line}\n"


def test_other_errors_keep_their_traceback(fake_command):
    assert cli.main(["fake", "ok"]) == 0
    with pytest.raises(KeyError, match="internal"):
        cli.main(["fake", "bug"])


@pytest.mark.parametrize("tool", list(TOOLS))
def test_tools_scripts_forward_to_the_command(tool, monkeypatch, capsys):
    """``python tools/<tool>.py ARGS`` is ``effdet-plugin <command> ARGS``."""
    monkeypatch.setattr(sys, "argv", [str(ROOT / "tools" / f"{tool}.py"), "--help"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ROOT / "tools" / f"{tool}.py"), run_name="__main__")
    assert e.value.code == 0 and capsys.readouterr().out.startswith(f"usage: effdet-plugin {TOOLS[tool]} ")


@pytest.mark.slow
def test_installed_benchmark_outside_a_clone(tmp_path):
    """The installed command, in a fresh process, from a folder outside any clone: shipped YAMLs resolve by name."""
    args = [installed_command(), "benchmark", "--models", "yolov5n_effv2.yaml", "yolov5nu.yaml", "--imgsz", "64"]
    proc = run_cli([*args, "--json", "out.json"], cwd=tmp_path, timeout=300, env={"OMP_NUM_THREADS": "1"})
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["kind"] == "benchmark" and record["meta"]["argv"][1] == "benchmark"
    rows = record["rows"]
    assert [r["model"] for r in rows] == ["yolov5n_effv2", "yolov5nu"] and all(r["latency_ms"] > 0 for r in rows)
    assert "yolov5n_effv2" in proc.stdout and f"wrote {Path('out.json')}" in proc.stdout


@pytest.mark.parametrize(
    "argv, line",
    [
        (["bifpn-weights", "gone.pt"], "checkpoint not found: gone.pt"),  # never a download attempt
        (["bifpn-weights", "yolov5nu.yaml"], "yolov5nu.yaml has no BiFPN row"),
        (
            ["convert-weights", "--model", "yolov5n_effb0.yaml", "--weights", "w.pth", "--out", "x.pth"],
            "--out must end with .pt (Ultralytics loads only .pt checkpoints), got x.pth",
        ),
        (
            ["convert-weights", "--model", "yolov5n_effb0.yaml", "--weights", "w.pth", "--out", "x.pt"],
            "pretrained weights not found: w.pth",
        ),
    ],
)
def test_weights_commands_bad_input(argv, line, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == f"effdet-plugin {argv[0]}: error: {line}\n"
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bifpn_weights_json(capsys):
    """An untrained BiFPN: every node's weights are equal and sum to 1 (phi 0: 3 layers of 4 nodes)."""
    assert cli.main(["bifpn-weights", "yolov5n_effv2_bifpn.yaml", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 12 and {r["node"] for r in rows} == {"P4_td", "P3_out", "P4_out", "P5_out"}
    for r in rows:
        assert r["weights"] == pytest.approx([1 / len(r["inputs"])] * len(r["inputs"]), abs=1e-3)
