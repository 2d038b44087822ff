"""What swap grafts in: the EfficientNet backbone ``--backbone NAME`` names, and the BiFPN neck of ``--neck bifpn``.

Both are read from the shipped YAMLs, which ``effdet_plugin.stages`` renders from its stage tables: backbone row 0 is
the stem, row ``i`` stage ``i``, and an SPPF row follows the last stage. The tables give every row's stride, so no
model is built here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from effdet_plugin.commands.swap.graph import STRIDES, SwapError, last_at, refs_into, reindex
from effdet_plugin.paths import model_yaml_dir
from effdet_plugin.scale_rows import KEY as SCALE_ROWS
from effdet_plugin.stages import MODEL_YAMLS, backbone_yamls

# --backbone -> the shipped YAML whose backbone rows are grafted in: effv2 (the recommended table, with its own n and s
# rows), its -plain/-wide/-lite variants, and the exact torchvision backbones
BACKBONE_FILES: dict[str, str] = backbone_yamls()
# --neck -> suffix of the shipped YAMLs whose head rows (minus the last) are the neck: any one of them serves, as its
# rows are re-pointed by stride, but the one made for the chosen backbone is preferred
NECKS: dict[str, str | None] = {"keep": None, "bifpn": "_bifpn"}
PLUGIN_KEYS = (  # act on the backbone rows
    "drop_path", "bn_eps", "scale_backbone", "backbone_activation", "backbone_scales", SCALE_ROWS,
)  # fmt: skip
# A backbone designed for one activation (the Lite family's ReLU6) brings it; the host has one activation for every
# Conv, so it replaces the source's. Backbones without one keep the source's.
ACTIVATION = "activation"
POOL = "SPPF"
_STRIDE_OF_STEM = 2


@dataclass(frozen=True)
class Graft:
    """The rows ``--backbone NAME`` puts in place of a source's backbone."""

    name: str
    stages: list  # the stem and stage rows
    pool: list  # the SPPF row the shipped YAML puts after them, for a source without a pooling row of its own
    keys: dict  # its top-level plugin keys, and its activation if it brings one
    strides: list[int]  # output stride of each row of ``stages``
    scales: dict | None = None  # its file's ``scales:`` (the multipliers its rows were chosen for), if scaled

    def backbone_scales(self, source_scales) -> dict | None:
        """The ``backbone_scales:`` that builds this backbone at each of the source's letters as its own file does,
        where the source's ``scales:`` would size it otherwise (YOLO26's depth 0.5 at n would deepen it by half)."""
        if not self.scales or not isinstance(source_scales, dict) or not source_scales:
            return None
        own = {k: self.scales[k] for k in source_scales if k in self.scales}
        differs = any(own.get(k) != v for k, v in source_scales.items())
        return own if differs and len(own) == len(source_scales) else None

    def rows(self, pool: bool) -> list:
        """The grafted rows, with or without the SPPF row."""
        return [*self.stages, self.pool] if pool else list(self.stages)

    def taps(self, pool: bool) -> dict[int, int]:
        """stride -> the grafted row at that level (P5: the last row)."""
        strides = self.strides + [32] if pool else self.strides
        return {s: last_at(strides, s) for s in STRIDES}


@dataclass(frozen=True)
class Neck:
    """A replacement neck on the new backbone."""

    rows: list  # its rows, numbered after the new backbone
    keys: dict  # its own top-level keys (e.g. bifpn_phi)
    head_from: list[int]  # the rows the source's head row reads instead


def _read(path: Path) -> dict:
    if not path.is_file():
        raise SwapError(f"{path} is not shipped with this installation")
    # shipped files only, read many times per swap: libyaml where PyYAML has it (the same documents, several times faster)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _stage_strides(file: str, d: dict) -> list[int]:
    """Output stride of each backbone row of the shipped ``file`` up to its last stage, from its stage table; refuses a
    file whose rows do not match the table (stale)."""
    spec = MODEL_YAMLS.get(file)
    rows = d.get("backbone") or []
    n = len(spec.table.stages) + 1 if spec else 0
    if not spec or len(rows) <= n or rows[n][2] != POOL:
        raise SwapError(
            f"{model_yaml_dir() / file}: its backbone rows are not the stage table's (stem, stages, "
            f"{POOL}); regenerate it with python -m effdet_plugin.stages"
        )
    strides = [_STRIDE_OF_STEM]
    for stage in spec.table.stages:
        strides.append(strides[-1] * stage.stride)
    return strides


def graft(name: str) -> Graft:
    """The rows and keys of ``--backbone name`` (one line naming the choices if it is unknown)."""
    if name not in BACKBONE_FILES:
        raise SwapError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONE_FILES)}")
    file = BACKBONE_FILES[name]
    path = model_yaml_dir() / file
    if not path.is_file():
        raise SwapError(f"backbone {name!r} is not available: {path} is not shipped with this installation")
    d = _read(path)
    strides = _stage_strides(file, d)
    rows = d["backbone"]
    if [s for s in STRIDES if s in strides] != list(STRIDES) or strides[-1] != 32:
        raise SwapError(f"{path}: backbone strides {strides} do not end in a P3/P4/P5 pyramid")
    keys = {k: d[k] for k in (*PLUGIN_KEYS, ACTIVATION) if k in d}
    scaled = d.get("scale_backbone", True) and isinstance(d.get("scales"), dict)
    return Graft(name, rows[: len(strides)], rows[len(strides)], keys, strides, d["scales"] if scaled else None)


def check_neck(name: str) -> None:
    """Refuse an unknown ``--neck`` (one line naming the choices)."""
    if name not in NECKS:
        raise SwapError(f"unknown neck {name!r}; choose one of {', '.join(NECKS)}")


def neck(name: str, backbone: str, n_backbone: int, taps: dict[int, int]) -> Neck:
    """The rows of the replacement neck ``--neck name`` (not ``keep``) for a new backbone of ``n_backbone`` rows whose
    P3/P4/P5 rows are ``taps`` (stride -> row)."""
    check_neck(name)
    root, suffix = model_yaml_dir(), NECKS[name]
    own = root / (Path(BACKBONE_FILES[backbone]).stem + suffix + ".yaml")
    found = [own] if own.is_file() else sorted(root.glob(f"*{suffix}.yaml"))
    if not found:
        raise SwapError(f"--neck {name} is not available: no {root}/*{suffix}.yaml is shipped with this installation")
    path = found[0]
    d = _read(path)
    strides = [*_stage_strides(path.name, d), 32]  # and the SPPF row
    n_old = len(d["backbone"])
    head = d["head"]
    tap_of = {a: taps[strides[a]] for a in refs_into(head, n_old, n_old)}
    rows = reindex(head, n_old, n_backbone, tap_of)
    own_keys = {"nc", "scales", "scale", "yaml_file", "backbone", "head", *PLUGIN_KEYS}
    return Neck(rows[:-1], {k: v for k, v in d.items() if k not in own_keys}, rows[-1][0])
