"""``effdet-plugin prepare-data``: the confirm datasets rebuilt from their sources' own layouts, one fixed split, a
data fingerprint that follows the data and not its folder, and one-line errors; ``protocol`` refuses to pool two
datasets' scores under one name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from effdet_plugin.commands import cli, protocol
from effdet_plugin.commands.heldout import data_fingerprint
from effdet_plugin.commands.prepare_data import prepare

FIXTURE = Path(__file__).parent / "fixtures" / "store" / "results" / "protocol_cards.json"


def _image(path: Path, w: int, h: int, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), shade, np.uint8))


def make_plates(root: Path, n: int = 14) -> dict[str, tuple]:
    """An openalpr/benchmarks-style clone: endtoend/<country>/<name>.jpg with a tab-separated row naming it."""
    truth = {}
    for k in range(n):
        country = ("br", "eu", "us")[k % 3]
        name, w, h = f"{country}{k}", 60 + k, 40 + k
        box = (5 + k, 4, 20, 10)  # x, y, w, h in pixels
        _image(root / "endtoend" / country / f"{name}.jpg", w, h, 40 + 10 * k)
        (root / "endtoend" / country / f"{name}.txt").write_text("\t".join(map(str, (f"{name}.jpg", *box, "AB123"))))
        truth[name] = (w, h, box)
    # one photo shipped twice, its row naming the .png: only that one is taken
    _image(root / "endtoend" / "br" / "twice.jpg", 50, 50, 200)
    _image(root / "endtoend" / "br" / "twice.png", 50, 50, 201)
    (root / "endtoend" / "br" / "twice.txt").write_text("twice.png\t1\t2\t30\t20\tXY999\n")
    truth["twice"] = (50, 50, (1, 2, 30, 20))
    _image(root / "endtoend" / "usimages" / "car-00.png", 30, 30, 9)  # unlabelled: not part of the dataset
    return truth


def make_drones(root: Path, n: int = 12) -> None:
    """A creiser/drone-detection-style clone: N.jpg, N.bboxes.tsv (x1 y1 x2 y2) and N.bboxes.labels.tsv."""
    folder = root / "DataSets" / "Drones" / "positive"
    for k in range(1, n + 1):
        _image(folder / f"{k}.jpg", 80, 60, 10 * k)
        boxes = [(2, 3, 40, 30)] + ([(50, 20, 90, 70)] if k == 1 else [])  # the second one reaches past the image
        (folder / f"{k}.bboxes.tsv").write_text("".join("\t".join(map(str, b)) + "\n" for b in boxes))
        (folder / f"{k}.bboxes.labels.tsv").write_text("drone\n" * len(boxes))


def _labels(data_yaml: Path) -> dict[str, tuple[str, list[list[float]]]]:
    data = yaml.safe_load(data_yaml.read_text())
    out = {}
    for split in ("train", "val", "test"):
        for img in (data_yaml.parent / data[split]).iterdir():
            rows = (data_yaml.parent / "labels" / split / f"{img.stem}.txt").read_text().split("\n")
            out[img.name] = (split, [list(map(float, r.split())) for r in rows if r])
    return out


def test_plates_are_written_as_their_rows_say_with_the_fixed_split(tmp_path):
    truth = make_plates(tmp_path / "clone")
    data_yaml, images, fingerprint = prepare("plates", tmp_path / "clone", tmp_path / "plates")
    assert images == {"train": 11, "val": 2, "test": 2} and len(fingerprint) == 16
    labels = _labels(data_yaml)
    assert sorted(Path(n).stem for n in labels) == sorted(truth) and "twice.png" in labels
    for name, (_, rows) in labels.items():
        w, h, (x, y, bw, bh) = truth[Path(name).stem]
        np.testing.assert_allclose(rows, [[0, (x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h]], atol=1e-9)
    assert yaml.safe_load(data_yaml.read_text())["names"] == {0: "plate"}
    # the same clone gives the same split and fingerprint, wherever it is written
    again = prepare("plates", tmp_path / "clone", tmp_path / "elsewhere" / "p")
    assert again[2] == fingerprint and {n: s for n, (s, _) in _labels(again[0]).items()} == {
        n: s for n, (s, _) in labels.items()
    }


def test_drones_keep_every_box_clipped_to_the_image(tmp_path):
    make_drones(tmp_path / "clone")
    data_yaml, images, _ = prepare("drones", tmp_path / "clone", tmp_path / "drones")
    assert images == {"train": 8, "val": 2, "test": 2}
    rows = _labels(data_yaml)["1.jpg"][1]
    np.testing.assert_allclose(
        rows, [[0, 21 / 80, 16.5 / 60, 38 / 80, 27 / 60], [0, 65 / 80, 40 / 60, 30 / 80, 40 / 60]], atol=1e-9
    )


def test_the_fingerprint_follows_images_labels_and_splits_not_folders(tmp_path):
    make_drones(tmp_path / "clone")
    data_yaml = prepare("drones", tmp_path / "clone", tmp_path / "a")[0]
    before = data_fingerprint(data_yaml)
    moved = tmp_path / "b"
    shutil.copytree(tmp_path / "a", moved)
    (moved / "data.yaml").write_text(data_yaml.read_text().replace(str(tmp_path / "a"), str(moved)))
    assert data_fingerprint(moved / "data.yaml") == before
    label = next((moved / "labels" / "test").iterdir())
    text = label.read_text()
    rows = [r.split() for r in text.splitlines()]
    label.write_text("".join(f"{r[0]} " + " ".join(f"{float(v):.14f}" for v in r[1:]) + "\n" for r in rows))
    assert label.read_text() != text  # another formatting of the same numbers
    assert data_fingerprint(moved / "data.yaml") == before
    label.write_text(" ".join([*rows[0][:3], "0.5", rows[0][4]]) + "\n")  # a relabelled box: another width
    assert data_fingerprint(moved / "data.yaml") != before
    label.write_text(text)
    image = next((moved / "images" / "test").iterdir())  # an image moved to another split
    image.rename(moved / "images" / "train" / image.name)
    label.rename(moved / "labels" / "train" / label.name)
    assert data_fingerprint(moved / "data.yaml") != before


def test_bad_sources_get_one_line_naming_file_and_line(tmp_path, capsys):
    assert cli.main(["prepare-data", "plates", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "should be a clone of https://github.com/openalpr/benchmarks" in err[0]
    make_plates(tmp_path / "clone")
    bad = tmp_path / "clone" / "endtoend" / "eu" / "eu1.txt"
    bad.write_text("eu1.jpg\t5\tfour\t20\t10\tAB123\n")
    with pytest.raises(ValueError, match=rf"^{bad} line 1: expected 4 numbers, got \['5', 'four', '20', '10'\]$"):
        prepare("plates", tmp_path / "clone", tmp_path / "out")
    make_drones(tmp_path / "d")
    labels = tmp_path / "d" / "DataSets" / "Drones" / "positive" / "3.bboxes.labels.tsv"
    labels.write_text("drone\ndrone\n")
    with pytest.raises(ValueError, match=r"3\.bboxes\.labels\.tsv: 2 classes for the 1 boxes of 3\.bboxes\.tsv$"):
        prepare("drones", tmp_path / "d", tmp_path / "out")
    labels.write_text("bird\n")
    with pytest.raises(ValueError, match=r"3\.bboxes\.tsv: class 'bird' is not in names \['drone'\]$"):
        prepare("drones", tmp_path / "d", tmp_path / "out")
    # an existing dataset is never written over
    labels.write_text("drone\n")
    prepare("drones", tmp_path / "d", tmp_path / "out")
    with pytest.raises(ValueError, match=r"output folder .*out is not empty"):
        prepare("drones", tmp_path / "d", tmp_path / "out")


def test_protocol_refuses_to_pool_other_data_under_one_name():
    rows = [(FIXTURE, row) for row in json.loads(FIXTURE.read_text())["rows"]]  # recorded before fingerprints
    with pytest.raises(protocol.ProtocolError, match=r"^dataset cards in .*protocol_cards\.json holds data recorded "
                       r"before rows carried a fingerprint; this data's fingerprint is abc: .* another --dataset$"):  # fmt: skip
        protocol.check_same_data(rows, "cards", "abc")
    protocol.check_same_data(rows, "cards-v2", "abc")  # a new name starts a new dataset
    marked = [(FIXTURE, {**row, "data_fingerprint": "abc"}) for _, row in rows]
    protocol.check_same_data(marked, "cards", "abc")
    with pytest.raises(protocol.ProtocolError, match=r"holds other data \(fingerprint abc\); this data's fingerprint "
                       r"is def"):  # fmt: skip
        protocol.check_same_data(marked, "cards", "def")


def make_car_parts(root: Path) -> None:
    """A dsmlr/Car-Parts-Segmentation-style clone: {trainingset,testset}/annotations.json (COCO polygons, an empty
    background category, parts with sides) beside JPEGImages/."""
    from effdet_plugin.commands.prepare_data import CAR_PARTS

    names = ["_background_", *(n.replace("_door", "_left_door") for n in CAR_PARTS), "left_mirror", "right_mirror"]
    names.remove("mirror")
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    cid = {n: c["id"] for n, c in zip(names, cats)}
    for part, count in (("trainingset", 8), ("testset", 4)):
        images, anns = [], []
        for k in range(count):
            name = f"{part[:4]}{k}.jpg"
            _image(root / part / "JPEGImages" / name, 100, 80, 20 + 10 * k)
            images.append({"id": k + 1, "file_name": name, "width": 100, "height": 80})
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": cid["front_left_door"],
                         "segmentation": [[10, 10, 50, 10, 50, 40, 10, 40]]})  # fmt: skip
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": cid["wheel"],  # both wheels, one object
                         "segmentation": [[5, 60, 15, 60, 15, 70], [80, 60, 90, 60, 90, 70]]})  # fmt: skip
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": cid["right_mirror"],
                         "segmentation": [[60, 20, 70, 20, 70, 30]]})  # fmt: skip
        data = {"images": images, "annotations": anns, "categories": cats}
        (root / part / "annotations.json").write_text(json.dumps(data))


def test_car_parts_are_polygons_without_sides(tmp_path):
    make_car_parts(tmp_path / "clone")
    data_yaml, images, _ = prepare("car-parts", tmp_path / "clone", tmp_path / "car-parts")
    assert images == {"train": 8, "val": 2, "test": 2}
    names = yaml.safe_load(data_yaml.read_text())["names"]
    assert "mirror" in names.values() and not any("left" in n or "right" in n for n in names.values())
    ids = {n: i for i, n in names.items()}
    rows = _labels(data_yaml)["test0.jpg"][1]
    assert [int(r[0]) for r in rows] == [ids["front_door"], ids["wheel"], ids["mirror"]]
    np.testing.assert_allclose(rows[0][1:], [0.1, 0.125, 0.5, 0.125, 0.5, 0.5, 0.1, 0.5], atol=1e-9)
    wheel = np.array(rows[1][1:]).reshape(-1, 2) * (100, 80)  # both polygons joined, as convert_coco joins them
    assert {(5, 60), (15, 70), (80, 60), (90, 70)} <= {tuple(p) for p in wheel.round().astype(int).tolist()}


def make_tiger(root: Path, frames: int = 60) -> None:
    """A committed tiger-pose copy: datasets/tiger-pose/{train,val}/{images,labels}, Frame_N with 12 keypoints."""
    for n in range(frames):
        split = "val" if n % 5 == 0 else "train"
        base = root / "datasets" / "tiger-pose" / split
        _image(base / "images" / f"Frame_{n}.jpg", 64, 32, n)
        points = [v for k in range(12) for v in (0.1 + 0.05 * k, 0.2 + 0.04 * k)]
        (base / "labels").mkdir(parents=True, exist_ok=True)
        (base / "labels" / f"Frame_{n}.txt").write_text(" ".join(map(str, [0, 0.5, 0.5, 0.8, 0.8, *points])) + "\n")


def test_tiger_frames_keep_their_stretch_of_video_in_one_split(tmp_path):
    make_tiger(tmp_path / "clone")
    data_yaml, images, _ = prepare("tiger-pose", tmp_path / "clone", tmp_path / "tiger")
    assert images == {"train": 40, "val": 10, "test": 10}  # six stretches of ten frames: four, one, one
    data = yaml.safe_load(data_yaml.read_text())
    assert data["kpt_shape"] == [12, 2] and data["flip_idx"] == list(range(12))
    labels = _labels(data_yaml)
    splits = {n // 10: {s for name, (s, _) in labels.items() if int(Path(name).stem[6:]) // 10 == n // 10}
              for n in range(60)}  # fmt: skip
    assert all(len(s) == 1 for s in splits.values())
    row = labels["Frame_7.jpg"][1][0]
    np.testing.assert_allclose(
        row, [0, 0.5, 0.5, 0.8, 0.8, *(v for k in range(12) for v in (0.1 + 0.05 * k, 0.2 + 0.04 * k))]
    )


def test_a_task_dataset_needs_a_shape_per_object(tmp_path):
    from effdet_plugin.commands.yolo_dataset import Record, write_yolo_dataset

    records = []
    for name in "abc":
        _image(tmp_path / f"{name}.jpg", 10, 10, 1)
        box = np.array([[1, 1, 5, 5.0]])
        records.append(Record(tmp_path / f"{name}.jpg", 10, 10, ["x"], box, source=tmp_path / f"{name}.json"))
    with pytest.raises(ValueError, match=r"a\.json: a segment dataset needs one shape per object$"):
        write_yolo_dataset(records, tmp_path / "out", ["x"], task="segment")


def test_text_lines_are_the_turned_boxes_four_corners(tmp_path):
    """MSRA-TD500 rows: top-left corner and size before the box turns about its centre; written as OBB corners."""
    from PIL import Image

    for split, count in (("train", 9), ("test", 5)):
        for k in range(count):
            _image(tmp_path / "clone" / "MSRA-TD500" / split / f"IMG_{split}{k}.JPG", 100, 80, 10 + k)
            rows = ["0 0 10 20 40 10 0", f"1 1 40 40 20 10 {np.pi / 2}"]  # the second turned upright
            (tmp_path / "clone" / "MSRA-TD500" / split / f"IMG_{split}{k}.gt").write_text("\n".join(rows) + "\n")
    turned = tmp_path / "clone" / "MSRA-TD500" / "train" / "IMG_train0.JPG"  # EXIF says: show it turned
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (100, 80)).save(turned, exif=exif)
    data_yaml, images, _ = prepare("text-lines", tmp_path / "clone", tmp_path / "text")
    assert sum(images.values()) == 13 and "IMG_train0.JPG" not in _labels(data_yaml)
    flat, upright = _labels(data_yaml)["IMG_test1.JPG"][1]
    np.testing.assert_allclose(np.array(flat[1:]).reshape(4, 2) * (100, 80), [[10, 20], [50, 20], [50, 30], [10, 30]])
    # centre (50, 45); 20 wide and 10 high, turned a quarter: 10 wide and 20 high
    corners = np.array(upright[1:]).reshape(4, 2) * (100, 80)
    np.testing.assert_allclose(corners, [[55, 35], [55, 55], [45, 55], [45, 35]], atol=1e-6)


def test_classifier_datasets_are_class_folders_per_split(tmp_path):
    """Sign digits: Dataset/<digit>/ (a README beside them); clothing: {train,validation,test}/<class>/, pooled. Both
    come out as {train,val,test}/<class>/, what `yolo classify train data=FOLDER` takes, every class split on its own,
    with a fingerprint."""
    from effdet_plugin.commands.prepare_data import CLOTHING

    for digit in "0123456789":
        for k in range(10):
            _image(tmp_path / "signs" / "Dataset" / digit / f"IMG_{digit}{k}.JPG", 20, 20, 10 * k + int(digit))
    (tmp_path / "signs" / "Dataset" / "README.md").write_text("digits")
    folder, images, fingerprint = prepare("sign-digits", tmp_path / "signs", tmp_path / "digits")
    assert images == {"train": 60, "val": 20, "test": 20} and len(fingerprint) == 16  # each class split 6 / 2 / 2
    for split in ("train", "val", "test"):
        assert sorted(d.name for d in (folder / split).iterdir()) == list("0123456789")
    assert prepare("sign-digits", tmp_path / "signs", tmp_path / "again")[2] == fingerprint

    for part, count in (("train", 3), ("validation", 1), ("test", 1)):
        for name in CLOTHING:
            for k in range(count):
                _image(tmp_path / "clothes" / part / name / f"{part}{k}.jpg", 20, 20, k)
    folder, images, _ = prepare("clothing", tmp_path / "clothes", tmp_path / "clothing")
    assert sum(images.values()) == 50 and sorted(d.name for d in (folder / "val").iterdir()) == sorted(CLOTHING)
    (tmp_path / "clothes" / "train" / "socks").mkdir()
    with pytest.raises(ValueError, match=r"clothes: class folders \[.*'socks'.*\], expected \['dress'"):
        prepare("clothing", tmp_path / "clothes", tmp_path / "other")
