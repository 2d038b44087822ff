"""Classic-format YOLOv5 model YAMLs (``models_yaml/yolov5/``): which files, and their header and top-level keys.

Classic YOLOv5 (a clone of ultralytics/yolov5, or the pip package ``yolov5``) reads one file per scale: top-level
``depth_multiple``/``width_multiple`` instead of ``scales:``, ``anchors``, and a ``Detect`` row with ``[nc, anchors]``
(``Segment`` with ``[nc, anchors, masks, prototypes]`` for ``segment/train.py``). The files are the recommended widened
EfficientNetV2-S table with YOLOv5's v6.0 head (rows and multiples as ``yolov5_effv2.yaml``), the same with a
``Segment`` head (as ``yolov5_effv2-seg.yaml``), and the plain table with a BiFPN neck whose phi follows the scale
(``PHI_BY_SCALE``), as ``yolov5_effv2_bifpn.yaml``, each at n/s/m/l/x. Classic YOLOv5 builds its classifiers by
cutting a trained detection model (``classify/train.py --model best.pt --cutoff N``), so no classifier file is needed;
each detection file's header names its ``N``, the number of its backbone rows.

The rows come from the stage tables, as every shipped YAML's: ``effdet_plugin.stages.render_classic`` renders the
Ultralytics-format source file's backbone and head rows (with the ``output`` row and the scale's phi) and hands them
to ``render`` here, so this module imports nothing of ``stages`` (which imports it). ``python -m effdet_plugin.stages``
writes and checks these files with the others; ``effdet-plugin yaml NAME --format yolov5 -o PATH`` copies one out
(YOLOv5's ``check_file`` finds model files only under its own root).
"""

from __future__ import annotations

from dataclasses import dataclass

from effdet_plugin import heads
from effdet_plugin.bifpn import PHI_BY_SCALE, bifpn_size

FOLDER = "yolov5"  # subfolder of the shipped YAML folder
# The tasks YOLOv5 builds from a model YAML, and the clone's script that trains each
TRAIN = {"detect": "train.py", "segment": "segment/train.py"}
# yolov5{n,s,m,l,x}.yaml's (depth_multiple, width_multiple), as ultralytics/yolov5 ships them
SCALES = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}
# YOLOv5's default anchors (models/yolov5s.yaml), P3/8, P4/16, P5/32
ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))


@dataclass(frozen=True)
class ClassicYaml:
    """One classic YOLOv5 YAML: the Ultralytics-format file whose rows it has, the neck, a scale letter and the task."""

    name: str  # e.g. "effv2": file yolov5{scale}_{name}[_bifpn][-seg].yaml, rows of yolov5_{name}[_bifpn][-seg].yaml
    neck: str  # "pan" or "bifpn"
    scale: str
    what: str  # what the backbone is, for the header
    task: str = "detect"  # a key of TRAIN

    def __post_init__(self):
        if self.task not in TRAIN:
            raise ValueError(f"classic YOLOv5 builds no {self.task!r} model from a YAML (it builds {', '.join(TRAIN)})")

    @property
    def _stem(self) -> str:
        return f"{self.name}{'_bifpn' if self.neck == 'bifpn' else ''}{'-seg' if self.task == 'segment' else ''}"

    @property
    def file(self) -> str:
        """File name, e.g. ``yolov5s_effv2_bifpn.yaml``, ``yolov5s_effv2-seg.yaml``."""
        return f"yolov5{self.scale}_{self._stem}.yaml"

    @property
    def ultralytics_file(self) -> str:
        """The Ultralytics-format YAML with the same rows (one file for every scale)."""
        return f"yolov5_{self._stem}.yaml"

    @property
    def output(self) -> tuple[str, list]:
        """The output row's module and args: the neck's Ultralytics head for the task (Detect, Segment) with YOLOv5's
        ``anchors`` after ``nc``, as YOLOv5's own heads take them (``Segment [nc, anchors, 32, 256]``)."""
        module, (nc, *rest) = heads.NECKS[self.neck].heads[self.task]
        return module, [nc, "anchors", *rest]

    @property
    def phi(self) -> int:
        """The BiFPN's phi at this scale (EfficientDet D0-D4 for n-x, as the Ultralytics files' ``bifpn_phi``)."""
        return PHI_BY_SCALE[self.scale]


CLASSIC_YAMLS: dict[str, ClassicYaml] = {
    s.file: s
    for s in (
        ClassicYaml("effv2", neck, scale, what, task)
        for neck, what, task in (
            ("pan", "a widened EfficientNetV2-S stage table", "detect"),
            ("pan", "a widened EfficientNetV2-S stage table", "segment"),
            ("bifpn", "the plain EfficientNetV2-S stage table", "detect"),
        )
        for scale in SCALES
    )
}


def render(
    spec: ClassicYaml,
    rows: str,
    taps: tuple[int, int, int],
    drop_path: float,
    multiples: tuple[float, float],
    activation: str | None = None,
    scale_note: str = "",
) -> str:
    """The classic YAML text of ``spec``: header and keys, then ``rows`` (backbone and head, from the stage tables);
    ``taps``: the backbone rows of P3, P4, P5 (P5 is then sized by SPPF, the next row); ``multiples``: the depth and
    width multiples of the Ultralytics-format file's scale, so both formats build the same model; ``scale_note``: a
    header line saying which rows that file's ``scale_rows:`` replaced at this scale."""
    depth, width = multiples
    p3, p4, p5 = taps
    if spec.neck == "pan":
        neck = "YOLOv5 v6.0 PAN head"
    else:
        w, layers = bifpn_size(spec.phi)
        neck = f"BiFPN neck (EfficientDet-D{spec.phi}'s: width {w}, {layers} layers)"
    module, args = spec.output
    head = (
        "anchor-based Detect" if module == "Detect" else f"anchor-based Segment ({args[2]} masks, {args[3]} prototypes)"
    )
    header = [
        f"effdet-plugin, classic YOLOv5 format (an ultralytics/yolov5 clone or pip yolov5), scale {spec.scale}:",
        f"{neck} and {head} on {spec.what}.",
        (
            f"Depth/width multiples of YOLOv5's yolov5{spec.scale}.yaml, applied to every row by YOLOv5's own rule."
            if (depth, width) == SCALES[spec.scale]
            else f"Depth/width multiples of {spec.ultralytics_file}'s scale {spec.scale}, applied by YOLOv5's own rule."
        ),
        "GENERATED by `python -m effdet_plugin.stages` from the stage tables in effdet_plugin/stages.py: do not edit.",
        (
            f"Same rows as the Ultralytics-format {spec.ultralytics_file}; taps P3 row {p3}, P4 row {p4}, "
            f"P5 SPPF row {p5 + 1}."
        ),
        *([scale_note] if scale_note else []),
        f"  effdet-plugin yaml {spec.file} --format yolov5 -o {spec.file}",
        f"  python {TRAIN[spec.task]} --cfg {spec.file} --weights '' --data ...   (docs/yolov5.md)",
        # classify/train.py cuts a detection checkpoint at YOLOv5's own backbone length (10) unless told otherwise,
        # which here lands inside the head and fails there
        *(
            [
                f"  python classify/train.py --model best.pt --cutoff {p5 + 2} --data ...   (a classifier: the backbone's rows)"
            ]
            if spec.task == "detect"
            else []
        ),
    ]
    anchors = "".join(f"  - [{', '.join(map(str, a))}] # P{k}/{2**k}\n" for k, a in enumerate(ANCHORS, start=3))
    return (
        "\n".join(f"# {line}".rstrip() for line in header)
        + "\n\n# Parameters\n"
        + "nc: 80 # number of classes\n"
        + f"depth_multiple: {depth:.2f} # model depth multiple\n"
        + f"width_multiple: {width:.2f} # layer channel multiple\n"
        + f"drop_path: {drop_path} # maximum stochastic-depth rate, reached by the last block (linear in index)\n"
        + (f"activation: {activation} # every Conv and every block (YOLOv5 reads the key too)\n" if activation else "")
        + "anchors:\n"
        + anchors
        + rows
    )
