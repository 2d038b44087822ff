"""The runtimes ``effdet-plugin benchmark`` times, as one table: each entry an export step and what its timing means.

An entry's ``prepare`` turns one model at one setting into a call to time (exporting it first where the runtime
needs a file); ``fields`` turns that call's seconds into row figures under the entry's ``key``. The benchmark times
every (model, runtime) call in one interleaved loop, so a runtime is added here and nowhere else.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from effdet_plugin.commands.timing import keep_threads
from effdet_plugin.quiet import quieted

CUDA_GRAPH_NEEDS_CUDA = "--cuda-graph needs a CUDA device (it replays a captured CUDA graph); drop it for CPU"


@dataclass(frozen=True)
class Target:
    """One model at one setting, as every runtime's ``prepare`` receives it."""

    label: str
    model: nn.Module  # unfused, float32, CPU: what exporters and the training step start from
    fused: nn.Module  # fused, eval, on ``device`` (fp16 when ``half``): what eager inference runs
    imgsz: int
    batch: int
    device: torch.device
    half: bool = False
    channels_last: bool = False
    threads: int | None = None  # ONNX Runtime / OpenVINO CPU threads (None: their default)
    int8_data: str | None = None  # dataset YAML whose images calibrate INT8
    folder: Path = Path(".")  # where exported files go


def memory_format(channels_last: bool) -> torch.memory_format:
    """NHWC for ``channels_last``, else the default layout."""
    return torch.channels_last if channels_last else torch.contiguous_format


def images(batch: int, imgsz: int, device: torch.device, dtype=torch.float32, channels_last: bool = False):
    """Return the fixed random input batch every model and runtime is timed on."""
    g = torch.Generator().manual_seed(0)
    im = torch.rand(batch, 3, imgsz, imgsz, generator=g).to(device, dtype)
    return im.contiguous(memory_format=memory_format(channels_last))


def _input(t: Target) -> torch.Tensor:
    return images(t.batch, t.imgsz, t.device, torch.float16 if t.half else torch.float32, t.channels_last)


# --------------------------------------------------------------------------------------------- PyTorch, CUDA graph
def eager_step(t: Target) -> Callable[[], object]:
    """The fused model's forward under ``torch.inference_mode()``, as deployed from PyTorch."""
    im = _input(t)

    def step() -> object:
        with torch.inference_mode():
            return t.fused(im)

    return step


def cuda_graph_step(model: nn.Module, im: torch.Tensor, warmup: int = 3) -> Callable[[], object]:
    """Capture one forward of ``model`` on ``im`` in a CUDA graph and return its replay.

    Batch-1 inference on a GPU is mostly kernel-launch overhead; a replay launches the whole captured forward at once,
    as a deployment with CUDA graphs (TensorRT, ``torch.compile(mode="reduce-overhead")``) would. The warm-up calls
    run on a side stream, as PyTorch's capture rules ask, so lazily built state (the head's anchors) exists before
    capture.
    """
    if im.device.type != "cuda":
        raise ValueError(CUDA_GRAPH_NEEDS_CUDA)
    static = im.clone()
    with torch.inference_mode():
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


# -------------------------------------------------------------------------------------------------- training step
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
        "img": images(batch, imgsz, device, channels_last=channels_last),
        "cls": torch.randint(0, nc, (n, 1), generator=g).float().to(device),
        "bboxes": torch.cat((xy, wh), 1).to(device),  # xywh, normalized
        "batch_idx": torch.arange(batch).repeat_interleave(boxes_per_image).float().to(device),
    }


def training_model(model: nn.Module, device: torch.device, channels_last: bool = False) -> nn.Module:
    """Return an unfused train-mode copy of ``model`` on ``device``, hyperparameters attached as the trainer does."""
    from ultralytics.cfg import get_cfg
    from ultralytics.utils import DEFAULT_CFG

    m = copy.deepcopy(model).float().to(device, memory_format=memory_format(channels_last)).train()
    for p in m.parameters():
        p.requires_grad_(True)
    m.args = get_cfg(DEFAULT_CFG)  # DetectionTrainer.set_model_attributes: model.args = trainer args (loss gains)
    m.criterion = None  # rebuilt on the first loss call, for this device
    return m


def train_step(t: Target) -> Callable[[], None]:
    """Forward + ``DetectionModel.loss`` + backward + optimizer step on a fixed batch; AMP (autocast + GradScaler, as
    the trainer does) when ``half`` on CUDA."""
    m = training_model(t.model, t.device, t.channels_last)
    amp = t.half and t.device.type == "cuda"
    b = training_batch(t.batch, t.imgsz, int(m.model[-1].nc), t.device, channels_last=t.channels_last)
    # Ultralytics' default for long runs (optimizer=auto): SGD, momentum 0.937, nesterov; a small lr keeps the
    # random-target run finite so no denormal/NaN arithmetic skews the timing
    opt = torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.937, nesterov=True)
    scaler = torch.amp.GradScaler(t.device.type, enabled=amp)

    def step() -> None:
        with torch.autocast(t.device.type, enabled=amp):
            loss, _ = m.loss(b)
        scaler.scale(loss.sum()).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    return step


# ------------------------------------------------------------------------------------------ ONNX Runtime, OpenVINO
def _export(model: nn.Module, folder: Path, name: str, **overrides) -> Path:
    """Export a copy of ``model`` by Ultralytics' exporter as ``folder/name.*`` (CPU, static shape); return its path."""
    from ultralytics.engine.exporter import Exporter

    m = copy.deepcopy(model).cpu().float()  # the exporter fuses and modifies the model it is given
    m.pt_path = str(folder / f"{name}.pt")  # the exporter names its output after this
    m.task = getattr(m, "task", "detect")  # set by YOLO() / checkpoints, absent on a bare DetectionModel
    with keep_threads(), quieted("ultralytics"):  # its export chatter would break the progress bar and table
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


def _cpu_input(t: Target):
    import numpy as np

    return images(t.batch, t.imgsz, torch.device("cpu")).numpy().astype(np.float32)


def onnx_step(t: Target) -> Callable[[], object]:
    """onnxruntime CPU inference of the model exported to ONNX."""
    import onnxruntime as ort

    f = export_onnx(t.model, t.imgsz, t.batch, t.folder, f"{t.label}_{t.imgsz}_{t.batch}")
    opts = ort.SessionOptions()
    if t.threads:
        opts.intra_op_num_threads = t.threads
    session = ort.InferenceSession(str(f), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: _cpu_input(t)}
    return lambda: session.run(None, feed)


def _openvino_step(t: Target, int8: bool) -> Callable[[], object]:
    import openvino as ov

    name = f"{t.label}_{t.imgsz}_{t.batch}" + ("_int8" if int8 else "")
    f = export_openvino(t.model, t.imgsz, t.batch, t.folder, name, t.int8_data if int8 else None)
    config = {"INFERENCE_NUM_THREADS": t.threads} if t.threads else {}
    # latency hint: one stream, as batch-1 serving runs it (the default on CPU, written out so it cannot drift);
    # f32: on CPUs with AMX/AVX512-BF16 OpenVINO otherwise runs float layers in bf16, which is another model's numbers
    # (outputs off by pixels) and would make "FP32" a misnomer. INT8 graphs keep their quantized layers in int8.
    config.update(PERFORMANCE_HINT="LATENCY", INFERENCE_PRECISION_HINT="f32")
    core = ov.Core()
    request = core.compile_model(core.read_model(str(f)), "CPU", config).create_infer_request()
    im = _cpu_input(t)
    return lambda: request.infer({0: im})


# --------------------------------------------------------------------------------------------------------- table
def _median_ms(key: str) -> Callable[[list[float], int], dict]:
    return lambda sec, batch: {key: statistics.median(sec) * 1e3}


def _eager_fields(sec: list[float], batch: int) -> dict:
    return {
        "latency_ms": statistics.median(sec) * 1e3,
        "latency_min_ms": min(sec) * 1e3,  # least disturbed run: a second view when other processes share the CPU
        "images_per_s": batch / statistics.median(sec),
    }


@dataclass(frozen=True)
class Runtime:
    """One way a model runs: how to prepare it for timing and what the timing is reported as."""

    name: str  # the name in ``BenchmarkConfig.runtimes``
    key: str  # the row key of its headline figure (a ratio column to the first model is added for it)
    header: str  # the command's text-table column title
    title: str  # what rendered tables call it
    prepare: Callable[[Target], Callable[[], object]]
    fields: Callable[[list[float], int], dict]  # (seconds per timed round, batch) -> row figures
    modules: tuple[str, ...] = ()  # optional packages it imports, from the ``deploy`` extra
    needs_cuda: str = ""  # the one-line refusal on a CPU device, when it needs CUDA
    tracks_memory: bool = False  # its peak memory goes into peak_mem_mb / extra_mem_mb


RUNTIMES = {
    r.name: r
    for r in (
        Runtime("pytorch", "latency_ms", "latency(ms)", "PyTorch", eager_step, _eager_fields, tracks_memory=True),
        Runtime("cuda_graph", "graph_ms", "graph(ms)", "CUDA graph", lambda t: cuda_graph_step(t.fused, _input(t)),
                _median_ms("graph_ms"), needs_cuda=CUDA_GRAPH_NEEDS_CUDA),
        Runtime("train", "train_images_per_s", "train img/s", "training img/s", train_step,
                lambda sec, batch: {"train_images_per_s": batch / statistics.median(sec)}),
        Runtime("onnx", "onnx_ms", "onnx(ms)", "ONNX Runtime", onnx_step, _median_ms("onnx_ms"),
                ("onnx", "onnxruntime")),
        Runtime("openvino", "openvino_ms", "openvino(ms)", "OpenVINO FP32", lambda t: _openvino_step(t, int8=False),
                _median_ms("openvino_ms"), ("openvino",)),
        Runtime("int8", "openvino_int8_ms", "ov int8(ms)", "OpenVINO INT8", lambda t: _openvino_step(t, int8=True),
                _median_ms("openvino_int8_ms"), ("openvino", "nncf")),
    )
}  # fmt: skip
