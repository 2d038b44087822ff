"""Training runs of one recipe in a ``--project`` folder: train one, find a finished one, or adopt those trained before.

A run of ``model`` with ``seed`` lives in ``PROJECT/<model stem>[_progressive]_seed<N>`` (Ultralytics' ``args.yaml``,
``results.csv``, ``weights/{best,last}.pt``). A finished run is reused only when its ``args.yaml`` holds this recipe;
a run of another recipe is an error, never silently trained over or scored as if comparable.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

import yaml

from effdet_plugin.commands.heldout import AccuracyError
from effdet_plugin.commands.recipe import Recipe

# Ultralytics' results.csv columns: boxes (B), and a segment model's masks (M) or a pose model's keypoints (P) beside;
# a classifier's accuracy instead
MAP50, MAP50_95 = "metrics/mAP50({})", "metrics/mAP50-95({})"
TOP1, TOP5 = "metrics/accuracy_top1", "metrics/accuracy_top5"


class Finished(NamedTuple):
    """A trained run: the checkpoint to score, Ultralytics' training seconds, the 1-based best epoch, its folder."""

    weights: Path
    seconds: float
    best_epoch: int
    run: Path

    def scored(self, seed: int, scores: dict[str, float]) -> dict:
        """The run as records keep it, with the scores it got (``scoring.score_keys``: mAPs, or a classifier's top-1
        and top-5): seed, scores, training seconds, best epoch, checkpoint and validation curve."""
        return {
            "seed": seed,
            **scores,
            "train_s": self.seconds,
            "best_epoch": self.best_epoch,
            "weights": str(self.weights),
            "curve": read_curve(self.run),
        }


@dataclass(frozen=True)
class Project:
    """Where runs go, and whether finished ones are reused: "" (train all), "--reuse", "--no-train" (never train)."""

    folder: Path
    reuse: str = ""

    def run_dir(self, model: str, seed: int, recipe: Recipe) -> Path:
        """The folder Ultralytics trains ``model`` with ``seed`` into."""
        return self.folder.resolve() / f"{Path(model).stem}{'_progressive' if recipe.progressive else ''}_seed{seed}"


def _rows(run: Path) -> list[dict]:
    with open(run / "results.csv", newline="") as f:
        return [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]


def _kinds(rows: list[dict]) -> list[str]:
    """The mAP kinds a run logs: ``B`` (boxes), then ``M`` or ``P`` for a segment or pose model's own mAP."""
    return [k for k in "BMP" if rows and MAP50_95.format(k) in rows[0]] or ["B"]


def read_curve(run: Path) -> dict:
    """A run's per-epoch validation curve and losses from its ``results.csv``, as records store it (``Curve``); the
    curve is of the mAP the run's task is scored on (masks for a segment model, keypoints for a pose model)."""
    rows = _rows(run)
    kind = _kinds(rows)[-1]
    # box_loss, seg_loss, ...; a classifier's is plain train/loss
    losses = [k for k in (rows[0] if rows else {}) if k.startswith(("train/", "val/")) and k.endswith("loss")]
    if rows and TOP1 in rows[0]:  # a classifier
        scores = {"top1": [float(r[TOP1]) for r in rows], "top5": [float(r[TOP5]) for r in rows]}
    else:
        scores = {
            "map50": [float(r[MAP50.format(kind)]) for r in rows],
            "map50_95": [float(r[MAP50_95.format(kind)]) for r in rows],
        }
    return {
        "epoch": [int(float(r["epoch"])) for r in rows],
        **scores,
        "losses": {k: [float(r[k]) for r in rows] for k in losses},
    }


def run_record(run: Path) -> tuple[int, float, int]:
    """Return (epochs logged, training seconds, 1-based best epoch) from a run's ``results.csv``.

    Seconds are Ultralytics' own training clock (the last ``time`` entry; summed over the stretches of a resumed run)
    and the best epoch is the last one with the highest fitness, as the trainer reckons it: val mAP50-95, the box's
    plus the mask's or keypoints' for a segment or pose model, the mean of top-1 and top-5 accuracy for a classifier
    (on ties the later epoch overwrites ``best.pt``), so a fresh run and a reused one are reported the same way.
    """
    rows = _rows(run)
    if not rows:
        return 0, 0.0, 0
    if TOP1 in rows[0]:
        fitness = [(float(r[TOP1]) + float(r[TOP5])) / 2 for r in rows]
    else:
        fitness = [sum(float(r[MAP50_95.format(k)]) for k in _kinds(rows)) for r in rows]
    best = len(fitness) - fitness[::-1].index(max(fitness))  # last epoch at the maximum, 1-based
    # the clock restarts at zero when a run is resumed: add up each stretch's last reading
    clock = [float(r["time"]) for r in rows]
    seconds = sum(t for t, after in pairwise(clock) if after < t) + clock[-1]
    return len(rows), seconds, best


def finished_run(project: Project, model: str, seed: int, recipe: Recipe) -> Finished | None:
    """Return the finished run of this exact recipe in the project, else None (absent or interrupted)."""
    run = project.run_dir(model, seed, recipe)
    saved, weights = run / "args.yaml", run / "weights" / f"{recipe.checkpoint}.pt"
    if not (saved.is_file() and weights.is_file() and (run / "results.csv").is_file()):
        return None
    trained = yaml.safe_load(saved.read_text()) or {}
    # the model by its file's stem, as the folder is named: the same YAML may have been passed by another path
    source = Path(str(trained.get("model", "")))
    trained["model"] = source.stem
    # a resumed run (`yolo train resume=True`) records its own last.pt as the model: its folder names the model instead
    # (`protocol` also checks the checkpoint's architecture against the model's)
    if trained.get("resume") and source.name == "last.pt":
        if source.parent.parent.name != run.name:
            raise AccuracyError(
                f"{project.reuse or '--reuse'}: {run} was resumed from {source}, another run's checkpoint; use another "
                "--project or move the run away"
            )
        trained["model"] = Path(model).stem
    want = recipe.trained_with(model, seed)
    if recipe.progressive or "progressive" in trained:  # runs from before the key existed are plain runs
        want["progressive"] = recipe.progressive
    for key, value in want.items():
        if trained.get(key) != value:
            raise AccuracyError(
                f"{project.reuse or '--reuse'}: {run} was trained with {key}={trained.get(key)!r}, this recipe has "
                f"{value!r}; use another --project or move the run away"
            )
    epochs, seconds, best_epoch = run_record(run)
    if epochs < recipe.epochs:  # interrupted: Ultralytics trains it again from scratch in the same folder
        print(f"{run} stopped after {epochs} of {recipe.epochs} epochs; training it again")
        return None
    return Finished(weights, seconds, best_epoch, run)


def plan_runs(project: Project, models: list[str], recipe: Recipe) -> dict[tuple[str, int], Finished]:
    """Return the finished run of every (model, seed) that will be scored instead of trained.

    Every run is checked before anything is timed or trained: a run of another recipe for the last model would
    otherwise stop the sweep only after the runs before it had trained for hours. ``--no-train`` turns a missing run
    into an error, for assembling a table from runs trained elsewhere (a wrong ``--project`` must not start training).
    """
    if not project.reuse:
        return {}
    runs = [(model, seed) for seed in recipe.seeds for model in models]
    finished = {run: done for run in runs if (done := finished_run(project, *run, recipe))}
    missing = [project.run_dir(*run, recipe).name for run in runs if run not in finished]
    where = project.folder.resolve()
    if missing and project.reuse == "--no-train":
        raise AccuracyError(
            f"--no-train: {len(missing)} of {len(runs)} runs of this recipe are not finished in {where}: "
            + ", ".join(missing)
        )
    print(
        f"{project.reuse}: {len(finished)} of {len(runs)} runs finished in {where}"
        + (f"; training {', '.join(missing)}" if missing else "")
    )
    return finished


def train_once(project: Project, model: str, seed: int, recipe: Recipe) -> Finished:
    """Train ``model`` once with the recipe and ``seed`` by Ultralytics' trainer; return the run."""
    from ultralytics import YOLO

    run = project.run_dir(model, seed, recipe)
    yolo = YOLO(model)
    yolo.train(
        data=recipe.data,
        epochs=recipe.epochs,
        imgsz=recipe.imgsz,
        batch=recipe.batch,
        device=recipe.device,
        workers=recipe.workers,
        seed=seed,
        deterministic=True,
        pretrained=recipe.pretrained,  # False: a .pt model is rebuilt from its YAML with fresh weights
        project=str(run.parent),
        name=run.name,
        exist_ok=True,
        plots=False,
        **({"progressive": True} if recipe.progressive else {}),  # a plugin key: plain runs' args.yaml stay as before
    )
    trainer = yolo.trainer
    _, seconds, best_epoch = run_record(Path(trainer.save_dir))
    weights = trainer.best if recipe.checkpoint == "best" and trainer.best.exists() else trainer.last
    return Finished(Path(weights), seconds, best_epoch, Path(trainer.save_dir))
