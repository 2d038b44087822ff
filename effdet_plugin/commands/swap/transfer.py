"""Carrying a trained checkpoint's tensors into the swapped model: every tensor of a row kept from the source (its last
backbone stage, neck and head) whose shape still matches keeps its trained value."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

NEW_LAYER = "new neck layer, no source counterpart"


@dataclass
class Transfer:
    """What was carried over: tensor counts, and each tensor after the new backbone that was not, and why."""

    transferred: int = 0
    total: int = 0  # tensors of the rows after the new backbone
    skipped: dict[str, str] = field(default_factory=dict)  # new state_dict key -> reason

    def __str__(self) -> str:
        head = f"transferred {self.transferred}/{self.total} tensors after the new backbone from the source checkpoint"
        lines = [head]
        new_layers: dict[str, int] = {}  # a new neck layer is one line, not one per tensor
        for k, why in self.skipped.items():
            if why == NEW_LAYER:
                layer = ".".join(k.split(".")[:2])
                new_layers[layer] = new_layers.get(layer, 0) + 1
            else:
                lines.append(f"  not transferred {k}: {why}")
        lines += [f"  not transferred {layer}.* ({n} tensors): {NEW_LAYER}" for layer, n in new_layers.items()]
        return "\n".join(lines)


def transfer(src: nn.Module, dst: nn.Module, moved: dict[int, int], first: int) -> Transfer:
    """Copy into ``dst`` (rows from ``first`` on) the tensors of ``src``'s rows that ``moved`` maps there (source row
    -> new row), where the shapes match. Both models name tensors ``model.<row>.<name>``, as both hosts do."""
    back = {new: old for old, new in moved.items()}
    ssd, dsd = src.state_dict(), dst.state_dict()
    report, load = Transfer(), {}
    for key, t in dsd.items():
        _, idx, rest = key.split(".", 2)
        if int(idx) < first:
            continue  # the new backbone
        report.total += 1
        old = f"model.{back[int(idx)]}.{rest}" if int(idx) in back else None
        if old is None:
            report.skipped[key] = NEW_LAYER
        elif old not in ssd:
            report.skipped[key] = f"source has no {old}"
        elif ssd[old].shape != t.shape:
            report.skipped[key] = f"shape {tuple(t.shape)} here vs {tuple(ssd[old].shape)} in source {old}"
        else:
            load[key] = ssd[old]
    dst.load_state_dict(load, strict=False)
    report.transferred = len(load)
    return report
