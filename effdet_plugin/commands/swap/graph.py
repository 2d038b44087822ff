"""The row graph of a model dict, as swap reads and rewrites it: which head a source ends in, which backbone rows the
rows after them read, at which strides, and how ``from`` indices move when the backbone changes length.

Host-free: every stride comes from a forward pass the source's own host made (``formats.probe_strides``), and the head
modules a host builds are given by its format.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
from dataclasses import dataclass

from effdet_plugin.rows import is_index, model_source

STRIDES = (8, 16, 32)  # the P3/P4/P5 levels swap re-points
CLASSIFY = "classify"  # the one task whose head reads the backbone alone, not three levels
# A backbone's last stage that belongs to the neck/head family rather than to the feature extractor: the spatial
# pyramid pooling and attention blocks YOLOv5u/v8/v9/v10/11/26 put after their stride-32 stage. A source ending in
# them keeps them; only the rows before them are replaced. The attention blocks keep their input width, which a
# pooling row sets in every source that has both.
POOLING_MODULES = frozenset({"SPP", "SPPF", "SPPELAN"})
TAIL_MODULES = POOLING_MODULES | {"C2PSA", "PSA"}
_LEVELS = {4: " (a P2 head)", 64: " (a P6 head)", 128: " (a P7 head)"}


class SwapError(ValueError):
    """The source cannot have its backbone swapped, or the output cannot be written (one line naming the file)."""


@dataclass(frozen=True)
class Head:
    """The source's last row: its module and the task that module serves."""

    module: str
    task: str

    @property
    def multi_level(self) -> bool:
        """Whether it reads P3/P4/P5 through a neck (every task but classification)."""
        return self.task != CLASSIFY


def check_source(d: dict, heads: Mapping[str, str], supported: str) -> Head:
    """The head of ``d``, after checking its rows are ``[from, repeats, module, args]`` and it ends in one of ``heads``
    (module -> task) reading three levels, or the backbone alone for a classifier; ``supported`` ends each refusal."""
    name = model_source(d)
    backbone, head = d.get("backbone"), d.get("head")
    if not isinstance(backbone, list) or not isinstance(head, list) or not backbone or not head:
        raise SwapError(f"{name}: needs non-empty 'backbone' and 'head' row lists; {supported}")
    for i, row in enumerate(backbone + head):
        f = row[0] if isinstance(row, (list, tuple)) and len(row) == 4 else None
        if not (is_index(f) or (isinstance(f, list) and f and all(is_index(j) for j in f))):
            raise SwapError(f"{name}: row {i} {row!r} is not [from, repeats, module, args] with integer 'from'")
    f, module = head[-1][0], head[-1][2]
    if module not in heads:
        raise SwapError(f"{name}: the head ends in {module!r}; {supported}")
    found = Head(module, heads[module])
    if found.multi_level and (is_index(f) or len(f) != len(STRIDES)):
        raise SwapError(f"{name}: {module} reads {f!r}, not three levels P3/P4/P5; {supported}")
    if not found.multi_level and not is_index(f):
        raise SwapError(f"{name}: {module} reads {f!r}, not one feature map; {supported}")
    return found


def tail_length(d: dict, strides: list[int | None]) -> int:
    """How many backbone rows at the end of ``d`` are the host's own last stage (``TAIL_MODULES`` at stride 32)."""
    n = 0
    for row, s in zip(reversed(d["backbone"]), reversed(strides)):
        if row[2] not in TAIL_MODULES or s != 32:
            break
        n += 1
    return n if n < len(d["backbone"]) else 0


def refs_into(rows: list, first: int, n: int) -> list[int]:
    """The rows below ``n`` that ``rows`` (numbered from ``first``) read, as absolute indices, in order."""
    found = set()
    for k, row in enumerate(rows):
        for j in [row[0]] if is_index(row[0]) else row[0]:
            a = first + k + j if j < 0 else j
            if a < n:
                found.add(a)
    return sorted(found)


def taps(d: dict, strides: list[int | None], rows: list[int], supported: str) -> dict[int, int]:
    """Map each backbone row in ``rows`` to its stride, refusing any not at 8/16/32 (one line naming the file)."""
    out = {}
    for a in rows:
        s = strides[a]
        if s not in STRIDES:
            at = f"stride {s}" if s else "no single feature map"
            raise SwapError(
                f"{model_source(d)}: the head reads backbone layer {a} at {at}{_LEVELS.get(s, '')}; {supported}"
            )
        out[a] = s
    return out


def last_at(strides: list[int], stride: int) -> int:
    """The last row at ``stride`` (the deepest features of that level)."""
    return max(i for i, s in enumerate(strides) if s == stride)


def reindex(rows: list, n_old: int, n_new: int, tap_of: Mapping[int, int]) -> list:
    """Re-point ``rows``, numbered from ``n_old``, to start at ``n_new``: a reference below ``n_old`` goes where
    ``tap_of`` (old row -> new row) says, one at or above it moves by ``n_new - n_old``. A relative reference stays
    relative where it still points at the same row."""

    def one(j: int, i_old: int, i_new: int) -> int:
        a = i_old + j if j < 0 else j
        new = a - n_old + n_new if a >= n_old else tap_of[a]
        return j if j < 0 and new - i_new == j else new

    out = []
    for k, (f, n, m, args) in enumerate(rows):
        i_old, i_new = n_old + k, n_new + k
        f = one(f, i_old, i_new) if is_index(f) else [one(j, i_old, i_new) for j in f]
        out.append([f, n, m, deepcopy(args)])
    return out
