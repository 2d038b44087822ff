"""Progressive learning (``progressive=True``): the stage plan, and real Ultralytics training and resume with it."""

from __future__ import annotations

import json
import sys
from itertools import pairwise

import pytest
from conftest import logged  # (tests/ is on sys.path under pytest)

from effdet_plugin.progressive import AUGMENT_KEYS, ProgressiveError, schedule, stage_at

FINAL = {"drop_path": 0.2, "mixup": 0.1, "scale": 0.5, "translate": 0.1, "hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4}
TRAIN = {
    "epochs": 4,
    "imgsz": 96,
    "batch": 8,
    "workers": 0,
    "plots": False,
    "device": "cpu",
    "val": False,
    "exist_ok": True,
}


# ------------------------------------------------------------------------------------------------------------ schedule
@pytest.mark.parametrize(
    "epochs, imgsz, stride, stages, min_imgsz",
    [(100, 640, 32, 4, None), (300, 640, 32, 4, 128), (10, 96, 32, 3, 32), (7, 320, 16, 5, 100), (5, 64, 32, 5, 64)],
)
def test_schedule_monotone_ends_at_configured_values_rounded_to_stride(epochs, imgsz, stride, stages, min_imgsz):
    plan = schedule(epochs, imgsz, stride, FINAL, stages, min_imgsz)
    assert [s.index for s in plan] == list(range(stages)) and all(s.count == stages for s in plan)
    # stages tile the epochs
    assert plan[0].first == 0 and plan[-1].last == epochs - 1
    assert all(a.last + 1 == b.first for a, b in pairwise(plan)) and all(s.first <= s.last for s in plan)
    sizes = [s.imgsz for s in plan]
    assert all(size % stride == 0 and size >= stride for size in sizes)
    assert sizes == sorted(sizes) and sizes[-1] == imgsz
    low = imgsz / 2 if min_imgsz is None else min_imgsz
    assert abs(sizes[0] - low) <= stride / 2
    for key, value in FINAL.items():
        values = [s.hyp[key] for s in plan]
        assert values == sorted(values), key
        assert values[-1] == value, key  # the last stage is exactly a normal run
        assert values[0] < value or stages == 1, key  # the first stage is weaker
    assert plan[0].hyp["drop_path"] == 0 and plan[0].hyp["mixup"] == 0
    assert plan[0].hyp["scale"] == pytest.approx(FINAL["scale"] / 2)


def test_schedule_default_minimum_is_half_imgsz_rounded_to_stride():
    assert [s.imgsz for s in schedule(100, 640, 32, FINAL)] == [320, 416, 544, 640]
    assert schedule(4, 96, 32, FINAL)[0].imgsz == 64  # 48 rounds half-up to 64
    assert schedule(4, 96, 32, FINAL, min_imgsz=32)[0].imgsz == 32


def test_schedule_epoch_split_and_log_line():
    plan = schedule(100, 640, 32, FINAL)
    assert [(s.first, s.last) for s in plan] == [(0, 24), (25, 49), (50, 74), (75, 99)]
    assert [stage_at(plan, e).index for e in (0, 24, 25, 74, 75, 99, 120)] == [0, 0, 1, 2, 3, 3, 3]
    line = plan[1].describe()
    assert line.startswith("progressive: stage 2/4 epochs 26-50 imgsz=416 drop_path=0.0667 mixup=0.0333 scale=0.333")
    single = schedule(3, 96, 32, FINAL, stages=1)
    assert len(single) == 1 and single[0].imgsz == 96 and single[0].hyp == FINAL
    assert (single[0].first, single[0].last) == (0, 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 3, "stages": 4}, "epochs=3 is fewer than progressive_stages=4"),
        ({"min_imgsz": 700}, "progressive_min_imgsz=700 is above imgsz=640"),
        ({"stages": 0}, "progressive_stages must be a positive integer, got 0"),
        ({"stages": -2}, "progressive_stages must be a positive integer, got -2"),
        ({"stages": 2.5}, "progressive_stages must be a positive integer, got 2.5"),
        ({"min_imgsz": 0}, "progressive_min_imgsz must be a positive integer, got 0"),
    ],
)
def test_bad_input_is_one_clear_message(kwargs, message):
    args = {"epochs": 100, "imgsz": 640, "stride": 32, "final": FINAL, **kwargs}
    with pytest.raises(ProgressiveError, match=message):
        schedule(**args)


# ------------------------------------------------------------------------------------------------- Ultralytics glue
def test_keys_join_ultralytics_config_and_unknown_keys_still_fail(tmp_path):
    from ultralytics.cfg import get_cfg
    from ultralytics.nn import tasks  # noqa: F401  (ultralytics first: importing the registry first is circular)

    import effdet_plugin

    effdet_plugin.register()
    cfg = get_cfg(overrides={"progressive": True, "progressive_stages": 3, "progressive_min_imgsz": 320})
    assert (cfg.progressive, cfg.progressive_stages, cfg.progressive_min_imgsz) == (True, 3, 320)
    assert get_cfg().progressive is False and get_cfg().progressive_stages == 4
    with pytest.raises(SyntaxError, match=r"progresive\S* is not a valid YOLO argument"):
        get_cfg(overrides={"progresive": True})


@pytest.mark.slow
def test_cli_parses_progressive_keys_and_reports_bad_input(demo_data, tmp_path):
    """Ultralytics' own CLI parser (in-process: the `yolo` executable also needs the plugin active before parsing)."""
    from ultralytics.cfg import entrypoint
    from ultralytics.nn import tasks  # noqa: F401  (ultralytics first: importing the registry first is circular)

    import effdet_plugin

    effdet_plugin.register()
    base = f"yolo train model=yolov5n_effv2.yaml data={demo_data} epochs=3 imgsz=96 device=cpu project={tmp_path}"
    with pytest.raises(ProgressiveError, match="epochs=3 is fewer than progressive_stages=4"):
        entrypoint(base + " progressive")  # a bare word, as for Ultralytics' own boolean keys
    with pytest.raises(ProgressiveError, match="progressive_min_imgsz=128 is above imgsz=96"):
        entrypoint(base + " progressive=True progressive_stages=2 progressive_min_imgsz=128")
    with pytest.raises(ProgressiveError, match="cannot be combined with multi_scale=0.5"):
        entrypoint(base + " progressive=True progressive_stages=2 multi_scale=0.5")
    with pytest.raises(SyntaxError, match="'progressive_stage' is not a valid YOLO argument"):
        entrypoint(base + " progressive=True progressive_stage=2")


def _recorder(model):
    """Record per epoch the batch image sizes the model really trains on, the drop-path rate and the augmentation."""
    from ultralytics.data.augment import MixUp, Mosaic, RandomHSV, RandomPerspective
    from ultralytics.utils.torch_utils import unwrap_model

    from effdet_plugin.blocks import DropPath

    seen = {"sizes": {}, "drop_path": {}, "aug": {}, "val_imgsz": None}

    def hook(trainer):
        def pre(module, args):
            if isinstance(args[0], dict):  # training forward gets the batch; validation runs the EMA copy on tensors
                seen["sizes"].setdefault(trainer.epoch, set()).add(tuple(args[0]["img"].shape[2:]))

        unwrap_model(trainer.model).register_forward_pre_hook(pre)
        seen["val_imgsz"] = trainer.test_loader.dataset.imgsz

    def batch_start(trainer):
        rates = [m.p for m in unwrap_model(trainer.model).modules() if isinstance(m, DropPath)]
        seen["drop_path"][trainer.epoch] = max(rates)
        ds = trainer.train_loader.dataset
        found = {}
        for t in ds.transforms.transforms:
            if isinstance(t, RandomHSV):
                found["hsv_h"], found["hsv_s"], found["hsv_v"] = t.hgain, t.sgain, t.vgain
            elif isinstance(t, MixUp):
                found["mixup"] = t.p
                (affine,) = [a for a in t.pre_transform.transforms if isinstance(a, RandomPerspective)]
                (mosaic,) = [a for a in t.pre_transform.transforms if isinstance(a, Mosaic)]
                found["scale"], found["translate"], found["mosaic"] = affine.scale, affine.translate, mosaic.p
        seen["aug"][trainer.epoch] = found

    model.add_callback("on_pretrain_routine_end", hook)
    model.add_callback("on_train_batch_start", batch_start)
    return seen


@pytest.mark.slow
def test_progressive_training_grows_real_batch_sizes_and_regularization(demo_data, tmp_path):
    from ultralytics import YOLO

    from effdet_plugin.blocks import FusedMBConv, MBConv

    model = YOLO("yolov5n_effv2-plain.yaml")  # drop_path 0.2: the knob this test follows
    seen = _recorder(model)
    with logged("ultralytics") as lines:
        model.train(
            data=str(demo_data),
            **TRAIN,
            project=str(tmp_path),
            name="prog",
            progressive=True,
            progressive_min_imgsz=32,
            mixup=0.2,
            close_mosaic=2,
        )
    plan = model.trainer.progressive_plan
    assert [s.imgsz for s in plan] == [32, 64, 64, 96]
    assert [seen["sizes"][e] for e in range(4)] == [{(32, 32)}, {(64, 64)}, {(64, 64)}, {(96, 96)}]
    assert seen["val_imgsz"] == 96  # validation keeps the final size
    n = sum(isinstance(m, (FusedMBConv, MBConv)) for m in model.trainer.model.modules())
    configured = 0.2 * (n - 1) / n  # the YAML's drop_path reaches the last block: rate * index / count
    assert [seen["drop_path"][e] for e in range(4)] == pytest.approx([configured * k / 3 for k in range(4)])
    for e, stage in enumerate(plan):
        aug = seen["aug"][e]
        for key in AUGMENT_KEYS:
            # close_mosaic=2 shuts mosaic and mixup in the last two epochs; the rest keep the stage's magnitudes
            want = 0.0 if key == "mixup" and e >= 2 else stage.hyp[key]
            assert aug[key] == pytest.approx(want), (e, key)
        assert aug["mosaic"] == (1.0 if e < 2 else 0.0)
    assert plan[-1].hyp["mixup"] == 0.2 and plan[-1].hyp["scale"] == 0.5 and plan[-1].hyp["hsv_h"] == 0.015
    stage_lines = [line for line in lines if line.startswith("progressive: stage")]
    assert [line.split(" epochs")[0] for line in stage_lines] == [f"progressive: stage {k}/4" for k in (1, 2, 3, 4)]
    assert "epochs 4-4 imgsz=96 drop_path=0.2 mixup=0.2 scale=0.5" in stage_lines[-1]


@pytest.mark.slow
def test_resume_mid_run_restores_the_stage(demo_data, tmp_path):
    from ultralytics import YOLO

    class Interrupted(Exception):
        pass

    def interrupt(trainer):
        if trainer.epoch == 1:  # after epoch 2's last.pt is written, as a crash or Ctrl-C would leave it
            raise Interrupted

    first = YOLO("yolov5n_effv2.yaml")
    first.add_callback("on_fit_epoch_end", interrupt)
    with pytest.raises(Interrupted):
        first.train(
            data=str(demo_data), **TRAIN, project=str(tmp_path), name="run", progressive=True, progressive_min_imgsz=32
        )
    last = tmp_path / "run" / "weights" / "last.pt"

    resumed = YOLO(last)
    seen = _recorder(resumed)
    with logged("ultralytics") as lines:
        resumed.train(resume=True)
    assert resumed.trainer.start_epoch == 2 and resumed.trainer.args.progressive is True
    assert sorted(seen["sizes"]) == [2, 3]  # Ultralytics really resumed: only epochs 3 and 4 ran
    assert [seen["sizes"][2], seen["sizes"][3]] == [{(64, 64)}, {(96, 96)}]  # stage 3 restored, then stage 4
    stage_lines = [line for line in lines if line.startswith("progressive: stage")]
    assert stage_lines[0].startswith("progressive: stage 3/4 epochs 3-3 imgsz=64")
    assert stage_lines[0].endswith("(resumed at epoch 3)")
    assert stage_lines[1].startswith("progressive: stage 4/4 epochs 4-4 imgsz=96")


# Run in a fresh interpreter: forking worker processes from the long-lived pytest process crashed it in CI (most
# likely the thread pools earlier tests leave running).
WORKERS = """
import json, sys
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils.torch_utils import unwrap_model

trainer = DetectionTrainer(overrides=json.loads(sys.argv[1]))
trainer.args.workers = 2  # Ultralytics sets 0 on CPU in __init__; the loader is built later from this value
sizes = {}

def hook(tr):
    def pre(module, args):
        if isinstance(args[0], dict):
            sizes.setdefault(tr.epoch, set()).add(tuple(args[0]["img"].shape[2:]))

    unwrap_model(tr.model).register_forward_pre_hook(pre)

trainer.add_callback("on_pretrain_routine_end", hook)
trainer.train()
print("RESULT" + json.dumps({"workers": trainer.train_loader.num_workers,
                             "sizes": {e: sorted(s) for e, s in sizes.items()}}))
"""


@pytest.mark.slow
def test_stage_reaches_dataloader_worker_processes(demo_data, tmp_path, cli):
    """Worker processes hold copies of the dataset; the stage change must reach them, not only the main process."""
    overrides = {
        **TRAIN,
        "epochs": 2,
        "model": "yolov5n_effv2.yaml",
        "data": str(demo_data),
        "project": str(tmp_path),
        "name": "w",
        "progressive": True,
        "progressive_stages": 2,
        "progressive_min_imgsz": 32,
    }
    out = cli([sys.executable, "-c", WORKERS, json.dumps(overrides)], cwd=tmp_path).stdout
    result = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT"))[len("RESULT") :])
    assert result["workers"] == 2
    assert result["sizes"] == {"0": [[32, 32]], "1": [[96, 96]]}


@pytest.mark.slow
def test_yolo_cli_trains_progressively(demo_data, tmp_path, cli):
    proc = cli(
        [
            "yolo",
            "train",
            "model=yolov5n_effv2.yaml",
            f"data={demo_data}",
            "epochs=2",
            "imgsz=96",
            "batch=8",
            "workers=0",
            "plots=False",
            "device=cpu",
            "progressive",
            "progressive_stages=2",
            "progressive_min_imgsz=32",
            f"project={tmp_path}",
            "name=cli",
        ],
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert "progressive: stage 1/2 epochs 1-1 imgsz=32" in out and "progressive: stage 2/2 epochs 2-2 imgsz=96" in out
