"""Render README and docs figures from the results store: tables between markers, plots as stamped PNGs.

    effdet-plugin render             # rewrite every stale table and plot
    effdet-plugin render --check     # write nothing; exit 1 listing every stale table or plot
    effdet-plugin render --figures   # exit 1 listing figures typed by hand in README.md and docs/*.md

Tables and plots are defined in ``results/render.yaml`` (see ``effdet_plugin.commands.views``) and read only the
records in ``results/``. A table fills the block between ``<!-- render:NAME -->`` and ``<!-- /render:NAME -->`` in
README.md or docs/*.md; a plot is a PNG whose text chunk holds the hash of the data it shows, so ``--check`` compares
data, never pixels, and needs no matplotlib.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from effdet_plugin.atomic import atomic_open
from effdet_plugin.commands import figures, markers, plots, results, views


def pages(root: Path) -> dict[Path, str]:
    """README.md and docs/*.md under ``root``, by path relative to it."""
    found = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return {p.relative_to(root): p.read_text(encoding="utf-8") for p in found if p.is_file()}


def stale(root: Path, store_dir: str = "results") -> tuple[dict[Path, str], list[views.View], list[str]]:
    """Return (pages whose tables changed, with their new text; plot views whose PNG is stale; one line per stale
    item). Raises ``RenderError``/``StoreError``/``MarkerError`` (one line) on a bad definition, record or page."""
    store = views.Store(results.load(root / store_dir))
    definitions = root / store_dir / views.DEFINITIONS
    tables, plot_views = views.read_views(definitions)
    changed, lines = {}, []
    for page, text in pages(root).items():
        contents = {}
        for block in markers.blocks(text, page):
            if block.name not in tables:
                raise views.RenderError(f"{page}:{block.line}: render:{block.name} is not a table of {definitions}")
            contents[block.name] = views.table(tables[block.name], store)
        new = markers.replace(text, contents, page)
        if new != text:
            changed[page] = new
            lines += [
                f"{page}: table {b.name} is stale"
                for b in markers.blocks(text, page)
                if text[b.start : b.end].strip("\n") != contents[b.name].strip("\n")
            ]
    old_plots = []
    for view in plot_views.values():
        if plots.stamp_of(root / view.file) != views.plot_stamp(view, store):
            old_plots.append(view)
            lines.append(f"{view.file}: plot {view.name} is {'stale' if (root / view.file).exists() else 'missing'}")
    return changed, old_plots, lines


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``render`` options to ``p``."""
    what = p.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="write nothing; exit 1 listing every stale table or plot")
    what.add_argument(
        "--figures",
        action="store_true",
        help="exit 1 listing every figure typed by hand (outside rendered blocks) absent from the store",
    )
    p.add_argument("--root", default=".", help="the repository: README.md, docs/ and results/ (default: here)")


def run(args: argparse.Namespace) -> int:
    """Render, check or scan as asked; exit 1 when ``--check``/``--figures`` finds something."""
    root = Path(args.root)
    if args.figures:
        texts = pages(root)
        allowed = figures.allowed_figures(texts, [r.rows for r in results.load(root / "results")])
        found = figures.typed_figures(texts, allowed)
        print("\n".join(found) if found else f"render: no figure typed by hand in {len(texts)} pages")
        return 1 if found else 0
    changed, old_plots, lines = stale(root)
    if args.check:
        print("\n".join(lines) if lines else "render: every table and plot is up to date")
        return 1 if lines else 0
    store = views.Store(results.load(root / "results"))
    for page, text in changed.items():
        with atomic_open(root / page, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"render: wrote {page}")
    for view in old_plots:
        print(f"render: drew {views.draw(view, store, root).relative_to(root)}")
    if not changed and not old_plots:
        print("render: every table and plot is up to date")
    return 0
