"""``effdet-plugin benchmark``: a tiny run writes valid JSON and a table; bad input gives one clear line."""

from __future__ import annotations

import json

import pytest

from effdet_plugin.commands import benchmark as bench
from effdet_plugin.commands import cli

REQUIRED = {"model", "params", "gflops", "latency_ms", "images_per_s", "imgsz", "batch", "device", "peak_mem_mb"}


@pytest.mark.slow
def test_tiny_run_writes_json(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sub" / "bench.json"
    args = ["benchmark", "--models", "yolov5n_effv2.yaml", "yolov5nu.yaml", "--imgsz", "64", "--batch", "1", "2"]
    args += ["--repeats", "1", "--warmup", "0", "--threads", "1", "--train", "--onnx", "--json", str(out)]
    assert cli.main([*args, "--no-progress"]) == 0
    rows = json.loads(out.read_text())
    assert [(r["model"], r["batch"]) for r in rows] == [
        ("yolov5n_effv2", 1), ("yolov5nu", 1), ("yolov5n_effv2", 2), ("yolov5nu", 2)
    ]  # fmt: skip
    for r in rows:
        assert REQUIRED <= r.keys(), r
        assert r["imgsz"] == 64 and r["device"] == "cpu" and r["threads"] == 1
        assert r["params"] > 1e6 and r["gflops"] > 0 and r["latency_ms"] > 0
        assert r["train_images_per_s"] > 0 and r["onnx_ms"] > 0
    assert rows[0]["latency_ms_ratio"] == 1.0 and rows[2]["onnx_ms_ratio"] == 1.0
    assert rows[1]["latency_ms_ratio"] == pytest.approx(rows[1]["latency_ms"] / rows[0]["latency_ms"])
    assert rows[0]["params"] != rows[1]["params"]  # two different models were really built
    table = capsys.readouterr().out
    assert "yolov5n_effv2" in table and "x first" in table and "train img/s" in table and "onnx(ms)" in table
    assert [p.name for p in out.parent.iterdir()] == ["bench.json"]  # atomic write left no temp file


@pytest.mark.slow
def test_openvino_fp32_and_int8(tmp_path, demo_data, monkeypatch):
    """OpenVINO through Ultralytics' exporter, FP32 and INT8 (NNCF, calibrated on the dataset's images), timed by
    OpenVINO's runtime; the INT8 graph really holds quantized ops."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    monkeypatch.chdir(tmp_path)
    rows = bench.benchmark(["yolov5n_effv2-lite.yaml", "yolov5n_effv2.yaml"], [64], [1], repeats=1, warmup=0,
                           threads=1, openvino=True, int8=str(demo_data), progress=False)
    for r in rows:
        assert r["openvino_ms"] > 0 and r["openvino_int8_ms"] > 0
    assert rows[0]["openvino_ms_ratio"] == rows[0]["openvino_int8_ms_ratio"] == 1.0
    xml = bench.export_openvino(bench.load_model("yolov5n_effv2-lite.yaml"), 64, 1, tmp_path, "q", str(demo_data))
    assert "FakeQuantize" in xml.read_text() or "FakeConvert" in xml.read_text()


def test_table_columns_and_alignment():
    rows = [
        {"model": "a", "imgsz": 64, "batch": 1, "params": 2.5e6, "gflops": 0.5, "latency_ms": 10.0,
         "latency_ms_ratio": 1.0, "images_per_s": 100.0, "extra_mem_mb": 3.0},
        {"model": "longer_name", "imgsz": 64, "batch": 1, "params": 12.25e6, "gflops": 1.25, "latency_ms": 5.0,
         "latency_ms_ratio": 0.5, "images_per_s": 200.0, "extra_mem_mb": 0.0},
    ]  # fmt: skip
    lines = bench.table(rows).splitlines()
    assert lines[0].split() == ["model", "imgsz", "batch", "params(M)", "GFLOPs", "latency(ms)", "x", "first", "img/s",
                                "mem+(MB)"]  # fmt: skip
    assert lines[2].split() == ["longer_name", "64", "1", "12.25", "1.25", "5.00", "0.50", "200.0", "0"]
    assert len({len(x) for x in lines}) == 1  # one width: names padded right, figures padded left
    assert lines[1].startswith("a          ") and lines[1].endswith(" 3")


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--models", "yolov5s_nothing.yaml"], "yolov5{n,s,m,l,x}_effv2.yaml"),  # lists the shipped names
        (["--models", "cfg/missing.yaml"], "'cfg/missing.yaml': file not found"),
        (["--models", "gone.pt"], "'gone.pt': file not found"),  # never a download attempt
        (["--models", "yolov5nu.yaml", "--int8", "nothere.yaml"], "--int8 nothere.yaml: dataset YAML not found"),
        (["--models", "yolov5nu.yaml", "--device", "7"], "device '7' is not available"),
        (["--models", "yolov5nu.yaml", "--half"], "--half needs a CUDA device"),
        (["--models", "yolov5nu.yaml", "--imgsz", "100"], "imgsz must be multiples of 32"),
        (["--models", "yolov5nu.yaml", "--threads", "0"], "--threads must be a positive integer, got 0"),
    ],
)
def test_bad_input_one_line(capsys, tmp_path, monkeypatch, argv, expected):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["benchmark", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("effdet-plugin benchmark: error:") and expected in err[0], err
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing downloaded


def test_cpu_latency_importable():
    ms = bench.cpu_latency({"a": "yolov5n_effv2.yaml", "b": "yolov5nu.yaml"}, imgsz=64, repeats=1, warmup=0, threads=1)
    assert set(ms) == {"a", "b"} and all(v > 0 for v in ms.values())


def test_fused_model_matches_unfused():
    import torch

    model = bench.load_model("yolov5n_effv2.yaml").eval()
    fused = bench.inference_model(model, torch.device("cpu"))
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(model(x)[0], fused(x)[0], atol=1e-3)
    assert not any(hasattr(m, "bn") for m in fused.modules())  # every BatchNorm folded


def test_write_json_atomic_replaces(tmp_path):
    f = tmp_path / "rows.json"
    f.write_text("old")
    bench.write_json([{"model": "x"}], f)
    assert json.loads(f.read_text()) == [{"model": "x"}] and len(list(tmp_path.iterdir())) == 1
