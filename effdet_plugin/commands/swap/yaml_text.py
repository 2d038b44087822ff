"""Model dicts as model-YAML text, laid out as the shipped files are: one flow-style line per row (numbered across
backbone and head), ``scales:`` and ``scale_rows:`` one entry per line, a classic file's anchors one level per line."""

from __future__ import annotations

import yaml

from effdet_plugin.scale_rows import COMMENT as SCALE_ROWS_COMMENT
from effdet_plugin.scale_rows import KEY as SCALE_ROWS


def _flow(v) -> str:
    return yaml.safe_dump(v, default_flow_style=True, width=10**9, sort_keys=False).strip().removesuffix("\n...")


def dump_yaml(d: dict, header: str = "") -> str:
    """Return ``d`` as model-YAML text: one flow-style line per row, scales and other mappings one entry per line."""
    lines = [f"# {h}" if h else "#" for h in header.splitlines()]
    keys = [k for k in d if k != SCALE_ROWS]
    if SCALE_ROWS in d:  # next to the rows it replaces, as in the shipped files
        keys.insert(keys.index("backbone") if "backbone" in keys else len(keys), SCALE_ROWS)
    for k in keys:
        v = d[k]
        if k == SCALE_ROWS and isinstance(v, dict):
            lines += ["", f"{k}: # {SCALE_ROWS_COMMENT}"]
            for letter, rows in v.items():
                lines += [f"  {letter}:"] + [f"    {i}: {_flow(list(r))}" for i, r in rows.items()]
        elif k in ("backbone", "head"):
            first = len(d["backbone"]) if k == "head" else 0  # rows are numbered across backbone and head
            lines += ["", f"{k}:"] + [f"  - {_flow(list(r))} # {first + i}" for i, r in enumerate(v)]
        elif k == "anchors" and isinstance(v, list):  # classic YOLOv5: one line per level
            lines += [f"{k}:"] + [f"  - {_flow(a)}" for a in v]
        elif isinstance(v, dict) and k == "scales":
            lines += [f"{k}:"] + [f"  {s}: {_flow(list(x))}" for s, x in v.items()]
        else:
            lines.append(f"{k}: {_flow(v)}")
    return "\n".join(lines) + "\n"
