"""What ``render`` draws, defined as data in ``results/render.yaml`` and evaluated against the results store.

    tables:
      NAME:                               # fills <!-- render:NAME --> ... <!-- /render:NAME --> in README/docs
        models: [yolov5nu, yolov5n_effv2]  # rows: file stems, or {model: STEM, label: TEXT, where: {...}, baseline: B}
        baseline: yolov5{letter}u          # each row's reference; {letter}: the row's scale letter; or a row's label
        cost: {records: "bench_*.json", imgsz: 640, batch: 1}            # benchmark records: params, GFLOPs, latency
        scores: {records: "protocol_*.json", split: test, where: {epochs: 100}}  # accuracy/protocol records
        datasets: [cards, raccoon]         # one column per dataset for map/map50/verdict
        columns: [model, params, gflops, latency, map, verdict]
    plots:
      NAME:
        kind: accuracy-latency             # or map-epoch
        file: docs/img/NAME.png
        models: [yolov5nu, yolov5su, yolov5n_effv2, yolov5s_effv2]
        cost: {...}                        # accuracy-latency only
        scores: {...}
        dataset: cards
        title: "..."                       # optional

Columns: ``model``; ``params`` (millions); ``gflops``; ``latency`` (the row's median latency divided by its
baseline's, from records holding both at the same setting: one ratio per record, their median); ``latency:KEY`` for
another runtime (``onnx_ms``, ``openvino_ms``, ``openvino_int8_ms``, ``graph_ms``); ``latency_ms``; ``map`` and
``map50`` (mean ± sample sd over seeds, seed count in brackets); ``map_int8`` (mAP50-95 of the runs' OpenVINO INT8
exports, ``protocol --int8``); ``top1`` and ``top5`` (a classifier's accuracy, as ``map``); ``verdict`` (ahead /
level / behind against the baseline, with the difference of means of the first score, mAP50-95 or a classifier's
top-1, in points and p: level whenever p > 0.05 or either side has fewer than 3 seeds). ``records`` is a glob in
``results/`` (default: every record of the right kind); ``where`` keeps runs whose recipe has those values. A row
given as a mapping keeps only runs whose recipe also has its own ``where`` values (the same file trained from scratch
and from ImageNet weights makes two rows), shows its ``label`` and may name its own ``baseline``; a baseline that names
a row's label is that row.
"""

from __future__ import annotations

import fnmatch
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from effdet_plugin.commands import plots
from effdet_plugin.commands.compare import spread, verdict
from effdet_plugin.commands.results import RECIPE_KEYS, Record, Run, Timing
from effdet_plugin.commands.runtimes import RUNTIMES
from effdet_plugin.errors import first_line
from effdet_plugin.naming import scale_letter, unified_stem

DEFINITIONS = "render.yaml"
COLUMNS = ("model", "params", "gflops", "latency", "latency_ms", "map", "map50", "map_int8", "top1", "top5", "verdict")
PER_DATASET = ("map", "map50", "map_int8", "top1", "top5", "verdict")
SCORES = {"map": "map50_95", "map50": "map50", "map_int8": "int8", "top1": "top1", "top5": "top5"}  # column: Run field
COST_COLUMNS = ("params", "gflops", "latency", "latency_ms")
KINDS = ("accuracy-latency", "map-epoch")
DASH = "—"


class RenderError(ValueError):
    """A bad table or plot definition, or data the store cannot answer unambiguously: one line."""


@dataclass(frozen=True)
class Select:
    """Which records and rows a table or plot reads."""

    records: str | None = None  # a glob of file names in the store
    split: str | None = None
    imgsz: int | None = None
    batch: int | None = None
    where: tuple[tuple[str, Any], ...] = ()  # recipe values a run must have


@dataclass(frozen=True)
class Row:
    """One row of a table (one line or point of a plot): a model file's runs, those of a recipe where given."""

    model: str  # the file stem
    label: str
    where: tuple[tuple[str, Any], ...] = ()
    baseline: str | None = None  # the row's own reference, instead of the view's


@dataclass(frozen=True)
class View:
    """One table or plot definition."""

    name: str
    what: str  # "table" or a plot kind
    models: tuple[Row, ...]
    baseline: str | None
    cost: Select
    scores: Select
    datasets: tuple[str, ...]
    columns: tuple[str, ...] = ()
    file: str | None = None
    title: str = ""


# ------------------------------------------------------------------------------------------------------- definitions
def _select(spec: Any, at: str, path: Path) -> Select:
    if spec is None:
        return Select()
    if not isinstance(spec, dict) or set(spec) - {"records", "split", "imgsz", "batch", "where"}:
        raise RenderError(f"{path}: {at}: expected a mapping of records, split, imgsz, batch, where; found {spec!r}")
    where = spec.get("where") or {}
    if not isinstance(where, dict) or set(where) - set(RECIPE_KEYS):
        raise RenderError(f"{path}: {at}.where: keys must be among {', '.join(RECIPE_KEYS)}; found {where!r}")
    return Select(spec.get("records"), spec.get("split"), spec.get("imgsz"), spec.get("batch"), tuple(where.items()))


def _rows(spec: Any, at: str, path: Path) -> tuple[Row, ...]:
    if not isinstance(spec, list) or not spec:
        raise RenderError(f"{path}: {at}: expected a list of model names (file stems) or {{model, label, where}}")
    rows = []
    for i, item in enumerate(spec):
        if isinstance(item, str):
            rows.append(Row(item, item))
            continue
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("model"), str)
            or set(item) - {"model", "label", "where", "baseline"}
        ):
            raise RenderError(
                f"{path}: {at}[{i}]: expected a file stem or {{model, label, where, baseline}}, found {item!r}"
            )
        where = _select({"where": item.get("where")}, f"{at}[{i}]", path).where
        own = item.get("baseline")
        rows.append(Row(item["model"], str(item.get("label", item["model"])), where, None if own is None else str(own)))
    labels = [r.label for r in rows]
    if len(set(labels)) != len(labels):
        raise RenderError(f"{path}: {at}: two rows share a label; give each a label of its own")
    return tuple(rows)


def _view(name: str, spec: Any, what: str, path: Path) -> View:
    at = f"{what}s.{name}"
    if not isinstance(spec, dict):
        raise RenderError(f"{path}: {at}: expected a mapping, found {spec!r}")
    keys = (
        {"models", "baseline", "cost", "scores", "datasets", "columns"}
        if what == "table"
        else {"kind", "file", "models", "cost", "scores", "dataset", "title"}
    )
    if set(spec) - keys:
        raise RenderError(f"{path}: {at}: unknown key(s) {sorted(set(spec) - keys)}; expected some of {sorted(keys)}")
    models = _rows(spec.get("models"), f"{at}.models", path)
    cost, scores = _select(spec.get("cost"), f"{at}.cost", path), _select(spec.get("scores"), f"{at}.scores", path)
    if what == "table":
        columns = spec.get("columns") or ["model", "params", "gflops", "latency", "map", "verdict"]
        for c in columns:
            base, _, key = str(c).partition(":")
            if base not in COLUMNS or key and (base != "latency" or key not in {r.key for r in RUNTIMES.values()}):
                raise RenderError(f"{path}: {at}.columns: unknown column {c!r}; expected {', '.join(COLUMNS)}")
            if base in ("latency", "verdict") and not spec.get("baseline") and not all(r.baseline for r in models):
                raise RenderError(f"{path}: {at}: column {c!r} compares with a baseline; give baseline:")
        datasets = spec.get("datasets") or []
        if any(c in PER_DATASET for c in columns) and not datasets:
            raise RenderError(f"{path}: {at}.datasets: the map/verdict columns need the datasets to show")
        return View(name, "table", tuple(models), spec.get("baseline"), cost, scores, tuple(datasets), tuple(columns))
    kind, file = spec.get("kind"), spec.get("file")
    if kind not in KINDS:
        raise RenderError(f"{path}: {at}.kind: expected one of {', '.join(KINDS)}, found {kind!r}")
    if not isinstance(file, str) or not file.endswith(".png"):
        raise RenderError(f"{path}: {at}.file: expected a .png path relative to the repository, found {file!r}")
    if not isinstance(spec.get("dataset"), str):
        raise RenderError(f"{path}: {at}.dataset: expected the name of the dataset to plot")
    return View(name, kind, tuple(models), None, cost, scores, (spec["dataset"],), (), file, str(spec.get("title", "")))


def read_views(path: Path) -> tuple[dict[str, View], dict[str, View]]:
    """Return (tables, plots) defined in ``path``; an absent file defines none."""
    if not path.is_file():
        return {}, {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise RenderError(f"{path}: not valid YAML: {first_line(e)}") from None
    if not isinstance(data, dict) or set(data) - {"tables", "plots"}:
        raise RenderError(f"{path}: expected a mapping with 'tables' and 'plots'")
    out = []
    for what in ("table", "plot"):
        specs = data.get(f"{what}s") or {}
        if not isinstance(specs, dict):
            raise RenderError(f"{path}: {what}s: expected a mapping of names to definitions")
        out.append({str(n): _view(str(n), s, what, path) for n, s in specs.items()})
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------------------- queries
class Store:
    """The questions views ask of the loaded records."""

    def __init__(self, records: Sequence[Record]):
        self.records = list(records)
        self.used: set[Path] = set()
        self.metrics: set[str] = set()  # what the scores read so far measure (box, mask, keypoint mAP...)

    def _records(self, select: Select, kinds: tuple[str, ...]) -> list[Record]:
        pattern = select.records or "*"
        return [r for r in self.records if r.kind in kinds and fnmatch.fnmatch(r.path.name, pattern)]

    def timings(self, select: Select, model: str) -> list[tuple[Timing, dict[str, Timing]]]:
        """Each matching timing of ``model`` with the other timings of its record at the same setting."""
        out = []
        for rec in self._records(select, ("benchmark",)):
            for t in rec.timings:
                if t.model == model and select.imgsz in (None, t.imgsz) and select.batch in (None, t.batch):
                    peers = {p.model: p for p in rec.timings if (p.imgsz, p.batch) == (t.imgsz, t.batch)}
                    out.append((t, peers))
        return out

    def runs(self, select: Select, row: Row, dataset: str) -> list[Run]:
        """The scored runs of ``row`` on ``dataset``, one per seed (two records with one seed: an error)."""
        model = row.model
        found: dict[int, tuple[Run, Path]] = {}
        for rec in self._records(select, ("accuracy", "protocol")):
            for s in rec.scores:
                if (s.model, s.dataset) != (model, dataset) or select.split not in (None, s.split):
                    continue
                if any(s.recipe.get(k) != v for k, v in (*select.where, *row.where)):
                    continue
                if s.run.seed in found:
                    raise RenderError(
                        f"{row.label} seed {s.run.seed} on {dataset} is scored in both {found[s.run.seed][1]} and "
                        f"{rec.path}: narrow the view's scores (records, split, where)"
                    )
                found[s.run.seed] = (s.run, rec.path)
                self.metrics.add(s.metric)
        self.used |= {p for _, p in found.values()}
        return [r for _, (r, _) in sorted(found.items())]

    def cost(self, select: Select, model: str, baseline: str | None, key: str = "latency_ms") -> dict:
        """params, gflops, imgsz, latency_ms (median over records) and the latency ratio to ``baseline`` (median of
        per-record ratios, with their count) for ``model``; empty when no record times it."""
        found = self.timings(select, model)
        if not found:
            return {}
        first = found[0][0]
        self.used |= {t.source for t, _ in found}
        ratios = [
            t.figures[key] / peers[baseline].figures[key]
            for t, peers in found
            if baseline in peers and key in t.figures and key in peers[baseline].figures
        ]
        values = [t.figures[key] for t, _ in found if key in t.figures]
        return {
            "params": first.params,
            "gflops": first.gflops,
            "imgsz": first.imgsz,
            "device": first.device,
            "value": statistics.median(values) if values else None,
            "ratio": statistics.median(ratios) if ratios else None,
            "ratios": len(ratios),
        }


# ----------------------------------------------------------------------------------------------------------- tables
def baseline_of(view: View, row: Row) -> Row | None:
    """The row's reference (its own ``baseline``, else the view's): the view's row of that label, else the pattern
    filled with the row's scale letter (a file's runs of any recipe the view keeps)."""
    wanted = row.baseline or view.baseline
    if wanted is None:
        return None
    named = next((r for r in view.models if r.label == wanted), None)
    if named is not None:
        return named
    model = wanted.format(letter=scale_letter(row.model + ".yaml"))
    return Row(model, model)


def _map(runs: list[Run], metric: str) -> str:
    values = [r.int8[0] for r in runs if r.int8] if metric == "int8" else [getattr(r, metric) for r in runs]
    values = [v for v in values if v is not None]  # a classifier has no mAP, a detector no top-1
    if not values:
        return DASH
    sd = spread(values)
    return f"{statistics.fmean(values):.3f}" + (f" ± {sd:.3f}" if sd is not None else "") + f" ({len(values)})"


def _p(p: float | None) -> str:
    return "p < 0.001" if p is not None and p < 0.001 else f"p = {p:.2g}" if p is not None else ""


def _verdict(runs: list[Run], ref: list[Run], is_baseline: bool) -> str:
    if is_baseline:
        return "baseline"
    if not runs or not ref:
        return DASH
    v = verdict([r.score for r in runs], [r.score for r in ref])
    why = [f"{100 * v.difference:+.1f}"] + ([_p(v.p)] if v.p is not None else [])
    if v.seeds < 3:
        why.append(f"{v.seeds} seed{'s' if v.seeds != 1 else ''}")
    return v.word + (f" ({', '.join(why)})" if why else "")


def _header(column: str, view: View, imgsz: int | None) -> list[str]:
    base, _, key = column.partition(":")
    # one baseline model for every row (no pattern, no row of its own): named in the header
    one = (
        view.baseline if view.baseline and "{" not in view.baseline and not any(r.baseline for r in view.models) else ""
    )
    ref = one or "baseline"
    if base in PER_DATASET:
        title = {"map": "mAP50-95", "map50": "mAP50", "map_int8": "mAP50-95 INT8", "top1": "top-1", "top5": "top-5"}
        title = title.get(base, f"vs {ref}")
        return [f"{title} {d}" for d in view.datasets]
    runtime = next(r.title for r in RUNTIMES.values() if r.key == (key or "latency_ms"))
    return [
        {
            "model": "model",
            "params": "params (M)",
            "gflops": f"GFLOPs ({imgsz or '?'})",
            "latency": f"{runtime} ÷ {ref}",
            "latency_ms": f"{runtime} (ms)",
        }[base]
    ]


def table(view: View, store: Store) -> str:
    """The view as a Markdown table, with a line naming where its figures come from."""
    store.used, store.metrics = set(), set()
    lines, imgsz = [], None
    for row in view.models:
        ref = baseline_of(view, row)
        cells = []
        for column in view.columns:
            base, _, key = column.partition(":")
            cost = {}
            if base in COST_COLUMNS:  # only these read benchmark records (and name them as sources)
                cost = store.cost(view.cost, row.model, ref.model if ref else None, key or "latency_ms")
                imgsz = imgsz or cost.get("imgsz")
            if base == "model":
                cells.append(row.label)
            elif base in ("params", "gflops"):
                v = cost.get(base)
                cells.append(DASH if v is None else f"{v / 1e6:.2f}" if base == "params" else f"{v:.1f}")
            elif base == "latency_ms":
                cells.append(DASH if cost.get("value") is None else f"{cost['value']:.1f}")
            elif base == "latency":
                r, n = cost.get("ratio"), cost.get("ratios", 0)
                cells.append(DASH if r is None else f"{r:.2f}×" + (f" ({n} runs)" if n > 1 else ""))
            else:
                for d in view.datasets:
                    runs = store.runs(view.scores, row, d)
                    if base == "verdict":
                        cells.append(_verdict(runs, store.runs(view.scores, ref, d), ref == row))
                    else:
                        cells.append(_map(runs, SCORES[base]))
        lines.append(cells)
    header = [h for c in view.columns for h in _header(c, view, imgsz)]
    align = ["---" if h == "model" else "---:" for h in header]
    out = [f"| {' | '.join(header)} |", f"| {' | '.join(align)} |", *(f"| {' | '.join(c)} |" for c in lines)]
    sources = ", ".join(sorted(f"results/{p.name}" for p in store.used)) or "no record yet"
    split = f" on the '{view.scores.split}' split" if view.scores.split else ""
    # detection tables name pycocotools; a table of other tasks names each mAP its rows measure
    what = "pycocotools" if store.metrics <= {"box mAP, pycocotools"} else "; ".join(sorted(store.metrics))
    label = "mAP" if all("mAP" in m for m in store.metrics) else "score"
    note = (
        f"{label}: mean ± sd over seeds (count){split}, {what}" if any(c in PER_DATASET for c in view.columns) else ""
    )
    if "verdict" in view.columns:
        kinds = {"top-1" if m.startswith("top-1") else "mAP50-95" for m in store.metrics} or {"mAP50-95"}
        points = " or ".join(sorted(kinds, reverse=True))  # what verdicts compare: a classifier's top-1, else mAP
        note += (
            f"; verdict: the difference of means in {points} points and Welch's t-test against the baseline, level "
            "when p > 0.05 or below 3 seeds"
        )
    return "\n".join(out) + f"\n\n<sub>{note + '. ' if note else ''}From {sources}.</sub>"


# ------------------------------------------------------------------------------------------------------------ plots
def plot_items(view: View, store: Store) -> tuple[list, str, tuple[str, ...]]:
    """The plotted items (``plots.Point`` or ``plots.Curve``), the title and the axis labels of a plot view."""
    dataset = view.datasets[0]
    items: list = []
    devices = set()
    classifiers = []  # per scored row: whether its score is a classifier's top-1 accuracy
    for row in view.models:
        runs = store.runs(view.scores, row, dataset)
        classifiers += [r.top1 is not None for r in runs[:1]]
        if view.what == "accuracy-latency":
            cost = store.cost(view.cost, row.model, None)
            if runs and cost.get("value") is not None:
                devices.add(cost["device"])
                maps = [r.score for r in runs]
                letter = scale_letter(row.model + ".yaml") if row.label == row.model else ""
                items.append(
                    plots.Point(
                        row.label,
                        unified_stem(row.model) if letter else row.label,
                        letter,
                        cost["value"],
                        statistics.fmean(maps),
                        spread(maps),
                        len(maps),
                    )
                )
        else:
            curves = [r.curve for r in runs if r.curve is not None and r.curve.epoch]
            if curves:
                n = min(len(c.epoch) for c in curves)  # epochs every seed reached
                mean = tuple(statistics.fmean(c.score[i] for c in curves) for i in range(n))
                items.append(plots.Curve(row.label, curves[0].epoch[:n], mean, len(curves)))
    split = f" '{view.scores.split}'" if view.scores.split else ""
    score = "top-1 accuracy" if classifiers and all(classifiers) else "mAP50-95"
    if view.what == "accuracy-latency":
        where = "/".join(sorted(devices)) or "?"
        labels = (f"latency on {where} (ms, median)", f"{score} on {dataset}{split} (mean ± sd over seeds)")
    else:
        labels = ("epoch", f"val {score} on {dataset} (mean over seeds)")
    return items, view.title or f"{dataset}", labels


def plot_stamp(view: View, store: Store) -> str:
    """The data hash the view's PNG must carry to be fresh."""
    items, title, labels = plot_items(view, store)
    return plots.data_hash(view.what, title, labels, items)


def draw(view: View, store: Store, root: Path) -> Path:
    """Draw the plot view into its file under ``root``."""
    items, title, labels = plot_items(view, store)
    if not items:
        labels = ", ".join(r.label for r in view.models)
        raise RenderError(f"plot {view.name}: no record holds data for any of {labels}")
    path = root / view.file
    if view.what == "accuracy-latency":
        return plots.accuracy_latency(items, path, labels[0], labels[1], title)
    return plots.map_epoch(items, path, labels[1], title)
