"""The two plots of the project, drawn with matplotlib and stamped with a hash of the data they show.

- accuracy against latency: mAP50-95 (mean, error bar = sample sd over seeds) against CPU latency, the models of one
  family joined by a line with each point marked by its scale letter;
- mAP against epoch: each model's validation mAP50-95 per epoch, the mean over its seeds, so a reader sees where the
  curves cross.

Each PNG carries, in a text chunk, the hash of its data (``stamp``); ``stamp_of`` reads it back with the standard
library alone, so whether a plot is stale never depends on matplotlib's pixels, version or presence.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from effdet_plugin.atomic import atomic_open

STAMP_KEY = "effdet-plugin-data"  # the PNG text chunk holding the data hash
DRAWING = 1  # bump when the drawing code changes what a plot shows for the same data


@dataclass(frozen=True)
class Point:
    """One model on the accuracy-latency plot."""

    model: str
    family: str  # points of one family are joined by a line
    letter: str  # scale letter shown beside the point ('' for none)
    latency_ms: float
    map50_95: float
    sd: float | None
    seeds: int


@dataclass(frozen=True)
class Curve:
    """One model's mean validation curve over its seeds."""

    model: str
    epoch: tuple[int, ...]
    map50_95: tuple[float, ...]
    seeds: int


def data_hash(kind: str, title: str, labels: Sequence[str], items: Sequence[Point | Curve]) -> str:
    """The hash a plot's PNG is stamped with: of everything it shows (rounded so that float noise is not news)."""

    def rounded(v):
        if isinstance(v, float):
            return round(v, 6)
        if isinstance(v, (list, tuple)):
            return [rounded(x) for x in v]
        return v

    data = {
        "drawing": DRAWING,
        "kind": kind,
        "title": title,
        "labels": list(labels),
        "items": [{k: rounded(v) for k, v in asdict(i).items()} for i in items],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def stamp_of(png: str | Path) -> str | None:
    """The data hash stored in ``png``'s text chunks (None: no file, not a PNG, or never stamped)."""
    try:
        raw = Path(png).read_bytes()
    except OSError:
        return None
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    i = 8
    while i + 8 <= len(raw):
        n, kind = struct.unpack(">I4s", raw[i : i + 8])
        body = raw[i + 8 : i + 8 + n]
        if kind == b"tEXt" and b"\0" in body:
            key, value = body.split(b"\0", 1)
            if key.decode("latin-1") == STAMP_KEY:
                return value.decode("latin-1")
        elif kind == b"zTXt" and b"\0" in body:
            key, rest = body.split(b"\0", 1)
            if key.decode("latin-1") == STAMP_KEY:
                return zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"IEND":
            break
        i += 12 + n
    return None


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(6, 4), dpi=150)


def _save(plt, fig, ax, path: Path, stamp: str) -> Path:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")  # a legend, not point labels: nearby models would overprint each other
    fig.tight_layout()
    with atomic_open(path, "wb") as f:  # never a half-written PNG
        fig.savefig(f, format="png", metadata={STAMP_KEY: stamp})
    plt.close(fig)
    return path


def accuracy_latency(points: Sequence[Point], path: str | Path, xlabel: str, ylabel: str, title: str = "") -> Path:
    """Draw mAP50-95 against latency for ``points`` into the PNG ``path``; return the path."""
    plt, fig, ax = _figure()
    families: dict[str, list[Point]] = {}
    for p in points:
        families.setdefault(p.family, []).append(p)
    for name, members in families.items():
        members = sorted(members, key=lambda p: p.latency_ms)
        curve = len(members) > 1
        ax.errorbar(
            [p.latency_ms for p in members],
            [p.map50_95 for p in members],
            yerr=[p.sd or 0 for p in members],
            fmt="o-" if curve else "o",
            capsize=3,
            label=name if curve else members[0].model,
        )
        for p in members if curve else ():
            ax.annotate(p.letter, (p.latency_ms, p.map50_95), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return _save(plt, fig, ax, Path(path), data_hash("accuracy-latency", title, (xlabel, ylabel), points))


def map_epoch(curves: Sequence[Curve], path: str | Path, ylabel: str, title: str = "") -> Path:
    """Draw each model's mean validation mAP50-95 per epoch into the PNG ``path``; return the path."""
    plt, fig, ax = _figure()
    for c in curves:
        ax.plot(c.epoch, c.map50_95, label=f"{c.model} ({c.seeds} seed{'s' if c.seeds != 1 else ''})", linewidth=1.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return _save(plt, fig, ax, Path(path), data_hash("map-epoch", title, ("epoch", ylabel), curves))
