"""Detection groundwork: box geometry (hand-computed cases) and COCO metrics (against a direct COCOeval run)."""

import contextlib
import io

import numpy as np
import pytest
import torch

from modeldojo.tasks.detection import boxes as box_ops
from modeldojo.tasks.detection import metrics as detection_metrics

# --- conversions and IoU ---------------------------------------------------------------------------------


def test_conversions_by_hand():
    xyxy = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    assert torch.equal(box_ops.xyxy_to_xywh(xyxy), torch.tensor([[10.0, 20.0, 20.0, 40.0]]))
    assert torch.equal(box_ops.xyxy_to_cxcywh(xyxy), torch.tensor([[20.0, 40.0, 20.0, 40.0]]))
    for source in box_ops.BOX_FORMATS:
        for target in box_ops.BOX_FORMATS:
            there = box_ops.convert_boxes(box_ops.convert_boxes(xyxy, "xyxy", source), source, target)
            assert torch.allclose(box_ops.convert_boxes(there, target, "xyxy"), xyxy)
    normalised = box_ops.normalize_boxes(xyxy, width=100, height=200)
    assert torch.allclose(normalised, torch.tensor([[0.1, 0.1, 0.3, 0.3]]))
    assert torch.allclose(box_ops.denormalize_boxes(normalised, 100, 200), xyxy)
    with pytest.raises(ValueError):
        box_ops.convert_boxes(xyxy, "xyxy", "yolo")


def test_iou_by_hand():
    first = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 10.0, 10.0]])
    second = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 4.0, 4.0], [0.0, 0.0, 10.0, 5.0], [5.0, 5.0, 5.0, 5.0]])
    expected = torch.tensor([
        [1 / 7, 0.0, 4 / 50, 0.0],  # overlap 1 of union 7; touching corners; 4 of 50; an empty box
        [4 / 100, 4 / 100, 50 / 100, 0.0],
    ])
    assert torch.allclose(box_ops.box_iou(first, second), expected)
    assert box_ops.box_iou(torch.zeros(0, 4), second).shape == (0, 4)


def test_class_aware_nms_by_hand():
    boxes = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],    # 0: class 0, best
        [1.0, 1.0, 11.0, 11.0],    # 1: class 0, IoU with 0 = 81 / 119 = 0.68
        [0.0, 0.0, 10.0, 10.0],    # 2: class 1, same place as 0 but another class
        [20.0, 20.0, 30.0, 30.0],  # 3: class 0, far away
    ])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    class_ids = torch.tensor([0, 0, 1, 0])
    assert box_ops.batched_nms(boxes, scores, class_ids, 0.5).tolist() == [0, 2, 3]
    assert box_ops.batched_nms(boxes, scores, class_ids, 0.7).tolist() == [0, 1, 2, 3]
    assert box_ops.batched_nms(boxes, scores, class_ids, 0.5, score_threshold=0.65).tolist() == [0, 2]
    assert box_ops.batched_nms(boxes, scores, class_ids, 0.5, max_detections=2).tolist() == [0, 2]
    assert box_ops.batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), 0.5).numel() == 0


# --- letterbox -------------------------------------------------------------------------------------------


def test_letterbox_by_hand_and_round_trip():
    image = torch.rand(3, 100, 200)
    padded, geometry = box_ops.letterbox(image, 64)
    # scale = min(64 / 100, 64 / 200) = 0.32 -> 64 x 32, padded 16 rows above and below
    assert padded.shape == (3, 64, 64)
    assert (geometry.scale_x, geometry.scale_y, geometry.pad_left, geometry.pad_top) == (0.32, 0.32, 0, 16)
    assert torch.all(padded[:, :16] == 114 / 255) and torch.all(padded[:, 48:] == 114 / 255)
    original = torch.tensor([[20.0, 10.0, 120.0, 90.0]])
    moved = box_ops.boxes_to_letterbox(original, geometry)
    assert torch.allclose(moved, torch.tensor([[6.4, 19.2, 38.4, 44.8]]))
    assert torch.allclose(box_ops.boxes_from_letterbox(moved, geometry), original, atol=1e-5)
    # awkward sizes: rounding to whole pixels must not break the inverse
    odd, odd_geometry = box_ops.letterbox(torch.rand(2, 3, 37, 53), (40, 48))
    assert odd.shape == (2, 3, 40, 48)
    odd_boxes = torch.tensor([[0.0, 0.0, 53.0, 37.0], [3.3, 7.7, 20.1, 30.9]], dtype=torch.float64)
    back = box_ops.boxes_from_letterbox(box_ops.boxes_to_letterbox(odd_boxes, odd_geometry), odd_geometry)
    assert torch.allclose(back, odd_boxes, atol=1e-9)
    # predictions reaching into the padding clip back onto the image
    outside = torch.tensor([[-5.0, 0.0, 70.0, 64.0]])
    assert torch.allclose(box_ops.boxes_from_letterbox(outside, geometry), torch.tensor([[0.0, 0.0, 200.0, 100.0]]))


# --- augmentation ----------------------------------------------------------------------------------------


def _painted(height, width, box, value=1.0):
    image = torch.zeros(1, 3, height, width)
    x1, y1, x2, y2 = (int(v) for v in box)
    image[..., y1:y2, x1:x2] = value
    return image


def test_horizontal_flip_moves_box_like_the_image():
    augment = box_ops.BoxAugmentation((100, 200), flip_probability=1.0, scale_range=None, colour_jitter=0)
    image = _painted(100, 200, (10, 20, 50, 60))
    flipped, flipped_boxes, flipped_classes = augment(image, [torch.tensor([[10.0, 20.0, 50.0, 60.0]])],
                                                      [torch.tensor([3])])
    # by hand: x -> 200 - x, so [10, 50) becomes [150, 190)
    assert torch.allclose(flipped_boxes[0], torch.tensor([[150.0, 20.0, 190.0, 60.0]]))
    assert flipped_classes[0].tolist() == [3]
    lit = flipped[0, 0].nonzero()
    assert lit[:, 1].min() == 150 and lit[:, 1].max() == 189


def test_random_crop_keeps_boxes_on_their_objects_and_drops_small_ones():
    torch.manual_seed(0)
    augment = box_ops.BoxAugmentation(64, flip_probability=0.5, scale_range=(0.4, 1.0), colour_jitter=0)
    for _ in range(5):
        image = _painted(64, 64, (8, 16, 40, 48))
        output, output_boxes, _ = augment(image, [torch.tensor([[8.0, 16.0, 40.0, 48.0]])], [torch.tensor([0])])
        lit = (output[0, 0] > 0.5).nonzero()
        if len(output_boxes[0]) == 0:
            assert len(lit) < 4 * 64  # the object left the image, or only a sliver is left
            continue
        x1, y1, x2, y2 = output_boxes[0][0].tolist()
        assert abs(lit[:, 1].min().item() - x1) <= 1.5 and abs(lit[:, 1].max().item() + 1 - x2) <= 1.5
        assert abs(lit[:, 0].min().item() - y1) <= 1.5 and abs(lit[:, 0].max().item() + 1 - y2) <= 1.5
    identity = box_ops.BoxAugmentation(32, flip_probability=0, scale_range=None, colour_jitter=0,
                                          minimum_box_size=5)
    _, kept, kept_classes = identity(torch.rand(1, 3, 32, 32), [torch.tensor([[0.0, 0, 3, 3], [0, 0, 10, 10]])],
                                     [torch.tensor([1, 2])])
    assert kept[0].tolist() == [[0.0, 0.0, 10.0, 10.0]] and kept_classes[0].tolist() == [2]


def test_colour_jitter_keeps_boxes_and_handles_images_without_boxes():
    augment = box_ops.BoxAugmentation(32, flip_probability=0, scale_range=None, colour_jitter=0.4)
    images, kept, kept_classes = augment(torch.rand(2, 3, 32, 32), [torch.tensor([[1.0, 2, 20, 30]]),
                                                                    torch.zeros(0, 4)],
                                         [torch.tensor([4]), torch.zeros(0, dtype=torch.long)])
    assert images.shape == (2, 3, 32, 32) and images.min() >= 0 and images.max() <= 1
    assert torch.allclose(kept[0], torch.tensor([[1.0, 2, 20, 30]])) and kept[1].shape == (0, 4)
    assert kept_classes[0].tolist() == [4]


def test_mosaic_keeps_each_box_with_its_class():
    torch.manual_seed(1)
    # image i holds one box painted with intensity (i + 1) / 4 and labelled class i
    boxes = [torch.tensor([[8.0, 8.0, 56.0, 56.0]]) for _ in range(3)]
    images = torch.cat([_painted(64, 64, (8, 8, 56, 56), (index + 1) / 4) for index in range(3)])
    augment = box_ops.BoxAugmentation(64, flip_probability=0, scale_range=None, colour_jitter=0,
                                         mosaic_probability=1.0, minimum_box_size=4)
    output, output_boxes, output_classes = augment(images, boxes, [torch.tensor([index]) for index in range(3)])
    assert output.shape == (3, 3, 64, 64)
    checked = 0
    for image_index in range(3):
        for box, class_id in zip(output_boxes[image_index], output_classes[image_index]):
            x1, y1, x2, y2 = (int(round(v)) for v in box.tolist())
            inside = output[image_index, 0, y1 + 1:y2 - 1, x1 + 1:x2 - 1]
            if inside.numel():
                assert inside.median().item() == pytest.approx((int(class_id) + 1) / 4, abs=0.02)
                checked += 1
    assert checked > 0


# --- metrics ---------------------------------------------------------------------------------------------

CLASS_NAMES = ["cat", "dog", "bird"]  # "bird" has no ground truth anywhere

GROUND_TRUTH = [
    {"boxes": [[10, 10, 50, 50], [60, 60, 90, 100]], "class_ids": [0, 1], "width": 100, "height": 120},
    {"boxes": [[0, 0, 30, 30], [40, 40, 80, 80], [5, 50, 25, 90]], "class_ids": [0, 0, 1], "width": 100,
     "height": 100},
    {"boxes": [], "class_ids": [], "width": 64, "height": 64},  # an image with no objects
]
PREDICTIONS = [
    {"boxes": [[12, 10, 50, 52], [60, 62, 90, 100], [0, 0, 20, 20]], "class_ids": [0, 1, 0],
     "scores": [0.9, 0.8, 0.3]},
    {"boxes": [[0, 0, 28, 30], [45, 45, 80, 80], [40, 40, 80, 80], [5, 50, 25, 90]], "class_ids": [0, 0, 1, 2],
     "scores": [0.95, 0.6, 0.4, 0.7]},
    {"boxes": [[1, 1, 20, 20]], "class_ids": [1], "scores": [0.5]},
]


def _direct_cocoeval(ground_truth, predictions):
    """The reference: the standard pycocotools recipe (loadRes from a result list, summarize)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for index, (truth, predicted) in enumerate(zip(ground_truth, predictions)):
        images.append({"id": index + 1, "width": truth["width"], "height": truth["height"]})
        for (x1, y1, x2, y2), class_id in zip(truth["boxes"], truth["class_ids"]):
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": class_id + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        for (x1, y1, x2, y2), class_id, score in zip(predicted["boxes"], predicted["class_ids"], predicted["scores"]):
            results.append({"image_id": index + 1, "category_id": class_id + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": score})
    with contextlib.redirect_stdout(io.StringIO()):
        truth_coco = COCO()
        truth_coco.dataset = {"images": images, "annotations": annotations,
                              "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASS_NAMES)]}
        truth_coco.createIndex()
        evaluator = COCOeval(truth_coco, truth_coco.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def test_map_matches_a_direct_cocoeval_run(capsys):
    result = detection_metrics.evaluate_detections(GROUND_TRUTH, PREDICTIONS, CLASS_NAMES)
    assert capsys.readouterr().out == ""  # pycocotools' printing is silenced
    reference = _direct_cocoeval(GROUND_TRUTH, PREDICTIONS)
    assert result["mAP50-95"] == pytest.approx(reference.stats[0], abs=1e-4)
    assert result["mAP50"] == pytest.approx(reference.stats[1], abs=1e-4)
    assert result["mAP75"] == pytest.approx(reference.stats[2], abs=1e-4)
    assert 0 < result["mAP50-95"] < 1
    for index, name in enumerate(CLASS_NAMES[:2]):
        class_precision = reference.eval["precision"][:, :, index, 0, -1]
        assert result["per_class_AP"][name] == pytest.approx(class_precision[class_precision > -1].mean(), abs=1e-4)
    assert result["per_class_AP"]["bird"] is None and result["pr_curves"]["bird"] is None
    curve = result["pr_curves"]["cat"]
    assert len(curve["recall"]) == 101 and len(curve["precision"]) == 101
    assert np.allclose(curve["precision"], reference.eval["precision"][0, :, 0, 0, -1])


def test_perfect_and_empty_predictions():
    perfect = [{"boxes": truth["boxes"], "class_ids": truth["class_ids"], "scores": [1.0] * len(truth["boxes"])}
               for truth in GROUND_TRUTH]
    result = detection_metrics.evaluate_detections(GROUND_TRUTH, perfect, CLASS_NAMES)
    assert result["mAP50-95"] == pytest.approx(1.0) and result["mAP50"] == pytest.approx(1.0)
    assert result["precision"] == 1.0 and result["recall"] == 1.0
    assert result["per_class_AP"] == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0), "bird": None}
    empty = [{"boxes": [], "class_ids": [], "scores": []} for _ in GROUND_TRUTH]
    result = detection_metrics.evaluate_detections(GROUND_TRUTH, empty, CLASS_NAMES)
    assert result["mAP50-95"] == 0.0 and result["mAP50"] == 0.0 and result["mAP75"] == 0.0
    assert result["precision"] == 0.0 and result["recall"] == 0.0
    assert result["confusion_matrix"] == [[0, 0, 0, 3], [0, 0, 0, 2], [0, 0, 0, 0], [0, 0, 0, 0]]
    nothing = detection_metrics.evaluate_detections([{"boxes": [], "class_ids": [], "width": 8, "height": 8}],
                                                    [{"boxes": [], "class_ids": [], "scores": []}], CLASS_NAMES)
    assert nothing["mAP50-95"] is None


def test_confusion_matrix_and_threshold_precision_recall_by_hand():
    ground_truth = [
        {"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "class_ids": [0, 1], "width": 64, "height": 64},
        {"boxes": [[0, 0, 10, 10]], "class_ids": [1], "width": 64, "height": 64},
    ]
    predictions = [
        {"boxes": [[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60], [0, 0, 10, 10]],
         "class_ids": [0, 0, 1, 0], "scores": [0.9, 0.8, 0.7, 0.1]},
        {"boxes": [], "class_ids": [], "scores": []},
    ]
    # rows true (cat, dog, background), columns predicted: cat found; dog called cat; a dog where nothing is;
    # the second image's dog missed; the 0.1 detection is below the threshold and ignored
    expected = [[1, 0, 0], [1, 0, 1], [0, 1, 0]]
    assert detection_metrics.confusion_matrix(ground_truth, predictions, 2, confidence_threshold=0.25).tolist() \
        == expected
    result = detection_metrics.evaluate_detections(ground_truth, predictions, ["cat", "dog"], confidence_threshold=0.25)
    assert result["confusion_matrix"] == expected
    assert result["confusion_labels"] == ["cat", "dog", "background"]
    # COCO matches per class: cat 1 TP + 1 FP of 1 cat, dog 0 TP + 1 FP of 2 dogs -> P = 1/3, R = 1/3
    assert result["precision"] == pytest.approx(1 / 3) and result["recall"] == pytest.approx(1 / 3)
    assert result["per_class_precision"] == {"cat": 0.5, "dog": 0.0}
    assert result["per_class_recall"] == {"cat": 1.0, "dog": 0.0}


def test_zero_area_boxes_neither_suppress_nor_are_suppressed():
    # kornia's IoU is 0/0 = NaN for them, which would drop every later box; ONNX Runtime's NMS keeps them all.
    boxes = torch.tensor([[10.0, 10.0, 10.0, 20.0], [10.0, 10.0, 10.0, 20.0], [5, 5, 30, 30], [5, 5, 30, 30],
                          [6, 6, 30, 30]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.65])
    class_ids = torch.tensor([0, 1, 0, 1, 0])
    assert box_ops.batched_nms(boxes, scores, class_ids, 0.5).tolist() == [0, 1, 2, 3]
