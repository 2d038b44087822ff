"""The one way the plugin touches a host: rebind a module-level name to a wrapper, and remember how to undo it.

A host function such as ``ultralytics.nn.tasks.parse_model`` is looked up through its module at call time, and
modules that imported it by name hold their own reference; ``rebind`` replaces the name in the owner and in each of
those modules that still holds the original. It is idempotent (the same seam again is a no-op), refuses with one
message when the name is missing or its signature is not the one the adapter was written for, and ``undo`` puts every
original back (tests use it).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class HostChangedError(RuntimeError):
    """A host name the plugin wraps is missing or has another signature than the adapter expects."""


@dataclass
class Seam:
    """One rebound name: where, the original, the wrapper, and every module that now holds the wrapper."""

    owner: Any  # a module, or a class (a method seam)
    name: str
    original: Any
    wrapper: Any
    factory: Callable[[Any], Any]  # what made the wrapper: another factory for the same name replaces it
    holders: list[Any] = field(default_factory=list)


_SEAMS: dict[tuple[int, str], Seam] = {}


def rebind(
    owner: Any,
    name: str,
    make_wrapper: Callable[[Any], Any],
    *,
    params: tuple[str, ...] = (),
    also: tuple[str, ...] = (),
) -> Seam:
    """Replace ``owner.name`` by ``make_wrapper(original)``, also in the loaded modules ``also`` that hold it.

    The same ``make_wrapper`` again is a no-op; another one for the same name (the "plugin is off" seam, then
    ``register()``) first puts the original back. ``params``: leading parameter names the original must have (else
    ``HostChangedError``).
    """
    key = (id(owner), name)
    seam = _SEAMS.get(key)
    if seam is not None and getattr(owner, name, None) is seam.wrapper:
        if seam.factory is make_wrapper:
            _spread(seam, also)
            return seam
        _restore(key, seam)
    host = f"{owner.__name__}.{name}"
    if not hasattr(owner, name):
        raise HostChangedError(f"effdet-plugin cannot hook {host}: the name is missing in this version")
    original = getattr(owner, name)
    if params:
        try:
            have = tuple(inspect.signature(original).parameters)[: len(params)]
        except (TypeError, ValueError):
            have = ()
        if have != params:
            raise HostChangedError(
                f"effdet-plugin cannot hook {host}: expected parameters ({', '.join(params)}), "
                f"found ({', '.join(have)})"
            )
    seam = Seam(owner, name, original, make_wrapper(original), make_wrapper)
    setattr(owner, name, seam.wrapper)
    seam.holders.append(owner)
    _SEAMS[key] = seam
    _spread(seam, also)
    return seam


def _spread(seam: Seam, also: tuple[str, ...]) -> None:
    # Only modules already loaded: importing one here could re-enter a half-done host import. Later imports bind the
    # wrapper themselves, since they read it from the owner.
    for modname in also:
        mod = sys.modules.get(modname)
        if mod is not None and mod not in seam.holders and getattr(mod, seam.name, None) is seam.original:
            setattr(mod, seam.name, seam.wrapper)
            seam.holders.append(mod)


def original(owner: Any, name: str) -> Any:
    """The host's own object behind a rebound name (the name itself where nothing was rebound)."""
    seam = _SEAMS.get((id(owner), name))
    return seam.original if seam else getattr(owner, name)


def is_rebound(owner: Any, name: str) -> bool:
    """Whether ``owner.name`` currently holds the plugin's wrapper."""
    seam = _SEAMS.get((id(owner), name))
    return seam is not None and getattr(owner, name, None) is seam.wrapper


def undo(owner: Any = None) -> int:
    """Put back every original (only those of ``owner`` if given); return how many seams were undone."""
    done = 0
    for key, seam in list(_SEAMS.items()):
        if owner is None or seam.owner is owner:
            _restore(key, seam)
            done += 1
    return done


def _restore(key: tuple[int, str], seam: Seam) -> None:
    for holder in seam.holders:
        if getattr(holder, seam.name, None) is seam.wrapper:
            setattr(holder, seam.name, seam.original)
    del _SEAMS[key]
