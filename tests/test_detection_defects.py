"""The defects-on-a-surface generator: deterministic, YOLO and COCO agree, and every box is exact and inside."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from modeldojo.tasks.detection.box_checks import check_dataset
from modeldojo.tasks.detection.formats import read_dataset

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "detection_defects.py"


def _generator():
    spec = importlib.util.spec_from_file_location("detection_defects", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def defects(tmp_path_factory):
    return _generator().generate(tmp_path_factory.mktemp("defects") / "yolo", images=12, size=96, seed=3)


def _boxes(dataset):
    """{image key: sorted (class name, corners)} — comparable across layouts."""
    table = dataset.boxes.assign(key=[dataset.images[i].key for i in dataset.boxes["image"]])
    return {key: sorted((row.class_name, row.x_min, row.y_min, row.x_max, row.y_max) for row in group.itertuples())
            for key, group in table.groupby("key")}


def test_same_seed_gives_the_same_bytes(defects, tmp_path):
    again = _generator().generate(tmp_path / "again", images=12, size=96, seed=3)
    files = sorted(path.relative_to(defects) for path in defects.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(again) for path in again.rglob("*") if path.is_file())
    assert len(files) == 12 + 12 + 2  # images, labels (empty for background), data.yaml, coco.json
    for name in files:
        assert (defects / name).read_bytes() == (again / name).read_bytes(), name


def test_yolo_and_coco_agree_and_boxes_lie_inside_their_images(defects):
    yolo, coco = read_dataset(defects), read_dataset(defects / "coco.json", layout="coco")
    assert yolo.layout == "yolo" and yolo.names == coco.names == ["scratch", "spot", "hole"]
    assert yolo.problems == [] and coco.problems == [] and len(yolo.images) == len(coco.images) == 12
    from_yolo, from_coco = _boxes(yolo), _boxes(coco)
    assert from_yolo.keys() == from_coco.keys()
    for key in from_yolo:
        assert [box[0] for box in from_yolo[key]] == [box[0] for box in from_coco[key]]
        assert np.allclose([box[1:] for box in from_yolo[key]], [box[1:] for box in from_coco[key]], atol=1)
    sizes = np.array([(image.width, image.height) for image in yolo.images])[yolo.boxes["image"]]
    x_min, y_min, x_max, y_max = (coco.boxes[c].to_numpy() for c in ("x_min", "y_min", "x_max", "y_max"))
    assert (x_min >= 0).all() and (y_min >= 0).all() and (x_max <= sizes[:, 0]).all() and (y_max <= sizes[:, 1]).all()
    assert (x_max > x_min).all() and (y_max > y_min).all()
    corners = np.stack([x_min, y_min, x_max, y_max])
    assert np.array_equal(corners, corners.round())  # whole pixel edges, as the generator cut them
    assert set(coco.boxes["class_name"]) == {"scratch", "spot", "hole"}
    assert len(from_yolo) < 12  # some images are background
    report = check_dataset(yolo)
    assert not report.errors and sum(report.class_counts.values()) == len(yolo.boxes)


def test_a_box_is_the_tight_box_of_the_changed_pixels():
    generator = _generator()
    canvas = np.full((40, 40, 3), 120, np.uint8)
    alpha = np.zeros((40, 40), np.float32)
    alpha[5:9, 10:30] = 0.5
    alpha[20, 3] = generator.FAINT / 2  # too faint to count: dropped, not stretching the box
    pasted, box = generator._paste(canvas, alpha, np.zeros((40, 40, 3), np.float32))
    assert box == (10, 5, 30, 9) and (pasted[5:9, 10:30] == 60).all() and pasted[20, 3].tolist() == [120] * 3
    assert generator._paste(canvas, np.zeros((40, 40), np.float32), canvas.astype(np.float32))[1] is None
