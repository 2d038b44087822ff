"""Deploy-format parity: every shipped model family, exported by Ultralytics' own exporter (TorchScript, ONNX,
OpenVINO), computes what the fused PyTorch model computes on the same image.

The families are the detection YAMLs of ``effdet_plugin.stages.MODEL_YAMLS`` at collection time (each at the ``n``
scale), so a family added there is covered without editing this file (the other tasks: tests/test_tasks.py). The fast
set exports the smallest family that has every block kind (FusedMBConv, MBConv with squeeze-excitation, BiFPN fusion
nodes) to ONNX; every other family and format, and OpenVINO for all, run in the slow set.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import load_yaml  # (tests/ is on sys.path under pytest)

from effdet_plugin.bifpn import Fusion
from effdet_plugin.naming import scaled_stem
from effdet_plugin.paths import model_yaml_dir
from effdet_plugin.stages import MODEL_YAMLS

IMGSZ = 64  # 3 detection levels: 8x8 + 4x4 + 2x2 = 84 anchors
ANCHORS = sum((IMGSZ // s) ** 2 for s in (8, 16, 32))


DETECTION = [f for f, spec in MODEL_YAMLS.items() if spec.task == "detect"]
FAMILIES = [scaled_stem(f[: -len(".yaml")], "n") + ".yaml" for f in DETECTION]  # yolov5_X.yaml -> yolov5n_X.yaml
# The fast set's family: 1.1 M parameters at n, and it has every block kind the plugin adds.
FAST = "yolov5n_effv2_bifpn.yaml" if "yolov5n_effv2_bifpn.yaml" in FAMILIES else FAMILIES[0]

# Tolerance, per family: K times PyTorch's own float32 error on that family (how far the fused model's float32 outputs
# are from the same fused weights evaluated in float64), plus a floor of a few float32 ulps. An exported graph computes
# the same function with the same float32 weights in another order (other convolution algorithms, conv+activation
# fusions, other sigmoid/softmax kernels), so its error is of the size of PyTorch's and the two differ by at most about
# their sum. That error depends on depth and conditioning (seen: 9e-5 to 1e-2 px on boxes of up to ~500 px, 5e-7 to
# 1.3e-4 on scores), so one fixed bound would be loose for some families or flaky for others. Seen over all families:
# TorchScript equal or within 2 ulps; ONNX Runtime and OpenVINO-f32 at most 2.5x PyTorch's float32 error (the margin
# is 4x); bf16 inference (OpenVINO's default on this AMX CPU) thousands of times off (1.2-250 px, 0.02-0.7 on scores);
# and the second test image moves the outputs by 10-300 px and 0.2-0.7 (the SIGNAL check keeps that margin).
K = 10
BOX_FLOOR, SCORE_FLOOR = 1e-4, 1e-6  # boxes in input pixels (float32 ulp at 500 px: 3e-5), scores in (0, 1)
SIGNAL = 100  # the two test images' reference outputs must differ by >= SIGNAL x the tolerance


def _images(n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` images in [0, 1] with image-level structure (a smooth random colour field plus pixel noise), so that
    deep features differ between images as they do between photographs, unlike i.i.d. noise whose features average
    out to the same values."""
    smooth = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=IMGSZ, mode="bilinear", align_corners=False)
    return (0.7 * smooth + 0.3 * torch.rand(n, 3, IMGSZ, IMGSZ, generator=g)).clamp(0, 1)


def _as_trained(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Give the freshly built model the numerical state of a trained one, in place.

    With PyTorch's initial weights and BatchNorm's initial statistics (mean 0, variance 1) the eval-mode signal shrinks
    layer by layer and the outputs come out the same for every image: a wrong backbone export could pass. So:
    random BatchNorm affine parameters and BiFPN fusion weights (the fused convolutions then fold in non-trivial
    scales), BatchNorm statistics measured on a batch of images that includes the test image ``x`` (as training
    leaves them: eval-mode activations stay in range, outputs depend on the image and are well conditioned), and the
    class-logit biases at 0 instead of the rare-object prior (whose scores ~1e-5 would make any score tolerance moot).
    """
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.reset_running_stats()
        elif isinstance(m, Fusion) and m.weight is not None:
            m.weight.data.copy_(torch.rand(m.n, generator=g) * 2 - 0.5)  # some negative: ReLU drops those inputs
    head = model.model[-1]
    for branch in [
        *head.cv3,
        *(getattr(head, "one2one_cv3", None) or ()),
    ]:  # YOLO26's end-to-end head infers with one2one
        branch[-1].bias.data.zero_()
    model.eval()  # stochastic depth off
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.train()
        m.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
    with torch.no_grad():
        model(torch.cat([x, _images(15, g)]))
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    model.eval()


class Exports:
    """One family: the model built once, its fused reference outputs, and each format exported once, on demand."""

    def __init__(self, name: str, root: Path):
        from ultralytics import YOLO

        self.name, self.root, self.paths = name, root, {}
        gx = torch.Generator().manual_seed(1)
        self.x, x2 = _images(1, gx), _images(1, gx)
        with pytest.MonkeyPatch.context() as mp, torch.random.fork_rng(devices=[]):
            mp.chdir(root)  # nothing here shadows the bare model name
            torch.manual_seed(0)  # the initial weights, hence the outputs and their conditioning, are the same each run
            self.yolo = YOLO(name)
        _as_trained(self.yolo.model, self.x)
        fused = copy.deepcopy(self.yolo.model).fuse(verbose=False)  # the exporter fuses its own copy the same way
        assert not any(hasattr(m, "bn") for m in fused.modules()), "fuse() left a BatchNorm behind"
        with torch.no_grad():
            self.ref = fused(self.x)[0].numpy()
            self.ref2 = fused(x2)[0].numpy()
            exact = fused.double()(self.x.double())[0].numpy()  # the same float32 weights, evaluated in float64
        err = np.abs(self.ref - exact)
        self.box_tol = K * err[:, :4].max() + BOX_FLOOR
        self.score_tol = K * err[:, 4:].max() + SCORE_FLOOR

    def export(self, fmt: str) -> Path:
        if fmt not in self.paths:
            out = self.root / fmt
            out.mkdir()
            with pytest.MonkeyPatch.context() as mp:
                mp.chdir(out)  # the exporter writes next to the bare YAML name, i.e. here
                path = self.yolo.export(format=fmt, imgsz=IMGSZ, device="cpu")
            self.paths[fmt] = out / path if not Path(path).is_absolute() else Path(path)
        return self.paths[fmt]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Run this module's model work on one thread. It is small (64 px, batch 1 to 16), so one thread is as fast on an
    idle machine, while with two when other processes hold the cores, OpenMP's per-op barriers stall: the float64
    reference (thousands of per-group convolutions) took 24 s instead of 0.05 s for the fast family, 330 s for the
    largest."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(
    scope="module",  # built and exported once per family (pytest sets up one family at a time, then tears it down)
    params=[pytest.param(n, id=n, marks=() if n == FAST else pytest.mark.slow) for n in FAMILIES],
)
def family(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(Path(request.param).stem + "-export")
    yield Exports(request.param, root)
    shutil.rmtree(root, ignore_errors=True)  # the largest families write ~0.5 GB per format


def _compare(family: Exports, fmt: str, out: np.ndarray) -> None:
    ref, nc = family.ref, len(family.yolo.names)
    assert ref.shape == (1, 4 + nc, ANCHORS) and np.isfinite(ref).all()
    # The references must carry an image-dependent signal well above the tolerances, else parity would prove little.
    signal = np.abs(ref - family.ref2)
    assert signal[:, :4].max() > SIGNAL * family.box_tol and signal[:, 4:].max() > SIGNAL * family.score_tol
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert np.abs(out).max() > 1 and out[:, 4:].std() > 1e-3  # not all zero, not a constant
    d = np.abs(out.astype(np.float64) - ref)
    rel = d / np.maximum(np.abs(ref), 1e-6)
    print(
        f"{family.name} {fmt}: boxes max abs {d[:, :4].max():.3g} px (tol {family.box_tol:.3g}), "
        f"max rel {rel[:, :4].max():.3g}; scores max abs {d[:, 4:].max():.3g} (tol {family.score_tol:.3g}), "
        f"max rel {rel[:, 4:].max():.3g}"
    )
    np.testing.assert_allclose(out[:, :4], ref[:, :4], rtol=0, atol=family.box_tol, err_msg=f"{fmt} boxes")
    np.testing.assert_allclose(out[:, 4:], ref[:, 4:], rtol=0, atol=family.score_tol, err_msg=f"{fmt} scores")


def test_every_family_loads_at_n_by_its_lettered_name():
    """The name each family is exported by is one a user types: Ultralytics' loader (through the plugin's bare-name
    seam, from any folder) finds the shipped file and reads the scale letter n from it."""
    from ultralytics.nn.tasks import yaml_model_load

    assert FAST in FAMILIES and len(FAMILIES) == len(DETECTION)
    for name, file in zip(FAMILIES, DETECTION):
        d = yaml_model_load(name)
        shipped = load_yaml((model_yaml_dir() / file).read_text(encoding="utf-8"))
        assert (d["scale"], d["backbone"], d["head"]) == ("n", shipped["backbone"], shipped["head"]), name


@pytest.mark.slow  # the fast set's export check is ONNX's
def test_torchscript_matches_pytorch(family):
    path = family.export("torchscript")
    assert path.suffix == ".torchscript" and path.is_file()
    model = torch.jit.load(str(path), map_location="cpu").eval()
    with torch.no_grad():
        out = model(family.x)
    _compare(family, "torchscript", (out[0] if isinstance(out, (list, tuple)) else out).numpy())


def test_onnx_matches_pytorch(family):
    import onnxruntime as ort

    path = family.export("onnx")
    assert path.suffix == ".onnx" and path.is_file()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as _one_thread
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (out, *_) = session.run(None, {session.get_inputs()[0].name: family.x.numpy()})
    _compare(family, "onnx", out)


@pytest.mark.slow
def test_openvino_matches_pytorch(family):
    import openvino as ov

    path = family.export("openvino")
    (xml,) = path.glob("*.xml")
    core = ov.Core()
    # f32: on CPUs with bf16 support (AMX, AVX512-BF16) OpenVINO's CPU plugin computes in bf16 by default, a runtime
    # precision choice (0.4-1.4 px off here) rather than a property of the exported IR, which is what this checks.
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}  # threads: as _one_thread
    compiled = core.compile_model(core.read_model(xml), "CPU", config)
    out = compiled(family.x.numpy())[compiled.output(0)]
    _compare(family, "openvino", out)
