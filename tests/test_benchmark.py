"""tools/benchmark.py: the real tool on a tiny setting writes valid JSON; bad input gives one clear line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import PYTHON, run_cli

TOOLS = Path(__file__).resolve().parents[1] / "tools"
TOOL = TOOLS / "benchmark.py"
REQUIRED = {"model", "params", "gflops", "latency_ms", "images_per_s", "imgsz", "batch", "device", "peak_mem_mb"}


@pytest.fixture(scope="module")
def bench():
    """The tool imported as a module, as tools/accuracy.py does."""
    sys.path.insert(0, str(TOOLS))
    try:
        import benchmark

        yield benchmark
    finally:
        sys.path.remove(str(TOOLS))


@pytest.mark.slow
def test_tiny_run_writes_json(tmp_path):
    out = tmp_path / "sub" / "bench.json"
    args = [PYTHON, str(TOOL), "--models", "yolov5n_effv2.yaml", "yolov5nu.yaml", "--imgsz", "64", "--batch", "1", "2"]
    args += ["--repeats", "1", "--warmup", "0", "--threads", "1", "--train", "--onnx", "--json", str(out)]
    proc = run_cli(args, cwd=tmp_path, timeout=300, env={"OMP_NUM_THREADS": "1"})
    rows = json.loads(out.read_text())
    assert [(r["model"], r["batch"]) for r in rows] == [
        ("yolov5n_effv2", 1), ("yolov5nu", 1), ("yolov5n_effv2", 2), ("yolov5nu", 2)
    ]
    for r in rows:
        assert REQUIRED <= r.keys(), r
        assert r["imgsz"] == 64 and r["device"] == "cpu" and r["threads"] == 1
        assert r["params"] > 1e6 and r["gflops"] > 0 and r["latency_ms"] > 0
        assert r["train_images_per_s"] > 0 and r["onnx_ms"] > 0
    assert rows[0]["latency_ms_ratio"] == 1.0 and rows[2]["onnx_ms_ratio"] == 1.0
    assert rows[1]["latency_ms_ratio"] == pytest.approx(rows[1]["latency_ms"] / rows[0]["latency_ms"])
    assert rows[0]["params"] != rows[1]["params"]  # two different models were really built
    assert "yolov5n_effv2" in proc.stdout and "x first" in proc.stdout  # the printed table
    assert [p.name for p in out.parent.iterdir()] == ["bench.json"]  # atomic write left no temp file


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--models", "yolov5s_nothing.yaml"], "yolov5{n,s,m,l,x}_effv2.yaml"),  # lists the shipped names
        (["--models", "cfg/missing.yaml"], "'cfg/missing.yaml': file not found"),
        (["--models", "gone.pt"], "'gone.pt': file not found"),  # never a download attempt
        (["--models", "yolov5nu.yaml", "--device", "7"], "device '7' is not available"),
        (["--models", "yolov5nu.yaml", "--half"], "--half needs a CUDA device"),
        (["--models", "yolov5nu.yaml", "--imgsz", "100"], "imgsz must be multiples of 32"),
    ],
)
def test_bad_input_one_line(bench, capsys, tmp_path, monkeypatch, argv, expected):
    monkeypatch.chdir(tmp_path)
    assert bench.main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("benchmark: error:") and expected in err[0], err


@pytest.mark.slow
def test_bad_model_exit_status(tmp_path):
    """The script itself exits non-zero with the one-line message (no traceback)."""
    import subprocess

    proc = subprocess.run([PYTHON, str(TOOL), "--models", "nope.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown model 'nope.yaml'" in proc.stderr and "Traceback" not in proc.stderr


def test_cpu_latency_importable(bench):
    ms = bench.cpu_latency({"a": "yolov5n_effv2.yaml", "b": "yolov5nu.yaml"}, imgsz=64, repeats=1, warmup=0, threads=1)
    assert set(ms) == {"a", "b"} and all(v > 0 for v in ms.values())


def test_fused_model_matches_unfused(bench):
    import torch

    model = bench.load_model("yolov5n_effv2.yaml").eval()
    fused = bench.inference_model(model, torch.device("cpu"))
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(model(x)[0], fused(x)[0], atol=1e-3)
    assert not any(hasattr(m, "bn") for m in fused.modules())  # every BatchNorm folded


def test_write_json_atomic_replaces(bench, tmp_path):
    f = tmp_path / "rows.json"
    f.write_text("old")
    bench.write_json([{"model": "x"}], f)
    assert json.loads(f.read_text()) == [{"model": "x"}] and len(list(tmp_path.iterdir())) == 1
