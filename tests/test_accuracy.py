"""``effdet-plugin accuracy``: end to end on tiny generated data, the COCO ground truth it scores, one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import PYTHON, run_cli

from effdet_plugin.commands import cli
from effdet_plugin.commands.accuracy import ROW_KEYS, family, make_rows, plot, references, table
from effdet_plugin.commands.benchmark import load_model
from effdet_plugin.commands.coco_eval import image_files, load_annotations
from effdet_plugin.commands.compare import welch_p
from effdet_plugin.commands.heldout import AccuracyError, coco_ground_truth, eval_split, split_images
from effdet_plugin.commands.plots import stamp_of
from effdet_plugin.commands.recipe import Recipe
from effdet_plugin.commands.results import load_record
from effdet_plugin.commands.runs import Project, finished_run


def recipe(**changes) -> Recipe:
    """A CPU recipe as the tests' fixture records hold it."""
    fields = {
        "data": "/d/cards/data.yaml",
        "split": "test",
        "epochs": 1,
        "imgsz": 64,
        "batch": 8,
        "seeds": (0, 1, 2),
        "device": "cpu",
        "device_name": "cpu",
        "workers": 0,
        "pretrained": False,
        "progressive": False,
        "checkpoint": "best",
        "latency_imgsz": 64,
        "repeats": 2,
        "reduced": True,
    }
    return Recipe(**{**fields, **changes})


ACCURACY = [PYTHON, "-m", "effdet_plugin.commands.cli", "accuracy"]  # a fresh process: training leaves state behind


@pytest.mark.slow
def test_end_to_end_json(demo_data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "acc.json"
    args = ["--models", "yolov5n_effv2.yaml", "yolov5nu.yaml", "--data", str(demo_data), "--epochs", "1"]
    args += ["--imgsz", "64", "--seeds", "0", "--device", "cpu", "--batch", "8", "--workers", "0", "--repeats", "2"]
    args += ["--json", str(out), "--plot", "p.png"]
    proc = run_cli([*ACCURACY, *args], tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert "running on CPU at reduced settings" in proc.stdout
    rows = json.loads(out.read_text())["rows"]
    scores = load_record(out).scores  # a valid results-store record, each run with its per-epoch val curve
    name = demo_data.resolve().parent.name  # the dataset's name in records: the folder of its data.yaml
    assert [(s.model, s.dataset, s.split, s.run.curve.epoch) for s in scores] == [
        ("yolov5n_effv2", name, "test", (1,)),
        ("yolov5nu", name, "test", (1,)),
    ]
    assert scores[0].run.map50_95 == rows[0]["map50_95"] and scores[0].recipe["epochs"] == 1
    for r in rows:
        assert set(ROW_KEYS) <= set(r)
        assert r["eval_split"] == "test" and r["epochs"] == 1 and r["imgsz"] == 64 and r["reduced"] is True
        assert 0 <= r["map50_95"] <= r["map50"] <= 1 and r["map50_95_spread"] is None  # one seed: no spread
        assert r["map75"] <= r["map50"] and r["runs"][0]["map75"] == r["map75"] and r["map75_spread"] is None
        assert r["params"] > 0 and r["gflops"] > 0 and r["latency_ms"] > 0 and r["train_s"] > 0
        assert len(r["runs"]) == 1 and Path(r["runs"][0]["weights"]).is_file() and r["runs"][0]["best_epoch"] == 1
    assert rows[0]["latency_ratio"] == 1.0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG" and stamp_of(tmp_path / "p.png")
    assert rows[0]["params"] != rows[1]["params"]
    table = proc.stdout.split("mAP as mean")[-1]
    assert "yolov5n_effv2.yaml" in table and "yolov5nu.yaml" in table and "mAP50-95" in table and "CPU ms@64" in table
    assert "mAP75" in table

    # --reuse: finished runs are scored again, not retrained; another recipe in the same project is refused
    best = Path(rows[0]["runs"][0]["weights"])
    stamp = best.stat().st_mtime_ns
    again = tmp_path / "again.json"
    proc = run_cli([*ACCURACY, *args, "--no-train", "--json", str(again)], tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert best.stat().st_mtime_ns == stamp and "--no-train: 2 of 2 runs finished in " in proc.stdout
    assert [r["latency_threads"] for r in json.loads(again.read_text())["rows"]] == [1, 1]  # OMP_NUM_THREADS
    for old, new in zip(rows, json.loads(again.read_text())["rows"]):
        assert new["map50_95"] == pytest.approx(old["map50_95"]) and new["train_s"] == pytest.approx(old["train_s"])
        assert new["runs"][0]["best_epoch"] == old["runs"][0]["best_epoch"]
    # another split and the last checkpoint: scored into their own folder, the default's files and rows untouched
    other = tmp_path / "val_last.json"
    proc = run_cli(
        [*ACCURACY, *args, "--no-train", "--split", "val", "--checkpoint", "last", "--json", str(other)],
        tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert "last.pt scored on the 'val' split" in proc.stdout and best.stat().st_mtime_ns == stamp
    for r in json.loads(other.read_text())["rows"]:
        assert r["eval_split"] == "val" and r["checkpoint"] == "last" and r["runs"][0]["weights"].endswith("last.pt")
        assert (Path(r["runs"][0]["weights"]).parent.parent / "coco_eval_val_last" / "metrics.json").is_file()
        assert 0 <= r["map50_95"] <= r["map50"] <= 1
    assert {r["checkpoint"] for r in rows} == {"best"}
    assert (tmp_path / "runs" / "accuracy" / "val_ground_truth.json").is_file()
    # the cost columns at another size than training (CPU trains small, deployment latency is wanted at full size)
    again = tmp_path / "big.json"
    run_cli([*ACCURACY, *args, "--reuse", "--latency-imgsz", "96", "--json", str(again)], tmp_path)
    big = json.loads(again.read_text())["rows"]
    assert [r["latency_imgsz"] for r in big] == [96, 96] and big[0]["imgsz"] == 64
    assert big[0]["gflops"] > rows[0]["gflops"] and big[0]["map50_95"] == pytest.approx(rows[0]["map50_95"])
    argv = ["accuracy", *args, "--reuse"]
    argv[argv.index("--epochs") + 1] = "2"
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert cli.main(argv) == 2  # in this process: the refusal comes before any training
    err = capsys.readouterr().err.strip()
    expect = r"^effdet-plugin accuracy: error: --reuse: .*_seed0 was trained with epochs=1, this recipe has 2;"
    assert re.search(expect, err) and len(err.splitlines()) == 1, err
    assert best.stat().st_mtime_ns == stamp

    # --progressive: its own runs beside the plain ones, trained with progressive=True, marked in the row and table
    prog = tmp_path / "prog.json"
    argv = [*args[:1], "yolov5n_effv2.yaml", *args[3:], "--progressive", "--json", str(prog)]
    argv[argv.index("--epochs") + 1] = "4"  # one epoch per stage (progressive_stages 4)
    proc = run_cli([*ACCURACY, *argv], tmp_path, env={"OMP_NUM_THREADS": "1"})
    (row,) = json.loads(prog.read_text())["rows"]
    run = Path(row["runs"][0]["weights"]).parent.parent
    assert row["progressive"] is True and run.name == "yolov5n_effv2_progressive_seed0", run
    assert yaml.safe_load((run / "args.yaml").read_text())["progressive"] is True
    assert "yolov5n_effv2.yaml progressive" in proc.stdout.split("mAP as mean")[-1]
    assert best.stat().st_mtime_ns == stamp and rows[0]["progressive"] is False


def test_rows_carry_welch_p_against_the_first_model():
    # cards n, 40 epochs (docs/accuracy.md): t = 2.70 on 3.16 degrees of freedom; the p-value was checked against a
    # numerical integration of Student's t density (0.06983)
    base, other = [0.457, 0.429, 0.396], [0.332, 0.384, 0.276]
    assert welch_p(other, base) == pytest.approx(0.06983, abs=1e-4) == welch_p(base, other)
    assert welch_p([0.5], base) is None and welch_p([0.4, 0.4], [0.3, 0.3]) is None  # one seed; no spread at all
    cost = [{"params": 1, "gflops": 1.0, "latency_ms": 1.0, "latency_ms_ratio": 1.0, "threads": 2}] * 3
    runs = {
        m: [{"seed": i, "map50_95": v, "map50": v, "map75": v, "train_s": 60.0} for i, v in enumerate(vals)]
        for m, vals in (("a.yaml", base), ("b.yaml", other), ("c.yaml", [0.5]))
    }
    rows = make_rows(cost, runs, ["a.yaml", "b.yaml", "c.yaml"], recipe())
    assert [r["map50_95_p"] for r in rows] == [None, pytest.approx(0.06983, abs=1e-4), None]
    assert {r["dataset"] for r in rows} == {"cards"}
    lines = table(rows).splitlines()
    assert "p vs first" in lines[0] and "0.070" in lines[2] and "0.070" not in lines[1] + lines[3]
    assert {r["reference"] for r in rows} == {"a.yaml"}


def test_per_scale_compares_each_model_with_the_first_of_its_letter(tmp_path):
    models = ["yolov5nu.yaml", "/x/yolov5n_effv2-f45.yaml", "yolov5su.yaml", "yolov5s_effv2.yaml", "yolov5m_effv2.yaml"]
    assert references(models, per_scale=False) == [0, 0, 0, 0, 0]
    assert references(models, per_scale=True) == [0, 0, 2, 2, 4]  # m has no yolov5mu: its own reference
    with pytest.raises(AccuracyError, match=r"^--per-scale: 'mine\.yaml' names no scale letter") as e:
        references([*models, "mine.yaml"], per_scale=True)
    assert len(str(e.value).splitlines()) == 1
    assert [family(m) for m in models] == ["yolov5u", "yolov5_effv2-f45", "yolov5u", "yolov5_effv2", "yolov5_effv2"]

    latency = [10.0, 9.0, 20.0, 18.0, 40.0]
    cost = [{"params": 1, "gflops": 1.0, "latency_ms": ms, "latency_ms_ratio": ms / 10, "threads": 2} for ms in latency]
    maps = [[0.40, 0.42, 0.44], [0.30, 0.32, 0.34], [0.50, 0.52, 0.54], [0.50, 0.52, 0.54], [0.6, 0.6, 0.7]]
    runs = {
        m: [{"seed": i, "map50_95": v, "map50": v, "map75": v, "train_s": 60.0} for i, v in enumerate(vals)]
        for m, vals in zip(models, maps)
    }
    rows = make_rows(cost, runs, models, recipe(latency_imgsz=640, checkpoint="last"), per_scale=True)
    assert [r["latency_ratio"] for r in rows] == pytest.approx([1.0, 0.9, 1.0, 0.9, 1.0])
    assert [r["reference"] for r in rows] == [models[0], models[0], models[2], models[2], models[4]]
    assert {r["checkpoint"] for r in rows} == {"last"}
    p = [r["map50_95_p"] for r in rows]
    assert p[0] is None and p[2] is None and p[4] is None and p[1] < 0.05 and p[3] == pytest.approx(1.0)
    header = table(rows).splitlines()[0]
    assert "x ref" in header and "p vs ref" in header and "first" not in header
    png = plot(rows, tmp_path / "curve.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_ground_truth_matches_labels(demo_data, tmp_path):
    from pycocotools.coco import COCO

    ann, images = coco_ground_truth(demo_data, "test", tmp_path / "gt.json")
    assert images == demo_data.parent / "images" / "test"
    assert len(image_files(load_annotations(ann), images, ann)) == 8  # coco_eval finds every image it lists
    gt = COCO(str(ann))
    labels = sorted((demo_data.parent / "labels" / "test").glob("*.txt"))
    assert len(gt.getImgIds()) == len(labels) == 8
    assert [c["name"] for c in gt.loadCats(gt.getCatIds())] == ["circle", "square", "triangle"]
    for img in gt.loadImgs(gt.getImgIds()):
        rows = [
            list(map(float, r.split()))
            for r in (demo_data.parent / "labels" / "test")
            .joinpath(Path(img["file_name"]).stem + ".txt")
            .read_text()
            .splitlines()
        ]
        anns = gt.loadAnns(gt.getAnnIds(imgIds=img["id"]))
        assert len(anns) == len(rows)
        for a, (c, xc, yc, w, h) in zip(anns, rows):
            x, y, bw, bh = a["bbox"]
            assert a["category_id"] == c + 1
            assert abs((x + bw / 2) / img["width"] - xc) < 1e-9 and abs(bw / img["width"] - w) < 1e-9
            assert abs((y + bh / 2) / img["height"] - yc) < 1e-9 and abs(bh / img["height"] - h) < 1e-9


def test_eval_split_fallback_and_errors(demo_data, tmp_path):
    data = yaml.safe_load(demo_data.read_text())
    assert eval_split(demo_data) == "test"
    no_test = tmp_path / "no_test.yaml"
    no_test.write_text(yaml.safe_dump({k: v for k, v in data.items() if k != "test"}))
    assert eval_split(no_test) == "val"
    neither = tmp_path / "neither.yaml"
    neither.write_text(yaml.safe_dump({k: v for k, v in data.items() if k not in ("test", "val")}))
    with pytest.raises(AccuracyError, match=r"neither\.yaml has no 'test' or 'val' split"):
        eval_split(neither)
    with pytest.raises(AccuracyError, match=r"missing\.yaml not found"):
        eval_split(tmp_path / "missing.yaml")
    # --split: the split asked for, or one line naming it and the file
    assert eval_split(demo_data, "val") == "val" and eval_split(no_test, "val") == "val"
    with pytest.raises(AccuracyError, match=r"^--split test: data YAML .*no_test\.yaml has no 'test' split \(keys: "):
        eval_split(no_test, "test")


def test_split_images_lists_as_ultralytics(demo_data, tmp_path):
    """Folders are searched recursively, .txt lists resolve './' against their folder, non-images are skipped."""
    val = sorted((demo_data.parent / "images" / "val").iterdir())
    assert split_images(demo_data, "val") == val
    nested = tmp_path / "nested" / "deeper"
    listed = tmp_path / "listed"
    nested.mkdir(parents=True)
    listed.mkdir()
    (nested / val[0].name).write_bytes(val[0].read_bytes())
    (nested / "notes.md").write_text("not an image")
    for p in val[1:4]:
        (listed / p.name).write_bytes(p.read_bytes())
    (tmp_path / "list.txt").write_text("".join(f"./listed/{p.name}\n" for p in val[1:4]))
    data = {**yaml.safe_load(demo_data.read_text()), "val": str(nested.parent), "test": str(tmp_path / "list.txt")}
    alt = tmp_path / "alt.yaml"
    alt.write_text(yaml.safe_dump(data))
    assert split_images(alt, "val") == [nested / val[0].name]
    assert split_images(alt, "test") == [listed / p.name for p in val[1:4]]
    (nested / val[0].name).unlink()
    with pytest.raises(AccuracyError, match=r"alt\.yaml: 'val' split .*nested: no image files \(.*bmp, .*jpg") as e:
        split_images(alt, "val")
    assert len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize(
    "case, match",
    [
        ("no_split", r"^effdet-plugin accuracy: error: data YAML .*bad\.yaml has no 'test' or 'val' split to score on"),
        ("split", r"^effdet-plugin accuracy: error: --split test: data YAML .*bad\.yaml has no 'test' split \(keys: "),
        ("unknown_model", r"^effdet-plugin accuracy: error: unknown model 'yolov5q_nonexistent\.yaml'"),
        pytest.param(
            "per_scale",
            r"^effdet-plugin accuracy: error: --per-scale: '.*mine\.yaml' names no scale letter",
            marks=pytest.mark.slow,
        ),
        (
            "no_train",
            r"^effdet-plugin accuracy: error: --no-train: 2 of 2 runs .* in .*: yolov5n_effv2_seed0, yolov5nu_seed0$",
        ),
    ],
)
def test_bad_input_one_line(demo_data, tmp_path, capsys, monkeypatch, case, match):
    data = demo_data
    if case in ("no_split", "split"):
        d = yaml.safe_load(demo_data.read_text())
        data = tmp_path / "bad.yaml"
        drop = ("test", "val") if case == "no_split" else ("test",)
        data.write_text(yaml.safe_dump({k: v for k, v in d.items() if k not in drop}))
    models = ["yolov5q_nonexistent.yaml" if case == "unknown_model" else "yolov5n_effv2.yaml", "yolov5nu.yaml"]
    extra = []
    if case == "per_scale":  # a model that loads but whose name carries no scale letter
        mine = tmp_path / "mine.yaml"
        mine.write_text(yaml.safe_dump(load_model("yolov5n_effv2.yaml").yaml))
        models, extra = [*models, str(mine)], ["--per-scale"]
    if case == "no_train":  # an empty --project: assembling a table must not start training instead
        extra = ["--no-train"]
    if case == "split":  # scoring a split the data lacks: refused before anything is timed or trained
        extra = ["--split", "test"]
    monkeypatch.chdir(tmp_path)
    assert cli.main(["accuracy", "--models", *models, "--data", str(data), "--device", "cpu", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err  # one line, no traceback
    assert not (tmp_path / "runs").exists()  # nothing trained


@pytest.mark.parametrize("flag", ["--reuse", "--no-train"])
def test_reuse_checks_every_run_before_training_any(demo_data, tmp_path, capsys, monkeypatch, flag):
    # the second model's run was trained with another recipe: refused before the first model trains, not after
    other = tmp_path / "runs" / "accuracy" / "yolov5nu_seed0"
    (other / "weights").mkdir(parents=True)
    (other / "weights" / "best.pt").write_bytes(b"")
    (other / "results.csv").write_text("epoch,time,metrics/mAP50-95(B)\n")
    recipe = {"model": "yolov5nu.yaml", "data": str(demo_data.resolve()), "epochs": 3, "imgsz": 64, "batch": 8}
    recipe |= {"seed": 0, "pretrained": False}
    (other / "args.yaml").write_text(yaml.safe_dump(recipe))
    monkeypatch.chdir(tmp_path)
    argv = ["accuracy", "--models", "yolov5n_effv2.yaml", "yolov5nu.yaml", "--data", str(demo_data), "--device", "cpu"]
    argv += ["--epochs", "1", "--imgsz", "64", "--batch", "8", "--seeds", "0", "--workers", "0", flag]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    expect = rf"^effdet-plugin accuracy: error: {flag}: .*yolov5nu_seed0 was trained with epochs=3, this recipe has 1;"
    assert re.search(expect, err) and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in other.parent.iterdir()) == ["yolov5nu_seed0"]  # nothing trained, no ground truth


def test_a_resumed_run_is_adopted_by_its_folder(tmp_path):
    # `yolo train resume=True` rewrites args.yaml with the run's own last.pt as the model
    project = Project(tmp_path / "runs", "--no-train")
    r = recipe(epochs=2, seeds=(0,))
    run = project.run_dir("yolov5n_effv2.yaml", 0, r)
    (run / "weights").mkdir(parents=True)
    for name in ("best.pt", "last.pt"):
        (run / "weights" / name).write_bytes(b"")
    # resumed after epoch 1: Ultralytics' clock starts again from zero
    (run / "results.csv").write_text("epoch,time,metrics/mAP50(B),metrics/mAP50-95(B)\n1,5,0.2,0.1\n2,4,0.3,0.2\n")
    args = {"data": r.data, "epochs": 2, "imgsz": 64, "batch": 8, "seed": 0, "pretrained": False}
    last = str(run / "weights" / "last.pt")
    (run / "args.yaml").write_text(yaml.safe_dump({**args, "model": last, "resume": last}))
    done = finished_run(project, "yolov5n_effv2.yaml", 0, r)
    assert done is not None and done.weights == run / "weights" / "best.pt" and done.best_epoch == 2
    assert done.seconds == 9
    # resumed from another run's last.pt: refused with the one line naming that checkpoint
    other = tmp_path / "elsewhere" / "yolov5nu_seed0" / "weights" / "last.pt"
    (run / "args.yaml").write_text(yaml.safe_dump({**args, "model": str(other), "resume": str(other)}))
    with pytest.raises(AccuracyError) as e:
        finished_run(project, "yolov5n_effv2.yaml", 0, r)
    assert str(e.value) == (
        f"--no-train: {run} was resumed from {other}, another run's checkpoint; use another --project or move the run "
        "away"
    )
    # a plain (not resumed) run of another model is still refused by its model key
    (run / "args.yaml").write_text(yaml.safe_dump({**args, "model": "yolov5nu.yaml"}))
    with pytest.raises(AccuracyError, match=r"was trained with model='yolov5nu', this recipe has 'yolov5n_effv2'"):
        finished_run(project, "yolov5n_effv2.yaml", 0, r)
