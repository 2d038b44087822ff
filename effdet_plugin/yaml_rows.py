"""A model YAML's rows as text: a stage table's stem and stage rows, the ``scale_rows:`` block of a file whose scales
have tables of their own, a BiFPN's ``bifpn_phi:`` line, and the neck family's rows after the backbone
(``effdet_plugin.heads``). ``effdet_plugin.stages`` puts them under a header and the top-level keys.
"""

from __future__ import annotations

from effdet_plugin import heads, scale_rows
from effdet_plugin.bifpn import PHI_BY_SCALE, bifpn_size
from effdet_plugin.stage_table import Table


def _stage_rows(table: Table) -> list[tuple[str, str]]:
    """Each stage's YAML row (flow style) and its comment, stage ``i`` being backbone row ``i``."""
    stride, rows = 2, []
    for i, s in enumerate(table.stages, start=1):
        stride *= s.stride
        args = f"{s.c_out}, {s.kernel}, {s.stride}, {s.expansion}, {s.se}{_padding_arg(table)}"
        rows.append((f"[-1, {s.repeats}, {s.block}, [{args}]]", f"{i}-P{stride.bit_length() - 1}/{stride}"))
    return rows


def _padding_arg(table: Table) -> str:
    """The rows' last arg where the table's padding is not the default."""
    return "" if table.padding == "auto" else f", {table.padding}"


def _backbone_rows(table: Table) -> list[str]:
    return [
        f"  - [-1, 1, stem, [{table.stem}, 3, 2{_padding_arg(table)}]] # 0-P1/2",
        *(f"  - {row} # {note}" for row, note in _stage_rows(table)),
    ]


def changed_rows(base: Table, table: Table) -> dict[int, tuple[str, str]]:
    """The backbone rows (index -> row, comment) that ``table`` builds instead of ``base``'s (same stem and strides)."""
    return {i: r for i, (r, b) in enumerate(zip(_stage_rows(table), _stage_rows(base)), start=1) if r != b}


def scale_rows_text(base: Table, scale_tables: dict[str, Table]) -> str:
    """The ``scale_rows:`` block: for each letter with its own table, the backbone rows that differ from ``base``'s."""
    if not scale_tables:
        return ""
    text = f"{scale_rows.KEY}: # {scale_rows.COMMENT} (the file's per-scale tables)\n"
    for letter, table in scale_tables.items():
        text += f"  {letter}:\n"
        text += "".join(f"    {i}: {row} # {note}\n" for i, (row, note) in changed_rows(base, table).items())
    return text


def bifpn_phi_line() -> str:
    """The ``bifpn_phi:`` key: the BiFPN phi of each scale letter, with the width and layers each gives."""
    sizes = ", ".join("/".join(map(str, bifpn_size(phi))) for phi in PHI_BY_SCALE.values())
    table = ", ".join(f"{k}: {v}" for k, v in PHI_BY_SCALE.items())
    return f"bifpn_phi: {{ {table} }} # BiFPN width/layers (EfficientDet D0-D4 table): {sizes}\n"


def rows_text(
    table: Table, neck: str, task: str = "detect", names: dict | None = None, output_args: list | None = None
) -> str:
    """A model YAML's backbone and head rows: the table's stem and stages, then the neck family's own last backbone
    rows and its head for ``task`` (``names``, ``output_args``: see ``heads.head_text``)."""
    family = heads.NECKS[neck]
    p3, p4, _ = table.taps
    tail = heads.tail_lines(family, task, len(table.stages) + 1)
    head = heads.head_text(family, task, (p3, p4, len(table.stages) + len(tail)), names, output_args)
    padding = "" if table.padding == "auto" else ", padding"
    return (
        f"\n# [from, repeats, module, [c_out, kernel, stride, expansion, se_ratio{padding}]]\nbackbone:\n"
        + "\n".join(_backbone_rows(table) + tail)
        + "\n\n"
        + head
    )
