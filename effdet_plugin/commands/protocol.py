"""The frozen protocol: choices are made on val; test is scored once per frozen model; every run is recorded.

    effdet-plugin protocol --role choice  --data data/cards/data.yaml --models yolov5nu.yaml yolov5n_effv2.yaml \
        --seeds 0 1 2 --epochs 100 --imgsz 224 --device cpu --project runs/cards --json results/protocol_cards.json
    effdet-plugin protocol --role confirm --data data/plates/data.yaml --models yolov5nu.yaml yolov5n_effv2.yaml \
        --seeds 0 1 2 --epochs 100 --imgsz 224 --device cpu --project runs/plates --json results/protocol_plates.json

The protocol:

1. Every dataset has a role, named in every record. A ``choice`` dataset may inform choices of architecture or
   recipe; only its ``val`` split is ever scored. A ``confirm`` dataset played no part in any choice; its ``test``
   split is scored, and only once per frozen model. A dataset's role never changes: the command refuses a role that
   contradicts an earlier record in the store.
2. A frozen model is its architecture identity (a hash of the built model's layers and state-dict shapes), its
   recipe (epochs, image size, batch, pretrained, progressive, checkpoint), the dataset and the seed. The store
   remembers which of these already have a test score; scoring one again is refused, with one line naming the earlier
   record, unless the model changed (another identity).
3. Every model is trained with at least 3 seeds before it is claimed ahead or behind: with fewer, or with Welch's
   ``p > 0.05``, ``render`` calls the comparison level.
4. Every run records its per-epoch validation curve (epoch, mAP50, mAP50-95 and losses, from Ultralytics'
   ``results.csv``) and its score on the split of its role (``scoring``: pycocotools for boxes, masks and keypoints, the
   host's validator for rotated boxes), in a results-store record (``--json``) rewritten after every run.
5. A dataset name stands for one set of files: every row carries the data's fingerprint (``data_fingerprint``: the
   images and labels of each split), and the command refuses a name whose earlier rows hold other data, or data made
   before rows carried one, so scores of two splits never pool. ``effdet-plugin prepare-data`` rebuilds the confirm
   datasets with the fingerprints their records carry.
6. Runs trained earlier with the same recipe in ``--project`` (``<model stem>_seed<N>``, as ``accuracy`` trains
   them) are adopted, after their ``args.yaml`` is checked against the recipe and their checkpoint's architecture
   against the model's; missing runs are trained (``--no-train``: refused instead).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

from effdet_plugin.commands.accuracy import TITLES, check_models, trained_model
from effdet_plugin.commands.heldout import AccuracyError, data_fingerprint, dataset_name, eval_split
from effdet_plugin.commands.recipe import Recipe, add_recipe_arguments, recipe_from_args
from effdet_plugin.commands.results import load, make_meta, write_record
from effdet_plugin.commands.runs import Finished, Project, plan_runs, train_once
from effdet_plugin.commands.scoring import HeldOut, score_keys, sweep_task

ROLES = {"choice": "val", "confirm": "test"}  # the one split each role ever scores
MIN_SEEDS = 3


class ProtocolError(AccuracyError):
    """A step the protocol forbids (a second test score, a changed role, an adopted run of another model): one line."""


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


_INPLACE = re.compile(r"(, )?inplace=(True|False)")


def identity(model) -> str:
    """The architecture identity of a built model: its modules as built (every layer's settings, activations
    included) and its state-dict shapes. Two files that build the same model, a shipped YAML and the candidate it was
    generated to reproduce, say, have one identity; weights never count. Activations' ``inplace`` flag is not part of
    it: Ultralytics' checkpoint loader sets it on every activation it unpickles."""
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    return _digest({"modules": _INPLACE.sub("", repr(model.model)), "shapes": shapes})


def model_identity(model: str, data: str) -> str:
    """The identity of ``model`` as it is trained on ``data`` (its class count, a pose dataset's keypoints)."""
    return identity(trained_model(model, data))


def checkpoint_identity(weights: Path) -> str:
    """The identity of the model a checkpoint holds."""
    from ultralytics.nn.tasks import load_checkpoint

    return identity(load_checkpoint(str(weights))[0])


def recipe_id(recipe: Recipe) -> str:
    """The hash of what makes runs comparable (``Recipe.fields``)."""
    return _digest(recipe.fields())


def _protocol_rows(store: Path, also: Path | None) -> list[tuple[Path, dict]]:
    records = [r for r in load(store) if r.kind == "protocol"]
    if also is not None and also.is_file() and all(r.path.resolve() != also.resolve() for r in records):
        from effdet_plugin.commands.results import load_record

        records.append(load_record(also))
    return [(r.path, row) for r in records if r.kind == "protocol" for row in r.rows]


def check_role(rows: list[tuple[Path, dict]], name: str, role: str) -> None:
    """Refuse a role for dataset ``name`` that contradicts an earlier record."""
    for path, row in rows:
        if row["dataset"] == name and row["role"] != role:
            raise ProtocolError(
                f"--role {role}: dataset {name} is a {row['role']} dataset in {path}; a dataset's role never changes "
                "(a confirm dataset must have played no part in any choice)"
            )


def check_same_data(rows: list[tuple[Path, dict]], name: str, fingerprint: str) -> None:
    """Refuse dataset name ``name`` for data other than the data its earlier rows were scored on."""
    for path, row in rows:
        if row["dataset"] != name or row.get("data_fingerprint") == fingerprint:
            continue
        held = row.get("data_fingerprint")
        what = f"other data (fingerprint {held})" if held else "data recorded before rows carried a fingerprint"
        raise ProtocolError(
            f"dataset {name} in {path} holds {what}; this data's fingerprint is {fingerprint}: scores of different "
            "data never pool under one name, so give this data another --dataset"
        )


def check_unscored(rows: list[tuple[Path, dict]], keys: dict[tuple[str, int], tuple[str, str, str]]) -> None:
    """Refuse any (model, seed) whose (identity, recipe, dataset, seed) already has a test score in the store."""
    for (model, seed), (ident, rid, name) in keys.items():
        for path, row in rows:
            if row["split"] == "test" and (row["identity"], row["recipe_id"], row["dataset"], row["seed"]) == (
                ident,
                rid,
                name,
                seed,
            ):
                raise ProtocolError(
                    f"{Path(model).stem} seed {seed} already has a test score on {name} in {path} (model {ident}, "
                    f"recipe {rid}): test is scored once per frozen model; change the model to score it again"
                )


def quantized(weights: Path, recipe: Recipe) -> Path:
    """``weights`` exported by Ultralytics' exporter to OpenVINO INT8 (NNCF, calibrated on the dataset's images) at the
    recipe's image size, beside the checkpoint; the folder it wrote."""
    from ultralytics import YOLO

    from effdet_plugin.hosts.ultralytics import int8_export_args

    return Path(
        YOLO(str(weights)).export(format="openvino", imgsz=recipe.imgsz, data=recipe.data, **int8_export_args())
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``protocol`` options to ``p``."""
    p.add_argument("--models", nargs="+", required=True, help="model YAML names/paths or .pt files")
    p.add_argument(
        "--role",
        required=True,
        choices=tuple(ROLES),
        help="choice: scored on val only, may inform choices; confirm: test scored once per frozen model",
    )
    p.add_argument("--dataset", default=None, help="the dataset's name in records (default: its data.yaml folder)")
    add_recipe_arguments(p)
    p.add_argument("--project", required=True, help="folder of the training runs; finished runs there are adopted")
    p.add_argument("--no-train", action="store_true", help="adopt finished runs only; stop if any is missing")
    p.add_argument("--int8", action="store_true",
                   help="also score each run's OpenVINO INT8 export (NNCF, calibrated on the dataset) on the same split "
                        "(extra: deploy)")  # fmt: skip
    p.add_argument("--json", required=True, help="the new results-store record to write (never overwritten)")
    p.add_argument("--store", default="results", help="the results store that remembers test scores (default results)")


def run(args: argparse.Namespace) -> int:
    """Run the protocol for one dataset; refusals raise ``ProtocolError`` (one line, exit 2)."""
    split = ROLES[args.role]
    eval_split(args.data, split)  # the split of the role exists
    name = args.dataset or dataset_name(args.data)
    out = Path(args.json)
    if out.exists():
        raise ProtocolError(
            f"--json {out} exists: protocol records are the ledger of test scores, never overwritten; name a new file"
        )
    if args.int8:  # before hours of training, not after
        from effdet_plugin.commands.extras import require

        require("--int8", ["openvino", "nncf"], "deploy")
    models = list(args.models)
    check_models(models, per_scale=False)
    task = sweep_task(models)
    recipe = recipe_from_args(args, split)
    rows_before = _protocol_rows(Path(args.store), out)
    check_role(rows_before, name, args.role)
    fingerprint = data_fingerprint(recipe.data)
    check_same_data(rows_before, name, fingerprint)
    rid = recipe_id(recipe)
    idents = {m: model_identity(m, recipe.data) for m in models}
    if split == "test":
        check_unscored(rows_before, {(m, s): (idents[m], rid, name) for m in models for s in recipe.seeds})
    project = Project(Path(args.project), "--no-train" if args.no_train else "--reuse")
    finished = plan_runs(project, models, recipe)
    for (model, seed), done in finished.items():  # an adopted run must hold the model as it builds now
        if checkpoint_identity(done.weights) != idents[model]:
            raise ProtocolError(
                f"{done.run} holds another architecture than {model} builds now (its checkpoint's identity differs): "
                "it was trained from an earlier version; move it away or train it again"
            )
    if len(recipe.seeds) < MIN_SEEDS:
        print(f"protocol: {len(recipe.seeds)} seed(s): below {MIN_SEEDS}, every comparison renders as level")
    print(f"protocol: {name} is a {args.role} dataset; {recipe.describe(name)}")
    held_out = HeldOut.prepare(task, recipe.data, split, project.folder.resolve())
    at = (recipe.imgsz, recipe.batch, recipe.device)
    meta, rows = make_meta(getattr(args, "argv", None)), []
    for seed in recipe.seeds:
        for model in models:
            done: Finished = finished.get((model, seed)) or train_once(project, model, seed, recipe)
            scored = done.run / f"protocol_{split}_{recipe.checkpoint}"
            scores = held_out.score(done.weights, *at, scored)
            int8 = {}
            if args.int8:  # the deployed model: the same weights quantized, scored on the same split
                q = held_out.score(quantized(done.weights, recipe), *at, scored.with_name(scored.name + "_int8"))
                int8 = {"int8": {k: q[k] for k in score_keys(task)[:2]}}
            rows.append(
                {
                    "model": model,
                    "dataset": name,
                    "data": recipe.data,
                    "data_fingerprint": fingerprint,
                    "role": args.role,
                    "split": split,
                    "identity": idents[model],
                    "recipe_id": rid,
                    "recipe": recipe.fields(),
                    **done.scored(seed, scores),
                    "metric": held_out.metric,
                    **int8,
                    "adopted": (model, seed) in finished,
                    "device": recipe.device_name,
                    "reduced": recipe.reduced,
                }
            )
            write_record(out, "protocol", rows, meta=meta)
            first = score_keys(task)[0]
            print(f"protocol: {Path(model).stem} seed {seed}: {TITLES[first]} {scores[first]:.3f} on {name} '{split}'")
    print(f"wrote {out}")
    return 0
