"""``effdet-plugin swap``'s output files: --force, the source itself, a failed write, and names Ultralytics renames on
load or reads a scale from."""

from __future__ import annotations

import re
import shutil
from copy import deepcopy
from pathlib import Path

import pytest
import ultralytics
from conftest import load_yaml  # (tests/ is on sys.path under pytest)
from ultralytics.nn import tasks
from ultralytics.nn.tasks import DetectionModel

from effdet_plugin.commands import swap
from effdet_plugin.commands.cli import main
from effdet_plugin.commands.swap import ultralytics_format
from effdet_plugin.hosts import ultralytics_checkpoint

ULTRALYTICS_YOLOV8 = Path(ultralytics.__file__).parent / "cfg" / "models" / "v8" / "yolov8.yaml"


# ---------------------------------------------------------------------------------------------------- output files
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained yolov5n detector saved as an Ultralytics checkpoint (training would add nothing to these tests)."""
    from ultralytics import YOLO

    return ultralytics_checkpoint.save_checkpoint(YOLO("yolov5n.yaml"), tmp_path_factory.mktemp("ckpt") / "v5n.pt")


def test_existing_output_needs_force(tmp_path, capsys):
    """An existing OUT.yaml is refused (one line naming it, file untouched) unless --force, which overwrites it."""
    out = tmp_path / "yolov8n-effv2.yaml"
    out.write_text("keep me\n")
    argv = ["swap", "yolov8n.yaml", "--backbone", "effv2", "-o", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"effdet-plugin swap: error: {out}: already exists; pass --force (force=True) to overwrite it"]
    assert out.read_text() == "keep me\n" and sorted(tmp_path.iterdir()) == [out]

    assert main([*argv, "--force"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    d = load_yaml(out.read_text())
    assert d["backbone"][0][2] == "stem" and sorted(tmp_path.iterdir()) == [out]


def test_existing_pt_output_needs_force(checkpoint, tmp_path):
    """A checkpoint source writes OUT.yaml and OUT.pt: an existing OUT.pt alone is enough to refuse, writing neither."""
    from ultralytics import YOLO

    out = tmp_path / "v5n-effv2.yaml"
    pt = out.with_suffix(".pt")
    pt.write_bytes(b"older checkpoint")
    with pytest.raises(swap.SwapError, match=re.escape(f"{pt}: already exists; pass --force")):
        swap.swap_to_files(checkpoint, out, "effv2")
    assert sorted(tmp_path.iterdir()) == [pt] and pt.read_bytes() == b"older checkpoint"

    res = swap.swap_to_files(checkpoint, out, "effv2", force=True)
    assert res.yaml == out and res.pt == pt and res.transfer.transferred > 0
    assert sorted(tmp_path.iterdir()) == [pt, out]
    model = YOLO(pt).model
    assert model.stride.tolist() == [8, 16, 32]
    assert model.yaml["backbone"] == load_yaml(out.read_text())["backbone"]


def test_source_is_output(checkpoint, tmp_path):
    """Writing over the source is refused unless force (then the source is read first and replaced whole)."""
    from ultralytics.nn.tasks import DetectionModel

    mine = tmp_path / "mine.yaml"
    shutil.copy(ULTRALYTICS_YOLOV8, mine)
    text = mine.read_text()
    with pytest.raises(swap.SwapError, match=re.escape(f"{mine}: is the source file itself") + ".*--force"):
        swap.swap_to_files(mine, mine, "effv2")
    assert mine.read_text() == text and sorted(tmp_path.iterdir()) == [mine]

    swap.swap_to_files(str(mine), mine, "effv2", force=True)
    assert DetectionModel(str(mine), verbose=False).model[0].__class__.__name__ == "Stem"
    assert sorted(tmp_path.iterdir()) == [mine]

    src = tmp_path / "v5n.pt"  # a checkpoint source: OUT.pt would be the source
    shutil.copy(checkpoint, src)
    blob = src.read_bytes()
    with pytest.raises(swap.SwapError, match=re.escape(f"{src}: is the source file itself")):
        swap.swap_to_files(src, tmp_path / "v5n.yaml", "effv2")
    assert src.read_bytes() == blob and not (tmp_path / "v5n.yaml").exists()


def test_failed_pt_write_leaves_nothing(checkpoint, tmp_path, monkeypatch):
    """If writing OUT.pt fails, OUT.yaml (written first) is not left behind either, nor any temp file."""

    def torn(obj, f):  # the checkpoint writer fails half-way through the file
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(ultralytics_checkpoint.torch, "save", torn)
    with pytest.raises(OSError, match="No space left"):
        swap.swap_to_files(checkpoint, tmp_path / "v5n-effv2.yaml", "effv2")
    assert not list(tmp_path.iterdir())


RENAMED = [  # output name, what Ultralytics' yaml_model_load looks for instead, the suggested name
    ("yolov5su.yaml", "yolov5s.yaml", "yolov5su-effv2.yaml"),  # check_yolov5u_filename: u.yaml -> .yaml
    ("yolov3-tinyu.yaml", "yolov3-tiny.yaml", "yolov3-tinyu-effv2.yaml"),
    ("yolov5s-effv2u.yaml", "yolov5s-effv2.yaml", "yolov5s-effv2.yaml"),
    ("yolov8s6.yaml", "yolov8s-p6.yaml", "yolov8s6-effv2.yaml"),  # P6 stems are renamed to -p6
]


@pytest.mark.parametrize("name, instead, suggested", RENAMED)
def test_renamed_output_name_is_refused(name, instead, suggested, tmp_path, monkeypatch):
    """A name that Ultralytics rewrites before loading is refused (naming it and a name that works), writing nothing.

    The rule is Ultralytics' own: a file of that name, loaded by its name, gives another model.
    """
    out = tmp_path / name
    with pytest.raises(swap.SwapError) as e:
        swap.swap_to_files("yolov8s.yaml", out, "effv2")
    msg = str(e.value)
    assert msg.startswith(f"{out}: ") and f"reads this name as {tmp_path / instead}" in msg
    assert msg.endswith(f"name it {suggested}") and len(msg.splitlines()) == 1
    assert not list(tmp_path.iterdir())

    monkeypatch.chdir(tmp_path)
    shutil.copy(ULTRALYTICS_YOLOV8, name)
    written = load_yaml(Path(name).read_text())
    try:
        loaded = tasks.yaml_model_load(name)
    except FileNotFoundError:
        return  # also not this file
    assert loaded["backbone"] != written["backbone"]  # Ultralytics' own yolov5/yolov3-tiny/yolov8-p6 instead


def test_renamed_by_its_folder_is_refused(tmp_path):
    """check_yolov5u_filename looks at the whole path: 'yolov5' in a folder name is enough."""
    folder = tmp_path / "yolov5_runs"
    folder.mkdir()
    out = folder / "menu.yaml"
    with pytest.raises(
        swap.SwapError,
        match=re.escape(f"{out}: ") + ".*" + re.escape(f"as {folder / 'men.yaml'}") + ".*name it menu-effv2.yaml$",
    ):
        swap.swap_to_files("yolov8n.yaml", out, "effv2")
    assert not list(folder.iterdir())


def test_written_file_loads_by_its_own_name(tmp_path, monkeypatch):
    """The suggested name works: DetectionModel(path) and DetectionModel(bare name) build the swapped model."""
    from ultralytics.nn.tasks import DetectionModel

    out = tmp_path / "yolov5su-effv2.yaml"
    res = swap.swap_to_files("yolov5su.yaml", out, "effv2")  # the source's scale s, as the name says
    assert res.yaml == out and ultralytics_format.loaded_instead(out) is None
    d = load_yaml(out.read_text())
    assert d["scale"] == "s"
    n_params = sum(p.numel() for p in DetectionModel(deepcopy(d), ch=3, verbose=False).parameters())
    for name in (str(out), out.name):
        if name == out.name:
            monkeypatch.chdir(tmp_path)
        model = DetectionModel(name, verbose=False)
        assert model.yaml["backbone"] == d["backbone"]
        assert sum(p.numel() for p in model.parameters()) == n_params


@pytest.mark.slow
def test_scale_and_file_name(tmp_path):
    """--scale picks the scale; the file name must not contradict it, and a name without a letter still gets it."""
    d = swap.swap_backbone("yolov8s.yaml", "effv2", scale="m")
    assert d["scale"] == "m"
    params = sum(p.numel() for p in DetectionModel(deepcopy(d), ch=3, verbose=False).parameters())

    with pytest.raises(
        swap.SwapError,
        match="yolov8s-effv2.yaml: Ultralytics reads scale 's' from this file name.*name it yolov8m-effv2.yaml",
    ):
        swap.swap_to_files("yolov8s.yaml", tmp_path / "yolov8s-effv2.yaml", "effv2", scale="m")
    assert not list(tmp_path.iterdir())

    from ultralytics import YOLO

    for name in ("yolov8m-effv2.yaml", "custom.yaml"):
        swap.swap_to_files("yolov8s.yaml", tmp_path / name, "effv2", scale="m")
        loaded = YOLO(tmp_path / name).model  # Ultralytics' own loader: scale from the name, else the first scale
        assert sum(p.numel() for p in loaded.parameters()) == params

    with pytest.raises(swap.SwapError, match="no 'scales:' table"):
        swap.swap_backbone("yolov3u.yaml", "effv2", scale="s")
