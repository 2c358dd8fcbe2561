"""The detection task's report sections (tables, plots, gallery) and the per-image gallery score."""
import base64
import io

import pytest
from PIL import Image

from modeldojo.tasks.detection.metrics import evaluate_detections
from modeldojo.tasks.detection.report import GALLERY_SIDE, draw_boxes, image_quality, sections

CLASS_NAMES = ["cat", "<b>", "犬"]
IMAGE_TAG = '<img alt="'
PNG = "data:image/png;base64,"


def _records():
    """Three 64x48 images: one perfect, one with a wrong class and a false detection, one with a miss."""
    ground_truth = [
        {"boxes": [[4, 4, 30, 30], [34, 10, 60, 40]], "class_ids": [0, 1], "width": 64, "height": 48},
        {"boxes": [[10, 10, 40, 40]], "class_ids": [2], "width": 64, "height": 48},
        {"boxes": [[0, 0, 20, 20], [30, 20, 60, 46]], "class_ids": [0, 2], "width": 64, "height": 48},
    ]
    predictions = [
        {"boxes": [[4, 4, 30, 30], [34, 10, 60, 40]], "class_ids": [0, 1], "scores": [0.9, 0.8]},
        {"boxes": [[10, 10, 40, 40], [45, 2, 60, 15]], "class_ids": [0, 1], "scores": [0.7, 0.6]},
        {"boxes": [[1, 1, 20, 21], [30, 20, 60, 46]], "class_ids": [0, 2], "scores": [0.95, 0.1]},
    ]
    return ground_truth, predictions


def _gallery_item(image, truth_record, predicted_record, confidence):
    truth = [{"class": CLASS_NAMES[c], "box": list(b)}
             for b, c in zip(truth_record["boxes"], truth_record["class_ids"])]
    predicted = [{"class": CLASS_NAMES[c], "score": s, "box": list(b)} for b, c, s in
                 zip(predicted_record["boxes"], predicted_record["class_ids"], predicted_record["scores"])]
    return {"image": image, "truth": truth, "predicted": predicted,
            "score": image_quality(truth, predicted, confidence)}


@pytest.fixture
def report_inputs(tmp_path):
    ground_truth, predictions = _records()
    metrics = evaluate_detections(ground_truth, predictions, CLASS_NAMES, confidence_threshold=0.25)
    images = []
    for index in range(3):
        path = tmp_path / f"image_{index}.png"
        Image.new("RGB", (64, 48), (40 * index, 90, 160)).save(path)
        images.append(str(path))
    images[1] = Image.open(images[1]).convert("RGB")  # an in-memory image is allowed too
    gallery = [_gallery_item(image, truth, predicted, 0.25)
               for image, truth, predicted in zip(images, ground_truth, predictions)]
    gallery.append({"image": str(tmp_path / "gone.png"), "truth": [], "predicted": [], "score": 1.0})
    gallery.sort(key=lambda item: item["score"])
    return metrics, gallery


def test_sections_titles_images_and_escaping(report_inputs):
    metrics, gallery = report_inputs
    metrics["per_class_boxes"] = {"cat": 3, "<b>": 1, "犬": 2}
    result = sections(metrics, gallery, CLASS_NAMES)
    assert [title for title, _ in result] == [
        "Detection metrics", "Precision–recall curves (IoU 0.5)", "Detection confusion matrix",
        "Validation images, worst first"]
    bodies = dict(result)
    tables = bodies["Detection metrics"]
    assert "mAP50-95" in tables and "AP50-95" in tables and "boxes" in tables and "犬" in tables
    assert "&lt;b&gt;" in tables and "<b>" not in tables
    assert 'class="error"' not in "".join(bodies.values())
    for title in ("Precision–recall curves (IoU 0.5)", "Detection confusion matrix"):
        assert bodies[title].count(PNG) == 1
        encoded = bodies[title].split(PNG)[1].split('"')[0]
        assert base64.b64decode(encoded).startswith(b"\x89PNG")
    assert "background" in bodies["Detection confusion matrix"]
    images = bodies["Validation images, worst first"]
    assert images.count(PNG) == 3  # three readable images; the missing one is named, not drawn
    assert "unreadable" in images and "gone.png" in images
    assert "truth 2, predicted 1" in images  # the 0.1-score prediction is under the threshold


def test_gallery_images_are_scaled_and_shown_count_respected(report_inputs):
    metrics, gallery = report_inputs
    body = dict(sections(metrics, gallery, CLASS_NAMES, shown=1))["Validation images, worst first"]
    assert body.count("<figure") == 1
    encoded = body.split(PNG)[1].split('"')[0]
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert max(image.size) == GALLERY_SIDE


def test_sections_never_raise_on_thin_metrics():
    metrics = {"confidence_threshold": 0.5, "pr_curves": {"a": None}, "per_class_AP": {"a": None}}
    result = sections(metrics, [{"image": 12345}, {"nothing": True}], ["a"])
    assert len(result) == 4
    bodies = dict(result)
    assert "—" in bodies["Detection metrics"]
    assert bodies["Validation images, worst first"].count("unreadable") == 2


def test_boxes_stay_aligned_after_scaling():
    image = Image.new("RGB", (128, 64), (255, 255, 255))  # 64x32 drawn at scale 2
    draw_boxes(image, [{"class": "a", "box": [8, 8, 24, 28]}], [], scale=2.0)
    assert image.getpixel((16, 40))[1] > 150 and image.getpixel((16, 40))[0] < 50  # left edge, green
    assert image.getpixel((32, 40)) == (255, 255, 255)  # inside the box, untouched


def box(name, x1, y1, x2, y2, score=None):
    record = {"class": name, "box": [x1, y1, x2, y2]}
    if score is not None:
        record["score"] = score
    return record


def test_image_quality_hand_computed():
    truth = [box("a", 0, 0, 10, 10), box("b", 20, 20, 30, 30)]
    perfect = [box("a", 0, 0, 10, 10, 0.9), box("b", 20, 20, 30, 30, 0.8)]
    assert image_quality(truth, perfect, 0.25) == 1.0
    # one object missed: TP 1, FN 1 -> 2 / (2 + 0 + 1)
    assert image_quality(truth, perfect[:1], 0.25) == pytest.approx(2 / 3)
    # a low-score prediction does not count: same as missing it
    assert image_quality(truth, [perfect[0], box("b", 20, 20, 30, 30, 0.1)], 0.25) == pytest.approx(2 / 3)
    # right box, wrong class: TP 1, FP 1, FN 1 -> 2 / 4
    assert image_quality(truth, [perfect[0], box("a", 20, 20, 30, 30, 0.8)], 0.25) == pytest.approx(0.5)
    # IoU below 0.5 (10x10 box shifted by 5: IoU 50/150) is a miss plus a false detection
    assert image_quality([truth[0]], [box("a", 5, 0, 15, 10, 0.9)], 0.25) == 0.0
    # a duplicate detection matches once; the second is a false positive: 2 / (2 + 1)
    assert image_quality([truth[0]], [box("a", 0, 0, 10, 10, 0.9), box("a", 0, 0, 10, 10, 0.8)],
                         0.25) == pytest.approx(2 / 3)
    assert image_quality([], [], 0.25) == 1.0
    assert image_quality([], [box("a", 0, 0, 5, 5, 0.9)], 0.25) == 0.0
    assert image_quality(truth, [], 0.25) == 0.0
