"""Write a shipped model YAML to a file, in Ultralytics' format or classic YOLOv5's.

  effdet-plugin yaml yolov5s_effv2.yaml --format yolov5 -o models/yolov5s_effv2.yaml   # into a YOLOv5 clone
  python train.py --cfg models/yolov5s_effv2.yaml --weights '' --data coco128.yaml
  effdet-plugin yaml yolov5_effv2_bifpn.yaml -o my_model.yaml                          # Ultralytics format

Ultralytics finds the shipped YAMLs by bare name already; classic YOLOv5's check_file looks only under its own root,
so its users copy a file out with --format yolov5 (names: yolov5{n,s,m,l,x}_effv2[_bifpn].yaml, one file per scale).
An Ultralytics-format file holds every scale: Ultralytics reads the letter from the file name you train with.
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path

from effdet_plugin.naming import scale_letter, unified_stem

FORMATS = ("ultralytics", "yolov5")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``effdet-plugin yaml``."""
    p.add_argument("name", metavar="NAME", help="a shipped model YAML, e.g. yolov5s_effv2.yaml (.yaml optional)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="ultralytics",
        help="ultralytics (default; scales: in one file) or yolov5 (classic: one file per scale, anchors)",
    )
    p.add_argument("-o", "--output", type=Path, default=None, help="file to write (default: NAME in this folder)")
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")


def names(fmt: str) -> list[str]:
    """The YAML names ``--format fmt`` knows."""
    if fmt == "yolov5":
        from effdet_plugin.classic import CLASSIC_YAMLS

        return list(CLASSIC_YAMLS)
    from effdet_plugin.stages import MODEL_YAMLS

    return list(MODEL_YAMLS)


def text_of(name: str, fmt: str = "ultralytics") -> str:
    """The YAML text of shipped model ``name`` in format ``fmt`` (``ValueError`` naming a close match if unknown)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    file = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
    file = file[:-4] + ".yaml" if file.endswith(".yml") else file
    if fmt == "yolov5":
        from effdet_plugin.classic import CLASSIC_YAMLS
        from effdet_plugin.stages import render_classic

        if file in CLASSIC_YAMLS:
            return render_classic(CLASSIC_YAMLS[file])
    else:
        from effdet_plugin.stages import MODEL_YAMLS, render_yaml

        stem = file[: -len(".yaml")]
        unified = unified_stem(stem) + ".yaml"
        for f in (file, unified):
            if f in MODEL_YAMLS:
                return render_yaml(MODEL_YAMLS[f])
    raise ValueError(_unknown(name, fmt))


def _unknown(name: str, fmt: str) -> str:
    other = next(f for f in FORMATS if f != fmt)
    file = name if name.endswith(".yaml") else f"{name}.yaml"
    if file in names(other) or (other == "ultralytics" and unified_stem(file[:-5]) + ".yaml" in names(other)):
        return f"no --format {fmt} model {name!r}; it is a --format {other} model"
    close = difflib.get_close_matches(file, names(fmt), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(names(fmt))})"
    return f"unknown --format {fmt} model {name!r}{hint}"


def run(args: argparse.Namespace) -> int:
    """Write the YAML; refuse to overwrite without ``--force``."""
    text = text_of(args.name, args.format)
    out = Path(args.output) if args.output else Path(args.name if args.name.endswith(".yaml") else f"{args.name}.yaml")
    if out.is_dir():
        raise ValueError(f"{out} is a folder; give a file name, e.g. -o {out / Path(args.name).name}")
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists; pass --force to overwrite it")
    from effdet_plugin.atomic import atomic_open

    with atomic_open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {out} ({args.format} format)")
    if args.format == "ultralytics":
        letter, got = scale_letter(args.name), scale_letter(out)
        if letter and got != letter:
            print(
                f"note: Ultralytics reads the scale letter from the file name it trains with; {out.name} gives "
                f"{repr(got) if got else 'no letter (the first scale, n)'}, not {letter!r}. Name it e.g. "
                f"yolov5{letter}_{out.stem}.yaml"
            )
    return 0
