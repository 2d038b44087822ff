"""``effdet-plugin protocol``: roles, test scored once per frozen model, runs adopted from ``accuracy``, curves."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PYTHON, run_cli

from effdet_plugin.commands import cli, protocol
from effdet_plugin.commands.heldout import data_fingerprint
from effdet_plugin.commands.results import load_record

FIXTURE = Path(__file__).parent / "fixtures" / "store" / "results"
CLI = [PYTHON, "-m", "effdet_plugin.commands.cli"]
RECIPE = ["--epochs", "1", "--imgsz", "64", "--batch", "8", "--device", "cpu", "--workers", "0", "--repeats", "1"]


def _rows(name: str = "protocol_cards.json") -> list[tuple[Path, dict]]:
    path = FIXTURE / name
    return [(path, row) for row in json.loads(path.read_text())["rows"]]


def test_a_second_test_score_of_a_frozen_model_is_refused_naming_the_record():
    rows = _rows()
    row = rows[4][1]  # yolov5n_effv2 seed 1 on cards
    key = (row["identity"], row["recipe_id"], "cards")
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.check_unscored(rows, {("yolov5n_effv2.yaml", 1): key})
    expected = f"yolov5n_effv2 seed 1 already has a test score on cards in {FIXTURE}/protocol_cards.json"
    assert str(e.value).startswith(expected)
    assert "test is scored once per frozen model" in str(e.value) and len(str(e.value).splitlines()) == 1
    # another architecture, recipe, dataset or seed is another frozen model
    for other in [
        ("f" * 16, key[1], "cards", 1),
        (key[0], "f" * 16, "cards", 1),
        (key[0], key[1], "plates", 1),
        (*key, 7),
    ]:
        protocol.check_unscored(rows, {("yolov5n_effv2.yaml", other[3]): other[:3]})


def test_a_dataset_keeps_its_role():
    protocol.check_role(_rows(), "cards", "confirm")
    protocol.check_role(_rows(), "plates", "choice")
    with pytest.raises(
        protocol.ProtocolError,
        match=r"^--role choice: dataset cards is a confirm dataset in .*"
        r"protocol_cards\.json; a dataset's role never changes",
    ):
        protocol.check_role(_rows(), "cards", "choice")


def test_identity_follows_the_architecture_not_the_weights():
    import torch
    from ultralytics.nn.tasks import DetectionModel

    a, b = DetectionModel("yolov5nu.yaml", nc=3, verbose=False), DetectionModel("yolov5nu.yaml", nc=3, verbose=False)
    with torch.no_grad():
        next(b.parameters()).add_(1.0)  # trained weights: the same frozen architecture
    assert protocol.identity(a) == protocol.identity(b)
    for m in b.modules():  # as Ultralytics' checkpoint loader leaves every activation
        if hasattr(m, "inplace"):
            m.inplace = True
    assert protocol.identity(a) == protocol.identity(b)
    assert protocol.identity(a) != protocol.identity(DetectionModel("yolov5nu.yaml", nc=4, verbose=False))
    assert protocol.identity(a) != protocol.identity(DetectionModel("yolov5n_effv2.yaml", nc=3, verbose=False))

    # a file written otherwise that builds the same layers is the same model; another activation (same shapes) is not
    from ultralytics.nn.tasks import yaml_model_load

    d = yaml_model_load("yolov5n_effv2.yaml")
    same = protocol.identity(DetectionModel({**d, "notes": "a key no parser reads"}, nc=3, verbose=False))
    assert same == protocol.identity(DetectionModel("yolov5n_effv2.yaml", nc=3, verbose=False))
    relu = DetectionModel({**d, "activation": "nn.ReLU()"}, nc=3, verbose=False)
    assert protocol.identity(relu) != same


def test_refusals_before_any_work(demo_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_test = tmp_path / "no_test.yaml"
    no_test.write_text(yaml.safe_dump({k: v for k, v in yaml.safe_load(demo_data.read_text()).items() if k != "test"}))
    base = ["protocol", "--models", "yolov5nu.yaml", "--project", "runs", *RECIPE]
    existing = tmp_path / "done.json"
    existing.write_text("{}")
    missing_split = "--split test: data YAML .*no_test.yaml has no 'test' split"
    kept = r"--json .*done\.json exists: protocol records are the ledger"
    for argv, message in [
        (["--role", "confirm", "--data", str(no_test), "--json", "x.json"], missing_split),
        (["--role", "confirm", "--data", str(demo_data), "--json", str(existing)], kept),
    ]:
        assert cli.main([*base, *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.search(message, err[0]), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done.json", "no_test.yaml"]  # nothing trained or written
    # --int8 without the deploy extra: one line naming it, before anything is trained
    monkeypatch.setitem(sys.modules, "openvino", None)  # as when it is not installed
    assert cli.main([*base, "--role", "confirm", "--data", str(demo_data), "--int8", "--json", "y.json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    need = 'effdet-plugin protocol: error: --int8 needs openvino, which a bare install lacks: pip install "effdet-plugin[deploy]"'
    assert err == [need]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "y.json").exists()


@pytest.mark.slow
def test_adopts_accuracy_runs_scores_test_once_and_records_curves(demo_data, tmp_path):
    """Runs trained by ``accuracy`` are adopted (args.yaml checked), test is scored and recorded with each run's
    per-epoch val curve; a second test scoring of the same frozen models is refused, naming the first record; the
    dataset cannot turn into a choice dataset; a choice dataset is scored on val only."""
    env = {"OMP_NUM_THREADS": "1"}
    data = str(demo_data)
    run_cli(
        [
            *CLI,
            "accuracy",
            "--models",
            "yolov5nu.yaml",
            "--data",
            data,
            "--seeds",
            "0",
            "1",
            *RECIPE,
            "--project",
            "runs",
        ],
        tmp_path,
        env=env,
    )
    store = tmp_path / "results"
    store.mkdir()
    first = store / "protocol_demo.json"
    confirm = [
        *CLI,
        "protocol",
        "--role",
        "confirm",
        "--models",
        "yolov5nu.yaml",
        "--data",
        data,
        "--seeds",
        "0",
        "1",
        *RECIPE,
        "--project",
        "runs",
        "--no-train",
        "--store",
        str(store),
    ]
    proc = run_cli([*confirm, "--json", str(first)], tmp_path, env=env)
    assert "below 3, every comparison renders as level" in proc.stdout
    record = load_record(first)
    assert record.meta["argv"][:3] == ["effdet-plugin", "protocol", "--role"]
    name = demo_data.resolve().parent.name
    assert [(s.model, s.dataset, s.split, s.run.seed) for s in record.scores] == [
        ("yolov5nu", name, "test", 0),
        ("yolov5nu", name, "test", 1),
    ]
    for row, s in zip(record.rows, record.scores):
        assert row["adopted"] is True and row["role"] == "confirm" and s.run.curve.epoch == (1,)
        assert row["identity"] == protocol.model_identity("yolov5nu.yaml", data)
        assert row["data_fingerprint"] == data_fingerprint(data)
        assert 0 <= s.run.map50_95 <= s.run.map50 <= 1 and Path(s.run.weights).is_file()
    # the same frozen models again: refused before anything is scored, naming the record that holds their test score
    again = store / "protocol_demo_again.json"
    proc = subprocess.run([*confirm, "--json", str(again)], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and not again.exists()
    assert re.search(rf"yolov5nu seed 0 already has a test score on {name} in .*protocol_demo\.json", proc.stderr)
    # a confirm dataset never turns into a choice one
    choice = [c if c != "confirm" else "choice" for c in confirm]
    proc = subprocess.run([*choice, "--json", str(again)], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and f"dataset {name} is a confirm dataset in" in proc.stderr
    # under another name the same data as a choice dataset: val scored, as often as asked; --int8 scores each run's
    # OpenVINO INT8 export too
    for out, int8 in (("choice_1.json", ["--int8"]), ("choice_2.json", [])):
        proc = run_cli([*choice, "--dataset", "demo-choice", *int8, "--json", str(store / out)], tmp_path, env=env)
        assert "best.pt scored on demo-choice 'val'" in proc.stdout  # the name records give it, not its folder's
        scores = load_record(store / out).scores
        assert {(s.split, s.dataset) for s in scores} == {("val", "demo-choice")}
        assert all((s.run.int8 is not None) == bool(int8) for s in scores)
        assert all(0 <= s.run.int8[0] <= s.run.int8[1] <= 1 for s in scores if int8)
    shutil.rmtree(tmp_path / "runs")
