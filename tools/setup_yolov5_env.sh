#!/usr/bin/env bash
# Make a virtual environment in which the `yolov5` pip package (7.0.14) runs with effdet-plugin, for the classic
# YOLOv5 tests (tests/yolov5_venv.py).
#
#   bash tools/setup_yolov5_env.sh VENV_DIR        # prints the venv's python as the last line
#   EFFDET_YOLOV5_PYTHON=$(bash tools/setup_yolov5_env.sh /tmp/venv-yolov5 | tail -n 1) pytest tests/test_yolov5_package.py
#
# The venv sees the calling interpreter's site-packages (torch, torchvision, ultralytics, effdet-plugin's other
# dependencies), whether that interpreter is a system one or another venv's, and adds what yolov5 7.0.14 needs to run
# on current releases, without touching the system environment:
#   numpy<2.4       yolov5 7.0.14 uses np.trapz (removed in numpy 2.4)
#   setuptools<81   yolov5 imports pkg_resources (removed in setuptools 81)
#   onnxscript      yolov5's export.py calls torch.onnx.export without dynamo=False; torch >= 2.9 then needs it
#   pillow<10       yolov5's plots call FreeTypeFont.getsize (removed in Pillow 10; without it plots fail, training not)
# plus effdet-plugin itself (editable, no deps) and its start-up hook module. Two more things yolov5 needs at run time
# are environment variables, set by the tests and to be set by users the same way:
#   TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1   yolov5 calls torch.load without weights_only (torch >= 2.6 defaults it to True)
#   YOLOV5_CONFIG_DIR=VENV_DIR/yolov5-config   holds Arial.ttf (a copy of matplotlib's DejaVuSans.ttf), which yolov5
#                                              would otherwise download
# Idempotent: a second run only re-checks.
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi
VENV=$1
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}  # the interpreter whose site-packages hold torch, ultralytics and the test deps

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv --system-site-packages "$VENV"
fi
VPY=$VENV/bin/python
SITE=$("$VPY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# From inside another virtual environment, --system-site-packages reaches the base interpreter's packages, not that
# environment's: a .pth file adds its site-packages after the new venv's own (whose numpy and setuptools come first).
OUTER=$("$PY" -c "import sys, sysconfig
print(sysconfig.get_paths()['purelib'] if sys.prefix != sys.base_prefix else '')")
if [ -n "$OUTER" ]; then
    echo "$OUTER" > "$SITE/zz_effdet_outer_env.pth"
fi
# torch/torchvision pinned to the versions already installed, so pip never swaps in another (e.g. CUDA) build.
TORCH=$("$VPY" -c "import torch; print(torch.__version__.split('+')[0])")
TV=$("$VPY" -c "import torchvision; print(torchvision.__version__.split('+')[0])")
"$VPY" -m pip install -q "yolov5==7.0.14" "numpy<2.4" "setuptools<81" onnxscript "pillow<10" "torch==$TORCH" "torchvision==$TV"
"$VPY" -m pip install -q --no-deps -e "$REPO"

# The start-up hook module: a wheel install puts it at the site-packages root; an editable install does not.
cp "$REPO/effdet_plugin/hosts/_autoload.py" "$SITE/_effdet_plugin_autoload.py"
# compiled now, as pip compiles it in a wheel install: with PYTHONDONTWRITEBYTECODE every start would recompile it
"$VPY" -m compileall -q "$SITE/_effdet_plugin_autoload.py"
[ -f "$SITE/effdet_plugin.pth" ] || cp "$REPO/effdet_plugin.pth" "$SITE/effdet_plugin.pth"

# yolov5 downloads Arial.ttf into its config dir unless one is there: give it matplotlib's DejaVuSans.
CONFIG=$VENV/yolov5-config
mkdir -p "$CONFIG"
FONT=$("$VPY" -c "import matplotlib, os; print(os.path.join(os.path.dirname(matplotlib.__file__), 'mpl-data/fonts/ttf/DejaVuSans.ttf'))")
cp "$FONT" "$CONFIG/Arial.ttf"

# Smoke check: yolov5 imports, the plugin is active in it, numpy is the venv's.
YOLOV5_CONFIG_DIR=$CONFIG TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 YOLO_OFFLINE=1 PYTHONWARNINGS=ignore "$VPY" - <<'PY'
import numpy
import yolov5.models.yolo as y
from effdet_plugin.hosts.rebind import is_rebound
assert is_rebound(y, "parse_model"), "effdet-plugin did not activate in yolov5.models.yolo"
assert tuple(map(int, numpy.__version__.split(".")[:2])) < (2, 4), numpy.__version__
PY
echo "$VPY"
