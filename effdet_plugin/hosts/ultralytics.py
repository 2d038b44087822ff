"""The Ultralytics 8.x host: every seam the plugin has in Ultralytics, its ``Conv``, and its scaling rule.

Seams (all through ``rebind`` or Ultralytics' own registration lists):

- ``ultralytics.nn.tasks.parse_model``: dicts with plugin rows are built by ``effdet_plugin.assemble``.
- ``ultralytics.nn.tasks.yaml_model_load``: bare names of the shipped YAMLs resolve from any working directory.
- ``ultralytics.nn.tasks.load_checkpoint`` and ``BaseModel.load``: ``pretrained=<torchvision .pth>`` seeds an exact
  EfficientNet backbone (``pretrained=efficientnet-lite0``: the installed weights package's file).
- ``ultralytics.data.dataset.YOLODataset.close_mosaic``: keeps a progressive stage's augmentation magnitudes.
- ``default_callbacks`` and the default config: progressive learning's keys and callbacks (the trainer glue itself:
  ``effdet_plugin.hosts.ultralytics_training``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from effdet_plugin import assemble, errors, keys, progressive, user_modules
from effdet_plugin.assemble import HostRules, Scaling
from effdet_plugin.hosts import ultralytics_training
from effdet_plugin.hosts.rebind import rebind
from effdet_plugin.hosts.unavailable import UnsupportedUltralyticsError, disabled_error
from effdet_plugin.naming import unified_name
from effdet_plugin.paths import model_yaml_dir
from effdet_plugin.rows import (
    HostNames,
    MultiInputRow,
    RowKind,
    SameWidthRow,
    is_index,
    key_error,
    kinds,
    model_rows,
    row_error,
    uses_plugin,
)

SUPPORTED = ">=8.4.0,<8.5.0"
HEADS = frozenset(
    {
        "Detect",
        "v10Detect",
        "Segment",
        "Segment26",
        "Pose",
        "Pose26",
        "OBB",
        "OBB26",
        "YOLOEDetect",
        "YOLOESegment",
        "YOLOESegment26",
        "WorldDetect",
        "Classify",
    }
)
_ENGINE = ("ultralytics.nn", "ultralytics.engine.model", "ultralytics.engine.trainer")  # import the names by name
TASK_MODELS = {
    "detect": "DetectionModel",
    "segment": "SegmentationModel",
    "pose": "PoseModel",
    "obb": "OBBModel",
    "classify": "ClassificationModel",
}  # task -> the ultralytics.nn.tasks class YOLO(path) builds it with


def check_version() -> None:
    """Raise ``UnsupportedUltralyticsError`` outside ``SUPPORTED``."""
    import ultralytics
    from ultralytics.utils.checks import check_version as _check

    if not _check(ultralytics.__version__, SUPPORTED, hard=False):
        raise UnsupportedUltralyticsError(
            f"effdet-plugin supports ultralytics {SUPPORTED}, found {ultralytics.__version__}; "
            f"install a supported version, e.g. pip install 'ultralytics{SUPPORTED}'"
        )


def task_model_class(d: dict) -> type[nn.Module]:
    """The ``ultralytics.nn.tasks`` class that builds the model dict ``d``: its task's, read from its output head as
    ``guess_model_task`` reads it."""
    from ultralytics.nn import tasks

    return getattr(tasks, TASK_MODELS[tasks.guess_model_task(d)])


def int8_export_args() -> dict:
    """The exporter's INT8 switch in this host's words: ``quantize=8`` where the config has ``quantize`` (later 8.4.x,
    which warn that ``int8`` is deprecated), ``int8=True`` in the releases before it."""
    from ultralytics.utils import DEFAULT_CFG_DICT

    return {"quantize": 8} if "quantize" in DEFAULT_CFG_DICT else {"int8": True}


# The top-level keys Ultralytics reads from a model dict (its model classes and parse_model), beyond keys.COMMON
KEYS: dict[str, keys.Key] = {
    "scales": keys.Key(
        "a mapping of scale letters to [depth, width, max_channels], each a positive number", keys.is_scales
    ),
    "scale": keys.Key("a scale letter (n, s, m, l, x) or empty", lambda x: x is None or isinstance(x, str)),
    "channels": keys.Key("a positive integer (input channels)", keys.is_positive_int),
    "reg_max": keys.Key("a positive integer (16; 1 for YOLO26 heads)", keys.is_positive_int),
    "end2end": keys.Key("true or false", lambda x: x is None or isinstance(x, bool)),
    "kpt_shape": keys.Key(
        "[keypoints, 2 or 3] (e.g. [17, 3])",
        lambda x: (  # a tuple too: PoseModel(data_kpt_shape=(17, 3)) writes the caller's tuple into the dict
            isinstance(x, list | tuple)
            and len(x) == 2
            and keys.is_positive_int(x[0])
            and is_index(x[1])
            and x[1] in (2, 3)
        ),
    ),
}


class Rules(HostRules):
    """Ultralytics 8.4's parser, seen from the plugin."""

    def __init__(self):
        from ultralytics.nn import tasks
        from ultralytics.nn.modules import Conv
        from ultralytics.utils import LOGGER

        self.tasks, self.conv, self.logger = tasks, Conv, LOGGER

    def keys(self) -> dict[str, keys.Key]:
        return KEYS

    def names(self) -> HostNames:
        g = vars(self.tasks)
        known = {k for k, v in g.items() if isinstance(v, type) and issubclass(v, nn.Module)}

        def resolves(m: str) -> bool:
            if m.startswith("nn."):
                return isinstance(getattr(torch.nn, m[3:], None), type)
            if m.startswith("torchvision.ops."):
                import torchvision

                return hasattr(torchvision.ops, m[16:])
            return m in known

        return HostNames(resolves, sorted(known), frozenset(h for h in HEADS if h in g))

    def scaling(self, d: dict) -> Scaling:
        """Ultralytics' rule for its ``Conv``/``C3`` rows as of 8.4.9x and later, applied on every 8.4.x.

        ``min(c_out, max_channels) * width`` rounded up to a multiple of 8; repeats ``max(round(n * depth), 1)`` for
        ``n > 1``. (8.4.0 to about 8.4.90 left a row unscaled when its ``c_out`` equalled ``nc``; plugin rows never
        are, so a YAML builds the same model on every supported release.)
        """
        from ultralytics.utils.ops import make_divisible

        depth, width, max_channels = d.get("depth_multiple", 1.0), d.get("width_multiple", 1.0), float("inf")
        if d.get("scales"):
            depth, width, max_channels = d["scales"][self.scale(d)]
        return Scaling(
            width=lambda c: make_divisible(min(c, max_channels) * width, 8),
            depth=lambda n: max(round(n * depth), 1) if n > 1 else n,
        )

    def scale(self, d: dict) -> str | None:
        """Ultralytics' rule (``parse_model``): the letter the file name gave (``scale``), else the first of
        ``scales:``; without ``scales:`` the name's letter (it still switches rows such as C3k2), else None."""
        scales = d.get("scales")
        if not scales:
            return d.get("scale") or None
        scale = d.get("scale") or next(iter(scales))
        if scale not in scales:
            raise key_error(d, "scales", f"has no scale {scale!r} (it has {', '.join(scales)})")
        return scale

    def standin(self, kind: RowKind, f, c2: int | None) -> tuple[str, list]:
        if isinstance(kind, MultiInputRow):
            return "ResNetLayer", [1, c2, 1, True, 1]  # reads no input width; outputs c2 as written
        if isinstance(kind, SameWidthRow):
            return "nn.Identity", []  # output width = input width
        return "Index", [c2, 0]  # outputs c2 as written, never scaled (Ultralytics' Index branch)

    def activation(self, d: dict, key: str = "activation") -> nn.Module | None:
        return keys.parse_activation(d, key)

    def row_line(self, i: int, f, n: int, params: int, module: str, args: list) -> str:
        return f"{i:>3}{f!s:>20}{n:>3}{params:10.0f}  {module:<45}{args!s:<30}"

    def check(self, d: dict) -> None:
        # a classic YOLOv5 file (models_yaml/yolov5/) passed by path: Ultralytics' heads are anchor-free, and would
        # fail on the extra argument with a bare TypeError
        for i, row in enumerate(model_rows(d)):
            if row[2] in HEADS and "anchors" in row[3]:
                raise row_error(
                    d,
                    i,
                    row,
                    "'anchors' is classic YOLOv5's anchor-based head; Ultralytics' heads are anchor-free: drop it "
                    "(in Ultralytics, the shipped models load by bare name, e.g. yolov5n_effv2.yaml)",
                )


_RULES: Rules | None = None


def rules() -> Rules:
    """The adapter's rules (made once, after ``ultralytics.nn.tasks`` has loaded)."""
    global _RULES
    if _RULES is None:
        _RULES = Rules()
    return _RULES


# ------------------------------------------------------------------------------------------------------------- seams
def _parse_model_wrapper(parse_model):
    def parse_model_with_plugin(d, ch, verbose=True):
        user_modules.load()  # users' entry-point blocks, once per process, before the first model is read
        if not uses_plugin(d):
            return parse_model(d, ch, verbose)
        check_version()
        return assemble.build(d, ch, lambda standin: parse_model(standin, ch, verbose), rules())

    parse_model_with_plugin.__wrapped__ = parse_model
    return parse_model_with_plugin


def resolve_shipped(path) -> Path | None:
    """The shipped file a bare name such as ``yolov5s_effv2.yaml`` refers to: that file, or the family's file without
    the scale letter (``yolov5_effv2.yaml``), as Ultralytics unifies names."""
    p = Path(path)
    if p.exists() or p.parent != Path("."):
        return None
    shipped = model_yaml_dir()
    for candidate in (shipped / p.name, shipped / unified_name(p)):
        if candidate.is_file():
            return candidate
    return None


def _yaml_model_load_wrapper(yaml_model_load):
    def yaml_model_load_with_plugin(path):
        shipped = resolve_shipped(path)
        if shipped is not None:
            # The existing file itself, not the scaled name: the original unifies the whole path string, so a folder
            # such as ``/tmp/tmp.4ntr`` (digits, then a scale letter) above the package would be rewritten too.
            d = yaml_model_load(shipped)
            d["scale"] = rules().tasks.guess_model_scale(path)
            d["yaml_file"] = str(path)
        else:
            d = yaml_model_load(path)
        if isinstance(d, dict) and uses_plugin(d):  # the model classes index nc and backbone before parse_model
            assemble.check_keys(d, rules())
        return d

    yaml_model_load_with_plugin.__wrapped__ = yaml_model_load
    return yaml_model_load_with_plugin


def _disabled_yaml_model_load_wrapper(yaml_model_load):
    def yaml_model_load_disabled(path):
        if resolve_shipped(path) is not None:
            raise disabled_error(f"{path} is an effdet-plugin model")
        d = yaml_model_load(path)
        if uses_plugin(d):
            raise disabled_error(f"{path} uses effdet-plugin rows")
        return d

    yaml_model_load_disabled.__wrapped__ = yaml_model_load
    return yaml_model_load_disabled


# ``pretrained=<torchvision .pth>``: ``load_checkpoint`` (called by the trainer and by ``YOLO.load``/``YOLO.train``
# on every 8.4.x) returns a marker for such a file, and ``BaseModel.load``, which both then call on the model being
# trained, loads it into that model's exact EfficientNet backbone with every name and shape checked: a file of another
# architecture fails with one message instead of Ultralytics' silent by-shape transfer.
class TorchvisionWeights(nn.Module):
    """What ``load_checkpoint`` returns for a torchvision state dict file: its path, loaded by ``BaseModel.load``."""

    def __init__(self, path):
        super().__init__()
        self.path = str(path)
        self.pt_path = None  # not a training checkpoint: nothing to resume from (Model.load reads this)

    def float(self):
        return self


def is_torchvision_file(weight) -> bool:
    """Ultralytics' loader accepts only .pt files, so any other suffix is free for torchvision's .pth state dicts."""
    return isinstance(weight, (str, Path)) and Path(weight).suffix.lower() not in ("", ".pt")


def _load_checkpoint_wrapper(load_checkpoint):
    def load_checkpoint_with_plugin(weight, *args, **kwargs):
        from effdet_plugin.weights import packaged_weights

        weight = packaged_weights(weight) or weight  # efficientnet-lite0 -> its installed package's .pth
        if is_torchvision_file(weight):
            if not Path(weight).is_file():
                raise FileNotFoundError(f"pretrained weights not found: {weight}")
            # A non-empty "checkpoint": YOLO.train() of Ultralytics 8.4.0 seeds the trainer from the loaded model only
            # while one is set; it holds nothing a resume could use (no epoch, no optimizer).
            return TorchvisionWeights(weight), {"effdet_torchvision": str(weight)}
        # a checkpoint pickles plugin (and users') modules: registering them allow-lists them for restricted loading
        kinds()
        user_modules.load()
        return load_checkpoint(weight, *args, **kwargs)

    load_checkpoint_with_plugin.__wrapped__ = load_checkpoint
    return load_checkpoint_with_plugin


def _model_load_wrapper(load):
    def load_with_plugin(self, weights, verbose=True):
        if isinstance(weights, TorchvisionWeights):
            from ultralytics.utils import LOGGER

            from effdet_plugin.weights import load_backbone

            loaded = load_backbone(self, weights.path)
            if verbose:
                LOGGER.info(loaded.describe())
            return self
        return load(self, weights, verbose)

    load_with_plugin.__wrapped__ = load
    return load_with_plugin


def install_command_errors() -> None:
    """``yolo ...`` ending on a plugin error prints its one line, not the engine's traceback above it."""
    errors.one_line_in_command("ultralytics/cfg/__init__.py", "entrypoint")


def install_config_keys() -> None:
    """Progressive learning's config keys and the trainer callbacks (only ``ultralytics.utils``: cheap and early)."""
    from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_DICT
    from ultralytics.utils.callbacks.base import default_callbacks

    for key, value in progressive.KEYS.items():
        DEFAULT_CFG_DICT.setdefault(key, value)  # the dict that `yolo` and get_cfg() check keys against
        if not hasattr(DEFAULT_CFG, key):
            setattr(DEFAULT_CFG, key, value)  # the namespace trainers start from
    for event, callback in ultralytics_training.CALLBACKS.items():
        if callback not in default_callbacks[event]:
            default_callbacks[event].append(callback)


def install() -> None:
    """Rebind every Ultralytics seam (idempotent). Needs ``ultralytics.nn.tasks`` fully imported."""
    import sys

    from ultralytics.nn import tasks

    install_config_keys()
    rebind(tasks, "yaml_model_load", _yaml_model_load_wrapper, params=("path",), also=_ENGINE)
    rebind(tasks, "parse_model", _parse_model_wrapper, params=("d", "ch", "verbose"), also=_ENGINE)
    rebind(tasks, "load_checkpoint", _load_checkpoint_wrapper, params=("weight",), also=_ENGINE)
    rebind(tasks.BaseModel, "load", _model_load_wrapper, params=("self", "weights", "verbose"))
    dataset = sys.modules.get("ultralytics.data.dataset")
    if dataset is not None and hasattr(dataset, "YOLODataset"):  # else its own start-up hook installs the seam
        install_dataset()


def install_dataset() -> None:
    """The dataset seam, once ``ultralytics.data.dataset`` has executed (it may still be importing when
    ``ultralytics.nn.tasks`` finishes, so it is hooked on its own)."""
    from ultralytics.data import dataset

    rebind(dataset.YOLODataset, "close_mosaic", ultralytics_training.close_mosaic_wrapper, params=("self", "hyp"))


def install_disabled() -> None:
    """With ``EFFDET_PLUGIN_DISABLE`` set: register nothing, only explain when a plugin YAML is loaded."""
    from ultralytics.nn import tasks

    rebind(tasks, "yaml_model_load", _disabled_yaml_model_load_wrapper, params=("path",), also=_ENGINE)
