"""Measure detectors side by side in one process: params, GFLOPs, latency, memory, training and ONNX speed.

    effdet-plugin benchmark --models yolov5s_effv2.yaml yolov5su.yaml --imgsz 320 640 --batch 1 8 --device cpu \
        [--half] [--channels-last] [--cuda-graph] [--train] [--onnx] [--openvino] [--int8 DATA] [--threads N] \
        [--repeats R] [--warmup W] --json out.json

Every model is timed once per round, in an order that rotates each round, so machine drift hits all models alike; the
first ``--warmup`` rounds are discarded and the figure is the median of the remaining ``--repeats``. Inference runs on
the fused model (``model.fuse()``) in eval mode under ``torch.inference_mode()``. Other code imports the measuring
functions (``benchmark``, ``cpu_latency``, ``time_inference``, ...) from ``effdet_plugin.commands.benchmark`` to time
models the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from effdet_plugin.atomic import write_json
from effdet_plugin.commands.table import format_table

# Which row fields the table shows: (key, header, format); ratio columns are added for the keys in RATIO_KEYS.
COLUMNS = (
    ("model", "model", "{}"),
    ("imgsz", "imgsz", "{}"),
    ("batch", "batch", "{}"),
    ("params", "params(M)", "{:.2f}"),
    ("gflops", "GFLOPs", "{:.2f}"),
    ("latency_ms", "latency(ms)", "{:.2f}"),
    ("graph_ms", "graph(ms)", "{:.2f}"),
    ("images_per_s", "img/s", "{:.1f}"),
    ("extra_mem_mb", "mem+(MB)", "{:.0f}"),
    ("train_images_per_s", "train img/s", "{:.2f}"),
    ("onnx_ms", "onnx(ms)", "{:.2f}"),
    ("openvino_ms", "openvino(ms)", "{:.2f}"),
    ("openvino_int8_ms", "ov int8(ms)", "{:.2f}"),
)
RATIO_KEYS = ("latency_ms", "graph_ms", "train_images_per_s", "onnx_ms", "openvino_ms", "openvino_int8_ms")  # each row divided by the first model's, same setting


CUDA_GRAPH_NEEDS_CUDA = "--cuda-graph needs a CUDA device (it replays a captured CUDA graph); drop it for CPU"


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
            m = re.match(r"(\D*\d+)(.*)$", f.stem)
            block = re.search(r"\nscales:[^\n]*\n((?:[ \t]+[^\n]*\n)*)", text)  # its indented lines only
            if block and m:
                letters = ",".join(re.findall(r"^\s+([nslmx]):", block[1], re.MULTILINE))
                out.append(f"{m[1]}{{{letters}}}{m[2]}.yaml")
            else:
                out.append(f.name)
        return out

    # ours: the top folder only (models_yaml/yolov5/ holds classic YOLOv5 files, which Ultralytics cannot build)
    return names(model_yaml_dir().glob("*.yaml")), names((Path(ultralytics.__file__).parent / "cfg" / "models").rglob("*.yaml"))


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
    """Return an unfused float32 CPU detection model from a YAML name or path, a ``.pt`` checkpoint, or a module."""
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

    register()  # explicit, so the tool does not depend on auto-activation being enabled
    try:
        tasks.yaml_model_load(spec)  # resolves shipped/built-in names; FileNotFoundError when there is no such model
    except FileNotFoundError:
        raise _unknown_model(spec) from None
    return tasks.DetectionModel(spec, verbose=False)


def model_label(spec: str | Path | nn.Module, index: int) -> str:
    """Return a short row label for a model spec (its file stem, or ``model<index>`` for a module)."""
    return f"model{index}" if isinstance(spec, nn.Module) else Path(str(spec)).stem


def _memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def inference_model(
    model: nn.Module, device: torch.device, half: bool = False, channels_last: bool = False
) -> nn.Module:
    """Return a fused eval-mode copy of ``model`` on ``device`` (fp16 if ``half``, NHWC weights if ``channels_last``),
    as deployed."""
    m = copy.deepcopy(model)
    m = m.fuse(verbose=False) if hasattr(m, "fuse") else m
    m = m.eval().to(device, memory_format=_memory_format(channels_last))
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
        with _keep_threads(), _quiet():  # select_device logs a version banner before raising
            return torch.device(select_device(str(device), verbose=False))
    except (ValueError, AssertionError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BenchmarkError(
            f"device {str(device)!r} is not available ({torch.cuda.device_count()} CUDA device(s) visible): {first}"
        ) from None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of the calls made inside ``track()``: CUDA allocator peak on GPU, process RSS high-water on CPU.

    ``peak_mb`` is the absolute peak; ``extra_mb`` the peak above the level just before each call (on CPU an
    approximation: the allocator may reuse memory freed by earlier calls).
    """

    _CLEAR_REFS = Path("/proc/self/clear_refs")  # writing 5 resets the kernel's RSS high-water mark (Linux >= 4.0)

    def __init__(self, device: torch.device):
        """Initialize for ``device``."""
        self.device = device
        self.peak_mb = 0.0
        self.extra_mb = 0.0

    @staticmethod
    def _status_kb(field: str) -> float | None:
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return float(line.split()[1])
        return None

    def _cpu_now_peak(self) -> tuple[float, float]:
        rss, hwm = self._status_kb("VmRSS"), self._status_kb("VmHWM")
        if rss is None or hwm is None:  # not Linux: psutil RSS and the lifetime peak from getrusage
            import resource

            import psutil

            rss = psutil.Process().memory_info().rss / 1024
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)
        return rss / 1024, hwm / 1024

    @contextlib.contextmanager
    def track(self):
        """Record the peak memory of the enclosed work into ``peak_mb``/``extra_mb`` (keeping the maximum)."""
        if self.device.type == "cuda":
            _sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device) / 2**20
            yield
            _sync(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            with contextlib.suppress(OSError):
                self._CLEAR_REFS.write_text("5")
            before, _ = self._cpu_now_peak()
            yield
            _, peak = self._cpu_now_peak()
        self.peak_mb = max(self.peak_mb, peak)
        self.extra_mb = max(self.extra_mb, peak - before)


# ------------------------------------------------------------------------------------------------------------ timing
def interleave(
    steps: Mapping[str, Callable[[], object]],
    device: torch.device,
    repeats: int,
    warmup: int,
    progress=None,
    memory: Mapping[str, PeakMemory] | None = None,
) -> dict[str, float]:
    """Run each step once per round in rotating order; return each step's seconds over the timed rounds, in order."""
    names = list(steps)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + repeats):
        for j in range(len(names)):
            name = names[(r + j) % len(names)]  # rotate: no model always runs right after the same one
            track = memory[name].track() if memory else contextlib.nullcontext()
            with track:
                _sync(device)
                t = time.perf_counter()
                steps[name]()
                _sync(device)
                dt = time.perf_counter() - t
            if r >= warmup:
                times[name].append(dt)
            if progress is not None:
                progress.update()
    return times


def _images(
    batch: int, imgsz: int, device: torch.device, dtype=torch.float32, channels_last: bool = False
) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)  # same input for every model
    im = torch.rand(batch, 3, imgsz, imgsz, generator=g).to(device, dtype)
    return im.contiguous(memory_format=_memory_format(channels_last))


def cuda_graph_step(model: nn.Module, im: torch.Tensor, warmup: int = 3) -> Callable[[], object]:
    """Capture one forward of ``model`` on ``im`` in a CUDA graph and return its replay.

    Batch-1 inference on a GPU is mostly kernel-launch overhead; a replay launches the whole captured forward at once,
    as a deployment with CUDA graphs (TensorRT, ``torch.compile(mode="reduce-overhead")``) would. The warm-up calls
    run on a side stream, as PyTorch's capture rules ask, so lazily built state (the head's anchors) exists before
    capture.
    """
    if im.device.type != "cuda":
        raise BenchmarkError(CUDA_GRAPH_NEEDS_CUDA)
    static = im.clone()
    side = torch.cuda.Stream(im.device)
    side.wait_stream(torch.cuda.current_stream(im.device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            model(static)
    torch.cuda.current_stream(im.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = model(static)

    def replay() -> object:
        graph.replay()
        return out  # the graph writes into these tensors on every replay

    return replay


def time_inference(
    models: Mapping[str, nn.Module],
    imgsz: int,
    batch: int,
    device: torch.device | str = "cpu",
    repeats: int = 20,
    warmup: int = 3,
    half: bool = False,
    progress=None,
    channels_last: bool = False,
    cuda_graph: bool = False,
) -> dict[str, dict[str, float]]:
    """Time prepared (fused, eval, on ``device``) models interleaved; return latency, images/s and memory per name.

    With ``cuda_graph`` the models are also timed replaying a captured CUDA graph of their forward (``graph_ms``).
    """
    device = torch.device(device)
    im = _images(batch, imgsz, device, torch.float16 if half else torch.float32, channels_last)
    memory = {n: PeakMemory(device) for n in models}

    def step(m: nn.Module) -> Callable[[], object]:
        return lambda: m(im)

    with torch.inference_mode():
        sec = interleave({n: step(m) for n, m in models.items()}, device, repeats, warmup, progress, memory)
        graphed = {}
        if cuda_graph:
            steps = {n: cuda_graph_step(m, im) for n, m in models.items()}
            graphed = interleave(steps, device, repeats, warmup, progress)
            del steps  # frees the captured graphs' memory pools
    return {
        n: {
            "latency_ms": statistics.median(s) * 1e3,
            "latency_min_ms": min(s) * 1e3,  # least disturbed run: a second view when other processes share the CPU
            "images_per_s": batch / statistics.median(s),
            "peak_mem_mb": memory[n].peak_mb,
            "extra_mem_mb": memory[n].extra_mb,
            **({"graph_ms": statistics.median(graphed[n]) * 1e3} if cuda_graph else {}),
        }
        for n, s in sec.items()
    }


def training_batch(
    batch: int, imgsz: int, nc: int, device: torch.device, boxes_per_image: int = 4, channels_last: bool = False
) -> dict:
    """Return a fixed random batch as the trainer feeds ``DetectionModel.loss`` (img, cls, bboxes, batch_idx)."""
    g = torch.Generator().manual_seed(0)
    n = batch * boxes_per_image
    xy = torch.rand(n, 2, generator=g) * 0.6 + 0.2  # normalized centres
    wh = torch.rand(n, 2, generator=g) * 0.25 + 0.05  # normalized sizes
    return {
        # the trainer's preprocess scales uint8 images to [0, 1] floats
        "img": _images(batch, imgsz, device, channels_last=channels_last),
        "cls": torch.randint(0, nc, (n, 1), generator=g).float().to(device),
        "bboxes": torch.cat((xy, wh), 1).to(device),  # xywh, normalized
        "batch_idx": torch.arange(batch).repeat_interleave(boxes_per_image).float().to(device),
    }


def training_model(model: nn.Module, device: torch.device, channels_last: bool = False) -> nn.Module:
    """Return an unfused train-mode copy of ``model`` on ``device``, hyperparameters attached as the trainer does."""
    from ultralytics.cfg import get_cfg
    from ultralytics.utils import DEFAULT_CFG

    m = copy.deepcopy(model).float().to(device, memory_format=_memory_format(channels_last)).train()
    for p in m.parameters():
        p.requires_grad_(True)
    m.args = get_cfg(DEFAULT_CFG)  # DetectionTrainer.set_model_attributes: model.args = trainer args (loss gains)
    m.criterion = None  # rebuilt on the first loss call, for this device
    return m


def time_training(
    models: Mapping[str, nn.Module],
    imgsz: int,
    batch: int,
    device: torch.device | str = "cpu",
    repeats: int = 10,
    warmup: int = 2,
    amp: bool = False,
    progress=None,
    channels_last: bool = False,
) -> dict[str, float]:
    """Time forward + ``DetectionModel.loss`` + backward + optimizer step, interleaved; return images/s per name.

    ``models`` are unfused models (see ``training_model``); ``amp`` uses autocast + GradScaler as the trainer does;
    ``channels_last`` feeds NHWC batches (give it models made with ``training_model(..., channels_last=True)``).
    """
    device = torch.device(device)
    amp = amp and device.type == "cuda"

    def step_fn(m: nn.Module) -> Callable[[], None]:
        b = training_batch(batch, imgsz, int(m.model[-1].nc), device, channels_last=channels_last)
        # Ultralytics' default for long runs (optimizer=auto): SGD, momentum 0.937, nesterov; a small lr keeps the
        # random-target run finite so no denormal/NaN arithmetic skews the timing
        opt = torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.937, nesterov=True)
        scaler = torch.amp.GradScaler(device.type, enabled=amp)

        def step() -> None:
            with torch.autocast(device.type, enabled=amp):
                loss, _ = m.loss(b)
            scaler.scale(loss.sum()).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)

        return step

    sec = interleave({n: step_fn(m) for n, m in models.items()}, device, repeats, warmup, progress)
    return {n: batch / statistics.median(s) for n, s in sec.items()}


def _export(model: nn.Module, folder: Path, name: str, **overrides) -> Path:
    """Export a copy of ``model`` by Ultralytics' exporter as ``folder/name.*`` (CPU, static shape); return its path."""
    from ultralytics.engine.exporter import Exporter

    m = copy.deepcopy(model).cpu().float()  # the exporter fuses and modifies the model it is given
    m.pt_path = str(folder / f"{name}.pt")  # the exporter names its output after this
    m.task = getattr(m, "task", "detect")  # set by YOLO() / checkpoints, absent on a bare DetectionModel
    with _keep_threads(), _quiet():
        return Path(Exporter(overrides={"device": "cpu", **overrides})(m))


def export_onnx(model: nn.Module, imgsz: int, batch: int, folder: Path, name: str) -> Path:
    """Export ``model`` to ``folder/name.onnx`` by Ultralytics' exporter (static shape, fp32, CPU); return the path."""
    # simplify needs onnxslim, which the exporter would try to install; the graph is timed as exported
    return _export(model, folder, name, format="onnx", imgsz=imgsz, batch=batch, simplify=False)


def export_openvino(
    model: nn.Module, imgsz: int, batch: int, folder: Path, name: str, int8_data: str | None = None
) -> Path:
    """Export ``model`` by Ultralytics' exporter to an OpenVINO folder (static shape, CPU), FP32, or INT8 when
    ``int8_data`` names a dataset YAML (NNCF post-training quantization, calibrated on that dataset's images as
    ``yolo export format=openvino int8=True data=...`` does); return the ``.xml`` file."""
    from effdet_plugin.hosts.ultralytics import int8_export_args

    int8 = {**int8_export_args(), "data": str(int8_data)} if int8_data else {}
    return next(_export(model, folder, name, format="openvino", imgsz=imgsz, batch=batch, **int8).glob("*.xml"))


def time_openvino(
    files: Mapping[str, Path],
    imgsz: int,
    batch: int,
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
    progress=None,
) -> dict[str, float]:
    """Time OpenVINO CPU inference of exported models, interleaved; return median ms per batch for each name."""
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
    # latency hint: one stream, as batch-1 serving runs it (the default on CPU, written out so it cannot drift);
    # f32: on CPUs with AMX/AVX512-BF16 OpenVINO otherwise runs float layers in bf16, which is another model's numbers
    # (outputs off by pixels) and would make "FP32" a misnomer. INT8 graphs keep their quantized layers in int8.
    config.update(PERFORMANCE_HINT="LATENCY", INFERENCE_PRECISION_HINT="f32")

    def step(f: Path, im):
        request = core.compile_model(core.read_model(str(f)), "CPU", config).create_infer_request()
        return lambda: request.infer({0: im})

    return _time_runtime(files, step, imgsz, batch, repeats, warmup, progress)


def _time_runtime(files: Mapping[str, Path], step, imgsz: int, batch: int, repeats: int, warmup: int,
                  progress) -> dict[str, float]:
    """Time ``step(file, image)()`` for every exported file, interleaved on CPU; median ms per batch for each name."""
    import numpy as np

    im = _images(batch, imgsz, torch.device("cpu")).numpy().astype(np.float32)
    sec = interleave({name: step(f, im) for name, f in files.items()}, torch.device("cpu"), repeats, warmup, progress)
    return {n: statistics.median(s) * 1e3 for n, s in sec.items()}


@contextlib.contextmanager
def _quiet():
    """Hold Ultralytics' info logging (export chatter) so the progress bar and table stay readable."""
    import logging

    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def time_onnx(
    files: Mapping[str, Path],
    imgsz: int,
    batch: int,
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
    progress=None,
) -> dict[str, float]:
    """Time onnxruntime CPU inference of exported models, interleaved; return median ms per batch for each name."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads

    def step(f: Path, im):
        s = ort.InferenceSession(str(f), opts, providers=["CPUExecutionProvider"])
        feed = {s.get_inputs()[0].name: im}
        return lambda: s.run(None, feed)

    return _time_runtime(files, step, imgsz, batch, repeats, warmup, progress)


# ------------------------------------------------------------------------------------------------------------ driver
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
    cpu = torch.device("cpu")
    prepared = {n: inference_model(load_model(s), cpu) for n, s in specs.items()}
    with _threads(threads):
        res = time_inference(prepared, imgsz, batch, cpu, repeats, warmup)
    return {n: r["latency_ms"] for n, r in res.items()}


@contextlib.contextmanager
def _threads(n: int | None):
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _keep_threads():
    """Restore on exit the torch thread count in force on entry: Ultralytics' select_device (run to resolve a device
    and by every export) sets it to its NUM_THREADS (cores - 1), and timings run at ``--threads`` or torch's own."""
    return _threads(torch.get_num_threads())


def _labels(specs: Sequence[str | Path | nn.Module]) -> list[str]:
    labels = [model_label(s, i) for i, s in enumerate(specs)]
    if len(set(labels)) != len(labels):  # e.g. two best.pt: keep them apart by position
        labels = [f"{lb}#{i}" for i, lb in enumerate(labels)]
    return labels


def benchmark(
    models: Sequence[str | Path | nn.Module],
    imgsz: Iterable[int] = (640,),
    batch: Iterable[int] = (1,),
    device: str | int = "cpu",
    half: bool = False,
    channels_last: bool = False,
    cuda_graph: bool = False,
    train: bool = False,
    onnx: bool = False,
    openvino: bool = False,
    int8: str | None = None,
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
    progress: bool = True,
) -> list[dict]:
    """Measure every model at every (imgsz, batch) setting in this process and return one row dict per model/setting.

    Rows hold model, params, gflops, latency_ms (median), latency_min_ms, images_per_s, peak_mem_mb, extra_mem_mb,
    imgsz, batch, device, half, channels_last, threads,
    plus graph_ms (``cuda_graph``: median of CUDA-graph replays of the same forward), train_images_per_s (``train``),
    onnx_ms (``onnx``), openvino_ms (``openvino``), openvino_int8_ms (``int8``: a dataset YAML to calibrate on), and
    ``<key>_ratio`` to the first model's row.
    """
    if not models:
        raise BenchmarkError("no models given")
    if int8 and not Path(int8).is_file():
        raise BenchmarkError(f"--int8 {int8}: dataset YAML not found (INT8 calibration reads its images)")
    imgsz, batch = list(imgsz), list(batch)
    for v, what in [(x, "imgsz") for x in imgsz] + [(x, "batch") for x in batch] + [(repeats, "repeats")]:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise BenchmarkError(f"{what} must be a positive integer, got {v!r}")
    if any(s % 32 for s in imgsz):
        raise BenchmarkError(f"imgsz must be multiples of 32 (the detectors' largest stride), got {imgsz}")
    dev = resolve_device(device)
    if half and dev.type != "cuda":
        raise BenchmarkError("--half needs a CUDA device (fp16 inference/AMP training); drop --half for --device cpu")
    if cuda_graph and dev.type != "cuda":
        raise BenchmarkError(CUDA_GRAPH_NEEDS_CUDA)
    labels = _labels(models)
    base = {lb: load_model(s) for lb, s in zip(labels, models)}  # raises BenchmarkError before any timing
    fused = {lb: inference_model(m, dev, half, channels_last) for lb, m in base.items()}
    params = {lb: count_params(m) for lb, m in fused.items()}

    settings = [(s, b) for s in imgsz for b in batch]
    n = len(base)
    runtimes = 1 + cuda_graph + onnx + openvino + bool(int8)
    total = len(settings) * n * ((warmup + repeats) * runtimes + (warmup + max(repeats // 2, 1)) * train)
    from ultralytics.utils import TQDM

    bar = TQDM(total=total, desc="benchmark", disable=not progress)
    rows = []
    with _threads(threads), tempfile.TemporaryDirectory(prefix="benchmark_export_") as tmp:
        for s, b in settings:
            bar.set_description(f"benchmark imgsz={s} batch={b}")
            flops = {lb: gflops(m, s) for lb, m in fused.items()}
            inf = time_inference(fused, s, b, dev, repeats, warmup, half, bar, channels_last, cuda_graph)
            tr = {}
            if train:
                trainable = {lb: training_model(m, dev, channels_last) for lb, m in base.items()}
                tr = time_training(trainable, s, b, dev, max(repeats // 2, 1), warmup, amp=half, progress=bar,
                                   channels_last=channels_last)
                del trainable
            ox = {}
            if onnx:
                files = {lb: export_onnx(m, s, b, Path(tmp), f"{lb}_{s}_{b}") for lb, m in base.items()}
                ox = time_onnx(files, s, b, repeats, warmup, threads, bar)
            ov = {}
            if openvino:
                files = {lb: export_openvino(m, s, b, Path(tmp), f"{lb}_{s}_{b}") for lb, m in base.items()}
                ov = time_openvino(files, s, b, repeats, warmup, threads, bar)
            ov8 = {}
            if int8:
                files = {lb: export_openvino(m, s, b, Path(tmp), f"{lb}_{s}_{b}_int8", int8) for lb, m in base.items()}
                ov8 = time_openvino(files, s, b, repeats, warmup, threads, bar)
            for lb in labels:
                row = {
                    "model": lb,
                    "params": params[lb],
                    "gflops": flops[lb],
                    **inf[lb],
                    "imgsz": s,
                    "batch": b,
                    "device": str(dev),
                    "half": half,
                    "channels_last": channels_last,
                    "threads": torch.get_num_threads(),
                }
                if train:
                    row["train_images_per_s"] = tr[lb]
                if onnx:
                    row["onnx_ms"] = ox[lb]
                if openvino:
                    row["openvino_ms"] = ov[lb]
                if int8:
                    row["openvino_int8_ms"] = ov8[lb]
                first = row if lb == labels[0] else rows[-labels.index(lb)]  # first model, this setting
                for k in RATIO_KEYS:
                    if k in row:
                        row[f"{k}_ratio"] = row[k] / first[k]
                rows.append(row)
    bar.close()
    return rows


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
    p.add_argument("--channels-last", action="store_true",
                   help="NHWC memory format for models and inputs (inference and --train), as AMP on a GPU prefers")
    p.add_argument("--cuda-graph", action="store_true",
                   help="also time inference replayed from a captured CUDA graph (CUDA only)")
    p.add_argument("--train", action="store_true", help="also time training steps (forward+loss+backward+step)")
    p.add_argument("--onnx", action="store_true", help="also export to ONNX and time onnxruntime CPU inference")
    p.add_argument("--openvino", action="store_true", help="also export to OpenVINO (FP32) and time its CPU inference")
    p.add_argument("--int8", metavar="DATA", default=None,
                   help="also export to OpenVINO INT8, calibrated on this dataset YAML's images, and time it")
    p.add_argument("--threads", type=int, default=None, help="torch/onnxruntime/OpenVINO CPU threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=20, help="timed rounds (training: half as many)")
    p.add_argument("--warmup", type=int, default=3, help="discarded rounds before timing")
    p.add_argument("--json", default=None, help="write the rows to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Benchmark, print the table, write ``--json``; bad input raises ``BenchmarkError`` (one line, exit 2)."""
    # read by Ultralytics when it is first imported, which is below: a benchmark never downloads
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if args.threads is not None and args.threads < 1:
        raise BenchmarkError(f"--threads must be a positive integer, got {args.threads}")
    if args.warmup < 0:
        raise BenchmarkError(f"--warmup must be >= 0, got {args.warmup}")
    rows = benchmark(
        args.models,
        args.imgsz,
        args.batch,
        args.device,
        half=args.half,
        channels_last=args.channels_last,
        cuda_graph=args.cuda_graph,
        train=args.train,
        onnx=args.onnx,
        openvino=args.openvino,
        int8=args.int8,
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
        progress=not args.no_progress,
    )
    print(table(rows))
    if args.json:
        print(f"wrote {write_json(rows, args.json, indent=2)}")
    return 0
