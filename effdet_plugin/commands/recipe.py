"""The training and scoring recipe ``accuracy`` and ``protocol`` share, built once from the command line and frozen.

Every model of a sweep is trained by Ultralytics' trainer with the same data, epochs, image size, batch, seeds and
default hyperparameters, and scored on one split with one checkpoint. Without a GPU the defaults drop to a reduced
recipe (``CPU_RECIPE``), and the recipe says so (``reduced``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from effdet_plugin.commands.heldout import AccuracyError, dataset, dataset_name

# What a conclusive comparison needs: Ultralytics' default schedule and three seeds (the seed spread of mAP50-95 on
# a few hundred images is several points)
GPU_RECIPE = {"imgsz": 640, "epochs": 100, "seeds": (0, 1, 2)}
CPU_RECIPE = {"imgsz": 320, "epochs": 10, "seeds": (0,)}  # default when no GPU: indicative only


@dataclass(frozen=True)
class Recipe:
    """How every model of a sweep is trained, scored and timed."""

    data: str  # the dataset YAML, resolved
    split: str  # the split scored: test or val
    epochs: int
    imgsz: int  # training and scoring size
    batch: int
    seeds: tuple[int, ...]
    device: str  # as the trainer takes it: cpu, 0, ...
    device_name: str  # cpu, or the GPU's name
    workers: int
    pretrained: bool | str  # True: .pt models start from their weights; a path or package name: backbone weights
    progressive: bool  # the plugin's progressive learning
    checkpoint: str  # best or last
    latency_imgsz: int  # params, GFLOPs and CPU latency measured at this size
    repeats: int  # timed rounds of the latency measurement
    reduced: bool  # below GPU_RECIPE or not on a GPU: figures indicative only

    @property
    def dataset(self) -> str:
        """The dataset's name in records."""
        return dataset_name(self.data)

    def trained_with(self, model: str, seed: int) -> dict:
        """The trainer arguments a run of ``model`` with ``seed`` must have in its ``args.yaml`` to be this recipe's."""
        return {
            "model": Path(model).stem,
            "data": self.data,
            "epochs": self.epochs,
            "imgsz": self.imgsz,
            "batch": self.batch,
            "seed": seed,
            "pretrained": self.pretrained,
        }

    def fields(self) -> dict:
        """What makes two runs comparable, as records store it (``results.RECIPE_KEYS``)."""
        return {
            "epochs": self.epochs,
            "imgsz": self.imgsz,
            "batch": self.batch,
            "pretrained": self.pretrained,
            "progressive": self.progressive,
            "checkpoint": self.checkpoint,
        }

    def describe(self, name: str | None = None) -> str:
        """One line for the log; ``name``: the dataset's name in records when it is not its folder's (``--dataset``)."""
        where = "GPU" if self.device_name != "cpu" else "CPU"
        return (
            f"{self.epochs} epochs at {self.imgsz} on {where}, batch {self.batch}, seeds "
            f"{' '.join(map(str, self.seeds))}, {self.checkpoint}.pt scored on {name or self.dataset} '{self.split}'"
        )


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    """Add the recipe options (shared by ``accuracy`` and ``protocol``) to ``p``."""
    gpu, cpu = GPU_RECIPE, CPU_RECIPE
    default = "default {} on GPU, {} on CPU".format
    p.add_argument(
        "--data",
        required=True,
        help="dataset YAML, or a classifier's folder, with train, val and (preferably) test splits",
    )
    p.add_argument("--epochs", type=int, help=f"training epochs ({default(gpu['epochs'], cpu['epochs'])})")
    p.add_argument("--imgsz", type=int, help=f"train/eval image size ({default(gpu['imgsz'], cpu['imgsz'])})")
    p.add_argument("--latency-imgsz", type=int, help="measure params/GFLOPs/latency at this size instead of --imgsz")
    seeds = (" ".join(map(str, r["seeds"])) for r in (gpu, cpu))
    p.add_argument("--seeds", type=int, nargs="+", help=f"training seeds ({default(*seeds)})")
    p.add_argument("--device", default=None, help="training device: cpu or a CUDA index (default 0 if CUDA, else cpu)")
    p.add_argument("--batch", type=int, default=16, help="training batch size (default 16)")
    p.add_argument("--workers", type=int, default=2, help="dataloader workers (default 2)")
    p.add_argument(
        "--pretrained",
        nargs="?",
        const=True,
        default=False,
        metavar="WEIGHTS",
        help="alone: start .pt models from their weights; with WEIGHTS (a file, or efficientnet-lite0/1/2): "
        "start every model's EfficientNet backbone from those ImageNet weights (default: scratch)",
    )
    p.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="checkpoint to score: best.pt, chosen on val by Ultralytics (default), or last.pt, chosen by nothing",
    )
    p.add_argument(
        "--progressive", action="store_true", help="train with progressive learning (progressive=True), own runs"
    )
    p.add_argument("--repeats", type=int, default=20, help="timed rounds of the latency measurement (default 20)")


def recipe_from_args(args: argparse.Namespace, split: str) -> Recipe:
    """Build the recipe once: resolve the device and its defaults, check every figure; ``args`` is left as it is."""
    import torch

    from effdet_plugin.commands.benchmark import resolve_device

    dataset(args.data)  # train/val present, paths exist: fail before any work
    device = args.device if args.device is not None else ("0" if torch.cuda.is_available() else "cpu")
    dev = resolve_device(device)
    defaults = GPU_RECIPE if dev.type == "cuda" else CPU_RECIPE
    epochs = args.epochs if args.epochs is not None else defaults["epochs"]
    imgsz = args.imgsz if args.imgsz is not None else defaults["imgsz"]
    seeds = tuple(args.seeds) if args.seeds is not None else defaults["seeds"]
    latency_imgsz = args.latency_imgsz if args.latency_imgsz is not None else imgsz
    for flag, v in (
        ("epochs", epochs),
        ("imgsz", imgsz),
        ("latency-imgsz", latency_imgsz),
        ("batch", args.batch),
        ("repeats", args.repeats),
    ):
        if v < 1:
            raise AccuracyError(f"--{flag} must be a positive integer, got {v}")
    if args.workers < 0:
        raise AccuracyError(f"--workers must be >= 0, got {args.workers}")
    if len(set(seeds)) != len(seeds):
        raise AccuracyError(f"--seeds lists a seed twice: {list(seeds)}")
    reduced = dev.type != "cuda" or (imgsz, epochs, len(seeds)) < (
        GPU_RECIPE["imgsz"],
        GPU_RECIPE["epochs"],
        len(GPU_RECIPE["seeds"]),
    )
    return Recipe(
        data=str(Path(args.data).resolve()),
        split=split,
        epochs=epochs,
        imgsz=imgsz,
        batch=args.batch,
        seeds=seeds,
        device=device,
        device_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        workers=args.workers,
        pretrained=args.pretrained,
        progressive=args.progressive,
        checkpoint=args.checkpoint,
        latency_imgsz=latency_imgsz,
        repeats=args.repeats,
        reduced=reduced,
    )
