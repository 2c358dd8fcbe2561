"""Detection groundwork: the three label layouts round-trip, are told apart, and bad labels are located."""
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from modeldojo.tasks.detection.box_checks import check_dataset, check_folder
from modeldojo.tasks.detection.formats import detect_layout, read_dataset
from modeldojo.tasks.detection.writers import write_coco, write_voc, write_yolo

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "detection_digits.py"


def _generator():
    spec = importlib.util.spec_from_file_location("detection_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return _generator().generate(tmp_path_factory.mktemp("digits") / "yolo", images=6, size=96, seed=3)


@pytest.fixture
def yolo(digits, tmp_path):
    """A private copy, so a test may break its labels."""
    return Path(shutil.copytree(digits, tmp_path / "yolo"))


def _boxes(dataset):
    """{image key: sorted (class name, rounded corners)} — comparable across layouts."""
    table = dataset.boxes.assign(key=[dataset.images[i].key for i in dataset.boxes["image"]])
    return {key: sorted((row.class_name, *np.round([row.x_min, row.y_min, row.x_max, row.y_max], 2))
                        for row in group.itertuples())
            for key, group in table.groupby("key")}


def _codes(report):
    return {finding.code: finding for finding in report.findings}


def test_generator_is_deterministic_and_writes_yolo_and_coco(digits, tmp_path):
    again = _generator().generate(tmp_path / "again", images=6, size=96, seed=3)
    for name in ("images/00000.png", "labels/00005.txt", "coco.json", "data.yaml"):
        assert (digits / name).read_bytes() == (again / name).read_bytes()
    yolo, coco = read_dataset(digits), read_dataset(digits / "coco.json")
    assert yolo.names == [str(d) for d in range(10)] and yolo.problems == [] and coco.problems == []
    assert 6 <= len(yolo.boxes) <= 24 and _boxes(yolo) == _boxes(coco)
    report = check_dataset(yolo)
    assert not report.errors and sum(report.class_counts.values()) == len(yolo.boxes)


def test_round_trip_yolo_coco_voc_yolo(digits, tmp_path):
    original = read_dataset(digits)
    coco = read_dataset(write_coco(original, tmp_path / "coco" / "instances.json"))
    voc = read_dataset(write_voc(coco, tmp_path / "voc"))
    back = read_dataset(write_yolo(voc, tmp_path / "back"))
    assert [d.layout for d in (coco, voc, back)] == ["coco", "voc", "yolo"]
    assert voc.names == coco.names == back.names == original.names
    assert _boxes(back) == _boxes(voc) == _boxes(coco) == _boxes(original)
    assert [image.key for image in back.images] == [image.key for image in original.images]
    assert all(not d.problems for d in (coco, voc, back))


def test_splits_and_names_as_a_list(digits, tmp_path):
    root = tmp_path / "split"
    for split, stems in {"train": ["00000", "00001", "00002"], "val": ["00003"]}.items():
        for stem in stems:
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            shutil.copy(digits / "images" / f"{stem}.png", root / "images" / split)
            shutil.copy(digits / "labels" / f"{stem}.txt", root / "labels" / split)
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [" +
                                    ", ".join(f"'{d}'" for d in range(10)) + "]\n")
    dataset = read_dataset(root)
    assert [image.split for image in dataset.images] == ["train"] * 3 + ["val"]
    assert dataset.images[3].key == "val/00003.png" and not dataset.problems
    voc = read_dataset(write_voc(dataset, tmp_path / "voc"))
    assert [image.split for image in voc.images] == ["train"] * 3 + ["val"] and _boxes(voc) == _boxes(dataset)


def test_detect_layout(digits, tmp_path):
    write_voc(read_dataset(digits), tmp_path / "voc")
    only_coco = tmp_path / "coco"
    write_coco(read_dataset(digits), only_coco / "annotations.json")
    assert detect_layout(digits) == "yolo"  # YOLO first where a folder holds both
    assert detect_layout(digits / "coco.json") == "coco" and detect_layout(only_coco) == "coco"
    assert detect_layout(tmp_path / "voc") == "voc"
    assert detect_layout(tmp_path / "voc" / "Annotations" / "00000.xml") == "voc"
    (tmp_path / "empty").mkdir()
    assert detect_layout(tmp_path / "empty") is None and detect_layout(digits / "images" / "00000.png") is None
    with pytest.raises(ValueError, match="not a detection dataset"):
        read_dataset(tmp_path / "empty")


def _break(yolo, text, stem="00001"):
    label = yolo / "labels" / f"{stem}.txt"
    lines = label.read_text().splitlines()
    label.write_text("\n".join(lines + [text]) + "\n")
    return label, len(lines) + 1


@pytest.mark.parametrize("text, code", [
    ("3 0.5 0.5 0.2", "malformed_line"),            # wrong field count
    ("3 0.5 zero 0.2 0.2", "malformed_line"),       # not a number
    ("3 48 48 20 20", "not_normalised"),            # pixels where fractions belong
    ("12 0.5 0.5 0.2 0.2", "unknown_class"),        # beyond the 10 names
    ("3 0.5 0.5 0 0.2", "box_degenerate"),          # zero width
])
def test_each_bad_yolo_line_is_an_error_naming_file_and_line(yolo, text, code):
    label, line = _break(yolo, text)
    findings = [f for f in check_folder(yolo)[1].findings if f.code == code]
    assert len(findings) == 1 and findings[0].severity == "error"
    assert f"{label}:{line}" in findings[0].message
    assert findings[0].details["file"] == str(label) and findings[0].details["line"] == line


def test_box_beyond_the_image_is_clipped_with_a_warning_unless_wholly_outside(yolo):
    label, line = _break(yolo, "3 0.95 0.5 0.3 0.2")  # sticks out on the right: clip-able
    finding = _codes(check_folder(yolo)[1])["box_clipped"]
    assert finding.severity == "warning" and f"{label}:{line}" in finding.message
    coco = json.loads((yolo / "coco.json").read_text())
    coco["annotations"][0]["bbox"] = [200, 10, 20, 20]  # a 96×96 image: wholly outside
    (yolo / "coco.json").write_text(json.dumps(coco))
    finding = _codes(check_folder(yolo / "coco.json")[1])["box_outside_image"]
    assert finding.severity == "error" and "annotation id 1" in finding.message


def test_images_without_labels_are_background_and_labels_without_images_are_errors(yolo):
    (yolo / "labels" / "00002.txt").unlink()
    (yolo / "labels" / "ghost.txt").write_text("1 0.5 0.5 0.1 0.1\n")
    findings = _codes(check_folder(yolo)[1])
    assert findings["background_images"].severity == "info" and "00002.png" in findings["background_images"].message
    assert findings["label_without_image"].severity == "error"
    assert str(yolo / "labels" / "ghost.txt") in findings["label_without_image"].message


def test_duplicate_images_are_found_by_their_bytes(yolo):
    shutil.copy(yolo / "images" / "00000.png", yolo / "images" / "copy.png")
    finding = _codes(check_folder(yolo)[1])["duplicate_images"]
    assert finding.severity == "warning" and "copy.png" in finding.message and "00000.png" in finding.message


def test_bad_coco_annotations_name_their_id(yolo):
    path = yolo / "coco.json"
    coco = json.loads(path.read_text())
    coco["annotations"][1]["category_id"] = 99
    coco["annotations"][2]["bbox"] = [1, 2, "wide"]
    coco["annotations"][3]["image_id"] = 404
    path.write_text(json.dumps(coco))
    findings = check_folder(path)[1].findings
    expected = {("unknown_class", 2), ("malformed_line", 3), ("label_without_image", 4)}
    assert {(f.code, f.details["line"]) for f in findings if f.severity == "error"} == expected
    for finding in findings:
        if finding.severity == "error":
            assert f"(annotation id {finding.details['line']})" in finding.message and str(path) in finding.message


def test_bad_voc_objects_name_their_xml_file(digits, tmp_path):
    voc = write_voc(read_dataset(digits), tmp_path / "voc")
    xml = voc / "Annotations" / "00000.xml"
    xml.write_text(xml.read_text().replace("<name>", "<name>x", 1))
    other = voc / "Annotations" / "00001.xml"
    other.write_text(other.read_text().replace("<xmax>", "<xmax>-", 1))
    findings = {f.code: f for f in check_folder(voc)[1].findings if f.severity == "error"}
    assert str(xml) in findings["unknown_class"].message and "(object 1)" in findings["unknown_class"].message
    assert str(other) in findings["box_degenerate"].message


def test_many_findings_of_one_kind_are_counted_not_dropped(yolo):
    label = yolo / "labels" / "00000.txt"
    label.write_text("bad\n" * 60)
    findings = [f for f in check_folder(yolo)[1].findings if f.code == "malformed_line"]
    assert len(findings) == 51 and findings[-1].details["count"] == 60 and "10 more" in findings[-1].message


def test_checks_import_no_torch():
    """In a fresh interpreter: other tests in the same process may have loaded torch already."""
    import subprocess

    code = ("import sys, modeldojo.tasks as t; t.load_all(); import modeldojo.tasks.detection.box_checks; "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
