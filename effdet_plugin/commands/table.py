"""The one text-table layout of the command line (``benchmark``, ``accuracy``): aligned columns, figures right."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return ``header`` and ``rows`` of already formatted cells as aligned text, two blanks between columns.

    The first column (a model name) is left-aligned, every other column right-aligned so that figures line up.
    """
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(cells, widths)))

    return "\n".join(line(r).rstrip() for r in (header, *rows))
