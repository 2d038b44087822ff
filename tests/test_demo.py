"""``effdet-plugin demo-data``: a generated dataset per Ultralytics task, in that task's label format."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from effdet_plugin.commands.cli import main
from effdet_plugin.commands.demo import FLIP_IDX, KPT_SHAPE, make_demo_dataset


def _labels(root, split="train") -> list[list[float]]:
    return [
        [float(v) for v in ln.split()]
        for p in sorted((root / "labels" / split).glob("*.txt"))
        for ln in p.read_text().splitlines()
    ]


@pytest.mark.parametrize("task, width", [("detect", 5), ("pose", 5 + 4 * 3), ("obb", 9), ("segment", None)])
def test_labels_in_the_tasks_format(task, width, tmp_path, capsys):
    assert main(["demo-data", str(tmp_path), "--task", task, "--train", "6", "--val", "2", "--imgsz", "64"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "data.yaml")
    data = yaml.safe_load((tmp_path / "data.yaml").read_text())
    assert len(data["names"]) == 3 and data["train"] == "images/train" and data["val"] == "images/val"
    rows = _labels(tmp_path)
    assert rows and all(r[0] in (0, 1, 2) for r in rows)
    for r in rows:
        coords = r[1:]
        if task == "pose":
            coords, vis = r[1:5] + r[5::3] + r[6::3], r[7::3]
            assert vis == [2.0] * KPT_SHAPE[0]
        assert all(0 <= v <= 1 for v in coords), r
        assert len(r) == width if width else (len(r) % 2 == 1 and len(r) >= 7), r
    if task == "pose":
        assert data["kpt_shape"] == list(KPT_SHAPE) and data["flip_idx"] == list(FLIP_IDX)
    if task == "obb":  # four corners of a rectangle: equal diagonals
        for r in rows:
            p = np.array(r[1:]).reshape(4, 2) * 64
            assert abs(np.linalg.norm(p[0] - p[2]) - np.linalg.norm(p[1] - p[3])) < 0.01


def test_classification_folders(tmp_path, capsys):
    assert (
        main(
            [
                "demo-data",
                str(tmp_path),
                "--task",
                "classify",
                "--train",
                "9",
                "--val",
                "3",
                "--test",
                "3",
                "--imgsz",
                "48",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == str(tmp_path)  # Ultralytics' data= takes the folder
    for split, n in (("train", 9), ("val", 3), ("test", 3)):
        assert sorted(p.name for p in (tmp_path / split).iterdir()) == ["circle", "square", "triangle"]
        assert sum(1 for _ in (tmp_path / split).rglob("*.jpg")) == n


def test_unknown_task_is_one_message(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown task 'depth'; use one of detect, segment, pose, obb, classify"):
        make_demo_dataset(tmp_path, task="depth")
    with pytest.raises(SystemExit):
        main(["demo-data", str(tmp_path), "--task", "depth"])
    assert "invalid choice: 'depth'" in capsys.readouterr().err
