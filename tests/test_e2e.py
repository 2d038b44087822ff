"""End to end through Ultralytics' own CLI in fresh processes from a temp folder: train, reload, val, predict, export."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow


def test_autoactivation_is_lazy_and_can_be_disabled(tmp_path):
    probe = "import sys; print('torch' in sys.modules, 'effdet_plugin' in sys.modules)"
    assert run_cli([sys.executable, "-c", probe], tmp_path).stdout.split() == ["False", "False"]
    build = "from ultralytics import YOLO; print(type(YOLO('yolov5n_effv2.yaml').model.model[4][0]).__name__)"
    assert run_cli([sys.executable, "-c", build], tmp_path).stdout.split()[-1] == "MBConv"
    # importing a plugin submodule before ultralytics must not trip over its own half-done import
    first = "import effdet_plugin.blocks; from ultralytics import YOLO; YOLO('yolov5n_effv2.yaml'); print('ok')"
    assert run_cli([sys.executable, "-c", first], tmp_path).stdout.split()[-1] == "ok"
    with pytest.raises(AssertionError, match="does not exist"):
        run_cli([sys.executable, "-c", build], tmp_path, env={"EFFDET_PLUGIN_DISABLE": "1"})


def test_train_reload_val_predict_export(tmp_path, demo_data):
    common = ["imgsz=64", "device=cpu", f"project={tmp_path / 'runs'}", "exist_ok=True", "plots=False"]
    run_cli(["yolo", "train", "model=yolov5n_effv2.yaml", f"data={demo_data}", "epochs=1", "batch=8", "workers=0",
             "name=train", *common], tmp_path)
    best = tmp_path / "runs" / "train" / "weights" / "best.pt"
    assert best.is_file()
    # a fresh process reloads the checkpoint (pickled plugin classes) and runs it
    check = (f"from ultralytics import YOLO; m = YOLO(r'{best}'); "
             f"print(type(m.model.model[6][0]).__module__, m.model.yaml['yaml_file'])")
    assert run_cli([sys.executable, "-c", check], tmp_path).stdout.split()[-2:] == ["effdet_plugin.blocks",
                                                                                   "yolov5n_effv2.yaml"]
    # Ultralytics' opt-in restricted loading (weights_only + allow-list) accepts plugin checkpoints too
    assert run_cli([sys.executable, "-c", check], tmp_path, env={"ULTRALYTICS_SAFE_LOAD": "1"}).stdout.split()[-2:] == [
        "effdet_plugin.blocks", "yolov5n_effv2.yaml"]
    val = run_cli(["yolo", "val", f"model={best}", f"data={demo_data}", "batch=8", "workers=0", "name=val", *common],
                  tmp_path)
    assert "mAP50-95" in val.stdout + val.stderr
    images = demo_data.parent / "images" / "val"
    run_cli(["yolo", "predict", f"model={best}", f"source={images}", "save=False", "save_txt=True", "name=pred",
             *common], tmp_path)
    assert (tmp_path / "runs" / "pred").is_dir()
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
