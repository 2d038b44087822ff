#!/usr/bin/env bash
# The GPU check of the recommended family against yolov5u at n, s and m, as one prepared run (about 8 minutes on an
# H200), so a short lease of a GPU machine is spent measuring, not setting up:
#   1. the CUDA-only tests (a CUDA-graph replay computes what the eager forward does);
#   2. `effdet-plugin benchmark` per scale at 640, fp16/AMP, channels_last: batch-1 and batch-64 latency, eager and
#      replayed from a CUDA graph, and forward+loss+backward+step images/s at batch 64;
#   3. a short real `yolo train` of every model (3 epochs, batch 64, 640, AMP) on generated demo data: seconds per
#      epoch.
# Every ratio is against the same-letter yolov5u measured in the same process or loop.
#
#   bash tools/gpu_check.sh wheels       # here, online: the wheels a bare GPU image lacks, and ours, into .whl/
#   bash tools/gpu_check.sh run OUT      # there, offline: installs .whl/ if Ultralytics is missing, writes OUT/gpu.md
#
# OUT receives at most 8 files (gpu.md, log.txt, device.txt, tests.log, bench_{n,s,m}.json, train.csv); the runs
# themselves stay in a temporary folder. SMOKE=1 runs every step on the CPU at toy sizes, to check the script itself;
# PYTHON names the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

wheels() {
    # Ultralytics, what it imports that such an image may lack (thop, polars), pycocotools, and effdet-plugin itself,
    # for Python 3.12 on x86-64 Linux (a device image's python3).
    local target=(--only-binary=:all: --python-version "${PYVER:-3.12}" --implementation cp -d .whl
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
    mkdir -p .whl
    python -m pip download -q --no-deps "${target[@]}" ultralytics-thop pycocotools \
        "ultralytics==$(python -c 'import ultralytics; print(ultralytics.__version__)')"
    # with its dependencies: newer polars releases put the compiled part in a package of its own
    python -m pip download -q "${target[@]}" "polars==$(python -c 'import polars; print(polars.__version__)')"
    python -m pip wheel -q --no-deps -w .whl .
    du -sh .whl
}

run() {
    local out=${1:?usage: tools/gpu_check.sh run OUT}
    mkdir -p "$out"
    out=$(cd "$out" && pwd)
    exec > >(tee "$out/log.txt") 2>&1
    export YOLO_OFFLINE=1 PYTHONUNBUFFERED=1
    local py=${PYTHON:-python3}  # the interpreter that holds torch (a GPU image's python3)
    if ! "$py" -c "import effdet_plugin, ultralytics" 2>/dev/null; then
        # into the interpreter that holds the image's torch (itself a venv there, so a venv on top of it would not see
        # torch): the plugin's start-up hook (.pth) and the `yolo` and `effdet-plugin` commands come with the wheels
        "$py" -m pip install -q --no-index --no-deps --no-compile .whl/*.whl
    fi
    PATH="$("$py" -c 'import os, sys; print(os.path.dirname(sys.executable))'):$PATH"
    local tmp
    tmp=$(mktemp -d)
    local device=0 size=640 batch=64 epochs=3 ntrain=1024 nval=128 scales="n s m" flags="--half --cuda-graph"
    if [ "${SMOKE:-0}" = 1 ]; then
        device=cpu size=64 batch=4 epochs=2 ntrain=16 nval=4 scales="n" flags=""
    fi
    "$py" -c "import torch, ultralytics; print('torch', torch.__version__, 'ultralytics', ultralytics.__version__, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')" | tee "$out/device.txt"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >>"$out/device.txt" 2>&1 || true

    "$py" -m pytest -q -p no:cacheprovider tests/test_benchmark.py -k cuda 2>&1 | tee "$out/tests.log"

    for s in $scales; do
        # shellcheck disable=SC2086  # flags is a word list
        effdet-plugin benchmark --models "yolov5${s}u.yaml" "yolov5${s}_effv2.yaml" --imgsz "$size" --batch 1 "$batch" \
            --device "$device" $flags --channels-last --train --repeats 30 --warmup 5 --no-progress \
            --json "$out/bench_$s.json"
    done

    effdet-plugin demo-data "$tmp/demo" --train "$ntrain" --val "$nval" --imgsz "$size" >/dev/null
    for s in $scales; do
        for m in "yolov5${s}u" "yolov5${s}_effv2"; do
            yolo train model="$m.yaml" data="$tmp/demo/data.yaml" epochs="$epochs" imgsz="$size" batch="$batch" \
                workers=8 device="$device" seed=0 plots=False project="$tmp/runs" name="$m" exist_ok=True
        done
    done

    "$py" - "$out" "$tmp/runs" "$scales" <<'EOF'
import csv, json, sys
from pathlib import Path

out, runs, scales = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split()
train_rows, lines = [], [f"# GPU check ({(out / 'device.txt').read_text().splitlines()[0]})", ""]
lines += ["| model | batch | latency ms (x) | CUDA graph ms (x) | train img/s (x) | yolo train s/epoch (x) |",
          "| --- | ---: | ---: | ---: | ---: | ---: |"]
for s in scales:
    epoch_s = {}
    for m in (f"yolov5{s}u", f"yolov5{s}_effv2"):
        t = [float(r["time"]) for r in csv.DictReader(open(runs / m / "results.csv"))]
        # the first epoch pays for data caching and cuDNN autotuning: steady state is the mean of the later ones
        epoch_s[m] = (t[-1] - t[0]) / (len(t) - 1) if len(t) > 1 else t[0]
        train_rows.append({"model": m, "epochs": len(t), "total_s": t[-1], "epoch_s": epoch_s[m]})
    base = epoch_s[f"yolov5{s}u"]
    for r in json.loads((out / f"bench_{s}.json").read_text())["rows"]:  # a results-store record
        def cell(key, fmt):
            return "-" if key not in r else f"{r[key]:{fmt}} ({r[key + '_ratio']:.2f})"
        e = f"{epoch_s[r['model']]:.2f} ({epoch_s[r['model']] / base:.2f})" if r["batch"] != 1 else ""
        lines.append(f"| {r['model']} | {r['batch']} | {cell('latency_ms', '.2f')} | {cell('graph_ms', '.2f')} | "
                     f"{cell('train_images_per_s', '.0f')} | {e} |")
with open(out / "train.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(train_rows[0]))
    w.writeheader()
    w.writerows(train_rows)
(out / "gpu.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
    rm -rf "$tmp"
}

case "${1:-}" in
    wheels) wheels ;;
    run) run "${2:-}" ;;
    *) echo "usage: $0 wheels | run OUT" >&2; exit 2 ;;
esac
