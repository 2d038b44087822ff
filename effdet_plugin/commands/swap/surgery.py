"""The swap itself, on model dicts: a source's backbone out, the EfficientNet rows in, every row after them re-pointed.

The source's backbone splits into the rows replaced and its last stage (``graph.TAIL_MODULES``: SPPF, C2PSA, ... at
stride 32), which belongs to its neck/head family and is kept. The rows after the new backbone read it by stride: a
reference to a replaced row at stride 8/16/32 goes to the new row at that stride, every other ``from`` moves by the
change in length. The grafted rows end in the shipped YAML's SPPF unless the source's last stage starts with a pooling
row of its own (SPPF, SPP, SPPELAN): the neck reads a pooled P5, and an attention row (C2PSA) its own width.

Host-free: the source's strides come from its format's probe, the grafted rows' from the stage tables.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass

from effdet_plugin.classic import SCALES as CLASSIC_SCALES
from effdet_plugin.commands.swap import parts
from effdet_plugin.commands.swap.graph import POOLING_MODULES, Head, SwapError, refs_into, reindex, tail_length, taps
from effdet_plugin.rows import model_source
from effdet_plugin.scale_rows import KEY as SCALE_ROWS


@dataclass(frozen=True)
class Swapped:
    """A swapped model dict and where the source's rows went."""

    yaml: dict
    head: Head  # the source's head row, kept (re-pointed) as the swapped model's
    moved: dict[int, int]  # source row -> swapped row, for every row whose trained tensors may carry over
    first_kept: int  # the first row after the grafted ones


def scale_of(d: dict, scale: str | None) -> str | None:
    """The scale letter the swapped dict gets: ``scale`` if the source's ``scales:`` has it, else the source's own."""
    scales = d.get("scales")
    if scale is None:
        return (d.get("scale") or None) if scales else None
    if not scales:
        raise SwapError(f"{model_source(d)}: --scale {scale} given but the source has no 'scales:' table")
    if scale not in scales:
        raise SwapError(f"{model_source(d)}: scale {scale!r} is not one of its scales {', '.join(scales)}")
    return scale


def swap_rows(
    d: dict,
    strides: list[int | None],
    head: Head,
    graft: parts.Graft,
    neck: str,
    scale: str | None,
    supported: str,
    scale_tables: bool = True,
) -> Swapped:
    """Return ``d`` with its backbone replaced by ``graft`` (and its neck by ``neck`` unless ``"keep"``).

    Args:
        d: the source dict (checked by ``graph.check_source``, which found ``head``).
        strides: the output stride of each of its backbone rows (``formats.probe_strides``).
        scale: the letter from ``scale_of``.
        supported: what the format supports, ending each refusal.
        scale_tables: whether the host reads per-scale tables such as ``bifpn_phi: {n: 0, ...}``; if not, a neck row's
            table argument is written as the value of the source's scale (classic YOLOv5 files).
    """
    n_src = len(d["backbone"])
    n_tail = tail_length(d, strides)
    n_body = n_src - n_tail
    pool = n_tail == 0 or d["backbone"][n_body][2] not in POOLING_MODULES
    rows = graft.rows(pool)
    kept = [*d["backbone"][n_body:], *d["head"]]
    new_taps = graft.taps(pool)
    tap_of = {a: new_taps[s] for a, s in taps(d, strides, refs_into(kept, n_body, n_body), supported).items()}
    kept = reindex(kept, n_body, len(rows), tap_of)
    backbone = rows + kept[:n_tail]
    moved = {n_body + k: len(rows) + k for k in range(n_tail)}
    extra: dict = {}
    if neck == "keep":
        head_rows = kept[n_tail:]
        moved.update({n_src + k: len(backbone) + k for k in range(len(head_rows))})
    else:
        if not head.multi_level:
            raise SwapError(
                f"{model_source(d)}: --neck {neck} replaces a P3/P4/P5 neck, and a {head.module} head "
                f"reads the backbone alone; use --neck keep"
            )
        new = parts.neck(neck, graft.name, len(backbone), {**new_taps, 32: len(backbone) - 1})
        neck_rows, extra = (new.rows, new.keys) if scale_tables else _at_scale(d, new.rows, new.keys)
        last = d["head"][-1]
        head_rows = [*neck_rows, [new.head_from, last[1], last[2], deepcopy(last[3])]]
        moved[n_src + len(d["head"]) - 1] = len(backbone) + len(head_rows) - 1  # only the head row itself
    out = {
        k: deepcopy(v)
        for k, v in d.items()  # the source's keys in its order; the graft's plugin keys replace its own
        if k not in ("yaml_file", "scale", "backbone", "head", *parts.PLUGIN_KEYS)
    }
    out.update(graft.keys)
    own = graft.backbone_scales(out.get("scales"))
    if own:
        out["backbone_scales"] = own
    out.update(extra)
    if scale:
        out["scale"] = scale
    out["backbone"], out["head"] = deepcopy(backbone), head_rows
    fit_scale_rows(out)
    return Swapped(out, head, moved, len(rows))


def _at_scale(d: dict, rows: list, keys: dict) -> tuple[list, dict]:
    """Write a neck row's per-scale table argument (``BiFPN [bifpn_phi, ...]``) as its value at the classic scale
    (``classic.SCALES``) nearest to the source's width_multiple, as the shipped classic files have it."""
    gw = d.get("width_multiple", 1.0)
    letter = min(CLASSIC_SCALES, key=lambda s: abs(CLASSIC_SCALES[s][1] - gw)) if isinstance(gw, (int, float)) else "l"
    tables = {k for k, v in keys.items() if isinstance(v, dict)}
    rows = deepcopy(rows)
    for row in rows:
        if row[3] and isinstance(row[3][0], str) and row[3][0] in tables:
            row[3][0] = keys[row[3][0]][letter]
    return rows, {k: v for k, v in keys.items() if k not in tables}


def fit_scale_rows(d: dict) -> None:
    """Fit the backbone's ``scale_rows:`` to the swapped dict ``d``: keep the letters its ``scales:`` has; without
    ``scales:`` (a classic YOLOv5 file) write in the rows of the YOLOv5 scale whose multiples it has, as the shipped
    classic files do, and drop the key."""
    given = d.pop(SCALE_ROWS, None)
    if not given:
        return
    scales = d.get("scales")
    if isinstance(scales, dict) and scales:
        kept = {k: v for k, v in given.items() if k in scales}
        if kept:
            d[SCALE_ROWS] = kept
        return
    multiples = (d.get("depth_multiple", 1.0), d.get("width_multiple", 1.0))
    letter = next((k for k, v in CLASSIC_SCALES.items() if v == multiples), None)
    for i, row in given.get(letter, {}).items():
        d["backbone"][i] = deepcopy(row)
