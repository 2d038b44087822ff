"""Pascal VOC -> YOLO converter: exact round trip, deterministic split, boxes outside the image, one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from effdet_plugin.commands import cli
from effdet_plugin.commands.voc import read_voc, voc_to_yolo

CLASSES = ("raccoon", "dog", "cat")


def _voc_xml(filename: str, w: int, h: int, objects: list[tuple[str, tuple[float, float, float, float]]]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for n, (x1, y1, x2, y2) in objects
    )
    return (
        f"<annotation><folder>images</folder><filename>{filename}</filename><size><width>{w}</width>"
        f"<height>{h}</height><depth>3</depth></size><segmented>0</segmented>{objs}</annotation>"
    )


def make_voc(root: Path, n: int = 20, seed: int = 0) -> dict[str, tuple[int, int, list]]:
    """Write a raccoon_dataset-style VOC folder (annotations/*.xml, images/*.jpg); every 5th image has no objects."""
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    truth = {}
    for k in range(n):
        w, h = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        objects = []
        for _ in range(0 if k % 5 == 0 else int(rng.integers(1, 4))):
            x1, y1 = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
            x2, y2 = x1 + rng.uniform(2, w / 2), y1 + rng.uniform(2, h / 2)
            box = (round(x1, 3), round(y1, 3), round(x2, 3), round(y2, 3))  # sub-pixel corners, as some tools write
            objects.append((CLASSES[int(rng.integers(len(CLASSES)))], box))
        name = f"img-{k}.jpg"
        cv2.imwrite(str(root / "images" / name), np.full((h, w, 3), 80 + k, np.uint8))
        (root / "annotations" / f"img-{k}.xml").write_text(_voc_xml(name, w, h, objects))
        truth[Path(name).stem] = (w, h, objects)
    return truth


def read_labels(data_yaml: Path) -> tuple[dict, dict[str, str], dict[str, np.ndarray]]:
    """Return (data dict, image stem -> split, image stem -> label rows)."""
    data = yaml.safe_load(data_yaml.read_text())
    split_of, rows = {}, {}
    for s in ("train", "val", "test"):
        if s not in data:
            continue
        images = sorted((data_yaml.parent / data[s]).iterdir())
        labels = sorted((data_yaml.parent / "labels" / s).iterdir())
        assert [p.stem for p in images] == [p.stem for p in labels]
        for p in labels:
            split_of[p.stem] = s
            rows[p.stem] = np.array([line.split() for line in p.read_text().splitlines()], float).reshape(-1, 5)
    return data, split_of, rows


def test_round_trip_exact(tmp_path):
    truth = make_voc(tmp_path / "voc", n=20)
    done = voc_to_yolo(tmp_path / "voc", tmp_path / "yolo", split=(0.6, 0.2, 0.2), seed=3)
    data_yaml = done.data_yaml
    assert done.images == {"train": 12, "val": 4, "test": 4} and done.dropped == 0
    data, split_of, rows = read_labels(data_yaml)
    names = [data["names"][i] for i in range(len(data["names"]))]
    assert names == sorted(CLASSES)  # every class name kept, ids in sorted-name order
    assert sorted(split_of) == sorted(truth)  # every image kept, images with no objects included
    assert [list(split_of.values()).count(s) for s in ("train", "val", "test")] == [12, 4, 4]
    for stem, (w, h, objects) in truth.items():
        got = rows[stem]
        assert len(got) == len(objects)
        for (name, (x1, y1, x2, y2)), row in zip(objects, got):
            expect = [names.index(name), (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]
            np.testing.assert_allclose(row, expect, rtol=0, atol=1e-6)
    empty = [s for s, (_, _, o) in truth.items() if not o]
    assert empty and all((data_yaml.parent / "labels" / split_of[s] / f"{s}.txt").read_text() == "" for s in empty)


def test_split_deterministic_and_loadable(tmp_path):
    from ultralytics.data.utils import check_det_dataset

    make_voc(tmp_path / "voc", n=20)
    a = read_labels(voc_to_yolo(tmp_path / "voc", tmp_path / "a", seed=1).data_yaml)[1]
    b = read_labels(voc_to_yolo(tmp_path / "voc", tmp_path / "b", seed=1).data_yaml)[1]
    c = read_labels(voc_to_yolo(tmp_path / "voc", tmp_path / "c", seed=2).data_yaml)[1]
    assert a == b and a != c
    data = check_det_dataset(str(tmp_path / "a" / "data.yaml"))  # Ultralytics reads the result as a dataset
    assert data["nc"] == 3 and Path(data["test"]).is_dir()


def test_clip_difficult_and_split_minimum(tmp_path):
    src = tmp_path / "voc"
    (src / "images").mkdir(parents=True)
    cv2.imwrite(str(src / "images" / "a.jpg"), np.zeros((50, 100, 3), np.uint8))
    cv2.imwrite(str(src / "images" / "b.jpg"), np.zeros((50, 100, 3), np.uint8))
    xml = _voc_xml("a.jpg", 100, 50, [("cat", (-5, 10, 120, 40)), ("cat", (1, 1, 9, 9))])
    xml = xml.replace("<difficult>0</difficult><bndbox><xmin>1<", "<difficult>1</difficult><bndbox><xmin>1<")
    (src / "a.xml").write_text(xml)
    (src / "b.xml").write_text(_voc_xml("b.jpg", 100, 50, []))
    assert len(read_voc(src / "a.xml", src).names) == 1  # difficult object skipped, as Ultralytics' VOC.yaml does
    assert len(read_voc(src / "a.xml", src, keep_difficult=True).names) == 2
    with pytest.raises(ValueError, match=r"leaves 0 train / 2 val; need >= 1 each"):
        voc_to_yolo(src, tmp_path / "bad", split=(0.0, 1.0, 0.0))
    data_yaml = voc_to_yolo(src, tmp_path / "out", split=(0.5, 0.5, 0.0)).data_yaml
    data, split_of, rows = read_labels(data_yaml)
    assert "test" not in data and sorted(split_of) == ["a", "b"]
    np.testing.assert_allclose(rows["a"], [[0, 0.5, 0.5, 1.0, 0.6]], atol=1e-6)  # clipped to the image


@pytest.mark.parametrize(
    "case, error, match",
    [
        ("no_xml", FileNotFoundError, "no Pascal VOC .xml files under"),
        ("missing_image", FileNotFoundError, r"img-3\.xml: image img-3\.jpg not found"),
        ("malformed", ValueError, r"img-4\.xml: malformed xml"),
        ("bad_number", ValueError, r"img-2\.xml: <xmin> is 'abc', not a number"),
        ("bad_split", ValueError, r"must be three non-negative fractions summing to 1"),
        ("unknown_name", ValueError, r"img-1\.xml: class 'raccoon' is not in names"),
    ],
)
def test_bad_input(tmp_path, case, error, match):
    src = tmp_path / "voc"
    if case == "no_xml":
        (src / "images").mkdir(parents=True)
    else:
        make_voc(src, n=6, seed=1)
    split, names = (0.7, 0.15, 0.15), None
    if case == "missing_image":
        (src / "images" / "img-3.jpg").unlink()
    elif case == "malformed":
        (src / "annotations" / "img-4.xml").write_text("<annotation><filename>img-4.jpg</filename>")
    elif case == "bad_number":
        xml = src / "annotations" / "img-2.xml"
        text = xml.read_text()
        start = text.index("<xmin>") + len("<xmin>")
        xml.write_text(text[:start] + "abc" + text[text.index("</xmin>") :])
    elif case == "bad_split":
        split = (0.5, 0.2, 0.2)
    elif case == "unknown_name":
        (src / "annotations" / "img-1.xml").write_text(_voc_xml("img-1.jpg", 50, 50, [("raccoon", (1, 1, 20, 20))]))
        names = ["zebra"]
    with pytest.raises(error, match=match):
        voc_to_yolo(src, tmp_path / "out", split=split, names=names)


def test_boxes_outside_the_image(tmp_path, capsys, monkeypatch):
    """Wholly outside (each side, and touching an edge from outside): dropped and counted; partly outside: clipped."""
    src = tmp_path / "voc"
    (src / "images").mkdir(parents=True)
    w, h = 100, 50
    outside = [(-30, 10, -5, 20), (105, 10, 130, 20), (10, -40, 20, -1), (10, 50, 20, 70), (-20, 5, 0, 15)]
    partly = [(90, 40, 120, 70), (-10, -10, 10, 10)]
    for stem in ("a", "b", "c"):
        cv2.imwrite(str(src / "images" / f"{stem}.jpg"), np.zeros((h, w, 3), np.uint8))
    objects = [("cat", b) for b in outside[:3] + partly[:1]]
    (src / "a.xml").write_text(_voc_xml("a.jpg", w, h, objects))
    (src / "b.xml").write_text(_voc_xml("b.jpg", w, h, [("dog", b) for b in outside[3:] + partly[1:]]))
    (src / "c.xml").write_text(_voc_xml("c.jpg", w, h, [("dog", (10, 10, 30, 30))]))

    record = read_voc(src / "a.xml", src)
    assert record.dropped == 3 and record.names == ["cat"]
    np.testing.assert_array_equal(record.xyxy, [partly[0]])  # kept as written, clipped when written out

    done = voc_to_yolo(src, tmp_path / "out", split=(1 / 3, 1 / 3, 1 / 3))
    assert done.dropped == 5 and [x.name for x in done.dropped_in] == ["a.xml", "b.xml"]
    rows = read_labels(done.data_yaml)[2]
    np.testing.assert_allclose(rows["a"], [[0, 0.95, 0.9, 0.1, 0.2]], atol=1e-6)  # (90, 40, 100, 50)
    np.testing.assert_allclose(rows["b"], [[1, 0.05, 0.1, 0.1, 0.2]], atol=1e-6)  # (0, 0, 10, 10)
    assert all(r[3] > 0 and r[4] > 0 for r in np.concatenate(list(rows.values())))  # no degenerate label

    monkeypatch.chdir(tmp_path)
    assert cli.main(["voc2yolo", "voc", "again", "--split", "0.34", "0.33", "0.33"]) == 0
    out = capsys.readouterr().out
    assert "dropped 5 boxes lying wholly outside their image (a.xml, b.xml)" in out


def test_cli(tmp_path, capsys, monkeypatch):
    make_voc(tmp_path / "voc", n=10)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["voc2yolo", "voc", "yolo", "--split", "0.8", "0.1", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "train 8, val 1, test 1 images" in out and "dropped" not in out
    assert (tmp_path / "yolo" / "data.yaml").is_file()
    assert cli.main(["voc2yolo", "voc", "yolo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(r"effdet-plugin voc2yolo: error: output folder .* is not empty$", err[0]), err
