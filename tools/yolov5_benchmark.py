"""Params, GFLOPs and fused CPU latency of the classic effdet-plugin YAMLs next to YOLOv5's own, in one run.

Run with a python that has the ``yolov5`` pip package (``bash tools/setup_yolov5_env.sh DIR``) or from a clone of
ultralytics/yolov5 (``--repo PATH``: its ``models.yolo`` and ``models/yolov5{n,s}.yaml``):

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 YOLOV5_CONFIG_DIR=DIR/yolov5-config DIR/bin/python tools/yolov5_benchmark.py

Every model is built by YOLOv5's own ``DetectionModel`` (80 classes), fused (``fuse()``: BatchNorm folded), in eval
mode. GFLOPs are thop's count at 640x640 (as YOLOv5's model summary reports them). Latency: batch 1, 640x640, float32,
``torch.set_num_threads(THREADS)``; after a warm-up, each round times every model once, in an order that rotates from
round to round (interleaved, so a busy spell on the machine is shared by all models); median and interquartile range
over the rounds. The rounds run through ``effdet_plugin.commands.timing.interleave``, the loop ``effdet-plugin
benchmark`` times with. The load average before and after is printed: compare rows of one run only. ``--json`` writes
a results-store record (kind ``benchmark``) as ``effdet-plugin benchmark --json`` does.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
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
    for b in CLASSIC[len(HOST) :]:
        paths[b] = model_yaml_dir() / "yolov5" / b
    return paths


def _gflops(model, imgsz: int) -> float:
    import thop

    return thop.profile(deepcopy(model), inputs=(torch.zeros(1, 3, imgsz, imgsz),), verbose=False)[0] / 1e9 * 2


def measure(repo: str | None, imgsz: int, threads: int, warmup: int, rounds: int, only: list[str] | None) -> list[dict]:
    """Build, fuse and time every model; return one results-store row per model."""
    from effdet_plugin.commands.timing import interleave

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
        rows[name] = {"model": Path(name).stem, "file": str(path), "params": params, "gflops": _gflops(m, imgsz)}
    x = torch.rand(1, 3, imgsz, imgsz)
    load_before = os.getloadavg()
    with torch.inference_mode():
        seconds = interleave({n: (lambda m=m: m(x)) for n, m in models.items()}, torch.device("cpu"), rounds, warmup)
    load_after = os.getloadavg()
    for n, sec in seconds.items():
        ms = [t * 1e3 for t in sec]
        q = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
        rows[n].update(
            imgsz=imgsz,
            batch=1,
            device="cpu",
            threads=threads,
            latency_ms=statistics.median(ms),
            latency_q1_ms=q[0],
            latency_q3_ms=q[2],
            host="clone" if repo else "pip yolov5",
            loadavg_before=[round(v, 2) for v in load_before],
            loadavg_after=[round(v, 2) for v in load_after],
        )
    return list(rows.values())


def markdown(rows: list[dict], warmup: int, rounds: int) -> str:
    """The table as Markdown."""
    r0 = rows[0]
    lines = [
        f"| model | params | GFLOPs ({r0['imgsz']}) | fused CPU latency, ms: median (IQR) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['gflops']:.1f} | {r['latency_ms']:.1f} "
            f"({r['latency_q1_ms']:.1f}-{r['latency_q3_ms']:.1f}) |"
        )
    lines.append(
        f"\nbatch 1, {r0['imgsz']}x{r0['imgsz']}, {r0['threads']} threads, {rounds} interleaved rounds after "
        f"{warmup} warm-up; torch {torch.__version__}, {r0['host']}; load average "
        f"{r0['loadavg_before'][0]} before, {r0['loadavg_after'][0]} after"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", help="a clone of ultralytics/yolov5 (default: the yolov5 pip package)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--models", nargs="*", help=f"subset of {', '.join(HOST + CLASSIC)}")
    p.add_argument("--json", type=Path, help="also write a results-store record (rows, command, machine, versions)")
    args = p.parse_args(argv)
    rows = measure(args.repo, args.imgsz, args.threads, args.warmup, args.rounds, args.models)
    if args.json:
        from effdet_plugin.commands.results import make_meta, write_record

        meta = make_meta(packages=() if args.repo else ("yolov5",))
        meta["argv"] = ["tools/yolov5_benchmark.py", *(sys.argv[1:] if argv is None else argv)]
        write_record(args.json, "benchmark", rows, meta=meta)
    print(markdown(rows, args.warmup, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
