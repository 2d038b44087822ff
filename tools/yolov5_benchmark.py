"""Params, GFLOPs and fused CPU latency of the classic effdet-plugin YAMLs next to YOLOv5's own, in one run.

Run with a python that has the ``yolov5`` pip package (``bash tools/setup_yolov5_env.sh DIR``) or from a clone of
ultralytics/yolov5 (``--repo PATH``: its ``models.yolo`` and ``models/yolov5{n,s}.yaml``):

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 YOLOV5_CONFIG_DIR=DIR/yolov5-config DIR/bin/python tools/yolov5_benchmark.py

Every model is built by YOLOv5's own ``DetectionModel`` (80 classes), fused (``fuse()``: BatchNorm folded), in eval
mode. GFLOPs are thop's count at 640x640 (as YOLOv5's model summary reports them). Latency: batch 1, 640x640, float32,
``torch.set_num_threads(THREADS)``; after a warm-up, each round times every model once, in an order that rotates from
round to round (interleaved, so a busy spell on the machine is shared by all models); median and interquartile range
over the rounds. The load average before and after is printed: compare rows of one run only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from copy import deepcopy
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
CLASSIC = ("yolov5n_effv2.yaml", "yolov5s_effv2.yaml", "yolov5n_effv2_bifpn.yaml", "yolov5s_effv2_bifpn.yaml")
HOST = ("yolov5n.yaml", "yolov5s.yaml")


def _yolo(repo: str | None):
    if repo:
        sys.path.insert(0, str(Path(repo).resolve()))
        from models import yolo  # the clone's, activated by effdet-plugin's start-up hook
    else:
        from yolov5.models import yolo
    return yolo


def _model_paths(yolo, repo: str | None) -> dict[str, Path]:
    from effdet_plugin.paths import model_yaml_dir

    host_dir = Path(repo) / "models" if repo else Path(yolo.__file__).parent
    paths = {}
    for a, b in zip(HOST, CLASSIC):  # yolov5n, yolov5n_effv2, yolov5s, yolov5s_effv2, then the BiFPN ones
        paths[a], paths[b] = host_dir / a, model_yaml_dir() / "yolov5" / b
    for b in CLASSIC[len(HOST):]:
        paths[b] = model_yaml_dir() / "yolov5" / b
    return paths


def _gflops(model, imgsz: int) -> float:
    import thop

    return thop.profile(deepcopy(model), inputs=(torch.zeros(1, 3, imgsz, imgsz),), verbose=False)[0] / 1e9 * 2


def measure(repo: str | None, imgsz: int, threads: int, warmup: int, rounds: int, only: list[str] | None) -> dict:
    """Build, fuse and time every model; return the table as a dict."""
    torch.set_num_threads(threads)
    yolo = _yolo(repo)
    logging.getLogger("yolov5").setLevel(logging.ERROR)
    paths = {k: v for k, v in _model_paths(yolo, repo).items() if not only or k in only}
    models, rows = {}, {}
    for name, path in paths.items():
        m = yolo.DetectionModel(str(path)).eval()
        params = sum(p.numel() for p in m.parameters())
        m.fuse()
        models[name] = m
        rows[name] = {"params": params, "gflops": round(_gflops(m, imgsz), 2), "file": str(path)}
    x = torch.rand(1, 3, imgsz, imgsz)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {n: [] for n in models}
    names = list(models)
    with torch.inference_mode():
        for _ in range(warmup):
            for n in names:
                models[n](x)
        for r in range(rounds):
            for n in names[r % len(names):] + names[: r % len(names)]:
                t = time.perf_counter()
                models[n](x)
                times[n].append((time.perf_counter() - t) * 1000)
    for n, ts in times.items():
        q = statistics.quantiles(ts, n=4)
        rows[n].update(ms_median=round(statistics.median(ts), 1), ms_q1=round(q[0], 1), ms_q3=round(q[2], 1))
    return {"rows": rows, "imgsz": imgsz, "threads": threads, "warmup": warmup, "rounds": rounds,
            "loadavg_before": [round(v, 2) for v in load_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()], "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "host": "clone" if repo else "pip yolov5"}


def markdown(result: dict) -> str:
    """The table as Markdown."""
    lines = [f"| model | params | GFLOPs ({result['imgsz']}) | fused CPU latency, ms: median (IQR) |",
             "| --- | ---: | ---: | ---: |"]
    for name, r in result["rows"].items():
        lines.append(f"| {name} | {r['params']:,} | {r['gflops']:.1f} | {r['ms_median']:.1f} "
                     f"({r['ms_q1']:.1f}-{r['ms_q3']:.1f}) |")
    lines.append(f"\nbatch 1, {result['imgsz']}x{result['imgsz']}, {result['threads']} threads, {result['rounds']} "
                 f"interleaved rounds after {result['warmup']} warm-up; torch {result['torch']}, {result['host']}; load "
                 f"average {result['loadavg_before'][0]} before, {result['loadavg_after'][0]} after")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", help="a clone of ultralytics/yolov5 (default: the yolov5 pip package)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--models", nargs="*", help=f"subset of {', '.join(HOST + CLASSIC)}")
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args(argv)
    result = measure(args.repo, args.imgsz, args.threads, args.warmup, args.rounds, args.models)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
