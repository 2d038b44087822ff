"""Pascal VOC xml -> Ultralytics YOLO dataset, with a deterministic train/val/test split.

Layout read (raccoon_dataset, labelImg, VOCdevkit): ``SRC/**/*.xml`` and the images they name, looked up in
``SRC/images``, ``SRC/JPEGImages``, beside the xml, then in ``SRC`` itself. Box corners are taken as written (no
1-pixel VOC offset) and clipped to the image, as Ultralytics' ``xyxy2xywhn(clip=True)`` does; a box lying wholly
outside its image (nothing left after clipping) is dropped and counted, never written as a zero-size label.
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from ultralytics.data.utils import IMG_FORMATS

from effdet_plugin.commands.yolo_dataset import Conversion, Record, check_empty, write_yolo_dataset

IMAGE_DIRS = ("images", "JPEGImages")


def _text(obj: ET.Element, tag: str, xml: Path) -> str:
    node = obj.find(tag)
    if node is None or node.text is None or not node.text.strip():
        raise ValueError(f"{xml}: <{obj.tag}> has no <{tag}>")
    return node.text.strip()


def _number(obj: ET.Element, tag: str, xml: Path) -> float:
    value = _text(obj, tag, xml)
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{xml}: <{tag}> is {value!r}, not a number") from None


def _find_image(src: Path, xml: Path, filename: str | None) -> Path:
    """Return the image an annotation refers to: its <filename>, else the xml's stem with any image suffix."""
    folders = [src / d for d in IMAGE_DIRS] + [xml.parent, src]
    if filename:
        for folder in folders:
            if (folder / filename).is_file():
                return folder / filename
    for folder in folders:
        for suffix in IMG_FORMATS:
            if (folder / f"{xml.stem}.{suffix}").is_file():
                return folder / f"{xml.stem}.{suffix}"
    raise FileNotFoundError(f"{xml}: image {filename or xml.stem + '.*'} not found in {', '.join(map(str, folders))}")


def read_voc(xml: str | Path, src: str | Path | None = None, keep_difficult: bool = False) -> Record:
    """Parse one VOC annotation into a ``Record``.

    Objects marked ``<difficult>1</difficult>`` are skipped unless ``keep_difficult`` (as Ultralytics' VOC.yaml does).
    Boxes are returned as written; those wholly outside the image are left out and counted in ``dropped`` (a partly
    outside box is kept, to be clipped when written).
    """
    xml = Path(xml)
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{xml}: malformed xml ({e})") from None
    if root.tag != "annotation":
        raise ValueError(f"{xml}: root element is <{root.tag}>, expected <annotation> (Pascal VOC)")
    filename = root.findtext("filename")
    image = _find_image(Path(src) if src else xml.parent, xml, filename.strip() if filename else None)
    size = root.find("size")
    w = h = 0.0
    if size is not None and size.findtext("width") and size.findtext("height"):
        w, h = _number(size, "width", xml), _number(size, "height", xml)
    if w <= 0 or h <= 0:  # some tools write 0x0 sizes: read the image instead
        with Image.open(image) as im:
            w, h = im.size
    names, boxes, dropped = [], [], 0
    for obj in root.iter("object"):
        if not keep_difficult and (obj.findtext("difficult") or "0").strip() == "1":
            continue
        bnd = obj.find("bndbox")
        if bnd is None:
            raise ValueError(f"{xml}: <object> {obj.findtext('name')!r} has no <bndbox>")
        box = [_number(bnd, k, xml) for k in ("xmin", "ymin", "xmax", "ymax")]
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"{xml}: box {box} of {obj.findtext('name')!r} has xmax <= xmin or ymax <= ymin")
        name = _text(obj, "name", xml)
        if box[2] <= 0 or box[3] <= 0 or box[0] >= w or box[1] >= h:  # clipping would leave no area
            dropped += 1
            continue
        names.append(name)
        boxes.append(box)
    xyxy = np.array(boxes, np.float64).reshape(-1, 4)
    return Record(image, w, h, names, xyxy, dropped, source=xml)


def voc_to_yolo(
    src: str | Path,
    dst: str | Path,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    names: list[str] | None = None,
    keep_difficult: bool = False,
) -> Conversion:
    """Convert every VOC xml under ``src`` into a YOLO dataset at ``dst``; return what was written.

    The layout is ``write_yolo_dataset``'s; the split is a seeded permutation of the xml files sorted by path. Class
    ids follow ``names`` when given, else the sorted class names found. Boxes partly outside their image are clipped;
    boxes wholly outside are dropped and counted in ``Conversion.dropped``.
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"VOC source folder {src} not found")
    xmls = sorted(src.rglob("*.xml"))
    if not xmls:
        raise FileNotFoundError(f"no Pascal VOC .xml files under {src}")
    check_empty(dst)
    records = [read_voc(x, src, keep_difficult) for x in xmls]
    found = sorted({n for r in records for n in r.names})
    return write_yolo_dataset(records, dst, list(names) if names else found, split, seed)


# ------------------------------------------------------------------------------- effdet-plugin voc2yolo SRC DST
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="folder holding Pascal VOC .xml files and their images (searched recursively)")
    p.add_argument("dst", help="output folder for the YOLO dataset (created; must be empty)")
    p.add_argument("--split", type=float, nargs=3, default=(0.7, 0.15, 0.15), metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--seed", type=int, default=0, help="seed of the split permutation (default 0)")
    p.add_argument("--names", nargs="+", help="class names in id order (default: sorted names found)")
    p.add_argument("--keep-difficult", action="store_true", help="keep objects marked <difficult>1</difficult>")


def run(args: argparse.Namespace) -> int:
    """Convert and print the data YAML, split sizes, classes and any dropped boxes."""
    done = voc_to_yolo(args.src, args.dst, tuple(args.split), args.seed, args.names, args.keep_difficult)
    data = yaml.safe_load(done.data_yaml.read_text())
    sizes = ", ".join(f"{s} {n}" for s, n in done.images.items())
    print(f"{done.data_yaml}  ({sizes} images; classes {list(data['names'].values())})")
    if done.dropped:
        where = ", ".join(x.name for x in done.dropped_in[:5]) + (", ..." if len(done.dropped_in) > 5 else "")
        print(f"dropped {done.dropped} boxes lying wholly outside their image ({where})")
    return 0
