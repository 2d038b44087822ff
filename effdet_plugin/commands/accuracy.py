"""Accuracy per cost: train models of one task with one recipe, score them on held-out data, one table.

    effdet-plugin accuracy --models yolov5su.yaml yolov5s_effv2.yaml --data DATA.yaml --epochs 100 --imgsz 640 \
        --seeds 0 1 2 --device 0 --json results/NAME.json [--batch 16] [--workers 4] [--pretrained [WEIGHTS]] \
        [--project runs/accuracy] [--reuse | --no-train] [--progressive] [--split test|val] [--checkpoint best|last]

Every model is trained by Ultralytics' trainer with the same data, epochs, image size, batch, seeds and default
hyperparameters, from scratch (``--pretrained``: ``.pt`` models start from their weights; ``--pretrained WEIGHTS``:
every model's EfficientNet backbone starts from those ImageNet weights). The best checkpoint of each
run is scored on the dataset's ``test`` split (``val`` when there is none): detect, segment and pose models by
``coco_eval`` (pycocotools, on boxes, masks or keypoints), OBB models and classifiers (a folder dataset, top-1 and
top-5 accuracy) by the host's validator (``scoring``);
``--split`` and ``--checkpoint last`` score another split or the last epoch's weights, so a margin can be checked on
held-out images that chose no checkpoint. Params, GFLOPs and fused CPU latency (relative to the first model) come from
``benchmark``, all models timed in one process.
With two or more seeds per model, each row also carries Welch's two-sided t-test p-value of its mAP50-95 (top-1) against
the first model's (the baseline), so a difference and its significance come from the same command. ``--per-scale``
compares each model with the first model of its own scale letter instead (``yolov5su.yaml yolov5s_effv2.yaml
yolov5mu.yaml yolov5m_effv2.yaml``: s against yolov5su, m against yolov5mu), so one command tabulates every scale.
Without a GPU the defaults drop to imgsz 320, 10 epochs and one seed, and the output says so. ``--reuse`` scores
finished runs of the same recipe already in ``--project`` instead of training them again (seeds run as separate
processes, an interrupted sweep), so the table can be assembled in one run; every run is checked against the recipe
before anything is timed or trained, and ``--no-train`` stops with one line if any run is missing. ``--progressive``
trains every model with the plugin's progressive learning (``progressive=True``) into runs of their own, so a plain
sweep and a progressive one of the same models share ``--project``. ``--json`` writes a results-store record (rewritten
after every run) whose runs carry their per-epoch validation curves.
"""

from __future__ import annotations

import argparse
import statistics
from datetime import date
from pathlib import Path

from effdet_plugin.commands.benchmark import BenchmarkConfig, benchmark, load_model
from effdet_plugin.commands.compare import spread, welch_p
from effdet_plugin.commands.heldout import AccuracyError, dataset, eval_split
from effdet_plugin.commands.plots import Point, accuracy_latency
from effdet_plugin.commands.recipe import GPU_RECIPE, Recipe, add_recipe_arguments, recipe_from_args
from effdet_plugin.commands.results import make_meta, write_record
from effdet_plugin.commands.runs import Project, plan_runs, train_once
from effdet_plugin.commands.scoring import METRICS, HeldOut, score_keys, sweep_task
from effdet_plugin.commands.table import format_table
from effdet_plugin.naming import scale_letter, unified_stem

ROW_KEYS = (
    "model", "dataset", "data", "params", "gflops", "latency_ms", "latency_ratio", "train_s", "map50_95",
    "map50_95_spread", "map50_95_p", "map50", "map50_spread", "map75", "map75_spread", "metric", "runs", "eval_split",
    "checkpoint", "imgsz", "latency_imgsz", "latency_threads", "epochs", "batch", "seeds", "device", "pretrained",
    "progressive", "reduced", "date", "reference",
)  # fmt: skip


def trained_model(model: str, data_yaml: str | Path):
    """``model`` as it is trained on the dataset: built by its task's class with the dataset's class count (and a pose
    dataset's keypoint shape), fresh weights; a ``.pt`` contributes its architecture (its YAML dict)."""
    from ultralytics.nn.tasks import PoseModel

    built = load_model(model)  # one-line errors for unknown names
    data = dataset(data_yaml)
    pose = {"data_kpt_shape": data["kpt_shape"]} if isinstance(built, PoseModel) and "kpt_shape" in data else {}
    return type(built)(built.yaml, nc=data["nc"], verbose=False, **pose)


def cost_models(models: list[str], data_yaml: str | Path) -> list:
    """Return each model as it will be trained, for params/GFLOPs/latency."""
    return [trained_model(m, data_yaml) for m in models]


def family(model: str) -> str:
    """A model's name without its scale letter (``yolov5s_effv2.yaml`` -> ``yolov5_effv2``), as Ultralytics unifies
    it."""
    stem = Path(model).stem
    return unified_stem(stem) if scale_letter(model) else stem


def references(models: list[str], per_scale: bool) -> list[int]:
    """Index of the model each one is compared with: the first model, or with ``per_scale`` the first of its letter."""
    if not per_scale:
        return [0] * len(models)
    first: dict[str, int] = {}
    for i, m in enumerate(models):
        letter = scale_letter(m)
        if not letter:
            raise AccuracyError(
                f"--per-scale: {m!r} names no scale letter (n/s/m/l/x after the version, as in yolov5s_effv2.yaml), "
                "so it has no same-scale reference"
            )
        first.setdefault(letter, i)
    return [first[scale_letter(m)] for m in models]


def _scored(r: dict) -> tuple[str, ...]:
    """The score keys a row holds (``scoring.score_keys``): a classifier's accuracy, else mAPs."""
    return score_keys("classify" if "top1" in r else "detect")


def make_rows(
    cost: list[dict],
    runs: dict[str, list[dict]],
    models: list[str],
    recipe: Recipe,
    per_scale: bool = False,
    task: str = "detect",
) -> list[dict]:
    """Combine cost rows and per-seed runs into one row per model, in ``models`` order: ``ROW_KEYS`` for a detector,
    the same with top-1 and top-5 accuracy (``top1``, ``top1_spread``, ``top1_p``, ...) in place of the mAPs for a
    classifier; ``metric`` names what the scores are (``scoring.METRICS``).

    Latency ratio and p-value are against the row's reference (``references``): the first model, or with
    ``per_scale`` the first model of the same scale letter.
    """
    rows = []
    refs = references(models, per_scale)
    keys = score_keys(task)
    for i, (model, c) in enumerate(zip(models, cost)):
        r = runs.get(model, [])
        ref = refs[i]
        values = {k: [x[k] for x in r] for k in keys}
        ref_first = [x[keys[0]] for x in runs.get(models[ref], [])]
        scores = {}
        for k in keys:
            scores[k] = statistics.fmean(values[k]) if r else None
            scores[f"{k}_spread"] = spread(values[k])
            if k == keys[0]:
                scores[f"{k}_p"] = welch_p(values[k], ref_first) if i != ref else None
        rows.append(
            {
                "model": model,
                "dataset": recipe.dataset,
                "data": recipe.data,
                "params": c["params"],
                "gflops": c["gflops"],
                "latency_ms": c["latency_ms"],
                "latency_ratio": c["latency_ms"] / cost[ref]["latency_ms"],
                "train_s": statistics.fmean(x["train_s"] for x in r) if r else None,
                **scores,
                "metric": METRICS[task],
                "runs": r,
                "eval_split": recipe.split,
                "checkpoint": recipe.checkpoint,
                "imgsz": recipe.imgsz,
                "latency_imgsz": recipe.latency_imgsz,
                "latency_threads": c["threads"],
                "epochs": recipe.epochs,
                "batch": recipe.batch,
                "seeds": list(recipe.seeds),
                "device": recipe.device_name,
                "pretrained": recipe.pretrained,
                "progressive": recipe.progressive,
                "reduced": recipe.reduced,
                "date": date.today().isoformat(),
                "reference": models[ref],
            }
        )
    return rows


TITLES = {"map50_95": "mAP50-95", "map50": "mAP50", "map75": "mAP75", "top1": "top-1", "top5": "top-5"}


def table(rows: list[dict]) -> str:
    """Return ``rows`` as an aligned text table: cost columns, then accuracy as mean ± sample std over seeds."""

    def pm(mean, sd):
        return "-" if mean is None else f"{mean:.3f}" + ("" if sd is None else f" ± {sd:.3f}")

    size = rows[0]["latency_imgsz"] if rows else ""
    ref = "first" if all(r.get("reference", rows[0]["model"]) == rows[0]["model"] for r in rows) else "ref"
    keys = _scored(rows[0]) if rows else score_keys("detect")
    header = ["model", "params(M)", f"GFLOPs@{size}", f"CPU ms@{size}", f"x {ref}", "train(min)", TITLES[keys[0]]]
    header += [f"p vs {ref}", *(TITLES[k] for k in keys[1:])]
    cells = [
        [
            r["model"] + (" progressive" if r.get("progressive") else ""),
            f"{r['params'] / 1e6:.2f}",
            f"{r['gflops']:.2f}",
            f"{r['latency_ms']:.1f}",
            f"{r['latency_ratio']:.2f}",
            "-" if r["train_s"] is None else f"{r['train_s'] / 60:.1f}",
            pm(r[keys[0]], r[f"{keys[0]}_spread"]),
            "-" if r.get(f"{keys[0]}_p") is None else f"{r[f'{keys[0]}_p']:.3f}",
            *(pm(r[k], r[f"{k}_spread"]) for k in keys[1:]),
        ]
        for r in rows
    ]
    return format_table(header, cells)


def plot(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Save the first score (mAP50-95, a classifier's top-1; mean, error bar = sample std) against fused CPU latency
    for every scored row as a PNG.

    Models of one family at several scales (``yolov5nu.yaml``, ``yolov5su.yaml``) are joined by a line, each point
    marked with its letter: the family's accuracy-latency curve.
    """
    first = _scored(rows[0])[0]
    points = [
        Point(
            Path(r["model"]).stem,
            family(r["model"]) + (" progressive" if r.get("progressive") else ""),
            scale_letter(r["model"]),
            r["latency_ms"],
            r[first],
            r[f"{first}_spread"],
            len(r["runs"]),
        )
        for r in rows
        if r[first] is not None
    ]
    r0 = rows[0]
    return accuracy_latency(
        points,
        path,
        f"fused CPU latency (ms, batch 1, imgsz {r0['latency_imgsz']})",
        f"{TITLES[first]} on '{r0['eval_split']}' ({r0.get('metric', METRICS['detect'])})",
        title or f"{r0['epochs']} epochs at {r0['imgsz']}, seeds {r0['seeds']}, {r0['device']}",
    )


# ------------------------------------------------------------------------------- effdet-plugin accuracy
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``accuracy`` options to ``p``."""
    p.add_argument(
        "--models",
        nargs="+",
        required=True,
        help="model YAML names/paths or .pt files; first = reference (--per-scale: first of each letter)",
    )
    add_recipe_arguments(p)
    p.add_argument(
        "--split",
        choices=("test", "val"),
        help="held-out split to score on (default: test if the data YAML has one, else val)",
    )
    p.add_argument("--project", default="runs/accuracy", help="folder for the training runs (default runs/accuracy)")
    p.add_argument(
        "--reuse", action="store_true", help="score finished runs of this recipe in --project, no retraining"
    )
    p.add_argument(
        "--no-train",
        action="store_true",
        help="score finished runs only (--reuse that never trains): stop with one line if any run is missing",
    )
    p.add_argument("--json", default=None, help="write a results-store record (rewritten after every run)")
    p.add_argument("--plot", default=None, help="save mAP50-95 against CPU latency to this PNG")
    p.add_argument(
        "--per-scale",
        action="store_true",
        help="compare each model with the first model of its own scale letter (n/s/m/l/x), not with the first model",
    )


def check_models(models: list[str], per_scale: bool) -> None:
    """Refuse a duplicate, an unknown model or a model without a reference before any work."""
    if len(set(models)) != len(models):
        raise AccuracyError(f"--models lists a model twice: {models}")
    for m in models:  # every name must resolve before hours of training start
        load_model(m)
    references(models, per_scale)


def sweep(args: argparse.Namespace) -> tuple[Recipe, list[dict]]:
    """Measure cost, train and score every model for every seed; return the recipe and the rows (also written to
    ``--json`` after every run)."""
    split = eval_split(args.data, args.split)
    default = split if args.split is None else eval_split(args.data)
    # a non-default split or checkpoint is scored into its own folder, beside the default's files
    models = list(args.models)
    check_models(models, args.per_scale)
    recipe = recipe_from_args(args, split)
    scored = f"coco_eval_{split}_{recipe.checkpoint}"
    scored = "coco_eval" if (split, recipe.checkpoint) == (default, "best") else scored
    project = Project(Path(args.project), "--no-train" if args.no_train else "--reuse" if args.reuse else "")
    meta = make_meta(getattr(args, "argv", None))
    if recipe.reduced:
        print(
            f"accuracy: running on {'CPU' if recipe.device_name == 'cpu' else 'GPU'} at reduced settings (imgsz "
            f"{recipe.imgsz}, {recipe.epochs} epochs, {len(recipe.seeds)} seed(s)); figures are indicative only, a "
            f"conclusive comparison needs imgsz {GPU_RECIPE['imgsz']}, {GPU_RECIPE['epochs']}+ epochs and "
            f"{len(GPU_RECIPE['seeds'])}+ seeds on a GPU"
        )

    task = sweep_task(models)
    finished = plan_runs(project, models, recipe)
    held_out = HeldOut.prepare(task, recipe.data, split, project.folder.resolve())
    size = recipe.latency_imgsz  # CPU training runs at a reduced size, but deployment latency is wanted at the real one
    print(f"accuracy: fused CPU latency of {len(models)} models at {size}, timed interleaved")
    cost = benchmark(cost_models(models, recipe.data), BenchmarkConfig((size,), (1,), repeats=recipe.repeats))
    runs: dict[str, list[dict]] = {}
    for seed in recipe.seeds:  # seed-major: an interrupted run still compares every model on the first seed
        for model in models:
            done = finished.get((model, seed)) or train_once(project, model, seed, recipe)
            scores = held_out.score(done.weights, recipe.imgsz, recipe.batch, recipe.device, done.run / scored)
            runs.setdefault(model, []).append(done.scored(seed, scores))
            if done.best_epoch == 1 < recipe.epochs and recipe.checkpoint == "best":
                print(
                    f"accuracy: WARNING {model} seed {seed}: val fitness never beat epoch 1 of {recipe.epochs}, so the "
                    "scored checkpoint is barely trained and its mAP says little about the model; train longer"
                )
            rows = make_rows(cost, runs, models, recipe, args.per_scale, task)
            if args.json:
                write_record(args.json, "accuracy", rows, meta=meta)
    return recipe, rows


def run(args: argparse.Namespace) -> int:
    """Run the sweep, print the table, write ``--json``/``--plot``; bad input raises ``AccuracyError`` (exit 2)."""
    recipe, rows = sweep(args)
    print(
        f"\n{recipe.checkpoint}.pt scored on the '{recipe.split}' split; "
        f"scores as mean ± sample std over seeds {list(recipe.seeds)}; "
        f"p: Welch's two-sided t-test of {TITLES[_scored(rows[0])[0]]} against "
        + ("the first model of each scale letter" if args.per_scale else rows[0]["model"])
    )
    print(table(rows))
    if args.json:
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {plot(rows, args.plot)}")
    return 0
