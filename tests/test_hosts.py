"""Host seams: the rebind helper, built-ins unchanged with the plugin on, start-up cost, disabling, every supported
Ultralytics building the same model. Users' blocks from entry points: tests/test_user_blocks.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import run_cli
from ultralytics.nn import tasks
from ultralytics.nn.tasks import DetectionModel

import effdet_plugin
from effdet_plugin.hosts import rebind
from effdet_plugin.hosts import ultralytics as adapter
from effdet_plugin.hosts.activate import PluginDisabledError
from effdet_plugin.paths import model_yaml_dir

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------------ rebind
def _host():
    mod = types.ModuleType("fake_host")

    def parse(d, ch, verbose=True):
        return ("host", d)

    mod.parse = parse
    user = types.ModuleType("fake_user")  # a module that imported the name by value
    user.parse = parse
    sys.modules["fake_user"] = user
    return mod, user, parse


def test_rebind_wraps_spreads_is_idempotent_and_undoes():
    mod, user, parse = _host()
    try:
        calls = []

        def wrap(original):
            def wrapper(d, ch, verbose=True):
                calls.append(d)
                return original(d, ch, verbose)

            return wrapper

        seam = rebind.rebind(mod, "parse", wrap, params=("d", "ch", "verbose"), also=("fake_user",))
        assert mod.parse is seam.wrapper and user.parse is seam.wrapper and seam.original is parse
        assert rebind.rebind(mod, "parse", wrap) is seam and mod.parse is seam.wrapper  # idempotent: no double wrap
        assert mod.parse(1, 3) == ("host", 1) and calls == [1]
        assert rebind.is_rebound(mod, "parse") and rebind.original(mod, "parse") is parse
        assert rebind.undo(mod) == 1
        assert mod.parse is parse and user.parse is parse and not rebind.is_rebound(mod, "parse")
    finally:
        sys.modules.pop("fake_user", None)


def test_rebind_refuses_a_missing_or_changed_name():
    mod, _, _ = _host()
    with pytest.raises(rebind.HostChangedError, match="cannot hook fake_host.load: the name is missing"):
        rebind.rebind(mod, "load", lambda f: f)
    with pytest.raises(
        rebind.HostChangedError,
        match=r"fake_host.parse: expected parameters \(cfg, ch\), "
        r"found \(d, ch\)",
    ):
        rebind.rebind(mod, "parse", lambda f: f, params=("cfg", "ch"))
    assert not rebind.is_rebound(mod, "parse")


def test_ultralytics_seams_are_owned_by_the_adapter():
    effdet_plugin.register()
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.engine import model as engine_model

    for name in ("parse_model", "yaml_model_load", "load_checkpoint"):
        assert rebind.is_rebound(tasks, name), name
    assert rebind.is_rebound(YOLODataset, "close_mosaic")
    assert engine_model.yaml_model_load is tasks.yaml_model_load  # the engine imported it by name: rebound there too


def test_disabled_plugin_names_the_variable(tmp_path, monkeypatch):
    """EFFDET_PLUGIN_DISABLE: nothing builds plugin rows; a plugin YAML gets a message naming the variable."""
    monkeypatch.setenv("EFFDET_PLUGIN_DISABLE", "1")
    rebind.undo(tasks)
    try:
        adapter.install_disabled()
        assert not rebind.is_rebound(tasks, "parse_model")
        with pytest.raises(
            PluginDisabledError,
            match=r"yolov5s_effv2.yaml is an effdet-plugin model, but "
            r"effdet-plugin is disabled \(EFFDET_PLUGIN_DISABLE=1\)",
        ):
            DetectionModel("yolov5s_effv2.yaml", verbose=False)
        mine = tmp_path / "mine.yaml"
        mine.write_text((model_yaml_dir() / "yolov5_effv2.yaml").read_text())
        with pytest.raises(PluginDisabledError, match=f"{mine} uses effdet-plugin rows"):
            DetectionModel(str(mine), verbose=False)
        assert sum(p.numel() for p in DetectionModel("yolov8n.yaml", verbose=False).parameters()) > 3_000_000
    finally:
        rebind.undo(tasks)
        effdet_plugin.register()


BUILTINS_SCRIPT = r"""
import json, sys
from pathlib import Path
import ultralytics
from ultralytics.nn.tasks import DetectionModel, yaml_model_load
root = Path(ultralytics.__file__).parent / "cfg" / "models"
out = {}
for f in sorted(root.rglob("*.yaml")):
    d = yaml_model_load(f)
    if str(d["head"][-1][2]) not in ("Detect", "v10Detect"):
        continue
    for scale in (d.get("scales") or {"": None}):
        d["scale"] = scale
        model = DetectionModel(dict(d), verbose=False)
        out[f"{f.relative_to(root)}:{scale}"] = sum(p.numel() for p in model.parameters())
from ultralytics.nn import tasks
print(json.dumps({"plugin": hasattr(tasks.parse_model, "__wrapped__"), "params": out}))  # the parser is wrapped
"""


@pytest.mark.slow
def test_builtin_yamls_build_identically(tmp_path):
    """Every built-in detection YAML at every scale: same parameter count with the plugin active and disabled."""
    runs = {}
    for disabled in ("0", "1"):
        proc = run_cli([sys.executable, "-c", BUILTINS_SCRIPT], tmp_path, env={"EFFDET_PLUGIN_DISABLE": disabled})
        runs[disabled] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert runs["0"]["plugin"] and not runs["1"]["plugin"]
    with_plugin, without = runs["0"]["params"], runs["1"]["params"]
    families = {k.split("/")[0] for k in with_plugin}
    assert {"v3", "v5", "v6", "v8", "v9", "v10", "11", "12", "26"} <= families, families
    assert any("p2" in k for k in with_plugin) and any("p6" in k for k in with_plugin)
    assert with_plugin == without


SCALED_NAMES = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import effdet_plugin
from ultralytics.nn.tasks import yaml_model_load
effdet_plugin.register()
out = {}
for name in sys.argv[2:]:
    d = yaml_model_load(name)
    out[name] = [d["scale"], d["yaml_file"], effdet_plugin.__file__]
print(json.dumps(out))
"""


def test_bare_names_resolve_under_a_folder_named_like_a_scale(tmp_path):
    """Installed under a folder such as ``tmp.4ntr`` (digits, then a scale letter): Ultralytics unifies the whole path
    string, so the plugin hands it the existing file and reads the scale from the name the user typed."""
    site = tmp_path / "tmp.4ntr" / "site5s"
    site.mkdir(parents=True)
    package = shutil.copytree(
        Path(effdet_plugin.__file__).parent, site / "effdet_plugin", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(model_yaml_dir(), package / "models_yaml", dirs_exist_ok=True)  # where a wheel puts them
    names = ["yolov5s_effb0.yaml", "yolo26m_effv2-seg.yaml", "yolov5_effv2.yaml"]
    proc = run_cli([sys.executable, "-c", SCALED_NAMES, str(site), *names], tmp_path)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(Path(v[2]).parent.parent == site for v in got.values()), got  # the copy under the odd folder ran
    assert {k: v[:2] for k, v in got.items()} == {n: [tasks.guess_model_scale(n), n] for n in names}


# ------------------------------------------------------------------------------------------------------ start-up
# Start an interpreter as `site` does (every .pth file of site-packages, in order), leaving out one of them. The
# folder comes from the parent: under -S a virtual environment's interpreter reports the base installation's folder.
START = r"""
import json, os, site, sys
sp = sys.argv[2]
sys.path.append(sp)
for name in sorted(os.listdir(sp)):
    if name.endswith(".pth") and name != sys.argv[1]:
        site.addpackage(sp, name, set())
print(json.dumps(sorted(sys.modules)))
"""


def _modules_at_start(skip: str) -> set[str]:
    import site

    sp = site.getsitepackages()[0]
    out = subprocess.run(
        [sys.executable, "-S", "-c", START, skip, sp], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("disabled", ["0", "1"])
def test_startup_hook_imports_nothing_new(monkeypatch, disabled):
    """Python's start with the plugin's .pth loads one module more than without it: the hook itself."""
    import site

    hook = Path(site.getsitepackages()[0]) / "effdet_plugin.pth"
    if not hook.is_file():
        pytest.fail(f"{hook} is not installed: install the package (pip install .) to test the start-up hook")
    monkeypatch.setenv("EFFDET_PLUGIN_DISABLE", disabled)
    with_hook, without = _modules_at_start(""), _modules_at_start("effdet_plugin.pth")
    assert with_hook - without == {"_effdet_plugin_autoload"}, sorted(with_hook - without)
    assert "importlib.abc" not in with_hook and "torch" not in with_hook


def test_startup_hook_module_uses_only_loaded_modules():
    """The hook module's own imports at start are modules Python has loaded before any .pth runs."""
    source = (ROOT / "effdet_plugin" / "hosts" / "_autoload.py").read_text()
    top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert top_level == ["import sys"], top_level


# ------------------------------------------------------------------------------------------------------ versions
LOW_ULTRALYTICS = os.environ.get("EFFDET_LOW_ULTRALYTICS")  # a folder holding `pip install --target` of 8.4.0
# What each version's parser builds: parse_model is where versions differ, and it gives DetectionModel's parameters.
PARAMS_SCRIPT = r"""
import copy, json, yaml
import ultralytics
from ultralytics.nn.tasks import parse_model
import effdet_plugin
out = {"version": ultralytics.__version__, "params": {}}
for path in sorted(effdet_plugin.model_yaml_dir().glob("*.yaml")):
    d = yaml.safe_load(path.read_text())
    for scale in "nsmlx":
        for nc in (24, 80):
            layers, _ = parse_model(copy.deepcopy({**d, "scale": scale, "nc": nc}), ch=3, verbose=False)
            out["params"][f"{path.name}:{scale}:{nc}"] = sum(p.numel() for p in layers.parameters())
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def params_by_version(tmp_path_factory) -> tuple[dict, dict]:
    """Parameter counts of every shipped YAML x scale x nc, on the lowest supported and on this Ultralytics."""
    cwd = tmp_path_factory.mktemp("versions")
    env = {**os.environ, "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PARAMS_SCRIPT],
            cwd=cwd,
            env={**env, **extra},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for extra in ({"PYTHONPATH": LOW_ULTRALYTICS, "YOLO_CONFIG_DIR": str(cwd / "low")}, {})
    ]
    outs = []
    for proc in procs:  # both versions at once: one per core
        out, err = proc.communicate(timeout=1200)
        assert proc.returncode == 0, err[-4000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs[0], outs[1]


@pytest.mark.slow
@pytest.mark.skipif(
    not LOW_ULTRALYTICS, reason="EFFDET_LOW_ULTRALYTICS (lowest supported Ultralytics) is not set; CI sets it"
)
@pytest.mark.parametrize("name", sorted(p.name for p in model_yaml_dir().glob("*.yaml")))
def test_same_model_on_lowest_and_newest_ultralytics(params_by_version, name):
    """Every shipped YAML x scale x nc in {24, 80}: equal parameter counts on Ultralytics 8.4.0 and on this one."""
    import ultralytics

    low, high = params_by_version
    assert low["version"] == "8.4.0" and high["version"] == ultralytics.__version__ != "8.4.0"
    mine = {k: v for k, v in high["params"].items() if k.startswith(f"{name}:")}
    assert len(mine) == 10 and {k: low["params"][k] for k in mine} == mine


def test_unsupported_ultralytics_is_one_clear_error(monkeypatch):
    """Another Ultralytics line: built-in models still build, plugin rows get one message with the range."""
    import ultralytics

    from effdet_plugin import UnsupportedUltralyticsError

    monkeypatch.setattr(ultralytics, "__version__", "9.0.0")
    assert sum(p.numel() for p in DetectionModel("yolov8n.yaml", verbose=False).parameters()) > 3_000_000
    with pytest.raises(UnsupportedUltralyticsError, match=r"supports ultralytics >=8.4.0,<8.5.0, found 9.0.0"):
        DetectionModel("yolov5n_effv2.yaml", verbose=False)


def test_register_after_the_disabled_seam_builds_again(monkeypatch):
    """EFFDET_PLUGIN_DISABLE at start, then an explicit register(): the plugin works (the "off" seam is replaced)."""
    monkeypatch.setenv("EFFDET_PLUGIN_DISABLE", "1")
    rebind.undo(tasks)
    try:
        adapter.install_disabled()
        with pytest.raises(PluginDisabledError):
            DetectionModel("yolov5n_effv2.yaml", verbose=False)
        effdet_plugin.register()
        assert DetectionModel("yolov5n_effv2.yaml", verbose=False).stride.tolist() == [8, 16, 32]
    finally:
        rebind.undo(tasks)
        effdet_plugin.register()
