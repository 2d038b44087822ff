"""Users' blocks registered through the ``effdet_plugin.modules`` entry point: built in a fresh process, by the
``yolo`` command, in spawned workers, and a broken entry warned about once while the others register."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_cli, tiny_train

import effdet_plugin

# ------------------------------------------------------------------------------------------------ users' blocks
USER_PACKAGE = {
    "pyproject.toml": """\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "my-blocks"
version = "1.0"

[tool.setuptools]
py-modules = ["my_blocks"]

[project.entry-points."effdet_plugin.modules"]
Ghosty = "my_blocks:Ghosty"
strided = "my_blocks:register_strided"
broken = "my_blocks:does_not_exist"
""",
    "my_blocks.py": """\
from torch import nn


class Ghosty(nn.Module):
    def __init__(self, c1, c2, k=3):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, 1, k // 2)

    def forward(self, x):
        return self.conv(x)


class Strided(nn.Module):
    def __init__(self, c1, c2, s=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, 3, s, 1)

    def forward(self, x):
        return self.conv(x)


def register_strided():
    import effdet_plugin

    effdet_plugin.register_module(Strided, "StridedBlock", stride_arg=0)
""",
    "plain_blocks.py": """\
from torch import nn


class Plain(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, 1)

    def forward(self, x):
        return self.conv(x)
""",
}
USER_YAML = {
    "nc": 2,
    "backbone": [
        [-1, 1, "Conv", [16, 3, 4]],
        [-1, 1, "Ghosty", [32, 3]],
        [-1, 2, "StridedBlock", [32, 2]],
        [-1, 1, "Plain", [32]],
        [-1, 1, "StridedBlock", [64, 2]],
        [-1, 1, "StridedBlock", [64, 2]],
    ],
    "head": [[[3, 4, 5], 1, "Detect", ["nc"]]],
}
BUILD = (
    "from ultralytics import YOLO; m = YOLO('user.yaml'); "
    "print('BUILT', [type(x).__name__ for x in m.model.model], m.model.stride.tolist())"
)


@pytest.fixture(scope="module")
def user_package(tmp_path_factory) -> Path:
    """The small test package above, pip-installed (no deps, no index) into a folder of its own."""
    src, target = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("site")
    for name in ("pyproject.toml", "my_blocks.py"):
        (src / name).write_text(USER_PACKAGE[name])
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (target / "plain_blocks.py").write_text(USER_PACKAGE["plain_blocks.py"])  # not packaged: EFFDET_PLUGIN_MODULES
    return target


@pytest.mark.slow
def test_entry_point_blocks_in_a_fresh_process_and_the_yolo_cli(tmp_path, user_package, demo_data):
    (tmp_path / "user.yaml").write_text(yaml.safe_dump(USER_YAML, sort_keys=False))
    env = {"PYTHONPATH": str(user_package), "EFFDET_PLUGIN_MODULES": "plain_blocks:Plain"}
    proc = run_cli([sys.executable, "-c", BUILD], tmp_path, env=env)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BUILT")][-1]
    assert "'Ghosty', 'Sequential', 'Plain', 'Strided', 'Strided', 'Detect'" in line and "[8.0, 16.0, 32.0]" in line
    # the broken entry point: one line naming it and its error; the others still registered
    assert (
        "entry point 'broken = my_blocks:does_not_exist' (effdet_plugin.modules) failed: AttributeError" in proc.stderr
    )
    # `yolo train` from a shell, and a fresh process reloading its checkpoint
    run_cli(tiny_train("user.yaml", demo_data, tmp_path, "run", val=False), tmp_path, env=env)
    best = tmp_path / "run" / "weights" / "last.pt"
    load = f"from ultralytics import YOLO; print('LOADED', type(YOLO(r'{best}').model.model[1]).__name__)"
    assert "LOADED Ghosty" in run_cli([sys.executable, "-c", load], tmp_path, env=env).stdout


@pytest.mark.slow
def test_spawned_process_builds_a_variable_block(tmp_path, user_package):
    """A process started by multiprocessing's spawn (as DDP and dataloader workers are) registers the block too."""
    script = tmp_path / "spawn.py"
    script.write_text(
        "import multiprocessing as mp\n"
        "def build(q):\n"
        "    from ultralytics.nn.tasks import DetectionModel\n"
        f"    d = {USER_YAML!r}\n"
        "    d['backbone'][1] = [-1, 1, 'Plain', [32]]\n"
        "    d['backbone'][2] = [-1, 1, 'Plain', [32]]\n"
        "    d['backbone'][4] = [-1, 1, 'Conv', [64, 3, 2]]\n"
        "    d['backbone'][5] = [-1, 1, 'Conv', [64, 3, 2]]\n"
        "    d['backbone'].insert(2, [-1, 1, 'Conv', [32, 3, 2]])\n"
        "    d['head'] = [[[4, 5, 6], 1, 'Detect', ['nc']]]\n"
        "    q.put(type(DetectionModel(d, verbose=False).model[1]).__name__)\n"
        "if __name__ == '__main__':\n"
        "    ctx = mp.get_context('spawn'); q = ctx.Queue(); p = ctx.Process(target=build, args=(q,)); p.start()\n"
        "    print('SPAWNED', q.get(timeout=300)); p.join()\n"
    )
    proc = run_cli(
        [sys.executable, str(script)],
        tmp_path,
        env={"EFFDET_PLUGIN_MODULES": "plain_blocks:Plain", "PYTHONPATH": str(user_package)},
    )
    assert "SPAWNED Plain" in proc.stdout


def test_broken_variable_entry_warns_once_and_others_register(monkeypatch, user_package):
    from effdet_plugin import user_modules

    monkeypatch.syspath_prepend(str(user_package))
    monkeypatch.setenv("EFFDET_PLUGIN_MODULES", "plain_blocks:Plain, nowhere:Thing, plain_blocks")
    user_modules.reset()
    try:
        with pytest.warns(UserWarning) as caught:
            failed = user_modules.load()
        assert [str(w.message) for w in caught] == failed and len(failed) == 3  # one line each
        assert (
            "entry point 'broken = my_blocks:does_not_exist' (effdet_plugin.modules) failed: AttributeError"
            in failed[0]
        )
        assert "EFFDET_PLUGIN_MODULES entry 'nowhere:Thing' failed: ModuleNotFoundError" in failed[1]
        assert "EFFDET_PLUGIN_MODULES entry 'plain_blocks' failed: ValueError: expected 'module:attr'" in failed[2]
        assert {"Plain", "Ghosty", "StridedBlock"} <= set(effdet_plugin.registered_modules())
        assert user_modules.load() == []  # once per process
    finally:
        effdet_plugin.unregister_module("Plain")
        effdet_plugin.unregister_module("Ghosty")
        effdet_plugin.unregister_module("StridedBlock")
