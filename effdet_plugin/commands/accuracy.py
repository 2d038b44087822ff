"""Accuracy per cost: train detectors with one recipe, score them on held-out data with pycocotools, one table.

    effdet-plugin accuracy --models yolov5su.yaml yolov5s_effv2.yaml --data DATA.yaml --epochs 100 --imgsz 640 \
        --seeds 0 1 2 --device 0 --json out.json [--batch 16] [--workers 4] [--pretrained] [--project runs/accuracy] \
        [--reuse | --no-train] [--progressive] [--split test|val] [--checkpoint best|last]

Every model is trained by Ultralytics' trainer with the same data, epochs, image size, batch, seeds and default
hyperparameters, from scratch (``--pretrained``: ``.pt`` models start from their weights). The best checkpoint of each
run is scored on the dataset's ``test`` split (``val`` when there is none) by ``coco_eval`` (pycocotools);
``--split`` and ``--checkpoint last`` score another split or the last epoch's weights, so a margin can be checked on
held-out images that chose no checkpoint. Params, GFLOPs and fused CPU latency (relative to the first model) come from
``benchmark``, all models timed in one process.
With two or more seeds per model, each row also carries Welch's two-sided t-test p-value of its mAP50-95 against the
first model's (the baseline), so a difference and its significance come from the same command. ``--per-scale``
compares each model with the first model of its own scale letter instead (``yolov5su.yaml yolov5s_effv2.yaml
yolov5mu.yaml yolov5m_effv2.yaml``: s against yolov5su, m against yolov5mu), so one command tabulates every scale.
Without a GPU the defaults drop to imgsz 320, 10 epochs and one seed, and the output says so. ``--reuse`` scores
finished runs of the same recipe already in ``--project`` instead of training them again (seeds run as separate
processes, an interrupted sweep), so the table can be assembled in one run; every run is checked against the recipe
before anything is timed or trained, and ``--no-train`` stops with one line if any run is missing. ``--progressive``
trains every model with the plugin's progressive learning (``progressive=True``) into runs of their own, so a plain
sweep and a progressive one of the same models share ``--project``.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import statistics
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml

from effdet_plugin.atomic import atomic_open, write_json
from effdet_plugin.commands.benchmark import benchmark, load_model, resolve_device
from effdet_plugin.commands.coco_eval import evaluate
from effdet_plugin.commands.table import format_table

# What a conclusive comparison needs: Ultralytics' default schedule (on cards the recommended n model, further from
# converged than yolov5nu at 40 epochs, lost twice the margin there that it loses at 100: docs/accuracy.md) and three
# seeds (seed spread on a few hundred images is 3-5 mAP50-95 points)
GPU_RECIPE = {"imgsz": 640, "epochs": 100, "seeds": [0, 1, 2]}
CPU_RECIPE = {"imgsz": 320, "epochs": 10, "seeds": [0]}  # default when no GPU: indicative only
ROW_KEYS = (
    "model", "params", "gflops", "latency_ms", "latency_ratio", "train_s", "map50_95", "map50_95_spread",
    "map50_95_p", "map50", "map50_spread", "map75", "map75_spread", "runs", "eval_split", "checkpoint", "imgsz",
    "latency_imgsz", "latency_threads", "epochs", "batch", "seeds", "device", "pretrained", "progressive", "reduced",
    "date", "reference",
)  # fmt: skip


class AccuracyError(ValueError):
    """Bad accuracy-run input (dataset without a held-out split, unknown model): reported as one line."""


def eval_split(data_yaml: str | Path, want: str | None = None) -> str:
    """Return the split to score on: ``want`` if given, else ``test`` if the data YAML has one, else ``val``; raise if
    the data YAML lacks it (``want``) or has neither."""
    path = Path(data_yaml)
    if not path.is_file():
        raise AccuracyError(f"data YAML {path} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise AccuracyError(f"data YAML {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise AccuracyError(f"data YAML {path} is not a mapping of keys (path, train, val, test, names)")
    if want is not None:
        if not data.get(want):
            raise AccuracyError(f"--split {want}: data YAML {path} has no '{want}' split (keys: {', '.join(data)})")
        return want
    for split in ("test", "val"):
        if data.get(split):
            return split
    raise AccuracyError(f"data YAML {path} has no 'test' or 'val' split to score on (keys: {', '.join(data)})")


def dataset(data_yaml: str | Path) -> dict:
    """Return Ultralytics' checked dataset dict (resolved paths, names, nc), its failure as one ``AccuracyError``."""
    from ultralytics.data.utils import check_det_dataset

    try:
        return check_det_dataset(str(data_yaml))
    except Exception as e:  # noqa: BLE001  SyntaxError/FileNotFoundError/TypeError..., multi-line, emoji-laden
        first = next((x.strip() for x in str(e).splitlines() if x.strip()), type(e).__name__)
        raise AccuracyError(f"data YAML {data_yaml}: {first}") from None


def split_images(data_yaml: str | Path, split: str) -> list[Path]:
    """Return the image files of ``split`` exactly as Ultralytics' training/validation datasets list them.

    The listing is ``BaseDataset.get_img_files`` itself (folders searched recursively, ``.txt`` lists with ``./``
    lines relative to the list), called without building a dataset: building one would read every label and write
    ``.cache`` files beside them. The method reads only ``prefix`` and ``fraction`` from its instance.
    """
    from ultralytics.data.base import BaseDataset
    from ultralytics.data.utils import IMG_FORMATS

    data = dataset(data_yaml)  # paths resolved against 'path:' exactly as training does
    listing = SimpleNamespace(prefix="", fraction=1.0)  # the whole split
    try:
        files = BaseDataset.get_img_files(listing, data[split])
    except FileNotFoundError as e:  # Ultralytics' text spans lines and ends in a help link; its cause says what failed
        cause = e.__cause__ or e
        if isinstance(cause, AssertionError):  # the listing came back empty
            why = f"no image files ({', '.join(sorted(IMG_FORMATS))})"
        else:
            why = next((x.strip() for x in str(cause).splitlines() if x.strip()), type(cause).__name__)
        raise AccuracyError(f"{data_yaml}: '{split}' split {data[split]}: {why}") from None
    return sorted(map(Path, files))


def coco_ground_truth(data_yaml: str | Path, split: str, out: str | Path) -> tuple[Path, Path]:
    """Write the YOLO labels of ``split`` as a COCO annotation JSON; return (JSON path, folder its file_names are in).

    Ids count from 1, boxes are pixel [x, y, w, h], ``file_name`` is relative to the images' common folder and
    categories carry the dataset's class names (``coco_eval`` matches model classes to them by name).
    """
    from PIL import Image
    from ultralytics.data.utils import exif_size, img2label_paths

    names = dataset(data_yaml)["names"]
    files = split_images(data_yaml, split)
    root = Path(os.path.commonpath([f.parent for f in files]))
    images, annotations = [], []
    for img_id, (img, lbl) in enumerate(zip(files, img2label_paths([str(f) for f in files])), 1):
        with Image.open(img) as im:
            w, h = exif_size(im)  # EXIF-rotated size, as Ultralytics' loader sees the image
        images.append({"id": img_id, "file_name": img.relative_to(root).as_posix(), "width": w, "height": h})
        rows = Path(lbl).read_text().split("\n") if Path(lbl).is_file() else []
        for row in filter(None, (r.split() for r in rows)):
            c, xc, yc, bw, bh = int(row[0]), *(float(v) for v in row[1:5])  # detection labels: first 5 columns
            box = [(xc - bw / 2) * w, (yc - bh / 2) * h, bw * w, bh * h]
            annotations.append(
                {"id": len(annotations) + 1, "image_id": img_id, "category_id": c + 1, "bbox": box,
                 "area": box[2] * box[3], "iscrowd": 0}
            )  # fmt: skip
    categories = [{"id": i + 1, "name": n} for i, n in names.items()]
    return write_json({"images": images, "annotations": annotations, "categories": categories}, out, indent=2), root


def cost_models(models: list[str], data_yaml: str | Path) -> list:
    """Return each model as it will be trained (the dataset's class count, fresh weights), for params/GFLOPs/latency."""
    from ultralytics.nn.tasks import DetectionModel

    nc = dataset(data_yaml)["nc"]
    # load_model raises one-line errors for unknown names; a .pt contributes its architecture (its YAML dict)
    return [DetectionModel(m if m.endswith((".yaml", ".yml")) else load_model(m).yaml, nc=nc, verbose=False)
            for m in models]  # fmt: skip


def spread(values: list[float]) -> float | None:
    """Return the sample standard deviation of ``values`` (None for a single value)."""
    return statistics.stdev(values) if len(values) > 1 else None


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Return Welch's two-sided t-test p-value for equal means of ``a`` and ``b``; None below two values each or when
    both are constant (no spread to test against)."""
    if len(a) < 2 or len(b) < 2 or (spread(a) == 0 and spread(b) == 0):
        return None
    from scipy.stats import ttest_ind  # Ultralytics' own dependency; imported here, the only user

    return float(ttest_ind(a, b, equal_var=False).pvalue)


def run_dir(model: str, seed: int, args: argparse.Namespace) -> Path:
    """Return the folder Ultralytics trains ``model`` with ``seed`` into."""
    recipe = "_progressive" if args.progressive else ""
    return Path(args.project).resolve() / f"{Path(model).stem}{recipe}_seed{seed}"


def run_record(run: Path) -> tuple[int, float, int]:
    """Return (epochs logged, training seconds, 1-based best epoch) from a run's ``results.csv``.

    Seconds are Ultralytics' own training clock (the last ``time`` entry) and the best epoch is the last one with the
    highest val mAP50-95 (the trainer's fitness for detection; on ties the later epoch overwrites ``best.pt``), so a
    fresh run and a reused one are reported the same way.
    """
    with open(run / "results.csv", newline="") as f:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]
    if not rows:
        return 0, 0.0, 0
    fitness = [float(r["metrics/mAP50-95(B)"]) for r in rows]
    best = len(fitness) - fitness[::-1].index(max(fitness))  # last epoch at the maximum, 1-based
    return len(rows), float(rows[-1]["time"]), best


def reuse_flag(args: argparse.Namespace) -> str:
    """Return the option that asked for finished runs, so messages name what the user typed."""
    return "--no-train" if args.no_train else "--reuse"


def finished_run(model: str, seed: int, args: argparse.Namespace) -> tuple[Path, float, int] | None:
    """Return (checkpoint, seconds, best epoch) of a finished run of this exact recipe in ``--project``, else None.

    A run trained with another recipe is an error rather than silently retrained over or scored as if comparable.
    """
    run = run_dir(model, seed, args)
    saved, weights = run / "args.yaml", run / "weights" / f"{args.checkpoint}.pt"
    if not (saved.is_file() and weights.is_file() and (run / "results.csv").is_file()):
        return None
    trained = yaml.safe_load(saved.read_text()) or {}
    want = {"model": model, "data": args.data, "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch,
            "seed": seed, "pretrained": args.pretrained}  # fmt: skip
    if args.progressive or "progressive" in trained:  # runs from before the key existed are plain runs
        want["progressive"] = args.progressive
    for key, value in want.items():
        if trained.get(key) != value:
            raise AccuracyError(
                f"{reuse_flag(args)}: {run} was trained with {key}={trained.get(key)!r}, this recipe has {value!r}; "
                "use another --project or move the run away"
            )
    epochs, seconds, best_epoch = run_record(run)
    if epochs < args.epochs:  # interrupted: Ultralytics trains it again from scratch in the same folder
        print(f"accuracy: {run} stopped after {epochs} of {args.epochs} epochs; training it again")
        return None
    return weights, seconds, best_epoch


def plan_runs(args: argparse.Namespace) -> dict[tuple[str, int], tuple[Path, float, int]]:
    """Return the finished run of every (model, seed) that ``--reuse`` will score instead of training.

    Every run is checked before anything is timed or trained: a run of another recipe for the last model would
    otherwise stop the sweep only after the runs before it had trained for hours. ``--no-train`` turns a missing run
    into an error, for assembling a table from runs trained elsewhere (a wrong ``--project`` must not start training).
    """
    if not (args.reuse or args.no_train):
        return {}
    runs = [(model, seed) for seed in args.seeds for model in args.models]
    finished = {run: done for run in runs if (done := finished_run(*run, args))}
    missing = [run_dir(*run, args).name for run in runs if run not in finished]
    where = Path(args.project).resolve()
    if missing and args.no_train:
        raise AccuracyError(
            f"--no-train: {len(missing)} of {len(runs)} runs of this recipe are not finished in {where}: "
            + ", ".join(missing)
        )
    print(
        f"accuracy: {reuse_flag(args)}: {len(finished)} of {len(runs)} runs finished in {where}"
        + (f"; training {', '.join(missing)}" if missing else "")
    )
    return finished


def train_once(model: str, seed: int, args: argparse.Namespace) -> tuple[Path, float, int]:
    """Train ``model`` once with the shared recipe and ``seed``; return (checkpoint to score, train seconds, best
    epoch)."""
    from ultralytics import YOLO

    run = run_dir(model, seed, args)
    yolo = YOLO(model)
    yolo.train(
        data=str(args.data),
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        device=args.device,
        workers=args.workers,
        seed=seed,
        deterministic=True,
        pretrained=args.pretrained,  # False: a .pt model is rebuilt from its YAML with fresh weights
        project=str(run.parent),
        name=run.name,
        exist_ok=True,
        plots=False,
        **({"progressive": True} if args.progressive else {}),  # a plugin key: plain runs' args.yaml stay as before
    )
    trainer = yolo.trainer
    _, seconds, best_epoch = run_record(Path(trainer.save_dir))
    weights = trainer.best if args.checkpoint == "best" and trainer.best.exists() else trainer.last
    return weights, seconds, best_epoch


def score(
    weights: Path, ann: Path, images: Path, args: argparse.Namespace, out: Path
) -> tuple[float, float, float]:
    """Return (mAP50-95, mAP50, mAP75) of ``weights`` on the held-out images, by pycocotools through ``coco_eval``.

    mAP75 beside mAP50 separates finding objects from placing their boxes tightly.
    """
    stats = evaluate(weights, ann, images, out, imgsz=args.imgsz, batch=args.batch, device=args.device)
    return stats["AP"], stats["AP50"], stats["AP75"]


def scale_letter(model: str) -> str:
    """The scale letter (n/s/m/l/x) Ultralytics reads from a model's name, '' when the name carries none."""
    from ultralytics.nn.tasks import guess_model_scale

    return guess_model_scale(model)


def family(model: str) -> str:
    """A model's name without its scale letter (``yolov5s_effv2.yaml`` -> ``yolov5_effv2``), as Ultralytics unifies it."""
    stem = Path(model).stem
    return re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", stem) if scale_letter(model) else stem


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


def make_rows(cost: list[dict], runs: dict[str, list[dict]], args: argparse.Namespace, split: str) -> list[dict]:
    """Combine cost rows and per-seed runs into one row per model (``ROW_KEYS``), in ``args.models`` order.

    Latency ratio and p-value are against the row's reference (``references``): the first model, or with
    ``args.per_scale`` the first model of the same scale letter.
    """
    rows = []
    refs = references(args.models, args.per_scale)
    for i, (model, c) in enumerate(zip(args.models, cost)):
        r = runs.get(model, [])
        maps, map50s, map75s = ([x[k] for x in r] for k in ("map50_95", "map50", "map75"))
        ref = refs[i]
        ref_maps = [x["map50_95"] for x in runs.get(args.models[ref], [])]
        rows.append(
            {
                "model": model,
                "params": c["params"],
                "gflops": c["gflops"],
                "latency_ms": c["latency_ms"],
                "latency_ratio": c["latency_ms"] / cost[ref]["latency_ms"],
                "train_s": statistics.fmean(x["train_s"] for x in r) if r else None,
                "map50_95": statistics.fmean(maps) if r else None,
                "map50_95_spread": spread(maps),
                "map50_95_p": welch_p(maps, ref_maps) if i != ref else None,
                "map50": statistics.fmean(map50s) if r else None,
                "map50_spread": spread(map50s),
                "map75": statistics.fmean(map75s) if r else None,
                "map75_spread": spread(map75s),
                "runs": r,
                "eval_split": split,
                "checkpoint": args.checkpoint,
                "imgsz": args.imgsz,
                "latency_imgsz": args.latency_imgsz,
                "latency_threads": c["threads"],
                "epochs": args.epochs,
                "batch": args.batch,
                "seeds": args.seeds,
                "device": args.device_name,
                "pretrained": args.pretrained,
                "progressive": args.progressive,
                "reduced": args.reduced,
                "date": date.today().isoformat(),
                "reference": args.models[ref],
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    """Return ``rows`` as an aligned text table: cost columns, then accuracy as mean ± sample std over seeds."""

    def pm(mean, sd):
        return "-" if mean is None else f"{mean:.3f}" + ("" if sd is None else f" ± {sd:.3f}")

    size = rows[0]["latency_imgsz"] if rows else ""
    ref = "first" if all(r.get("reference", rows[0]["model"]) == rows[0]["model"] for r in rows) else "ref"
    header = ["model", "params(M)", f"GFLOPs@{size}", f"CPU ms@{size}", f"x {ref}", "train(min)", "mAP50-95"]
    header += [f"p vs {ref}", "mAP50", "mAP75"]
    cells = [
        [
            r["model"] + (" progressive" if r.get("progressive") else ""),
            f"{r['params'] / 1e6:.2f}",
            f"{r['gflops']:.2f}",
            f"{r['latency_ms']:.1f}",
            f"{r['latency_ratio']:.2f}",
            "-" if r["train_s"] is None else f"{r['train_s'] / 60:.1f}",
            pm(r["map50_95"], r["map50_95_spread"]),
            "-" if r.get("map50_95_p") is None else f"{r['map50_95_p']:.3f}",
            pm(r["map50"], r["map50_spread"]),
            pm(r["map75"], r["map75_spread"]),
        ]
        for r in rows
    ]
    return format_table(header, cells)


def plot(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Save mAP50-95 (mean, error bar = sample std) against fused CPU latency for every scored row as a PNG.

    Models of one family at several scales (``yolov5nu.yaml``, ``yolov5su.yaml``) are joined by a line, each point
    marked with its letter: the family's accuracy-latency curve.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=150)
    families: dict[str, list[dict]] = {}
    for r in (r for r in rows if r["map50_95"] is not None):
        families.setdefault(family(r["model"]) + (" progressive" if r.get("progressive") else ""), []).append(r)
    for name, members in families.items():
        members.sort(key=lambda r: r["latency_ms"])
        curve = len(members) > 1
        x, y = [r["latency_ms"] for r in members], [r["map50_95"] for r in members]
        ax.errorbar(x, y, yerr=[r["map50_95_spread"] or 0 for r in members], fmt="o-" if curve else "o", capsize=3,
                    label=name if curve else Path(members[0]["model"]).stem)  # fmt: skip
        for r in members if curve else ():
            ax.annotate(scale_letter(r["model"]), (r["latency_ms"], r["map50_95"]), textcoords="offset points",
                        xytext=(4, -10), fontsize=7)  # fmt: skip
    ax.set_xlabel(f"fused CPU latency (ms, batch 1, imgsz {rows[0]['latency_imgsz']})")
    ax.set_ylabel(f"mAP50-95 on '{rows[0]['eval_split']}' (pycocotools)")
    r0 = rows[0]
    ax.set_title(title or f"{r0['epochs']} epochs at {r0['imgsz']}, seeds {r0['seeds']}, {r0['device']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")  # a legend, not point labels: nearby models would overprint each other
    fig.tight_layout()
    with atomic_open(path, "wb") as f:  # never a half-written PNG
        fig.savefig(f, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------- effdet-plugin accuracy
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``accuracy`` options to ``p``."""
    p.add_argument(
        "--models", nargs="+", required=True, help="model YAML names/paths or .pt files; first = reference (--per-scale)"
    )
    p.add_argument("--data", required=True, help="dataset YAML with train, val and (preferably) test splits")
    gpu, cpu = GPU_RECIPE, CPU_RECIPE
    default = "default {} on GPU, {} on CPU".format
    p.add_argument("--epochs", type=int, help=f"training epochs ({default(gpu['epochs'], cpu['epochs'])})")
    p.add_argument("--imgsz", type=int, help=f"train/eval/latency image size ({default(gpu['imgsz'], cpu['imgsz'])})")
    p.add_argument("--latency-imgsz", type=int, help="measure params/GFLOPs/latency at this size instead of --imgsz")
    seeds = (" ".join(map(str, r["seeds"])) for r in (gpu, cpu))
    p.add_argument("--seeds", type=int, nargs="+", help=f"training seeds ({default(*seeds)})")
    p.add_argument("--device", default=None, help="training device: cpu or a CUDA index (default 0 if CUDA, else cpu)")
    p.add_argument("--batch", type=int, default=16, help="training batch size (default 16)")
    p.add_argument("--workers", type=int, default=2, help="dataloader workers (default 2)")
    p.add_argument("--pretrained", action="store_true", help="start .pt models from their weights (YAMLs: scratch)")
    p.add_argument(
        "--split", choices=("test", "val"),
        help="held-out split to score on (default: test if the data YAML has one, else val)",
    )  # fmt: skip
    p.add_argument(
        "--checkpoint", choices=("best", "last"), default="best",
        help="checkpoint to score: best.pt, chosen on val by Ultralytics (default), or last.pt, chosen by nothing",
    )  # fmt: skip
    p.add_argument("--project", default="runs/accuracy", help="folder for the training runs (default runs/accuracy)")
    p.add_argument(
        "--reuse", action="store_true", help="score finished runs of this recipe in --project, no retraining"
    )
    p.add_argument(
        "--no-train", action="store_true",
        help="score finished runs only (--reuse that never trains): stop with one line if any run is missing",
    )  # fmt: skip
    p.add_argument(
        "--progressive", action="store_true", help="train with progressive learning (progressive=True), own runs"
    )
    p.add_argument("--repeats", type=int, default=20, help="timed rounds of the latency measurement (default 20)")
    p.add_argument("--json", default=None, help="write the rows to this JSON file (rewritten after every run)")
    p.add_argument("--plot", default=None, help="save mAP50-95 against CPU latency to this PNG (needs matplotlib)")
    p.add_argument(
        "--per-scale", action="store_true",
        help="compare each model with the first model of its own scale letter (n/s/m/l/x), not with the first model",
    )  # fmt: skip


def sweep(args: argparse.Namespace) -> list[dict]:
    """Measure cost, train and score every model for every seed; return the rows (also written to ``--json``)."""
    split = eval_split(args.data, args.split)
    default = split if args.split is None else eval_split(args.data)
    # a non-default split or checkpoint is scored into its own folder, beside the default's files
    scored = "coco_eval" if (split, args.checkpoint) == (default, "best") else f"coco_eval_{split}_{args.checkpoint}"
    dataset(args.data)  # train/val present, paths exist: fail before any work
    if len(set(args.models)) != len(args.models):
        raise AccuracyError(f"--models lists a model twice: {args.models}")
    for m in args.models:  # every name must resolve before hours of training start
        load_model(m)
    references(args.models, args.per_scale)
    args.data = str(Path(args.data).resolve())
    if args.device is None:
        args.device = "0" if torch.cuda.is_available() else "cpu"
    dev = resolve_device(args.device)
    args.device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    recipe = GPU_RECIPE if dev.type == "cuda" else CPU_RECIPE
    for k, v in recipe.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.latency_imgsz is None:
        args.latency_imgsz = args.imgsz
    for k in ("epochs", "imgsz", "latency_imgsz", "batch", "repeats"):
        if getattr(args, k) < 1:
            raise AccuracyError(f"--{k.replace('_', '-')} must be a positive integer, got {getattr(args, k)}")
    args.reduced = dev.type != "cuda" or (args.imgsz, args.epochs, len(args.seeds)) < (
        GPU_RECIPE["imgsz"], GPU_RECIPE["epochs"], len(GPU_RECIPE["seeds"]))  # fmt: skip
    if args.reduced:
        where = "on CPU" if dev.type != "cuda" else "on GPU"
        print(
            f"accuracy: running {where} at reduced settings (imgsz {args.imgsz}, {args.epochs} epochs, "
            f"{len(args.seeds)} seed(s)); figures are indicative only, a conclusive comparison needs imgsz "
            f"{GPU_RECIPE['imgsz']}, {GPU_RECIPE['epochs']}+ epochs and {len(GPU_RECIPE['seeds'])}+ seeds on a GPU"
        )

    finished = plan_runs(args)
    out = Path(args.project).resolve()
    ann, images = coco_ground_truth(args.data, split, out / f"{split}_ground_truth.json")
    size = args.latency_imgsz  # CPU training runs at a reduced size, but deployment latency is wanted at the real one
    print(f"accuracy: fused CPU latency of {len(args.models)} models at {size}, timed interleaved")
    cost = benchmark(cost_models(args.models, args.data), [size], [1], "cpu", repeats=args.repeats, warmup=3)
    runs: dict[str, list[dict]] = {}
    for seed in args.seeds:  # seed-major: an interrupted run still compares every model on the first seed
        for model in args.models:
            weights, seconds, best_epoch = finished.get((model, seed)) or train_once(model, seed, args)
            m, m50, m75 = score(weights, ann, images, args, run_dir(model, seed, args) / scored)
            runs.setdefault(model, []).append(
                {"seed": seed, "map50_95": m, "map50": m50, "map75": m75, "train_s": seconds, "best_epoch": best_epoch,
                 "weights": str(weights)}
            )  # fmt: skip
            # seen on 140 raccoon images, 10 epochs from scratch
            if best_epoch == 1 < args.epochs and args.checkpoint == "best":
                print(
                    f"accuracy: WARNING {model} seed {seed}: val fitness never beat epoch 1 of {args.epochs}, so the "
                    "scored checkpoint is barely trained and its mAP says little about the model; train longer"
                )
            rows = make_rows(cost, runs, args, split)
            if args.json:
                write_json(rows, args.json, indent=2)
    return rows


def run(args: argparse.Namespace) -> int:
    """Run the sweep, print the table, write ``--json``/``--plot``; bad input raises ``AccuracyError`` (exit 2)."""
    rows = sweep(args)
    print(
        f"\n{rows[0]['checkpoint']}.pt scored on the '{rows[0]['eval_split']}' split; "
        f"mAP as mean ± sample std over seeds {args.seeds}; "
        "p: Welch's two-sided t-test of mAP50-95 against "
        + ("the first model of each scale letter" if args.per_scale else rows[0]["model"])
    )
    print(table(rows))
    if args.json:
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {plot(rows, args.plot)}")
    return 0
