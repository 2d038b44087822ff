"""Hook plugin blocks into Ultralytics' YAML model parser without editing or copying it.

``ultralytics.nn.tasks.parse_model`` resolves a row's module name in its own globals and keeps its channel-scaling
rules in locals. We therefore wrap the module-level function: each plugin row is handed to the original parser as a
stand-in ``Conv`` row with the same ``c_out`` and repeats, so Ultralytics itself scales width (``min(c, max_channels) *
width`` to a multiple of 8) and depth exactly as for its own rows; the stand-in is then replaced by the real block
built with the resolved input width, output width and repeats. Rows without plugin modules never reach this code.

Two optional top-level YAML keys act on plugin rows only: ``scale_backbone: false`` keeps the widths and repeats of
plugin rows in ``backbone:`` as written (exact pretrained architectures; the stand-in is then ``HGStem``, whose output
width Ultralytics does not scale), and ``bn_eps`` sets their BatchNorm epsilon (see ``blocks.set_bn_eps``).
``drop_path`` sets the maximum stochastic-depth rate (``blocks.set_drop_path``).

Two further row kinds (used by the BiFPN neck) are built the same way: multi-input rows (``from`` is a list) whose
module computes its own output width, and width-preserving rows; see ``register_module``.

``yaml_model_load`` is wrapped as well so bare names such as ``yolov5s_effv2.yaml`` resolve to the YAMLs shipped
with this package from any working directory.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from effdet_plugin import blocks

SUPPORTED_ULTRALYTICS = ">=8.4.0,<8.5.0"


class UnsupportedUltralyticsError(RuntimeError):
    """The installed ultralytics is outside the range this plugin's parser hook was tested on."""


class ModelRowError(ValueError):
    """A YAML row that uses a plugin module is malformed."""


@dataclass(frozen=True)
class _Entry:
    module: type[nn.Module]
    stride_arg: int | None  # index into the row's args after c_out; repeats get stride 1 there
    kind: str = "scaled"  # "scaled" (c1 -> c_out like Conv), "multi" (list input, own width), "same" (width kept)


_REGISTRY: dict[str, _Entry] = {}
_ORIGINALS: dict[str, Callable] = {}  # the Ultralytics functions we wrapped, by attribute name
_STANDIN = "Conv"  # a built-in row whose width and repeats are scaled the way plugin rows must be
_STANDIN_UNSCALED = "HGStem"  # a built-in row whose output width Ultralytics takes as written (args [cm, c2])
# Multi-input rows: a built-in row that never reads its input widths (so `from` may be a list, and Ultralytics still
# saves every input) and takes its output width as written: ResNetLayer(c1, c2, s, is_first=True) outputs c2.
_STANDIN_MULTI = "ResNetLayer"
_STANDIN_SAME = "nn.Identity"  # a built-in row whose output width is its input width
_PROBE_SIZE = 128  # image size of the build-time pass that finds a multi-input row's input widths and strides


def register_module(
    module: type[nn.Module],
    name: str | None = None,
    *,
    stride_arg: int | None = None,
    multi_input: bool = False,
    same_width: bool = False,
) -> None:
    """Make ``module`` usable in Ultralytics model YAMLs under ``name`` (default: the class name).

    A row ``[from, n, name, [c_out, *args]]`` is scaled like a built-in ``Conv``/``C3`` row (``c_out`` by the width
    multiplier and ``max_channels``, ``n`` by the depth multiplier) and builds ``module(c1, c2, *args)``, followed for
    ``n > 1`` by ``n - 1`` copies ``module(c2, c2, *args)`` in an ``nn.Sequential``. If ``stride_arg`` is given,
    ``args[stride_arg]`` is set to 1 for those copies, so one row can hold a whole downsampling stage. The module
    should raise ``ValueError``/``TypeError`` on bad arguments; the parser reports it with the YAML row.

    ``multi_input=True``: the row is ``[[f1, f2, ...], 1, name, args]`` and the module sets its own output width. It
    must define a classmethod ``yaml_args(args, d) -> [c2, *ctor_args]`` (``d``: the model dict, with the scale
    letter in ``d["scale"]``) and is built as ``module(c1s, c2, *ctor_args, strides=strides)``, where ``c1s`` and
    ``strides`` (image size / map size) of its inputs come from a no-grad eval pass of the rows before it. It may
    return a list of maps; ``same_width`` rows such as ``Level`` pick one out.

    ``same_width=True``: the row is ``[from, 1, name, args]``, its output width is its input width, and it is built
    as ``module(*args)`` (as Ultralytics builds ``Index``).

    Examples:
        >>> class MyBlock(nn.Module):
        ...     def __init__(self, c1, c2, k=3): ...
        >>> register_module(MyBlock)  # YAML row: [-1, 2, MyBlock, [128, 3]]
    """
    if not (isinstance(module, type) and issubclass(module, nn.Module)):
        raise TypeError(f"register_module expects an nn.Module subclass, got {module!r}")
    if multi_input and same_width:
        raise ValueError("a module is either multi_input or same_width, not both")
    kind = "multi" if multi_input else "same" if same_width else "scaled"
    if kind == "multi" and not callable(getattr(module, "yaml_args", None)):
        raise TypeError(f"multi_input module {module.__name__} must define classmethod yaml_args(args, d)")
    _REGISTRY[name or module.__name__] = _Entry(module, stride_arg, kind)
    with contextlib.suppress(AttributeError):  # torch<2.4: ULTRALYTICS_SAFE_LOAD checkpoints then need the full load
        torch.serialization.add_safe_globals([module])


def registered_modules() -> dict[str, type[nn.Module]]:
    """Return the YAML names the parser hook knows, with their classes."""
    return {name: entry.module for name, entry in _REGISTRY.items()}


def model_yaml_dir() -> Path:
    """Return the folder of the shipped model YAMLs (inside the package when installed from a wheel)."""
    here = Path(__file__).resolve().parent
    installed = here / "models_yaml"
    return installed if installed.is_dir() else here.parent / "models_yaml"


def _check_ultralytics() -> None:
    import ultralytics
    from ultralytics.utils.checks import check_version

    if not check_version(ultralytics.__version__, SUPPORTED_ULTRALYTICS, hard=False):
        raise UnsupportedUltralyticsError(
            f"effdet-plugin supports ultralytics {SUPPORTED_ULTRALYTICS}, found {ultralytics.__version__}; "
            f"install a supported version, e.g. pip install 'ultralytics{SUPPORTED_ULTRALYTICS}'"
        )


def register(*, auto: bool = False) -> None:
    """Register the EfficientNet blocks with Ultralytics' model parser; safe to call any number of times.

    Raises ``UnsupportedUltralyticsError`` for an untested ultralytics version. Under auto-activation (``auto=True``)
    the check is deferred instead: built-in models keep working and only YAMLs that use plugin rows get the error.
    """

    from ultralytics.nn import tasks

    _register_builtins()
    try:
        _check_ultralytics()
        supported = True
    except UnsupportedUltralyticsError:
        if not auto:
            raise
        supported = False

    wrappers = {"yaml_model_load": _yaml_model_load}
    if supported:
        wrappers["parse_model"] = _parse_model
    for attr, wrapper in wrappers.items():
        current = getattr(tasks, attr)
        if current is wrapper:
            continue
        _ORIGINALS[attr] = current
        # Modules that imported the function by name hold their own reference; rebind those already loaded (the
        # rest bind the wrapper when they import). Importing them here could re-enter a half-done ultralytics import.
        for name in ("ultralytics.nn.tasks", "ultralytics.nn", "ultralytics.engine.model"):
            mod = sys.modules.get(name)
            if getattr(mod, attr, None) is current:
                setattr(mod, attr, wrapper)
    # issue 3: `yolo train ... pretrained=<torchvision .pth>` loads ImageNet weights into the backbone (see weights.py)
    from effdet_plugin.weights import install_pretrained_hook

    install_pretrained_hook()
    # issue 7: `yolo train ... progressive=True` config keys and trainer callbacks (see progressive.py)
    from effdet_plugin.progressive import install as install_progressive

    install_progressive()


def _register_builtins() -> None:
    """Register this package's own modules; idempotent.

    Skipped while ``effdet_plugin.blocks``/``bifpn`` is still being imported: importing one of them first imports
    ultralytics, which auto-activates the plugin before the module has defined its classes. The parser hooks call
    this again before they read a model dict.
    """
    from ultralytics.nn.modules import Index

    from effdet_plugin import bifpn  # may be partially initialized, see above

    try:
        table = (
            (blocks.Stem, "stem", {}),
            (blocks.FusedMBConv, None, {"stride_arg": 1}),
            (blocks.MBConv, None, {"stride_arg": 1}),
            (bifpn.BiFPN, None, {"multi_input": True}),
            (Index, "Level", {"same_width": True}),  # [i, 1, Level, [k]]: output k of a multi-output row
        )
    except AttributeError:
        return
    new = [(module, name, kw) for module, name, kw in table if (name or module.__name__) not in _REGISTRY]
    for module, name, kw in new:
        register_module(module, name, **kw)
    if new:  # checkpoints also pickle the blocks' inner layers; ULTRALYTICS_SAFE_LOAD loads need them allow-listed
        inner = [v for mod in (blocks, bifpn) for v in vars(mod).values()
                 if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == mod.__name__]
        with contextlib.suppress(AttributeError):
            torch.serialization.add_safe_globals(inner)


# --------------------------------------------------------------------------------------------------------- YAML names
def _yaml_model_load(path):
    """Resolve shipped YAMLs by bare name, then load exactly as Ultralytics does."""
    original = _ORIGINALS["yaml_model_load"]
    p = Path(path)
    if not p.exists() and p.parent == Path("."):
        shipped = model_yaml_dir()
        unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", p.stem) + p.suffix  # Ultralytics' own scale-letter rule
        if (shipped / p.name).is_file() or (shipped / unified).is_file():
            d = original(shipped / p.name)  # the original falls back to the unified file and reads the scale letter
            d["yaml_file"] = str(path)
            return d
    d = original(path)
    if "parse_model" not in _ORIGINALS and _plugin_rows(d):
        _check_ultralytics()  # auto-activated on an unsupported version: fail clearly instead of KeyError('MBConv')
    return d


# ------------------------------------------------------------------------------------------------------- parse_model
def _plugin_rows(d: dict) -> dict[int, list]:
    _register_builtins()
    rows = list(d.get("backbone") or []) + list(d.get("head") or [])
    return {
        i: row
        for i, row in enumerate(rows)
        if isinstance(row, (list, tuple)) and len(row) == 4 and isinstance(row[2], str) and row[2] in _REGISTRY
    }


def model_source(d: dict) -> str:
    """Name a model dict in messages: its YAML file, or 'model YAML' for a dict built in code."""
    return str(d.get("yaml_file") or "model YAML")


def _row_error(d: dict, i: int, row, problem: str) -> ModelRowError:
    f, n, m, args = row
    return ModelRowError(f"{model_source(d)}: row {i} [{f}, {n}, {m}, {args}]: {problem}")


def _key_error(d: dict, key: str, problem: str) -> ModelRowError:
    return ModelRowError(f"{model_source(d)}: top-level '{key}': {problem}")


def _is_index(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_row(d: dict, i: int, row) -> None:
    f, n, m, args = row
    kind = _REGISTRY[m].kind
    if kind != "scaled":
        if kind == "multi" and not (isinstance(f, (list, tuple)) and f and all(_is_index(j) for j in f)):
            raise _row_error(d, i, row, f"'from' must be a list of layer indices for {m}, got {f!r}")
        if kind == "same" and not _is_index(f):
            raise _row_error(d, i, row, f"'from' must be a single layer index for {m}, got {f!r}")
        if any(not -i <= j < i for j in ([f] if _is_index(f) else f)):
            raise _row_error(d, i, row, f"'from' must refer to earlier rows (-{i} to {i - 1}), got {f!r}")
        if n != 1:
            raise _row_error(d, i, row, f"repeats must be 1 for {m}, got {n!r}")
        if not isinstance(args, (list, tuple)):
            raise _row_error(d, i, row, f"args must be a list, got {args!r}")
        return
    if isinstance(f, bool) or not isinstance(f, int):
        raise _row_error(d, i, row, f"'from' must be a single layer index for {m}, got {f!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise _row_error(d, i, row, f"repeats must be a positive integer, got {n!r}")
    if not isinstance(args, (list, tuple)) or not args:
        raise _row_error(d, i, row, f"args must be a list starting with c_out, got {args!r}")
    c = args[0]
    if isinstance(c, bool) or not isinstance(c, int) or c < 1:
        raise _row_error(d, i, row, f"c_out must be a positive integer, got {c!r}")


@contextlib.contextmanager
def _held_log(verbose: bool) -> Iterator[list[logging.LogRecord]]:
    """Hold back Ultralytics' model-table lines so plugin rows can be shown with their real module and arguments."""
    from ultralytics.utils import LOGGER

    held: list[logging.LogRecord] = []
    if not verbose:
        yield held
        return

    def hold(record: logging.LogRecord) -> bool:
        held.append(record)
        return False

    LOGGER.addFilter(hold)
    try:
        yield held
    finally:
        LOGGER.removeFilter(hold)


def _build(entry: _Entry, c1: int, c2: int, n: int, args: list) -> nn.Module:
    first = entry.module(c1, c2, *args)
    if n == 1:
        return first
    rest = list(args)
    if entry.stride_arg is not None and entry.stride_arg < len(rest):
        rest[entry.stride_arg] = 1
    return nn.Sequential(first, *(entry.module(c2, c2, *rest) for _ in range(n - 1)))


def _probe(d: dict, i: int, row, model: nn.Sequential, ch: int) -> tuple[list[int], list[int]]:
    """Return the widths and strides of row ``i``'s inputs from a no-grad eval pass of the rows before it."""
    f = [j % i for j in row[0]]
    y, x = [], torch.zeros(1, ch, _PROBE_SIZE, _PROBE_SIZE)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for m in model[: max(f) + 1]:  # routing as Ultralytics' _predict_once
                if m.f != -1:
                    x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
                x = m(x)
                y.append(x)
    except Exception as e:
        raise _row_error(d, i, row, f"rows 0-{max(f)} failed on a {_PROBE_SIZE}px input: {type(e).__name__}: {e}") from e
    finally:
        model.train(was)
    if any(not isinstance(y[j], torch.Tensor) or y[j].ndim != 4 for j in f):
        raise _row_error(d, i, row, "every input must be one feature map (pick list outputs with a Level row)")
    return [y[j].shape[1] for j in f], [round(_PROBE_SIZE / y[j].shape[-1]) for j in f]


def _parse_model(d, ch, verbose=True):
    """Parse a model dict with Ultralytics' own parser, building plugin rows as described in the module docstring."""
    original = _ORIGINALS["parse_model"]
    ours = _plugin_rows(d)
    if not ours:
        return original(d, ch, verbose)
    for i, row in ours.items():
        _check_row(d, i, row)

    n_backbone = len(d.get("backbone") or [])
    scale_backbone = d.get("scale_backbone", True)
    if not isinstance(scale_backbone, bool):
        raise ModelRowError(f"{model_source(d)}: top-level 'scale_backbone' must be true or false")
    kinds = {i: _REGISTRY[row[2]].kind for i, row in ours.items()}
    unscaled = {i for i in ours if i < n_backbone and not scale_backbone and kinds[i] == "scaled"}
    resolved = {}  # multi-input rows: [c2, *ctor_args], resolved before parsing so the stand-in gets the width
    for i, row in ours.items():
        if kinds[i] == "multi":
            try:
                resolved[i] = list(_REGISTRY[row[2]].module.yaml_args(list(row[3]), d))
            except (TypeError, ValueError) as e:
                raise _row_error(d, i, row, str(e)) from None
    standin = dict(d)
    rows = list(d.get("backbone") or []) + list(d.get("head") or [])
    for i, (f, n, _, args) in ours.items():
        if kinds[i] == "multi":
            rows[i] = [f, 1, _STANDIN_MULTI, [1, resolved[i][0], 1, True, 1]]
        elif kinds[i] == "same":
            rows[i] = [f, 1, _STANDIN_SAME, []]
        elif i in unscaled:
            rows[i] = [f, 1, _STANDIN_UNSCALED, [args[0], args[0]]]
        else:
            rows[i] = [f, n, _STANDIN, [args[0], 1, 1]]
    standin["backbone"], standin["head"] = rows[:n_backbone], rows[n_backbone:]

    with _held_log(verbose) as held:
        model, save = original(standin, ch, verbose)

    lines = {}
    for i, row in ours.items():
        f, _, m, args = row
        placeholder = model[i]
        entry = _REGISTRY[m]
        try:
            if kinds[i] == "multi":
                c1, strides = _probe(d, i, row, model, ch)
                c2, *rest = resolved[i]
                n, shown = 1, [c1, c2, *rest]
                layer = entry.module(c1, c2, *rest, strides=strides)
            elif kinds[i] == "same":
                n, shown = 1, list(args)
                layer = entry.module(*args)
            else:
                if i in unscaled:
                    c1, c2, n = placeholder.stem1.conv.in_channels, args[0], row[1]
                else:
                    convs = list(placeholder) if isinstance(placeholder, nn.Sequential) else [placeholder]
                    c1, c2, n = convs[0].conv.in_channels, convs[0].conv.out_channels, len(convs)
                shown = [c1, c2, *args[1:]]
                layer = _build(entry, c1, c2, n, list(args[1:]))
        except ModelRowError:
            raise
        except (TypeError, ValueError) as e:
            raise _row_error(d, i, row, str(e)) from None
        if "bn_eps" in d:
            try:
                blocks.set_bn_eps(layer, d["bn_eps"])
            except ValueError as e:
                raise _key_error(d, "bn_eps", str(e)) from None
        layer.np = sum(x.numel() for x in layer.parameters())
        layer.i, layer.f = i, f
        layer.type = f"{entry.module.__module__}.{entry.module.__qualname__}"
        model[i] = layer
        lines[f"{i:>3}{f!s:>20}"] = f"{i:>3}{f!s:>20}{n:>3}{layer.np:10.0f}  {layer.type:<45}{shown!s:<30}"

    rate = d.get("drop_path", blocks.DEFAULT_DROP_PATH)
    try:
        blocks.set_drop_path(model, rate)
    except ValueError as e:
        raise _key_error(d, "drop_path", str(e)) from None

    if held:
        from ultralytics.utils import LOGGER

        for record in held:
            msg = record.getMessage()
            key = msg[:23]
            if key in lines:
                record.msg, record.args = lines[key], ()
            LOGGER.handle(record)
    return model, save

