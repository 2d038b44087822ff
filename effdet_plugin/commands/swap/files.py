"""Swap to files: the swapped YAML, and for a checkpoint source the new checkpoint beside it, written whole or not at
all; an existing file (or the source itself) is replaced only when asked."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from effdet_plugin.atomic import atomic_open
from effdet_plugin.commands.swap.api import format_of, swap_trained, swap_yaml
from effdet_plugin.commands.swap.graph import SwapError
from effdet_plugin.commands.swap.transfer import Transfer
from effdet_plugin.commands.swap.yaml_text import dump_yaml


@dataclass(frozen=True)
class Written:
    """What ``swap_to_files`` wrote."""

    yaml: Path
    pt: Path | None  # the new checkpoint (a checkpoint source only)
    transfer: Transfer | None  # what it carried over (a checkpoint source only)
    model: nn.Module | None  # the model it holds (a checkpoint source only)


def _check_outputs(source, out: Path, pt: Path | None, force: bool) -> None:
    """Refuse (before any work) an output that exists or is the source itself, unless ``force``."""
    if force:
        return
    src = Path(str(source)) if isinstance(source, (str, Path)) else None
    for target in (out, pt) if pt is not None else (out,):
        if src is not None and src.exists() and target.exists() and os.path.samefile(src, target):
            raise SwapError(
                f"{target}: is the source file itself; write to another name, or pass --force "
                f"(force=True) to replace the source"
            )
        if target.exists():
            raise SwapError(f"{target}: already exists; pass --force (force=True) to overwrite it")


def swap_to_files(
    source, out, backbone: str = "effv2", neck: str = "keep", scale: str | None = None, force: bool = False
) -> Written:
    """Write the swapped ``out`` YAML (and ``out`` with suffix .pt for a checkpoint source); nothing on error.

    An existing output (either file) or the source itself is refused unless ``force``; so is an output name that the
    source's host would not load as that file (Ultralytics renames some names and reads the scale letter from them).
    """
    out = Path(out)
    if out.suffix not in (".yaml", ".yml"):
        raise SwapError(f"{out}: the output must end in .yaml")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out}: output folder {out.parent} does not exist")
    is_pt = Path(str(source)).suffix == ".pt"
    pt = out.with_suffix(".pt") if is_pt else None
    fmt = format_of(source)
    fmt.check_output(out, backbone)
    _check_outputs(source, out, pt, force)
    swapped = None
    if is_pt:
        if not Path(source).is_file():
            raise FileNotFoundError(f"checkpoint {source} not found")
        swapped = swap_trained(fmt, Path(source), backbone, neck, scale)
        d = swapped.yaml
    else:
        d = swap_yaml(fmt, source, backbone, neck, scale).yaml
    header = f"effdet-plugin swap: {Path(str(source)).name} with backbone {backbone}, neck {neck}"
    use = fmt.usage(out, pt, fmt.heads[d["head"][-1][2]])
    text = dump_yaml(fmt.for_file(d, out), header + "\nUse: " + use)
    # The .pt is written inside the YAML's atomic write: if it fails, the YAML's temp file goes too.
    with atomic_open(out, "w", encoding="utf-8") as f:
        f.write(text)
        if swapped is not None:
            info = {
                "source": str(source),
                "backbone": backbone,
                "neck": neck,
                "transferred": swapped.transfer.transferred,
            }
            swapped.save(pt, info)
    if swapped is None:
        return Written(out, None, None, None)
    return Written(out, pt, swapped.transfer, swapped.model)
