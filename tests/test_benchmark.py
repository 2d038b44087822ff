"""``effdet-plugin benchmark``: a tiny run writes valid JSON and a table; bad input gives one clear line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from effdet_plugin.commands import benchmark as bench
from effdet_plugin.commands import cli
from effdet_plugin.commands.benchmark import BenchmarkConfig
from effdet_plugin.commands.results import load_record
from effdet_plugin.commands.runtimes import cuda_graph_step, export_openvino, images

REQUIRED = {"model", "params", "gflops", "latency_ms", "images_per_s", "imgsz", "batch", "device", "peak_mem_mb"}


@pytest.mark.slow
def test_tiny_run_writes_json(tmp_path, capsys, monkeypatch):
    from ultralytics.utils import NUM_THREADS

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sub" / "bench.json"
    args = ["benchmark", "--models", "yolov5n_effv2.yaml", "yolov5nu.yaml", "--imgsz", "64", "--batch", "1", "2"]
    # not Ultralytics' NUM_THREADS, which its exporter sets torch to: every setting must be timed at --threads
    threads = NUM_THREADS + 1
    args += ["--repeats", "1", "--warmup", "0", "--threads", str(threads), "--train", "--onnx", "--json", str(out)]
    assert cli.main([*args, "--no-progress"]) == 0
    record = json.loads(out.read_text())
    assert record["kind"] == "benchmark" and record["meta"]["argv"] == ["effdet-plugin", *args, "--no-progress"]
    assert {"onnx", "onnxruntime", "torch", "ultralytics", "effdet-plugin"} <= record["meta"]["versions"].keys()
    rows = record["rows"]
    assert [(t.model, t.batch) for t in load_record(out).timings] == [(r["model"], r["batch"]) for r in rows]
    assert [(r["model"], r["batch"]) for r in rows] == [
        ("yolov5n_effv2", 1),
        ("yolov5nu", 1),
        ("yolov5n_effv2", 2),
        ("yolov5nu", 2),
    ]
    for r in rows:
        assert REQUIRED <= r.keys(), r
        assert r["imgsz"] == 64 and r["device"] == "cpu" and r["threads"] == threads
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
    config = BenchmarkConfig(
        (64,),
        (1,),
        runtimes=("openvino", "int8"),
        int8_data=str(demo_data),
        repeats=1,
        warmup=0,
        threads=1,
        progress=False,
    )
    rows = bench.benchmark(["yolov5n_effv2-lite.yaml", "yolov5n_effv2.yaml"], config)
    for r in rows:
        assert r["openvino_ms"] > 0 and r["openvino_int8_ms"] > 0
    assert rows[0]["openvino_ms_ratio"] == rows[0]["openvino_int8_ms_ratio"] == 1.0
    xml = export_openvino(bench.load_model("yolov5n_effv2-lite.yaml"), 64, 1, tmp_path, "q", str(demo_data))
    assert "FakeQuantize" in xml.read_text() or "FakeConvert" in xml.read_text()


def test_int8_export_switch_is_the_hosts_own():
    """The INT8 switch given to the exporter turns INT8 on in the installed host's config and draws no deprecation
    warning (``int8=True`` does from the releases that have ``quantize``); 8.4.0's config has only ``int8``."""
    import logging

    from ultralytics.cfg import get_cfg
    from ultralytics.utils import LOGGER

    from effdet_plugin.hosts.ultralytics import int8_export_args

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    LOGGER.addHandler(handler)
    try:
        cfg = get_cfg(overrides={"format": "openvino", **int8_export_args()})
    finally:
        LOGGER.removeHandler(handler)
    assert not [m for m in seen if "deprecated" in m], seen
    assert (getattr(cfg, "quantize", None) == 8) if hasattr(cfg, "quantize") else cfg.int8 is True


def test_default_threads_are_torchs_own():
    """Without ``threads`` the timing runs at torch's thread count, not at the NUM_THREADS that Ultralytics'
    select_device sets (cores - 1): accuracy's latency column is timed this way."""
    import torch
    from ultralytics.utils import NUM_THREADS

    old = torch.get_num_threads()
    torch.set_num_threads(NUM_THREADS + 1)
    try:
        rows = bench.benchmark(["yolov5nu.yaml"], BenchmarkConfig((64,), (1,), repeats=1, warmup=0, progress=False))
        assert rows[0]["threads"] == torch.get_num_threads() == NUM_THREADS + 1
    finally:
        torch.set_num_threads(old)


def test_table_columns_and_alignment():
    rows = [
        {
            "model": "a",
            "imgsz": 64,
            "batch": 1,
            "params": 2.5e6,
            "gflops": 0.5,
            "latency_ms": 10.0,
            "latency_ms_ratio": 1.0,
            "images_per_s": 100.0,
            "extra_mem_mb": 3.0,
        },
        {
            "model": "longer_name",
            "imgsz": 64,
            "batch": 1,
            "params": 12.25e6,
            "gflops": 1.25,
            "latency_ms": 5.0,
            "latency_ms_ratio": 0.5,
            "images_per_s": 200.0,
            "extra_mem_mb": 0.0,
        },
    ]
    lines = bench.table(rows).splitlines()
    assert lines[0].split() == [
        "model",
        "imgsz",
        "batch",
        "params(M)",
        "GFLOPs",
        "latency(ms)",
        "x",
        "first",
        "img/s",
        "mem+(MB)",
    ]
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
        (["--models", "yolov5nu.yaml", "--cuda-graph"], "--cuda-graph needs a CUDA device"),
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


@pytest.mark.slow
def test_cpu_latency_importable():
    ms = bench.cpu_latency({"a": "yolov5n_effv2.yaml", "b": "yolov5nu.yaml"}, imgsz=64, repeats=1, warmup=0, threads=1)
    assert set(ms) == {"a", "b"} and all(v > 0 for v in ms.values())


@pytest.mark.slow
def test_fused_model_matches_unfused():
    import torch

    model = bench.load_model("yolov5n_effv2.yaml").eval()
    fused = bench.inference_model(model, torch.device("cpu"))
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(model(x)[0], fused(x)[0], atol=1e-3)
    assert not any(hasattr(m, "bn") for m in fused.modules())  # every BatchNorm folded


@pytest.mark.slow
def test_channels_last_models_inputs_and_training():
    """--channels-last really lays weights and inputs out as NHWC, for inference and for the training step, and the
    fused model computes the same detections either way."""
    import torch

    model = bench.load_model("yolov5n_effv2.yaml").eval()
    nchw = bench.inference_model(model, torch.device("cpu"))
    nhwc = bench.inference_model(model, torch.device("cpu"), channels_last=True)
    convs = [m.weight for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    x = images(1, 64, torch.device("cpu"), channels_last=True)
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    with torch.inference_mode():
        assert torch.allclose(nchw(x.contiguous())[0], nhwc(x)[0], atol=1e-4)
    config = BenchmarkConfig(
        (64,), (1,), runtimes=("train",), channels_last=True, repeats=1, warmup=0, threads=1, progress=False
    )
    rows = bench.benchmark([model], config)
    assert rows[0]["channels_last"] is True and rows[0]["train_images_per_s"] > 0 and "graph_ms" not in rows[0]


def test_cuda_graph_needs_cuda():
    import torch

    with pytest.raises(ValueError, match="--cuda-graph needs a CUDA device"):
        cuda_graph_step(torch.nn.Identity(), torch.zeros(1, 3, 32, 32))


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA device (tools/gpu_check.sh)")
def test_cuda_graph_replay_equals_eager():
    """The graphed forward computes what the eager one does, and the benchmark times it beside the eager one."""
    import torch

    dev = torch.device("cuda")
    m = bench.inference_model(bench.load_model("yolov5n_effv2.yaml"), dev, half=True, channels_last=True)
    x = images(1, 640, dev, torch.float16, channels_last=True)
    replay = cuda_graph_step(m, x)
    with torch.inference_mode():
        assert torch.allclose(replay()[0], m(x)[0], atol=1e-2)
    config = BenchmarkConfig(
        (640,), (1,), device="0", runtimes=("cuda_graph",), half=True, repeats=3, warmup=1, progress=False
    )
    rows = bench.benchmark(["yolov5nu.yaml", "yolov5n_effv2.yaml"], config)
    assert all(r["graph_ms"] > 0 for r in rows) and rows[0]["graph_ms_ratio"] == 1.0


@pytest.mark.slow
def test_gpu_check_script_runs_end_to_end_on_cpu(tmp_path):
    """tools/gpu_check.sh, the prepared GPU run, completes at toy sizes on the CPU (SMOKE=1): a renamed flag or a
    broken summary shows here, not during a short GPU lease."""
    out = tmp_path / "out"
    script = Path(__file__).resolve().parents[1] / "tools" / "gpu_check.sh"
    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable}
    r = subprocess.run(
        ["bash", str(script), "run", str(out)], check=False, env=env, capture_output=True, text=True, timeout=1200
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert sorted(f.name for f in out.iterdir()) == [
        "bench_n.json",
        "device.txt",
        "gpu.md",
        "log.txt",
        "tests.log",
        "train.csv",
    ]
    with open(out / "train.csv") as f:
        runs = list(csv.DictReader(f))
    assert [(t["model"], t["epochs"]) for t in runs] == [("yolov5nu", "2"), ("yolov5n_effv2", "2")]
    assert all(float(t["epoch_s"]) > 0 for t in runs)
    table = (out / "gpu.md").read_text().splitlines()
    assert table[2].startswith("| model | batch | latency ms (x) | CUDA graph ms (x) | train img/s (x) |")
    assert [line.split("|")[1:3] for line in table[4:]] == [
        [" yolov5nu ", " 1 "],
        [" yolov5n_effv2 ", " 1 "],
        [" yolov5nu ", " 4 "],
        [" yolov5n_effv2 ", " 4 "],
    ]
    assert table[6].rstrip().endswith("(1.00) |")  # the baseline's yolo-train ratio


def test_interleave_runs_every_step_once_per_round_in_rotating_order():
    """The one timing loop: each round runs every step once, each round starts one step later, warm-up rounds are
    run but not returned."""
    import torch

    from effdet_plugin.commands.timing import interleave

    seen: list[str] = []
    steps = {name: (lambda name=name: seen.append(name)) for name in "abc"}
    times = interleave(steps, torch.device("cpu"), repeats=3, warmup=1)
    rounds = [seen[i : i + 3] for i in range(0, len(seen), 3)]
    assert rounds == [list("abc"), list("bca"), list("cab"), list("abc")]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3} and all(t >= 0 for t in times["a"])


@pytest.mark.slow
def test_every_model_and_runtime_is_timed_in_one_loop():
    """Two runtimes of two models at one setting: one interleaved loop over the four (model, runtime) pairs, so the
    training step and eager inference of both models share every round; each row gets every runtime's figure."""
    config = BenchmarkConfig((64,), (1,), runtimes=("train",), repeats=2, warmup=0, threads=1, progress=False)
    rows = bench.benchmark(["yolov5n_effv2.yaml", "yolov5nu.yaml"], config)
    assert config.runtimes == ("pytorch", "train")
    for r in rows:
        assert r["latency_ms"] > 0 and r["train_images_per_s"] > 0 and r["extra_mem_mb"] >= 0
    assert rows[0]["train_images_per_s_ratio"] == 1.0
    ratio = rows[1]["train_images_per_s"] / rows[0]["train_images_per_s"]
    assert rows[1]["train_images_per_s_ratio"] == pytest.approx(ratio)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"runtimes": ("tensorrt",)}, "unknown runtime(s) ['tensorrt']: expected some of pytorch, cuda_graph, train"),
        ({"runtimes": ("int8",)}, "the int8 runtime needs int8_data"),
        ({"imgsz": (64, 0)}, "imgsz must be a positive integer, got 0"),
        ({"warmup": -1}, "--warmup must be >= 0, got -1"),
    ],
)
def test_config_refuses_bad_settings(kwargs, message):
    with pytest.raises(bench.BenchmarkError) as e:
        BenchmarkConfig(**kwargs)
    assert message in str(e.value) and len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize("flag, blocked", [("--onnx", "onnxruntime"), ("--openvino", "openvino")])
def test_runtime_without_its_extra_names_the_extra_before_any_work(flag, blocked, capsys, tmp_path, monkeypatch):
    """A bare install lacks the deploy extra: the command stops at once with one line naming it (an import Python
    itself blocks, as for a package that is not installed), before any model is built or anything is written."""
    import sys

    monkeypatch.setitem(sys.modules, blocked, None)
    monkeypatch.chdir(tmp_path)
    argv = ["benchmark", "--models", "yolov5nu.yaml", "--imgsz", "64", flag, "--json", "out.json", "--no-progress"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    expected = f'effdet-plugin benchmark: error: {flag} needs {blocked}, which a bare install lacks: pip install "'
    assert err == [expected + 'effdet-plugin[deploy]"'], err
    assert list(tmp_path.iterdir()) == []
