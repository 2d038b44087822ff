"""The results store: JSON records written by the project's own commands, and the loader that reads them back typed.

``effdet-plugin benchmark --json``, ``accuracy --json`` and ``protocol --json`` each write one record, atomically,
rewritten after every finished run so that a long sweep never loses what it has measured::

    {"schema": 1, "kind": "benchmark" | "accuracy" | "protocol",
     "meta": {"argv": ["effdet-plugin", "benchmark", ...], "date": "<ISO 8601, UTC>",
              "machine": {"cpu": "...", "cores": 2, "gpu": null, "os": "Linux-..."},
              "versions": {"python": "3.11.7", "torch": "...", "torchvision": "...", "ultralytics": "...",
                           "effdet-plugin": "0.3.0", "onnxruntime": "...", ...}},
     "rows": [...]}

``load`` reads every ``*.json`` in a folder (the repository's ``results/``) and exposes the rows as ``Timing``
(a benchmark row: one model at one setting) and ``Score`` (one trained seed scored on one split) objects; a malformed
file is refused with one line naming the file and the key.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from effdet_plugin.atomic import write_json

SCHEMA = 1
KINDS = ("benchmark", "accuracy", "protocol")
RECIPE_KEYS = ("epochs", "imgsz", "batch", "pretrained", "progressive", "checkpoint")  # what makes runs comparable


class StoreError(ValueError):
    """A malformed record in the results store: one line naming the file and the key."""


# ----------------------------------------------------------------------------------------------------------- writing
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The machine a record was measured on: CPU model, logical cores, GPU name (None without CUDA), OS."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "gpu": gpu, "os": platform.platform()}


def _commit() -> str | None:
    """The git commit of the effdet_plugin source when it runs from a clone (None when installed)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip() or None
    return None


def versions(packages: Iterable[str] = ()) -> dict:
    """Versions of Python, torch, torchvision, Ultralytics, effdet-plugin (and its git commit in a clone) and of
    ``packages`` (e.g. onnxruntime, openvino when a run used them)."""
    import effdet_plugin

    out = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "ultralytics", *packages):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    out["effdet-plugin"] = effdet_plugin.__version__
    commit = _commit()
    if commit:
        out["effdet-plugin-commit"] = commit
    return out


def make_meta(argv: Sequence[str] | None = None, packages: Iterable[str] = ()) -> dict:
    """A record's ``meta``: the command line as run (``argv`` after the program name), machine, versions, date."""
    line = ["effdet-plugin", *argv] if argv is not None else [Path(sys.argv[0]).name, *sys.argv[1:]]
    return {
        "argv": line,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(packages),
    }


def write_record(
    path: str | Path,
    kind: str,
    rows: list[dict],
    argv: Sequence[str] | None = None,
    packages: Iterable[str] = (),
    meta: dict | None = None,
) -> Path:
    """Write ``rows`` as a ``kind`` record to ``path`` atomically (``meta`` made now unless given); return the path."""
    if kind not in KINDS:
        raise ValueError(f"record kind {kind!r}: expected one of {', '.join(KINDS)}")
    record = {"schema": SCHEMA, "kind": kind, "meta": meta or make_meta(argv, packages), "rows": rows}
    return write_json(record, path, indent=2)


# ----------------------------------------------------------------------------------------------------------- typed
@dataclass(frozen=True)
class Curve:
    """A run's per-epoch validation curve and losses, from Ultralytics' ``results.csv``."""

    epoch: tuple[int, ...]
    map50: tuple[float, ...]  # empty for a classifier, whose curve is its top-1 and top-5 accuracy
    map50_95: tuple[float, ...]
    losses: Mapping[str, tuple[float, ...]]  # e.g. "train/box_loss", "val/cls_loss"
    top1: tuple[float, ...] = ()
    top5: tuple[float, ...] = ()

    @property
    def score(self) -> tuple[float, ...]:
        """The curve of the run's first score: mAP50-95, or a classifier's top-1 accuracy."""
        return self.top1 if self.top1 else self.map50_95


@dataclass(frozen=True)
class Run:
    """One training seed of one model, scored."""

    seed: int
    map50_95: float | None  # None for a classifier, scored by top1 and top5 instead
    map50: float | None
    map75: float | None
    train_s: float | None
    best_epoch: int | None
    weights: str
    curve: Curve | None
    int8: tuple[float, float] | None = None  # (mAP50-95, mAP50) or (top-1, top-5) of its OpenVINO INT8 export
    top1: float | None = None  # a classifier's top-1 and top-5 accuracy
    top5: float | None = None

    @property
    def score(self) -> float:
        """The run's first score, which verdicts compare: mAP50-95, or a classifier's top-1 accuracy."""
        return self.top1 if self.map50_95 is None else self.map50_95


@dataclass(frozen=True)
class Score:
    """One scored run with what makes it comparable: model, dataset, split and recipe."""

    model: str  # the model's file stem, e.g. yolov5n_effv2
    dataset: str
    split: str  # the split scored: test or val
    recipe: Mapping[str, Any]  # RECIPE_KEYS
    run: Run
    source: Path  # the record file
    metric: str = "box mAP, pycocotools"  # what the run's mAPs measure (``scoring.METRICS``); rows before it: boxes


@dataclass(frozen=True)
class Timing:
    """One benchmark row: one model at one setting, timed in the same process as the rest of its record."""

    model: str
    imgsz: int
    batch: int
    device: str
    threads: int
    params: int
    gflops: float
    figures: Mapping[str, float]  # runtime keys present: latency_ms, graph_ms, onnx_ms, openvino_int8_ms, ...
    source: Path


@dataclass(frozen=True)
class Record:
    """One record file."""

    path: Path
    kind: str
    meta: Mapping[str, Any]
    rows: tuple[Mapping[str, Any], ...]
    timings: tuple[Timing, ...]
    scores: tuple[Score, ...]


# ----------------------------------------------------------------------------------------------------------- reading
class _Reader:
    """Typed access to one record's JSON, each failure one ``StoreError`` naming the file and the key path."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, what: str) -> StoreError:
        return StoreError(f"{self.path}: {where}: {what}")

    def get(self, obj: Mapping, key: str, where: str, kind: type | tuple, optional: bool = False) -> Any:
        at = f"{where}.{key}" if where else key
        if key not in obj or obj[key] is None and optional:
            if optional:
                return None
            raise self.fail(at, "missing")
        return self.check(obj[key], at, kind)

    def check(self, v: Any, at: str, kind: type | tuple) -> Any:
        named = kind if isinstance(kind, tuple) else (kind,)
        kinds = (*named, int) if float in named else named  # an integer is a number
        if isinstance(v, bool) and bool not in kinds or not isinstance(v, kinds):
            names = " or ".join(
                {
                    int: "an integer",
                    float: "a number",
                    str: "a string",
                    bool: "true/false",
                    list: "a list",
                    dict: "an object",
                }[k]
                for k in named
            )
            raise self.fail(at, f"expected {names}, found {v!r}"[:300])
        return v

    def numbers(self, obj: Mapping, key: str, where: str, kind: type = float) -> tuple:
        values = self.get(obj, key, where, list)
        return tuple(self.check(v, f"{where}.{key}[{i}]", kind) for i, v in enumerate(values))

    def curve(self, obj: Mapping, where: str) -> Curve | None:
        c = self.get(obj, "curve", where, dict, optional=True)
        if c is None:
            return None
        at = f"{where}.curve"
        epoch = self.numbers(c, "epoch", at, int)
        losses = self.get(c, "losses", at, dict)
        scores = ("top1", "top5") if "top1" in c else ("map50", "map50_95")  # a classifier's curve, or mAPs
        values = {k: self.numbers(c, k, at) for k in scores}
        curve = Curve(
            epoch,
            values.get("map50", ()),
            values.get("map50_95", ()),
            {k: self.numbers(losses, k, f"{at}.losses") for k in losses},
            values.get("top1", ()),
            values.get("top5", ()),
        )
        for name, series in (*values.items(), *curve.losses.items()):
            if len(series) != len(epoch):
                raise self.fail(f"{at}.{name}", f"{len(series)} values for {len(epoch)} epochs")
        return curve

    def run(self, obj: Mapping, where: str) -> Run:
        g = self.get
        classifier = "top1" in obj  # scored by top-1 and top-5 accuracy, not mAP
        maps = [None if classifier else g(obj, k, where, float) for k in ("map50_95", "map50", "map75")]
        return Run(
            g(obj, "seed", where, int),
            *maps,
            g(obj, "train_s", where, float, optional=True),
            g(obj, "best_epoch", where, int, optional=True),
            g(obj, "weights", where, str),
            self.curve(obj, where),
            self.int8(obj, where),
            *((g(obj, "top1", where, float), g(obj, "top5", where, float)) if classifier else ()),
        )

    def int8(self, obj: Mapping, where: str) -> tuple[float, float] | None:
        q = self.get(obj, "int8", where, dict, optional=True)
        if q is None:
            return None
        first, second = ("top1", "top5") if "top1" in q else ("map50_95", "map50")  # a classifier's, or mAPs
        return self.get(q, first, f"{where}.int8", float), self.get(q, second, f"{where}.int8", float)

    def recipe(self, obj: Mapping, where: str) -> dict:
        kinds = {
            "epochs": int,
            "imgsz": int,
            "batch": int,
            "pretrained": (bool, str),
            "progressive": bool,
            "checkpoint": str,
        }
        return {k: self.get(obj, k, where, kinds[k]) for k in RECIPE_KEYS}

    def timing(self, row: Mapping, where: str) -> Timing:
        from effdet_plugin.commands.runtimes import RUNTIMES

        g = self.get
        figures = {r.key: g(row, r.key, where, float) for r in RUNTIMES.values() if r.key in row}
        if "latency_ms" not in figures:
            raise self.fail(f"{where}.latency_ms", "missing")
        return Timing(
            g(row, "model", where, str),
            g(row, "imgsz", where, int),
            g(row, "batch", where, int),
            g(row, "device", where, str),
            g(row, "threads", where, int),
            g(row, "params", where, int),
            g(row, "gflops", where, float),
            figures,
            self.path,
        )

    def scores(self, row: Mapping, where: str, kind: str) -> list[Score]:
        g = self.get
        model, dataset = Path(g(row, "model", where, str)).stem, g(row, "dataset", where, str)
        metric = {"metric": m} if (m := g(row, "metric", where, str, optional=True)) else {}
        if kind == "accuracy":
            split, recipe = g(row, "eval_split", where, str), self.recipe(row, where)
            runs = g(row, "runs", where, list)
            return [
                Score(
                    model,
                    dataset,
                    split,
                    recipe,
                    self.run(self.check(run, f"{where}.runs[{i}]", dict), f"{where}.runs[{i}]"),
                    self.path,
                    **metric,
                )
                for i, run in enumerate(runs)
            ]
        recipe = self.recipe(g(row, "recipe", where, dict), f"{where}.recipe")
        for key in ("identity", "recipe_id", "role"):
            g(row, key, where, str)
        split = g(row, "split", where, str)
        return [Score(model, dataset, split, recipe, self.run(row, where), self.path, **metric)]


def load_record(path: str | Path) -> Record:
    """Read and check one record file; raise ``StoreError`` (one line: file and key) when it is malformed."""
    import json

    path = Path(path)
    r = _Reader(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise StoreError(f"{path}: cannot be read: {e}") from None
    except json.JSONDecodeError as e:
        raise StoreError(f"{path}: not JSON: line {e.lineno}: {e.msg}") from None
    if not isinstance(data, dict):
        found = type(data).__name__
        raise r.fail("(top)", f"expected an object with schema, kind, meta and rows, found a JSON {found}")
    if r.get(data, "schema", "", int) != SCHEMA:
        raise r.fail("schema", f"expected {SCHEMA}, found {data['schema']!r}")
    kind = r.get(data, "kind", "", str)
    if kind not in KINDS:
        raise r.fail("kind", f"expected one of {', '.join(KINDS)}, found {kind!r}")
    meta = r.get(data, "meta", "", dict)
    r.get(meta, "argv", "meta", list)
    r.get(meta, "date", "meta", str)
    for key, kinds in (("cpu", str), ("cores", int), ("os", str)):
        r.get(r.get(meta, "machine", "meta", dict), key, "meta.machine", kinds)
    r.get(r.get(meta, "machine", "meta", dict), "gpu", "meta.machine", str, optional=True)
    for key in ("python", "torch", "ultralytics", "effdet-plugin"):
        r.get(r.get(meta, "versions", "meta", dict), key, "meta.versions", str)
    rows = r.get(data, "rows", "", list)
    timings, scores = [], []
    for i, row in enumerate(rows):
        row = r.check(row, f"rows[{i}]", dict)
        if kind == "benchmark":
            timings.append(r.timing(row, f"rows[{i}]"))
        else:
            scores += r.scores(row, f"rows[{i}]", kind)
    return Record(path, kind, meta, tuple(rows), tuple(timings), tuple(scores))


def load(folder: str | Path = "results") -> list[Record]:
    """Read every ``*.json`` record in ``folder``, by file name; an absent folder is an empty store."""
    folder = Path(folder)
    return [load_record(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
