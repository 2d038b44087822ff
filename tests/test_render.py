"""``effdet-plugin render``: tables and plots from the results store, staleness by data, hand-typed figures caught.

The fixture store (tests/fixtures/store: records, render.yaml, a README and a docs page) stands in for the
repository's; the last tests run the same checks on the repository itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from effdet_plugin.commands import cli, figures, markers, plots, results, views

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "store"


@pytest.fixture
def store(tmp_path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(FIXTURE, root)
    return root


def render(root: Path, *flags: str) -> int:
    return cli.main(["render", "--root", str(root), *flags])


def table_rows(root: Path) -> dict[str, list[str]]:
    text = (root / "README.md").read_text()
    (block,) = markers.blocks(text)
    lines = [x for x in text[block.start : block.end].splitlines() if x.startswith("| ")]
    return {cells[0]: cells for cells in ([c.strip() for c in x.strip("|").split("|")] for x in lines[2:])}


def test_render_writes_tables_and_plots_then_check_passes(store, capsys):
    assert render(store, "--check") == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "README.md: table family is stale",
        "docs/accuracy_latency_cards.png: plot accuracy-latency-cards is missing",
        "docs/curves_cards.png: plot curves-cards is missing",
    ]
    before = (store / "README.md").read_text()
    assert render(store) == 0
    assert render(store, "--check") == 0 and "up to date" in capsys.readouterr().out.splitlines()[-1]
    after = (store / "README.md").read_text()
    # only the block changed; the fenced example marker in docs/models.md is text, not a block
    assert after.startswith(before.split("<!-- render:family -->")[0]) and after.endswith(before.split("-->")[-1])
    assert "0.999 typed inside a code fence" in (store / "docs" / "models.md").read_text()
    rows = table_rows(store)
    header = after.split("<!-- render:family -->")[1].strip().splitlines()[0]
    assert header == (
        "| model | params (M) | GFLOPs (640) | PyTorch ÷ baseline | ONNX Runtime ÷ baseline | "
        "mAP50-95 cards | mAP50-95 raccoon | vs baseline cards | vs baseline raccoon |"
    )
    # latency: one ratio per benchmark record (48/50 and 52/52), their median; the baseline is its own reference
    assert rows["yolov5n_effv2"][3] == "0.98× (2 runs)" and rows["yolov5nu"][3] == "1.00× (2 runs)"
    assert rows["yolov5n_effv2"][1:3] == ["2.47", "6.9"]
    # mAP: mean ± sd (seeds), across a protocol record (cards) and an accuracy record (raccoon)
    assert rows["yolov5nu"][5] == "0.393 ± 0.011 (3)" and rows["yolov5nu"][6] == "0.313 ± 0.015 (3)"
    assert rows["yolov5n_effv2"][7] == "ahead (+5.1, p = 0.0037)" and rows["yolov5n_effv2"][8] == "level (+0.0, p = 1)"
    assert rows["yolov5s_effv2"][7] == "level (-0.5, p = 0.87, 2 seeds)"  # below 3 seeds: never a claim
    assert rows["yolov5su"][6] == "—" and rows["yolov5nu"][7] == "baseline"
    assert (
        "From results/accuracy_raccoon.json, results/bench_a.json, results/bench_b.json, results/protocol_cards"
        in after
    )
    for png in ("accuracy_latency_cards.png", "curves_cards.png"):
        assert (store / "docs" / png).read_bytes()[:4] == b"\x89PNG" and plots.stamp_of(store / "docs" / png)


def test_a_changed_record_makes_its_table_and_plots_stale(store, capsys):
    assert render(store) == 0
    path = store / "results" / "protocol_cards.json"
    record = json.loads(path.read_text())
    record["rows"][0]["map50_95"] = 0.2
    record["rows"][0]["curve"]["map50_95"][-1] = 0.2
    path.write_text(json.dumps(record))
    capsys.readouterr()
    assert render(store, "--check") == 1
    assert capsys.readouterr().out.splitlines() == [
        "README.md: table family is stale",
        "docs/accuracy_latency_cards.png: plot accuracy-latency-cards is stale",
        "docs/curves_cards.png: plot curves-cards is stale",
    ]
    stamp = (store / "docs" / "curves_cards.png").read_bytes()
    assert render(store) == 0 and (store / "docs" / "curves_cards.png").read_bytes() != stamp


def test_plot_staleness_reads_the_data_stamp_not_pixels(store, capsys):
    """A PNG drawn by anything (here PIL, no matplotlib) is fresh when it carries the data's stamp, stale when not."""
    from PIL import Image, PngImagePlugin

    assert render(store) == 0
    _, plot_views = views.read_views(store / "results" / views.DEFINITIONS)
    view = plot_views["curves-cards"]
    stamp = views.plot_stamp(view, views.Store(results.load(store / "results")))
    assert plots.stamp_of(store / view.file) == stamp
    info = PngImagePlugin.PngInfo()
    info.add_text(plots.STAMP_KEY, stamp)
    Image.new("RGB", (8, 8), "red").save(store / view.file, pnginfo=info)
    capsys.readouterr()
    assert render(store, "--check") == 0
    Image.new("RGB", (8, 8), "red").save(store / view.file)  # same pixels, no stamp
    assert render(store, "--check") == 1 and "curves-cards is stale" in capsys.readouterr().out


@pytest.mark.parametrize(
    "page, message",
    [
        ("<!-- render:nope -->\n<!-- /render:nope -->\n", "README.md:1: render:nope is not a table of "),
        ("text\n<!-- render:family -->\nno end\n", "README.md:2: <!-- render:family --> has no closing"),
    ],
)
def test_bad_markers_are_one_line(store, capsys, page, message):
    (store / "README.md").write_text(page)
    assert render(store, "--check") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize(
    "change, message",
    [
        ({"tables": {"t": {"models": "yolov5nu"}}}, "tables.t.models: expected a list of model names"),
        (
            {"tables": {"t": {"models": ["a"], "columns": ["model", "speed"]}}},
            "tables.t.columns: unknown column 'speed'",
        ),
        (
            {"tables": {"t": {"models": ["a"], "columns": ["verdict"], "datasets": ["d"]}}},
            "tables.t: column 'verdict' compares with a baseline; give baseline:",
        ),
        (
            {"tables": {"t": {"models": ["a"], "scores": {"where": {"lr0": 0.1}}}}},
            "tables.t.scores.where: keys must be",
        ),
        ({"plots": {"p": {"models": ["a"], "kind": "bar", "file": "x.png", "dataset": "d"}}}, "plots.p.kind: expected"),
    ],
)
def test_bad_definitions_are_one_line_naming_the_key(store, capsys, change, message):
    import yaml

    (store / "results" / "render.yaml").write_text(yaml.safe_dump(change))
    (store / "README.md").write_text("no blocks\n")
    assert render(store, "--check") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"render.yaml: {message}" in err[0], err


def test_one_seed_in_two_records_is_ambiguous(store, capsys):
    twin = json.loads((store / "results" / "protocol_cards.json").read_text())
    (store / "results" / "protocol_cards_again.json").write_text(json.dumps(twin))
    assert render(store, "--check") == 2
    err = capsys.readouterr().err
    assert "yolov5nu seed 0 on cards is scored in both" in err and "narrow the view's scores" in err


# ------------------------------------------------------------------------------------------------ the store loader
def _broken(record: dict, where: str, value) -> dict:
    node, *path = where.split(".")
    target = record
    keys = [node, *path]
    for k in keys[:-1]:
        target = target[int(k)] if isinstance(target, list) else target[k]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[int(keys[-1]) if isinstance(target, list) else keys[-1]] = value
    return record


@pytest.mark.parametrize(
    "file, where, value, message",
    [
        ("bench_a.json", "schema", 2, "schema: expected 1, found 2"),
        ("bench_a.json", "kind", "sweep", "kind: expected one of benchmark, accuracy, protocol, found 'sweep'"),
        ("bench_a.json", "meta.machine.cpu", KeyError, "meta.machine.cpu: missing"),
        ("bench_a.json", "meta.versions.torch", 2.14, "meta.versions.torch: expected a string, found 2.14"),
        ("bench_a.json", "rows.1.latency_ms", "fast", "rows[1].latency_ms: expected a number, found 'fast'"),
        ("bench_a.json", "rows.0.params", 2.5, "rows[0].params: expected an integer, found 2.5"),
        (
            "accuracy_raccoon.json",
            "rows.1.runs.2.map50_95",
            None,
            "rows[1].runs[2].map50_95: expected a number, found None",
        ),
        (
            "accuracy_raccoon.json",
            "rows.0.pretrained",
            3,
            "rows[0].pretrained: expected true/false or a string, found 3",
        ),
        ("protocol_cards.json", "rows.3.curve.map50_95", [0.1], "rows[3].curve.map50_95: 1 values for 6 epochs"),
        ("protocol_cards.json", "rows.0.identity", KeyError, "rows[0].identity: missing"),
    ],
)
def test_malformed_record_is_refused_naming_file_and_key(store, file, where, value, message):
    path = store / "results" / file
    path.write_text(json.dumps(_broken(json.loads(path.read_text()), where, value)))
    with pytest.raises(results.StoreError) as e:
        results.load(store / "results")
    assert str(e.value) == f"{path}: {message}" and len(str(e.value).splitlines()) == 1


def test_not_json_is_refused(tmp_path):
    (tmp_path / "x.json").write_text("[1, 2")
    with pytest.raises(results.StoreError, match=r"x\.json: not JSON: line 1"):
        results.load(tmp_path)


def test_loader_types_the_fixture_rows():
    recs = {r.path.name: r for r in results.load(FIXTURE / "results")}
    assert set(recs) == {"accuracy_raccoon.json", "bench_a.json", "bench_b.json", "protocol_cards.json"}
    t = recs["bench_a.json"].timings[1]
    assert (t.model, t.imgsz, t.batch, t.params) == ("yolov5n_effv2", 640, 1, 2470000)
    assert t.figures == {"latency_ms": 48.0, "onnx_ms": pytest.approx(38.4)}
    s = recs["protocol_cards.json"].scores[0]
    assert (s.model, s.dataset, s.split, s.run.seed, s.recipe["epochs"], len(s.run.curve.epoch)) == (
        "yolov5nu",
        "cards",
        "test",
        0,
        6,
        6,
    )
    assert len(recs["accuracy_raccoon.json"].scores) == 6


def test_written_record_has_the_meta_and_reads_back(tmp_path):
    rows = json.loads((FIXTURE / "results" / "bench_a.json").read_text())["rows"]
    path = results.write_record(tmp_path / "r.json", "benchmark", rows, ["benchmark", "--models", "a.yaml"], ["numpy"])
    meta = results.load_record(path).meta
    assert meta["argv"] == ["effdet-plugin", "benchmark", "--models", "a.yaml"]
    assert {"python", "torch", "torchvision", "ultralytics", "effdet-plugin", "numpy"} <= meta["versions"].keys()
    assert meta["machine"]["cores"] >= 1 and meta["machine"]["cpu"] and meta["date"][:2] == "20"


# -------------------------------------------------------------------------------------------- hand-typed figures
GOOD = """# Versions and settings
Supported: Ultralytics 8.4.x, `yolov5` 7.0.14, Python 3.11, torch 2.14.1 and requires-python >= 3.9 (AGPL-3.0).
Trained 100 epochs at 640 with 3 seeds on mAP50-95; v8.4 and IoU 0.75; `--conf 0.001` is a setting.

```
0.374 ± 0.013 inside a fence is code
```
"""
BAD = """# Results
The n model scores 0.412 on cards, 12% more than before, at 1.07× yolov5nu (± 2 points), 1.5x faster.
"""


def test_figure_rule_self_check():
    """The rule catches every kind of typed figure on a synthetic bad page and lets versions and settings through."""
    pages = {Path("good.md"): GOOD, Path("bad.md"): BAD}
    found = figures.typed_figures(pages, allowed=set())
    assert found == ["bad.md:2: 0.412", "bad.md:2: 12%", "bad.md:2: 1.07×", "bad.md:2: ± 2", "bad.md:2: 1.5x"]
    # a figure the store holds, or one a rendered block shows, may be quoted in prose
    rendered = "<!-- render:t -->\n| n | 1.07× |\n<!-- /render:t -->\n"
    pages = {Path("bad.md"): BAD + rendered}
    allowed = figures.allowed_figures(pages, [{"map50_95": 0.41201, "gain": 0.12}, {"latency_ms": 1.5}])
    assert figures.typed_figures(pages, allowed) == ["bad.md:2: ± 2"]


def test_render_figures_command_fails_on_a_bad_page(store, capsys):
    assert render(store) == 0
    assert render(store, "--figures") == 0
    (store / "docs" / "bad.md").write_text(BAD)
    capsys.readouterr()
    assert render(store, "--figures") == 1
    assert capsys.readouterr().out.splitlines()[0] == "docs/bad.md:2: 0.412"


# ----------------------------------------------------------------------------------------------- the repository
def test_render_check_on_the_repository(capsys):
    assert render(REPO, "--check") == 0, capsys.readouterr().out


def test_repository_pages_hold_no_figure_absent_from_the_store(capsys):
    assert render(REPO, "--figures") == 0, "\n".join(capsys.readouterr().out.splitlines()[:40])


def test_rows_of_one_file_split_by_recipe_and_a_baseline_named_by_label(store, capsys):
    """The same file trained from scratch and from ImageNet weights is two rows (their own ``where``), and a baseline
    naming a row's label compares every other row with that row."""
    import yaml

    defs = store / "results" / "render.yaml"
    spec = yaml.safe_load(defs.read_text())
    spec["tables"]["family"].update(
        models=[
            {"model": "yolov5n_effv2", "label": "effv2 scratch", "where": {"pretrained": False}},
            {"model": "yolov5n_effv2", "label": "effv2 ImageNet", "where": {"pretrained": "efficientnet-lite0"}},
            "yolov5nu",
        ],
        baseline="effv2 scratch",
        datasets=["cards"],
        columns=["model", "map", "verdict"],
    )
    spec["plots"] = {}
    defs.write_text(yaml.safe_dump(spec))
    assert render(store) == 0, capsys.readouterr().err
    rows = table_rows(store)
    assert rows["effv2 scratch"][1:] == ["0.443 ± 0.008 (3)", "baseline"]
    assert rows["effv2 ImageNet"][1:] == ["—", "—"]  # no run has that recipe
    assert rows["yolov5nu"][2].startswith("behind (-5.1, p = 0.0037")

    # a row may name its own baseline: the ImageNet row against yolov5nu, the others against the view's
    spec["tables"]["family"]["models"][1]["baseline"] = "yolov5nu"
    defs.write_text(yaml.safe_dump(spec))
    assert render(store) == 0, capsys.readouterr().err
    assert table_rows(store)["effv2 ImageNet"][1:] == ["—", "—"] and table_rows(store)["yolov5nu"][2].startswith(
        "behind"
    )
    spec["tables"]["family"]["models"][0]["baseline"] = "yolov5nu"
    defs.write_text(yaml.safe_dump(spec))
    assert render(store) == 0, capsys.readouterr().err
    assert table_rows(store)["effv2 scratch"][2].startswith("ahead (+5.1, p = 0.0037")

    spec["tables"]["family"]["models"][1]["label"] = "effv2 scratch"
    defs.write_text(yaml.safe_dump(spec))
    assert render(store) == 2
    assert "two rows share a label" in capsys.readouterr().err


def render_task_table(store: Path, capsys, suffix: str, metric: str, columns: list[str], classifier: bool) -> str:
    """The fixture's cards rows as a task's (models ``*{suffix}``, ``metric``; a classifier's accuracy in place of the
    mAPs), rendered in one table of ``columns``; the README's text."""
    import yaml

    rows = json.loads((store / "results" / "protocol_cards.json").read_text())
    for row in rows["rows"]:
        row["model"] = row["model"].replace(".yaml", f"{suffix}.yaml")
        row["metric"] = metric
        if classifier:
            row["top1"], row["top5"] = row.pop("map50_95"), row.pop("map50")
            del row["map75"], row["curve"]
    (store / "results" / f"protocol_cards{suffix}.json").write_text(json.dumps(rows))
    defs = store / "results" / "render.yaml"
    spec = yaml.safe_load(defs.read_text())
    models = [f"yolov5n_effv2{suffix}", f"yolov5nu{suffix}"]
    spec["tables"]["family"].update(models=models, baseline=models[0], datasets=["cards"], columns=columns)
    spec["plots"] = {}
    defs.write_text(yaml.safe_dump(spec))
    assert render(store) == 0, capsys.readouterr().err
    return (store / "README.md").read_text()


def test_a_table_of_another_task_names_the_map_it_shows(store, capsys):
    """Rows scored on masks carry ``metric``; their table's note names it, where a detection table says pycocotools."""
    text = render_task_table(store, capsys, "-seg", "mask mAP, pycocotools", ["model", "map", "verdict"], False)
    assert "on the 'test' split, mask mAP, pycocotools; verdict" in text
    assert table_rows(store)["yolov5nu-seg"][2].startswith("behind (-5.1, p = 0.0037")


def test_a_classifier_table_shows_top1_and_compares_it(store, capsys):
    """Classifier rows hold top-1 and top-5 accuracy, not mAP: the ``top1`` column shows them, the verdict compares
    top-1, a ``map`` column shows a dash."""
    metric = "top-1 accuracy, Ultralytics' classify validator"
    text = render_task_table(store, capsys, "-cls", metric, ["model", "top1", "map", "verdict"], True)
    assert "| model | top-1 cards | mAP50-95 cards | vs yolov5n_effv2-cls cards |" in text
    assert "score: mean ± sd over seeds (count) on the 'test' split, top-1 accuracy, Ultralytics' classify" in text
    assert "verdict: the difference of means in top-1 points" in text
    row = table_rows(store)["yolov5nu-cls"]
    assert row[1].endswith("(3)") and row[2] == "—" and row[3].startswith("behind (-5.1, p = 0.0037")
