"""End to end through Ultralytics' own CLI in fresh processes from a temp folder: train, reload, val, predict,
export."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow


def test_autoactivation_is_lazy_and_can_be_disabled(tmp_path):
    probe = "import sys; print('torch' in sys.modules, 'effdet_plugin' in sys.modules)"
    assert run_cli([sys.executable, "-c", probe], tmp_path).stdout.split() == ["False", "False"]
    # row 6 is MBConv at every scale (rows 4-5 are Fused-MBConv at n)
    build = "from ultralytics import YOLO; print(type(YOLO('yolov5n_effv2.yaml').model.model[6][0]).__name__)"
    assert run_cli([sys.executable, "-c", build], tmp_path).stdout.split()[-1] == "MBConv"
    # importing a plugin submodule before ultralytics must not trip over its own half-done import
    first = "import effdet_plugin.blocks; from ultralytics import YOLO; YOLO('yolov5n_effv2.yaml'); print('ok')"
    assert run_cli([sys.executable, "-c", first], tmp_path).stdout.split()[-1] == "ok"
    with pytest.raises(
        AssertionError,
        match=r"yolov5n_effv2.yaml is an effdet-plugin model, but effdet-plugin is "
        r"disabled \(EFFDET_PLUGIN_DISABLE=1\)",
    ):
        run_cli([sys.executable, "-c", build], tmp_path, env={"EFFDET_PLUGIN_DISABLE": "1"})


def test_train_reload_val_predict_export(tmp_path, demo_data):
    common = ["imgsz=64", "device=cpu", f"project={tmp_path / 'runs'}", "exist_ok=True", "plots=False"]
    run_cli(
        [
            "yolo",
            "train",
            "model=yolov5n_effv2.yaml",
            f"data={demo_data}",
            "epochs=1",
            "batch=8",
            "workers=0",
            "name=train",
            *common,
        ],
        tmp_path,
    )
    best = tmp_path / "runs" / "train" / "weights" / "best.pt"
    assert best.is_file() and (tmp_path / "runs" / "train" / "weights" / "last.pt").is_file()
    import csv

    rows = list(csv.DictReader((tmp_path / "runs" / "train" / "results.csv").open()))
    assert len(rows) == 1
    row = {k.strip(): float(v) for k, v in rows[0].items()}
    for loss in ("train/box_loss", "train/cls_loss", "train/dfl_loss", "val/box_loss"):
        assert 0 < row[loss] < 100, (loss, row[loss])  # finite, positive: the model trained and validated
    for metric in ("metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)"):
        assert 0 <= row[metric] <= 1, (metric, row[metric])
    # a fresh process reloads the checkpoint (pickled plugin classes) and runs it
    check = (
        f"from ultralytics import YOLO; m = YOLO(r'{best}'); "
        f"print(type(m.model.model[6][0]).__module__, m.model.yaml['yaml_file'])"
    )
    assert run_cli([sys.executable, "-c", check], tmp_path).stdout.split()[-2:] == [
        "effdet_plugin.blocks",
        "yolov5n_effv2.yaml",
    ]
    # Ultralytics' opt-in restricted loading (weights_only + allow-list) accepts plugin checkpoints too
    assert run_cli([sys.executable, "-c", check], tmp_path, env={"ULTRALYTICS_SAFE_LOAD": "1"}).stdout.split()[-2:] == [
        "effdet_plugin.blocks",
        "yolov5n_effv2.yaml",
    ]
    score = (
        f"from ultralytics import YOLO; r = YOLO(r'{best}').val(data=r'{demo_data}', batch=8, workers=0, "
        f"imgsz=64, device='cpu', plots=False, project=r'{tmp_path / 'runs'}', name='val', exist_ok=True); "
        f"print('MAP', r.box.map50, r.box.map)"
    )
    line = [ln for ln in run_cli([sys.executable, "-c", score], tmp_path).stdout.splitlines() if ln.startswith("MAP")]
    map50, map5095 = map(float, line[-1].split()[1:])
    assert 0 <= map5095 <= map50 <= 1
    images = demo_data.parent / "images" / "val"
    run_cli(
        [
            "yolo",
            "predict",
            f"model={best}",
            f"source={images}",
            "save=False",
            "save_txt=True",
            "conf=0.001",
            "name=pred",
            *common,
        ],
        tmp_path,
    )
    labels = list((tmp_path / "runs" / "pred" / "labels").glob("*.txt"))
    assert labels, "predict wrote no label file"
    for line in labels[0].read_text().splitlines():  # class cx cy w h, normalized
        cls, *box = line.split()
        assert int(cls) >= 0 and all(0 <= float(v) <= 1 for v in box)
    run_cli(["yolo", "export", f"model={best}", "format=onnx", "imgsz=64", "device=cpu"], tmp_path)
    onnx_file = best.with_suffix(".onnx")
    assert onnx_file.is_file()

    import onnxruntime as ort
    import torch
    from ultralytics import YOLO

    model = YOLO(str(best)).model.float().eval().fuse(verbose=False)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)[0].numpy()
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 1e-4 * max(1.0, float(np.abs(ref).max()))
