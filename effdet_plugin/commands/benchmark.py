"""Measure detectors side by side in one process: params, GFLOPs, latency, memory, training, ONNX and OpenVINO speed.

    effdet-plugin benchmark --models yolov5s_effv2.yaml yolov5su.yaml --imgsz 320 640 --batch 1 8 --device cpu \
        [--half] [--channels-last] [--cuda-graph] [--train] [--onnx] [--openvino] [--int8 DATA] [--threads N] \
        [--repeats R] [--warmup W] --json results/NAME.json

Every model runs on every runtime asked for (PyTorch eager always; CUDA graph replay, training step, ONNX Runtime,
OpenVINO FP32 and INT8 on request), and each (model, runtime) pair is timed once per round, in an order that rotates
each round, so machine drift hits all of them alike; the first ``--warmup`` rounds are discarded and the figure is the
median of the remaining ``--repeats``. Inference runs on the fused model (``model.fuse()``) in eval mode under
``torch.inference_mode()``. ``--onnx``/``--openvino``/``--int8`` need the ``deploy`` extra and say so before any work.
``--json`` writes a results-store record: the rows with the command line, machine, versions and date. Other code
imports ``benchmark`` with a ``BenchmarkConfig``, or ``cpu_latency``, from ``effdet_plugin.commands.benchmark`` to
time models the same way.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from effdet_plugin.commands.extras import require
from effdet_plugin.commands.results import write_record
from effdet_plugin.commands.runtimes import RUNTIMES, Target, memory_format
from effdet_plugin.commands.table import format_table
from effdet_plugin.commands.timing import PeakMemory, interleave, keep_threads, threads
from effdet_plugin.errors import first_line
from effdet_plugin.naming import SCALE_LETTERS, scaled_stem
from effdet_plugin.quiet import quieted

# Which row fields the table shows: (key, header, format); each runtime's key also gets a ratio column
COLUMNS = (
    ("model", "model", "{}"),
    ("imgsz", "imgsz", "{}"),
    ("batch", "batch", "{}"),
    ("params", "params(M)", "{:.2f}"),
    ("gflops", "GFLOPs", "{:.2f}"),
    ("latency_ms", "latency(ms)", "{:.2f}"),
    *((r.key, r.header, "{:.2f}") for r in RUNTIMES.values() if r.key != "latency_ms"),
    ("images_per_s", "img/s", "{:.1f}"),
    ("extra_mem_mb", "mem+(MB)", "{:.0f}"),
)
RATIO_KEYS = tuple(r.key for r in RUNTIMES.values())  # each row divided by the first model's, same setting


class BenchmarkError(ValueError):
    """Bad benchmark input (unknown model, missing device, unsupported option): reported as one line."""


# ------------------------------------------------------------------------------------------------------------ models
def known_model_names() -> tuple[list[str], list[str]]:
    """Return (YAML names shipped with effdet-plugin, Ultralytics' built-in detection YAML names).

    A YAML with ``scales:`` is listed once as e.g. ``yolov5{n,s,m,l,x}_effv2.yaml``: the scale letter follows the first
    digit run, as Ultralytics' own name rule reads it.
    """
    import re

    import ultralytics

    from effdet_plugin.paths import model_yaml_dir

    def names(files) -> list[str]:
        out = []
        for f in sorted(files):
            text = f.read_text(errors="ignore")
            if "Detect" not in text:  # detection models only: this tool times DetectionModel
                continue
            block = re.search(r"\nscales:[^\n]*\n((?:[ \t]+[^\n]*\n)*)", text)  # its indented lines only
            if block:
                letters = ",".join(re.findall(rf"^\s+([{SCALE_LETTERS}]):", block[1], re.MULTILINE))
                out.append(scaled_stem(f.stem, f"{{{letters}}}") + ".yaml")
            else:
                out.append(f.name)
        return out

    # ours: the top folder only (models_yaml/yolov5/ holds classic YOLOv5 files, which Ultralytics cannot build)
    builtin = (Path(ultralytics.__file__).parent / "cfg" / "models").rglob("*.yaml")
    return names(model_yaml_dir().glob("*.yaml")), names(builtin)


def _unknown_model(spec: str) -> BenchmarkError:
    p = Path(spec)
    if p.parent != Path(".") or p.suffix == ".pt":
        return BenchmarkError(f"model {spec!r}: file not found")
    shipped, builtin = known_model_names()
    examples = [n for n in builtin if n.startswith(("yolov5{", "yolov8{", "yolo11{"))][:3]
    return BenchmarkError(
        f"unknown model {spec!r}: not a file, not shipped with effdet-plugin ({', '.join(shipped)}) and not an "
        f"Ultralytics built-in ({len(builtin)} detection YAMLs, e.g. yolov5su.yaml, {', '.join(examples)})"
    )


def load_model(spec: str | Path | nn.Module) -> nn.Module:
    """Return an unfused float32 CPU model from a YAML name or path (built by the class of its task: detect, segment,
    pose, obb or classify), a ``.pt`` checkpoint, or a module."""
    if isinstance(spec, nn.Module):
        return copy.deepcopy(spec).float().cpu()
    spec = str(spec)
    if spec.endswith(".pt"):
        if not Path(spec).is_file():  # never let Ultralytics try to download a missing checkpoint
            raise _unknown_model(spec)
        from ultralytics.nn.tasks import load_checkpoint

        return load_checkpoint(spec)[0]
    if not spec.endswith((".yaml", ".yml")):
        raise BenchmarkError(f"model {spec!r}: expected a model YAML (e.g. yolov5s_effv2.yaml) or a .pt checkpoint")
    from ultralytics.nn import tasks

    from effdet_plugin import register
    from effdet_plugin.hosts.ultralytics import task_model_class

    register()  # explicit, so the tool does not depend on auto-activation being enabled
    try:
        d = tasks.yaml_model_load(
            spec
        )  # resolves shipped/built-in names; FileNotFoundError when there is no such model
    except FileNotFoundError:
        raise _unknown_model(spec) from None
    return task_model_class(d)(spec, verbose=False)


def model_label(spec: str | Path | nn.Module, index: int) -> str:
    """Return a short row label for a model spec (its file stem, or ``model<index>`` for a module)."""
    return f"model{index}" if isinstance(spec, nn.Module) else Path(str(spec)).stem


def inference_model(
    model: nn.Module, device: torch.device, half: bool = False, channels_last: bool = False
) -> nn.Module:
    """Return a fused eval-mode copy of ``model`` on ``device`` (fp16 if ``half``, NHWC weights if ``channels_last``),
    as deployed."""
    m = copy.deepcopy(model)
    m = m.fuse(verbose=False) if hasattr(m, "fuse") else m
    m = m.eval().to(device, memory_format=memory_format(channels_last))
    for p in m.parameters():
        p.requires_grad_(False)
    return m.half() if half else m


def count_params(model: nn.Module) -> int:
    """Return the number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def gflops(model: nn.Module, imgsz: int) -> float:
    """Return GFLOPs of one ``imgsz`` image through ``model``, by Ultralytics' own counter (0.0 if unavailable)."""
    from ultralytics.utils.torch_utils import get_flops

    return get_flops(model, imgsz)


# ------------------------------------------------------------------------------------------------------------ device
def resolve_device(device: str | int) -> torch.device:
    """Return the torch device for ``device`` ('cpu', '0', 'cuda:0', ...), or raise ``BenchmarkError`` in one line."""
    from ultralytics.utils.torch_utils import select_device

    try:
        with keep_threads(), quieted("ultralytics"):  # select_device logs a version banner before raising
            return torch.device(select_device(str(device), verbose=False))
    except (ValueError, AssertionError) as e:
        raise BenchmarkError(
            f"device {str(device)!r} is not available ({torch.cuda.device_count()} CUDA device(s) visible): "
            f"{first_line(e)}"
        ) from None


# ------------------------------------------------------------------------------------------------------------ driver
@dataclass(frozen=True)
class BenchmarkConfig:
    """What to measure: settings, runtimes and timing rounds; checked when made (``BenchmarkError``, one line)."""

    imgsz: tuple[int, ...] = (640,)
    batch: tuple[int, ...] = (1,)
    device: str = "cpu"
    runtimes: tuple[str, ...] = ("pytorch",)  # names in runtimes.RUNTIMES; PyTorch eager is always timed
    half: bool = False  # fp16 inference and AMP training (CUDA only)
    channels_last: bool = False
    int8_data: str | None = None  # the dataset YAML INT8 calibrates on (runtime "int8")
    repeats: int = 20
    warmup: int = 3
    threads: int | None = None  # torch / ONNX Runtime / OpenVINO CPU threads (None: torch's own count)
    progress: bool = True

    def __post_init__(self) -> None:
        """Refuse bad settings before any model is built or any optional package is imported."""
        object.__setattr__(self, "imgsz", tuple(self.imgsz))
        object.__setattr__(self, "batch", tuple(self.batch))
        object.__setattr__(self, "runtimes", tuple(dict.fromkeys(("pytorch", *self.runtimes))))
        unknown = [r for r in self.runtimes if r not in RUNTIMES]
        if unknown:
            raise BenchmarkError(f"unknown runtime(s) {unknown}: expected some of {', '.join(RUNTIMES)}")
        sizes = [(x, "imgsz") for x in self.imgsz] + [(x, "batch") for x in self.batch] + [(self.repeats, "repeats")]
        for v, what in sizes + ([(self.threads, "--threads")] if self.threads is not None else []):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise BenchmarkError(f"{what} must be a positive integer, got {v!r}")
        if self.warmup < 0:
            raise BenchmarkError(f"--warmup must be >= 0, got {self.warmup}")
        if not self.imgsz or not self.batch:
            raise BenchmarkError("no image size or batch size given")
        if any(s % 32 for s in self.imgsz):
            raise BenchmarkError(
                f"imgsz must be multiples of 32 (the detectors' largest stride), got {list(self.imgsz)}"
            )
        if ("int8" in self.runtimes) != bool(self.int8_data):
            raise BenchmarkError("the int8 runtime needs int8_data (--int8 DATA: a dataset YAML to calibrate on)")
        if self.int8_data and not Path(self.int8_data).is_file():
            raise BenchmarkError(f"--int8 {self.int8_data}: dataset YAML not found (INT8 calibration reads its images)")
        for r in self.runtimes:
            require(f"--{r.replace('_', '-')}", RUNTIMES[r].modules, "deploy")

    def check_device(self, dev: torch.device) -> None:
        """Refuse options the resolved device cannot run."""
        if self.half and dev.type != "cuda":
            raise BenchmarkError(
                "--half needs a CUDA device (fp16 inference/AMP training); drop --half for --device cpu"
            )
        for r in self.runtimes:
            if RUNTIMES[r].needs_cuda and dev.type != "cuda":
                raise BenchmarkError(RUNTIMES[r].needs_cuda)

    def packages(self) -> tuple[str, ...]:
        """The optional packages this run uses, whose versions its record states."""
        return tuple(dict.fromkeys(m for r in self.runtimes for m in RUNTIMES[r].modules))


def _labels(specs: Sequence[str | Path | nn.Module]) -> list[str]:
    labels = [model_label(s, i) for i, s in enumerate(specs)]
    if len(set(labels)) != len(labels):  # e.g. two best.pt: keep them apart by position
        labels = [f"{lb}#{i}" for i, lb in enumerate(labels)]
    return labels


def _add_ratios(rows: list[dict]) -> None:
    """Add ``<key>_ratio``: each row's figure divided by the first model's at the same setting."""
    first: dict[tuple, dict] = {}
    for row in rows:
        base = first.setdefault((row["imgsz"], row["batch"]), row)
        for k in RATIO_KEYS:
            if k in row:
                row[f"{k}_ratio"] = row[k] / base[k]


def benchmark(models: Sequence[str | Path | nn.Module], config: BenchmarkConfig = BenchmarkConfig()) -> list[dict]:
    """Measure every model at every (imgsz, batch) setting of ``config`` in this process; return one row per model
    and setting.

    Rows hold model, params, gflops, imgsz, batch, device, half, channels_last, threads, the PyTorch eager figures
    (latency_ms: median, latency_min_ms, images_per_s, peak_mem_mb, extra_mem_mb), each further runtime's figure
    (graph_ms, train_images_per_s, onnx_ms, openvino_ms, openvino_int8_ms) and ``<key>_ratio`` to the first model's
    row at the same setting. At each setting every (model, runtime) pair is timed in one interleaved loop.
    """
    if not models:
        raise BenchmarkError("no models given")
    dev = resolve_device(config.device)
    config.check_device(dev)
    labels = _labels(models)
    base = {lb: load_model(s) for lb, s in zip(labels, models)}  # raises BenchmarkError before any timing
    fused = {lb: inference_model(m, dev, config.half, config.channels_last) for lb, m in base.items()}
    runtimes = [RUNTIMES[r] for r in config.runtimes]
    total = len(config.imgsz) * len(config.batch) * len(base) * len(runtimes) * (config.warmup + config.repeats)
    from ultralytics.utils import TQDM

    bar = TQDM(total=total, desc="benchmark", disable=not config.progress)
    rows = []
    with threads(config.threads), tempfile.TemporaryDirectory(prefix="benchmark_export_") as tmp:
        for s in config.imgsz:
            for b in config.batch:
                bar.set_description(f"benchmark imgsz={s} batch={b}")
                targets = [
                    Target(
                        lb,
                        base[lb],
                        fused[lb],
                        s,
                        b,
                        dev,
                        config.half,
                        config.channels_last,
                        config.threads,
                        config.int8_data,
                        Path(tmp),
                    )
                    for lb in labels
                ]
                steps = {(t.label, r.name): r.prepare(t) for r in runtimes for t in targets}
                memory = {k: PeakMemory(dev) for k in steps if RUNTIMES[k[1]].tracks_memory}
                seconds = interleave(steps, dev, config.repeats, config.warmup, bar, memory)
                del steps  # sessions, training copies and captured graphs go before the next setting
                for lb in labels:
                    row = {
                        "model": lb,
                        "params": count_params(fused[lb]),
                        "gflops": gflops(fused[lb], s),
                        "imgsz": s,
                        "batch": b,
                        "device": str(dev),
                        "half": config.half,
                        "channels_last": config.channels_last,
                        "threads": torch.get_num_threads(),
                    }
                    for r in runtimes:
                        row.update(r.fields(seconds[lb, r.name], b))
                        if (lb, r.name) in memory:
                            row.update(peak_mem_mb=memory[lb, r.name].peak_mb, extra_mem_mb=memory[lb, r.name].extra_mb)
                    rows.append(row)
    bar.close()
    _add_ratios(rows)
    return rows


def cpu_latency(
    models: Sequence[str | Path | nn.Module] | Mapping[str, str | Path | nn.Module],
    imgsz: int = 320,
    batch: int = 1,
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
) -> dict[str, float]:
    """Return fused CPU latency (median ms per batch) of each model, all timed interleaved in this process.

    ``models`` are YAML names/paths, ``.pt`` checkpoints or modules (a mapping gives the labels; a sequence is
    labelled by file stem). ``threads`` sets ``torch.set_num_threads`` for the measurement and restores it after.

    Examples:
        >>> cpu_latency(["yolov5s_effv2.yaml", "runs/detect/train/weights/best.pt"], imgsz=320, threads=2)
        {'yolov5s_effv2': 41.2, 'best': 38.9}
    """
    specs = dict(models) if isinstance(models, Mapping) else {model_label(s, i): s for i, s in enumerate(models)}
    config = BenchmarkConfig((imgsz,), (batch,), repeats=repeats, warmup=warmup, threads=threads, progress=False)
    rows = benchmark([load_model(s) for s in specs.values()], config)
    return {n: r["latency_ms"] for n, r in zip(specs, rows)}


def table(rows: list[dict]) -> str:
    """Return ``rows`` as an aligned text table with each ratio column (x first model) after its value."""
    cols = [c for c in COLUMNS if any(c[0] in r for r in rows)]
    header, cells = [], []
    for key, title, _ in cols:
        header.append(title)
        if key in RATIO_KEYS:
            header.append("x first")
    for r in rows:
        line = []
        for key, _, fmt in cols:
            v = r.get(key)
            line.append("" if v is None else fmt.format(v / 1e6 if key == "params" else v))
            if key in RATIO_KEYS:
                line.append("" if v is None else f"{r[key + '_ratio']:.2f}")
        cells.append(line)
    return format_table(header, cells)


# ------------------------------------------------------------------------------- effdet-plugin benchmark
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``benchmark`` options to ``p``."""
    p.add_argument("--models", nargs="+", required=True, help="model YAML names/paths or .pt files; first = baseline")
    p.add_argument("--imgsz", nargs="+", type=int, default=[640], help="square image sizes (multiples of 32)")
    p.add_argument("--batch", nargs="+", type=int, default=[1], help="batch sizes")
    p.add_argument("--device", default="cpu", help="cpu, or a CUDA index such as 0")
    p.add_argument("--half", action="store_true", help="fp16 inference and AMP training (CUDA only)")
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="NHWC memory format for models and inputs (inference and --train), as AMP on a GPU prefers",
    )
    p.add_argument(
        "--cuda-graph", action="store_true", help="also time inference replayed from a captured CUDA graph (CUDA only)"
    )
    p.add_argument("--train", action="store_true", help="also time training steps (forward+loss+backward+step)")
    p.add_argument(
        "--onnx", action="store_true", help="also export to ONNX and time onnxruntime CPU inference (extra: deploy)"
    )
    p.add_argument(
        "--openvino",
        action="store_true",
        help="also export to OpenVINO (FP32) and time its CPU inference (extra: deploy)",
    )
    p.add_argument(
        "--int8",
        metavar="DATA",
        default=None,
        help="also export to OpenVINO INT8, calibrated on this dataset YAML's images, and time it (extra: deploy)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch/onnxruntime/OpenVINO CPU threads (default: torch's)"
    )
    p.add_argument("--repeats", type=int, default=20, help="timed rounds, every runtime alike")
    p.add_argument("--warmup", type=int, default=3, help="discarded rounds before timing")
    p.add_argument("--json", default=None, help="write a results-store record (rows, command, machine, versions)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    """The ``BenchmarkConfig`` the command-line options ask for."""
    flags = {
        "cuda_graph": args.cuda_graph,
        "train": args.train,
        "onnx": args.onnx,
        "openvino": args.openvino,
        "int8": bool(args.int8),
    }
    return BenchmarkConfig(
        imgsz=tuple(args.imgsz),
        batch=tuple(args.batch),
        device=str(args.device),
        runtimes=("pytorch", *(name for name, on in flags.items() if on)),
        half=args.half,
        channels_last=args.channels_last,
        int8_data=args.int8,
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    """Benchmark, print the table, write ``--json``; bad input raises ``BenchmarkError`` (one line, exit 2)."""
    # read by Ultralytics when it is first imported, which is below: a benchmark never downloads
    os.environ.setdefault("YOLO_OFFLINE", "1")
    config = config_from_args(args)
    rows = benchmark(args.models, config)
    print(table(rows))
    if args.json:
        print(f"wrote {write_record(args.json, 'benchmark', rows, getattr(args, 'argv', None), config.packages())}")
    return 0
