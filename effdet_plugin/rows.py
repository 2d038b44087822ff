"""Plugin rows: the registry of YAML module names, one small class per row kind, and the validation pass.

A model YAML row is ``[from, repeats, module, args]``. Three kinds of plugin row exist, each a class that owns its
checks and its build:

- ``ScaledRow``: ``c_in -> c_out`` blocks (stem, FusedMBConv, MBConv, users' blocks); ``c_out`` and ``repeats`` scale
  with the model's width and depth multipliers by the host's own rule.
- ``MultiInputRow``: ``from`` is a list of layers and the module sets its own width (BiFPN).
- ``SameWidthRow``: output width is input width (``Level``: one output of a multi-output row).

Nothing here knows a host: ``effdet_plugin.assemble`` builds the rows with a host's rules, and
``validate_model`` checks a whole model dict once, before anything is built.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn


class ModelRowError(ValueError):
    """A model YAML that uses plugin rows is malformed: the message names the file, the row or key, and the value."""


def model_source(d: dict) -> str:
    """Name a model dict in messages: its YAML file, or 'model YAML' for a dict built in code."""
    return str(d.get("yaml_file") or "model YAML")


def is_index(x) -> bool:
    """A YAML integer that is not a bool."""
    return isinstance(x, int) and not isinstance(x, bool)


def row_error(d: dict, i: int, row, problem: str) -> ModelRowError:
    """One message naming the file, the row index and the row as written."""
    shown = f"[{', '.join(map(str, row))}]" if isinstance(row, (list, tuple)) else repr(row)
    shown = shown.replace("'", "")
    return ModelRowError(f"{model_source(d)}: row {i} {shown}: {problem}")


def key_error(d: dict, key: str, problem: str) -> ModelRowError:
    """One message naming the file and a top-level key."""
    return ModelRowError(f"{model_source(d)}: top-level '{key}': {problem}")


# ------------------------------------------------------------------------------------------------------- row kinds
@dataclass(frozen=True)
class RowKind:
    """What the parser needs to know about one registered YAML module name."""

    name: str
    module: type[nn.Module]
    host_kwargs: frozenset[str] = field(default=frozenset(), compare=False)  # of "conv", "act": what __init__ takes
    list_from: ClassVar[bool] = False  # `from` is a list of layers (else one layer)
    one_repeat: ClassVar[bool] = False  # repeats must be 1

    def check(self, d: dict, i: int, row) -> None:
        """Raise ``ModelRowError`` if ``row`` (already of shape ``[from, n, module, args]``) cannot build."""
        f, n, m, args = row
        if not isinstance(args, (list, tuple)):
            raise row_error(d, i, row, f"args must be a list, got {args!r}")
        if self.list_from and not (isinstance(f, (list, tuple)) and f and all(is_index(j) for j in f)):
            raise row_error(d, i, row, f"'from' must be a list of layer indices for {m}, got {f!r}")
        if not self.list_from and not is_index(f):
            raise row_error(d, i, row, f"'from' must be a single layer index for {m}, got {f!r}")
        if self.one_repeat and n != 1:
            raise row_error(d, i, row, f"repeats must be 1 for {m}, got {n!r}")
        if not is_index(n) or n < 1:
            raise row_error(d, i, row, f"repeats must be a positive integer, got {n!r}")

    def host_args(self, conv: type[nn.Module], act: nn.Module | None) -> dict[str, Any]:
        """The keyword arguments this module takes from the host: its ``Conv`` class and the model's activation."""
        given = {"conv": conv, "act": act}
        return {k: v for k, v in given.items() if k in self.host_kwargs and v is not None}

    @property
    def type_name(self) -> str:
        """The registered class's qualified name: the module's ``type`` and its model-table name, as a host's own."""
        return f"{self.module.__module__}.{self.module.__qualname__}"


@dataclass(frozen=True)
class ScaledRow(RowKind):
    """``[from, n, name, [c_out, *args]]``: ``module(c1, c2, *args)``, then ``n - 1`` x ``module(c2, c2, ...)``."""

    stride_arg: int | None = None  # index into args after c_out; repeats get stride 1 there

    def check(self, d: dict, i: int, row) -> None:
        super().check(d, i, row)
        args = row[3]
        if not args or not is_index(args[0]) or args[0] < 1:
            raise row_error(d, i, row, f"args must start with c_out, a positive integer; got {list(args)!r}")

    def build(self, c1: int, c2: int, n: int, args: list, **host) -> nn.Module:
        """The block (or ``nn.Sequential`` of ``n`` blocks) from ``c1`` to ``c2`` channels."""
        first = self.module(c1, c2, *args, **host)
        if n == 1:
            return first
        rest = list(args)
        if self.stride_arg is not None and self.stride_arg < len(rest):
            rest[self.stride_arg] = 1
        return nn.Sequential(first, *(self.module(c2, c2, *rest, **host) for _ in range(n - 1)))


@dataclass(frozen=True)
class MultiInputRow(RowKind):
    """``[[f1, f2, ...], 1, name, args]``: the module resolves its args (``yaml_args``) and its own output width."""

    list_from: ClassVar[bool] = True
    one_repeat: ClassVar[bool] = True

    @property
    def outputs(self) -> int | None:
        """How many maps the module returns (a list), if it says so (``outputs`` class attribute)."""
        return getattr(self.module, "outputs", None)

    def check(self, d: dict, i: int, row) -> None:
        super().check(d, i, row)
        self.resolve(d, i, row)

    def resolve(self, d: dict, i: int, row) -> list:
        """``[c2, *ctor_args]`` from the row's args and the model dict (module's ``yaml_args``)."""
        try:
            return list(self.module.yaml_args(list(row[3]), d))
        except (TypeError, ValueError) as e:
            raise row_error(d, i, row, str(e)) from None

    def build(self, c1: list[int], c2: int, args: list, strides: list[int], **host) -> nn.Module:
        """The module on inputs of widths ``c1`` at ``strides``."""
        return self.module(c1, c2, *args, strides=strides, **host)


@dataclass(frozen=True)
class SameWidthRow(RowKind):
    """``[from, 1, name, args]`` builds ``module(*args)``; output width = input width (as Ultralytics' ``Index``)."""

    one_repeat: ClassVar[bool] = True

    def build(self, args: list, **host) -> nn.Module:
        """The module."""
        return self.module(*args, **host)


# -------------------------------------------------------------------------------------------------------- registry
_REGISTRY: dict[str, RowKind] = {}
_BUILTINS_LOADED = False


def register_module(
    module: type[nn.Module],
    name: str | None = None,
    *,
    stride_arg: int | None = None,
    multi_input: bool = False,
    same_width: bool = False,
) -> None:
    """Make ``module`` usable in model YAMLs (every host) under ``name`` (default: the class name).

    A row ``[from, n, name, [c_out, *args]]`` is scaled like a built-in ``Conv``/``C3`` row (``c_out`` by the width
    multiplier, ``n`` by the depth multiplier, each host by its own rule) and builds ``module(c1, c2, *args)``,
    followed for ``n > 1`` by ``n - 1`` copies ``module(c2, c2, *args)`` in an ``nn.Sequential``. If ``stride_arg``
    is given, ``args[stride_arg]`` is set to 1 for those copies, so one row can hold a whole downsampling stage. The
    module should raise ``ValueError``/``TypeError`` on bad arguments; the parser reports it with the YAML row.
    A module whose ``__init__`` takes keyword ``conv`` and/or ``act`` gets the host's ``Conv`` class and the model's
    ``activation:``.

    ``multi_input=True``: the row is ``[[f1, f2, ...], 1, name, args]`` and the module sets its own output width. It
    must define a classmethod ``yaml_args(args, d) -> [c2, *ctor_args]`` (``d``: the model dict, with the scale
    letter in ``d["scale"]``) and is built as ``module(c1s, c2, *ctor_args, strides=strides)``. It may return a list
    of maps (class attribute ``outputs``: how many); ``same_width`` rows such as ``Level`` pick one out.

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
    name = name or module.__name__
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"register_module: the YAML name must be an identifier, got {name!r}")
    params = _init_params(module)
    host = frozenset(k for k in ("conv", "act") if k in params)
    if multi_input:
        if not callable(getattr(module, "yaml_args", None)):
            raise TypeError(f"multi_input module {module.__name__} must define classmethod yaml_args(args, d)")
        kind: RowKind = MultiInputRow(name, module, host)
    elif same_width:
        kind = SameWidthRow(name, module, host)
    else:
        if stride_arg is not None:
            _check_stride_arg(module, params, stride_arg)
        kind = ScaledRow(name, module, host, stride_arg)
    _REGISTRY[name] = kind
    with contextlib.suppress(AttributeError):  # torch<2.4: ULTRALYTICS_SAFE_LOAD checkpoints then need the full load
        torch.serialization.add_safe_globals([module])


def unregister_module(name: str) -> None:
    """Forget a YAML name registered with ``register_module`` (tests and notebooks that re-register)."""
    _REGISTRY.pop(name, None)


def _init_params(module: type[nn.Module]) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(module.__init__).parameters)
    except (TypeError, ValueError):
        return {}


def _check_stride_arg(module: type[nn.Module], params: dict[str, inspect.Parameter], stride_arg) -> None:
    """``stride_arg`` must name a positional parameter after ``(self, c1, c2)``."""
    if not is_index(stride_arg) or stride_arg < 0:
        raise ValueError(
            f"register_module({module.__name__}): stride_arg must be a non-negative integer, got {stride_arg!r}"
        )
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in params.values() if p.kind in kinds][3:]  # after self, c1, c2
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params.values()) or not params:
        return  # *args: any index may be valid
    if stride_arg >= len(positional):
        names = ", ".join(p.name for p in positional) or "none"
        raise ValueError(
            f"register_module({module.__name__}): stride_arg={stride_arg} is past its arguments after c1, c2 "
            f"({names}); it indexes the row's args after c_out"
        )


def _load_builtins() -> None:
    """Register this package's own modules once (the blocks, BiFPN, and Level = Ultralytics' ``Index``)."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    from effdet_plugin import bifpn, blocks

    register_module(blocks.Stem, "stem")
    register_module(blocks.FusedMBConv, stride_arg=1)
    register_module(blocks.MBConv, stride_arg=1)
    register_module(bifpn.BiFPN, multi_input=True)
    register_module(bifpn.Level, "Level", same_width=True)
    # checkpoints also pickle the blocks' inner layers; ULTRALYTICS_SAFE_LOAD loads need them allow-listed
    inner = [
        v
        for mod in (blocks, bifpn)
        for v in vars(mod).values()
        if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == mod.__name__
    ]
    with contextlib.suppress(AttributeError):
        torch.serialization.add_safe_globals(inner)


def kinds() -> dict[str, RowKind]:
    """Every registered YAML name and its row kind (the package's own modules first)."""
    _load_builtins()
    return _REGISTRY


def registered_modules() -> dict[str, type[nn.Module]]:
    """Return the YAML names the parser hook knows, with their classes."""
    return {name: kind.module for name, kind in kinds().items()}


def plugin_rows(d: dict) -> dict[int, RowKind]:
    """Row index -> kind for every row of ``d`` whose module is a registered plugin name."""
    reg = kinds()
    rows = model_rows(d)
    return {
        i: reg[r[2]]
        for i, r in enumerate(rows)
        if isinstance(r, (list, tuple)) and len(r) == 4 and isinstance(r[2], str) and r[2] in reg
    }


def model_rows(d: dict) -> list:
    """The backbone rows then the head rows of ``d`` (a section that is not a list counts as empty)."""
    backbone, head = d.get("backbone"), d.get("head")
    return (list(backbone) if isinstance(backbone, list) else []) + (list(head) if isinstance(head, list) else [])


def uses_plugin(d: dict) -> bool:
    """Whether any row of ``d`` names a plugin module."""
    return bool(plugin_rows(d))


# ------------------------------------------------------------------------------------------------------ validation
@dataclass(frozen=True)
class HostNames:
    """What a host's parser accepts, for the validation pass: its module names and its output heads."""

    known: Callable[[str], bool]  # is this a module name the host's parser resolves?
    candidates: Iterable[str]  # names offered in a did-you-mean
    heads: frozenset[str]  # modules that make a row a model's output head (Detect, Segment, ..., Classify)


def check_sections(d: dict) -> None:
    """``backbone`` and ``head``: non-empty lists of 4-field rows (what a host indexes before it parses anything)."""
    for key in ("backbone", "head"):
        if not isinstance(d.get(key), list) or not d[key]:
            raise key_error(
                d, key, f"must be a non-empty list of [from, repeats, module, args] rows, got {d.get(key)!r}"
            )
    for i, row in enumerate(model_rows(d)):
        if not isinstance(row, (list, tuple)) or len(row) != 4:
            raise row_error(d, i, row, f"a row has 4 fields [from, repeats, module, args], got {row!r}")


def validate_model(d: dict, host: HostNames) -> None:
    """Check the rows of a model dict that has plugin rows, before anything is built; raise one ``ModelRowError``.

    Checks the sections (``check_sections``); every row's ``from`` range, repeats and module name (with a
    did-you-mean); each plugin row's own rules; an output head; and that ``Level`` rows read a multi-output row,
    with an index in range, each output used once. Top-level keys are ``effdet_plugin.keys``'.
    """
    check_sections(d)
    reg = kinds()
    rows = model_rows(d)
    multi: dict[int, MultiInputRow] = {}
    picked: dict[tuple[int, int], int] = {}
    for i, row in enumerate(rows):
        f, n, m, args = row
        refs = [f] if is_index(f) else f if isinstance(f, (list, tuple)) and f else None
        if refs is None or not all(is_index(j) for j in refs):
            raise row_error(d, i, row, f"'from' must be a layer index or a list of them, got {f!r}")
        bad = [j for j in refs if not (-i <= j < i if i else j == -1)]
        if bad:
            allowed = "-1 (the input)" if i == 0 else f"-{i} to {i - 1} (earlier rows)"
            raise row_error(d, i, row, f"'from' {bad[0]} is out of range; row {i} may read {allowed}")
        if not is_index(n) or n < 1:
            raise row_error(d, i, row, f"repeats must be a positive integer, got {n!r}")
        if not isinstance(m, str) or not (m in reg or host.known(m)):
            names = [*reg, *host.candidates]
            close = difflib.get_close_matches(str(m), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise row_error(d, i, row, f"unknown module {m!r}{hint}")
        if not isinstance(args, (list, tuple)):
            raise row_error(d, i, row, f"args must be a list, got {args!r}")
        kind = reg.get(m)
        if kind is None:
            continue
        kind.check(d, i, row)
        if isinstance(kind, MultiInputRow) and kind.outputs:
            multi[i] = kind
        if isinstance(kind, SameWidthRow) and kind.module is _level_class():
            _check_level(d, i, row, multi, picked)
    heads = [i for i, r in enumerate(rows) if r[2] in host.heads]
    if not heads:
        raise key_error(d, "head", f"has no output head row ({', '.join(sorted(host.heads))})")


def _level_class():
    from effdet_plugin.bifpn import Level

    return Level


def _check_level(d: dict, i: int, row, multi: dict[int, MultiInputRow], picked: dict[tuple[int, int], int]) -> None:
    f, _, m, args = row
    src = i + f if f < 0 else f
    if src not in multi:
        raise row_error(d, i, row, f"{m} must read a multi-output row (such as BiFPN); row {src} is not one")
    count = multi[src].outputs
    if len(args) != 1 or not is_index(args[0]) or not 0 <= args[0] < count:
        raise row_error(
            d, i, row, f"{m} takes [k], one output index of row {src}, 0 to {count - 1}; got {list(args)!r}"
        )
    k = args[0]
    if (src, k) in picked:
        raise row_error(d, i, row, f"output {k} of row {src} is already picked by row {picked[src, k]}")
    picked[src, k] = i
