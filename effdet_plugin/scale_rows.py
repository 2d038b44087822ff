"""Per-scale backbone rows: a model YAML's ``scale_rows:`` replaces some backbone rows at some scale letters.

An Ultralytics model YAML serves every scale letter from one list of rows, scaled by ``scales:``. The best stage table
is not the same at every size, though (docs/accuracy.md), so a file may name, per letter, backbone rows that differ:

    scale_rows:
      n: {4: [-1, 6, FusedMBConv, [192, 3, 2, 4, 0]]}

Ultralytics' own parser makes such a switch too (C3k2 rows build C3k blocks at m/l/x), hard-coded; here it is written in
the file, and the model table printed at build time shows the rows that were built. The replacement is made before
anything is validated or built, and it keeps the row's ``from``, so every index in the head stays valid. Classic YOLOv5
files have one scale each and carry the scale's rows directly.
"""

from __future__ import annotations

from effdet_plugin.rows import is_index, key_error

KEY = "scale_rows"
COMMENT = "backbone rows built instead of those below at these scales"  # the key's comment in every written YAML


def apply(d: dict, scale: str | None) -> dict:
    """Return ``d`` with the rows ``scale_rows:`` gives for ``scale`` in ``backbone:`` (a shallow copy), or ``d`` itself
    when it has none for that scale. The whole mapping is checked, whichever scale is built."""
    spec = d.get(KEY)
    if spec is None:
        return d
    if not isinstance(spec, dict) or not spec:
        raise key_error(d, KEY, f"must map scale letters to {{backbone row index: row}}, got {spec!r}")
    scales = d.get("scales")
    if not isinstance(scales, dict) or not scales:
        raise key_error(
            d,
            KEY,
            "needs a 'scales:' table; a file without one has a single scale, so write its rows in backbone: directly",
        )
    backbone = d.get("backbone")
    if not isinstance(backbone, list) or not backbone:
        return d  # rows.validate_model reports the missing backbone
    for letter, rows in spec.items():
        if letter not in scales:
            raise key_error(d, KEY, f"scale {letter!r} is not in 'scales:' ({', '.join(map(str, scales))})")
        if not isinstance(rows, dict) or not rows:
            raise key_error(d, KEY, f"{letter}: must map backbone row indices to rows, got {rows!r}")
        for i, row in rows.items():
            if not is_index(i) or not 0 <= i < len(backbone):
                raise key_error(d, KEY, f"{letter}: {i!r} is not a backbone row index (0 to {len(backbone) - 1})")
            if not isinstance(row, (list, tuple)) or len(row) != 4:
                raise key_error(
                    d, KEY, f"{letter}: row {i}: a row has 4 fields [from, repeats, module, args], got {row!r}"
                )
            written = backbone[i][0] if isinstance(backbone[i], (list, tuple)) and backbone[i] else None
            if row[0] != written:
                raise key_error(
                    d,
                    KEY,
                    f"{letter}: row {i}: 'from' {row[0]!r} differs from backbone row {i}'s "
                    f"{written!r}; a per-scale row changes a row's block, not what it reads",
                )
    rows = spec.get(scale)
    if not rows:
        return d
    out = dict(d)
    out["backbone"] = [list(rows[i]) if i in rows else row for i, row in enumerate(backbone)]
    return out
