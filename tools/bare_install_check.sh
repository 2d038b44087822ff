#!/usr/bin/env bash
# Every subcommand's whole path in an environment holding only `pip install .` (no extras), on tiny generated data.
#
#   bash tools/bare_install_check.sh [PYTHON] [WORKDIR]     # PYTHON: the interpreter to make the venv from
#
# torch and torchvision are pinned first, as .ci/run pins them (the `torch>=2.14` requirement alone would let pip pick
# a newer, larger build); then `pip install .` and nothing else. Each step must succeed, except the options that need
# the deploy extra, which must fail at once with their one-line message naming it. Any other failure stops the script
# with a non-zero status. The work folder (a temporary one unless given) is removed at the end unless KEEP=1.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${1:-python3}
WORK=${2:-$(mktemp -d)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)

"$PY" -m venv "$WORK/venv"
V="$WORK/venv/bin"
"$V/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
"$V/python" -m pip install -q "$REPO"
unset PYTHONPATH  # the installed package only, never a work tree
export YOLO_OFFLINE=1 YOLO_CONFIG_DIR="$WORK/yolo-config" OMP_NUM_THREADS=1 MPLBACKEND=Agg
cd "$WORK"
E="$V/effdet-plugin"
step() { echo "== $*"; "$@"; }
refused() {  # a command that needs an extra: exit 2, one line naming the extra, nothing else done
    echo "== (must refuse) $*"
    local err rc=0
    err=$("$@" 2>&1 >/dev/null) || rc=$?
    if [ "$rc" != 2 ] || [ "$(printf '%s\n' "$err" | wc -l)" != 1 ] || ! grep -q 'effdet-plugin\[deploy\]' <<<"$err"; then
        echo "expected one line naming effdet-plugin[deploy] and exit 2, got exit $rc: $err" >&2
        exit 1
    fi
    echo "   $err"
}

# nothing from the extras (nor scipy, which Ultralytics 8.4 no longer brings) is installed: a bare install
for m in onnxruntime openvino nncf scipy; do
    if "$V/python" -c "import $m" 2>/dev/null; then
        echo "the bare environment holds $m: not a bare install" >&2
        exit 1
    fi
done

step "$E" --help >/dev/null
for c in $("$V/python" -c "from effdet_plugin.commands.cli import COMMANDS; print(*COMMANDS)"); do
    step "$E" "$c" --help >/dev/null
done
step "$E" demo-data data --train 16 --val 4 --test 4 --imgsz 64
step "$E" yaml yolov5s_effv2.yaml -o yolov5s_effv2.yaml
step "$E" yaml yolov5s_effv2.yaml --format yolov5 -o classic_yolov5s_effv2.yaml
step "$E" swap yolov8s.yaml --backbone effv2 -o yolov8s_effv2.yaml

# a tiny Pascal VOC folder, written from the demo labels
"$V/python" - <<'EOF'
from pathlib import Path
from PIL import Image
src, dst = Path("data"), Path("voc")
dst.mkdir()
names = ["circle", "square", "triangle"]
for img in sorted((src / "images" / "train").glob("*.jpg"))[:10]:
    w, h = Image.open(img).size
    objs = ""
    for row in (src / "labels" / "train" / f"{img.stem}.txt").read_text().split("\n"):
        if row.strip():
            c, x, y, bw, bh = row.split()
            x, y, bw, bh = float(x) * w, float(y) * h, float(bw) * w, float(bh) * h
            objs += (f"<object><name>{names[int(c)]}</name><bndbox><xmin>{x - bw / 2:.0f}</xmin><ymin>{y - bh / 2:.0f}"
                     f"</ymin><xmax>{x + bw / 2:.0f}</xmax><ymax>{y + bh / 2:.0f}</ymax></bndbox></object>")
    (dst / img.name).write_bytes(img.read_bytes())
    (dst / f"{img.stem}.xml").write_text(f"<annotation><filename>{img.name}</filename><size><width>{w}</width>"
                                         f"<height>{h}</height><depth>3</depth></size>{objs}</annotation>")
EOF
step "$E" voc2yolo voc voc_yolo
# a tiny clone in the drones source's layout (N.jpg, N.bboxes.tsv, N.bboxes.labels.tsv), from the same demo images
"$V/python" - <<'EOF'
from pathlib import Path
src, dst = Path("voc"), Path("drone-detection/DataSets/Drones/positive")
dst.mkdir(parents=True)
for k, img in enumerate(sorted(src.glob("*.jpg")), 1):
    (dst / f"{k}.jpg").write_bytes(img.read_bytes())
    (dst / f"{k}.bboxes.tsv").write_text("2\t3\t20\t30\n")
    (dst / f"{k}.bboxes.labels.tsv").write_text("drone\n")
EOF
step "$E" prepare-data drones drone-detection drones_yolo

# convert-weights from a torchvision-named state dict made here (no download), bifpn-weights on a BiFPN YAML
"$V/python" -c "import torch, torchvision; torch.save(torchvision.models.efficientnet_b0().state_dict(), 'b0.pth')"
step "$E" convert-weights --model yolov5s_effb0.yaml --weights b0.pth --out b0.pt --nc 3
step "$E" bifpn-weights yolov5n_effv2_bifpn.yaml

recipe=(--data data/data.yaml --epochs 1 --imgsz 64 --batch 8 --device cpu --workers 0 --repeats 1)
# two models, two seeds each: the table's Welch p-value column (one epoch scores 0 on every seed, so the p-value
# itself is exercised by `render` below, on records whose seeds differ)
step "$E" accuracy --models yolov5nu.yaml yolov5n_effv2.yaml --seeds 0 1 "${recipe[@]}" --project runs \
    --json results/accuracy_demo.json --plot accuracy_demo.png
step "$E" coco-eval --weights runs/yolov5nu_seed0/weights/best.pt --ann runs/test_ground_truth.json \
    --images data/images/test --out coco_eval --imgsz 64 --device cpu
step "$E" benchmark --models yolov5nu.yaml yolov5n_effv2.yaml --imgsz 64 --repeats 2 --warmup 0 --train \
    --no-progress --json results/bench_demo.json
refused "$E" benchmark --models yolov5nu.yaml --imgsz 64 --onnx
refused "$E" benchmark --models yolov5nu.yaml --imgsz 64 --openvino
refused "$E" benchmark --models yolov5nu.yaml --imgsz 64 --int8 data/data.yaml
step "$E" protocol --role confirm --models yolov5nu.yaml yolov5n_effv2.yaml --seeds 0 1 "${recipe[@]}" \
    --project runs --no-train --store results --json results/protocol_demo.json

# render from the records just written: a table, both plots, then --check finds nothing stale
cat >results/render.yaml <<'EOF'
tables:
  demo:
    models: [yolov5nu, yolov5n_effv2]
    baseline: "yolov5{letter}u"
    scores: {records: "protocol_*.json", split: test}
    datasets: [data]
plots:
  accuracy-latency: {kind: accuracy-latency, file: docs/accuracy_latency.png, models: [yolov5nu, yolov5n_effv2],
                     scores: {records: "protocol_*.json"}, dataset: data}
  curves: {kind: map-epoch, file: docs/curves.png, models: [yolov5nu, yolov5n_effv2],
           scores: {records: "protocol_*.json"}, dataset: data}
EOF
printf '# demo\n\n<!-- render:demo -->\n<!-- /render:demo -->\n' >README.md
step "$E" render
step "$E" render --check
grep -q "vs baseline data" README.md
# Welch's p on seeds that differ, with the standard library: the test suite's fixture store, rendered here
cp -r "$REPO/tests/fixtures/store" fixture
step "$E" render --root fixture
grep -q "ahead (+5.1, p = 0.0037)" fixture/README.md
step "$E" render --check --root "$REPO"

echo "bare install check passed in $(($(date +%s) - start)) s"
