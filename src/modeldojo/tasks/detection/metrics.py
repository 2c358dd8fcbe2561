"""COCO-style detection metrics computed by pycocotools' COCOeval (never a hand-written mAP).

Inputs are plain per-image records (numpy arrays, lists or anything ``np.asarray`` accepts), boxes in
exclusive ``xyxy`` pixels of the *original* image:

    ground_truth[i] = {"boxes": (N, 4), "class_ids": (N,), "width": int, "height": int}
    predictions[i]  = {"boxes": (M, 4), "class_ids": (M,), "scores": (M,)}     # same image order

Class ids are 0-based indices into ``class_names``. Inside COCO, image and category ids are shifted by one
(pycocotools treats ids as opaque, but 0 is a common source of falsy-id bugs in COCO tooling).

Only pycocotools and numpy are imported here (no torch): metrics must be computable from saved predictions.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any, Sequence

import numpy as np

PR_IOU = 0.5  # the IoU of the reported PR curves, precision/recall and confusion matrix


def _as_array(values: Any, shape_tail: tuple[int, ...], dtype) -> np.ndarray:
    array = np.asarray(values if values is not None else [], dtype=dtype)
    return array.reshape((-1,) + shape_tail)


def _xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _build_coco(images, categories, annotations):
    """A pycocotools COCO object from in-memory dicts (no json file, and no printing)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def build_coco_objects(ground_truth: Sequence[dict], predictions: Sequence[dict], class_names: Sequence[str]):
    """Build the ground-truth and detection COCO objects.

    Detections are built directly rather than through ``COCO.loadRes`` because loadRes crashes on an empty
    list (it reads ``anns[0]``); the fields are the ones loadRes would add (``area`` = w*h, ``iscrowd`` 0, an
    id), so results are identical to a loadRes run.
    """
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} prediction records for {len(ground_truth)} images")
    images = [
        {"id": index + 1, "width": int(record["width"]), "height": int(record["height"])}
        for index, record in enumerate(ground_truth)
    ]
    categories = [{"id": index + 1, "name": str(name)} for index, name in enumerate(class_names)]
    truth_annotations, detection_annotations = [], []
    for index, (truth, predicted) in enumerate(zip(ground_truth, predictions)):
        truth_boxes = _xyxy_to_xywh(_as_array(truth.get("boxes"), (4,), float))
        truth_classes = _as_array(truth.get("class_ids"), (), int)
        for box, class_id in zip(truth_boxes, truth_classes):
            truth_annotations.append({
                "id": len(truth_annotations) + 1, "image_id": index + 1, "category_id": int(class_id) + 1,
                "bbox": [float(value) for value in box], "area": float(box[2] * box[3]), "iscrowd": 0,
            })
        predicted_boxes = _xyxy_to_xywh(_as_array(predicted.get("boxes"), (4,), float))
        predicted_classes = _as_array(predicted.get("class_ids"), (), int)
        predicted_scores = _as_array(predicted.get("scores"), (), float)
        for box, class_id, score in zip(predicted_boxes, predicted_classes, predicted_scores):
            detection_annotations.append({
                "id": len(detection_annotations) + 1, "image_id": index + 1, "category_id": int(class_id) + 1,
                "bbox": [float(value) for value in box], "area": float(box[2] * box[3]), "iscrowd": 0,
                "score": float(score),
            })
    return (_build_coco(images, categories, truth_annotations),
            _build_coco(images, categories, detection_annotations))


def _mean_valid(values: np.ndarray) -> float | None:
    """COCO's averaging: entries of -1 mean 'no ground truth' and are excluded; nothing left -> None."""
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else None


def _precision_recall_at_threshold(evaluator, class_count: int, confidence_threshold: float):
    """TP/FP/FN at IoU 0.5 for detections scoring >= threshold, using COCOeval's own per-image matching."""
    iou_index = int(np.argmin(np.abs(evaluator.params.iouThrs - PR_IOU)))
    true_positives = np.zeros(class_count, dtype=int)
    false_positives = np.zeros(class_count, dtype=int)
    ground_truth_counts = np.zeros(class_count, dtype=int)
    all_area = evaluator.params.areaRng[0]
    for image_result in evaluator.evalImgs:
        # evalImgs also holds the small/medium/large ranges; count each match once, in the 'all' range
        if image_result is None or image_result["aRng"] != all_area:
            continue
        class_index = image_result["category_id"] - 1
        scores = np.asarray(image_result["dtScores"], dtype=float)
        matched = np.asarray(image_result["dtMatches"])[iou_index] > 0
        ignored = np.asarray(image_result["dtIgnore"])[iou_index].astype(bool)
        confident = (scores >= confidence_threshold) & ~ignored
        true_positives[class_index] += int((matched & confident).sum())
        false_positives[class_index] += int((~matched & confident).sum())
        ground_truth_counts[class_index] += int((~np.asarray(image_result["gtIgnore"], dtype=bool)).sum())
    return true_positives, false_positives, ground_truth_counts


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def confusion_matrix(
    ground_truth: Sequence[dict],
    predictions: Sequence[dict],
    class_count: int,
    confidence_threshold: float = 0.25,
    iou_threshold: float = PR_IOU,
) -> np.ndarray:
    """Detection confusion matrix, (C + 1) x (C + 1): rows = true class, columns = predicted class.

    Index ``C`` is background: row ``C`` counts false detections (predicted a class where nothing was),
    column ``C`` counts missed objects. Predictions scoring >= ``confidence_threshold`` are taken greedily by
    descending score, each matched to the still-unmatched ground-truth box of *any* class with the highest
    IoU >= ``iou_threshold`` (class-agnostic, so a right box with the wrong class shows up as a confusion, not as
    one false positive plus one miss). IoUs come from ``pycocotools.mask.iou``, the function COCOeval uses.
    """
    from pycocotools import mask as mask_utils

    matrix = np.zeros((class_count + 1, class_count + 1), dtype=int)
    background = class_count
    for truth, predicted in zip(ground_truth, predictions):
        truth_boxes = _as_array(truth.get("boxes"), (4,), float)
        truth_classes = _as_array(truth.get("class_ids"), (), int)
        predicted_boxes = _as_array(predicted.get("boxes"), (4,), float)
        predicted_classes = _as_array(predicted.get("class_ids"), (), int)
        scores = _as_array(predicted.get("scores"), (), float)
        confident = scores >= confidence_threshold
        predicted_boxes, predicted_classes, scores = (
            predicted_boxes[confident], predicted_classes[confident], scores[confident])
        order = np.argsort(-scores, kind="stable")
        matched_truth = np.zeros(len(truth_boxes), dtype=bool)
        if len(truth_boxes) and len(predicted_boxes):
            overlaps = np.asarray(mask_utils.iou(
                _xyxy_to_xywh(predicted_boxes).tolist(), _xyxy_to_xywh(truth_boxes).tolist(),
                [0] * len(truth_boxes)))
        else:
            overlaps = np.zeros((len(predicted_boxes), len(truth_boxes)))
        for prediction_index in order:
            candidates = np.where(matched_truth, -1.0, overlaps[prediction_index]) if len(truth_boxes) else []
            best = int(np.argmax(candidates)) if len(truth_boxes) else -1
            if best >= 0 and candidates[best] >= iou_threshold:
                matched_truth[best] = True
                matrix[truth_classes[best], predicted_classes[prediction_index]] += 1
            else:
                matrix[background, predicted_classes[prediction_index]] += 1
        for truth_class in truth_classes[~matched_truth]:
            matrix[truth_class, background] += 1
    return matrix


def evaluate_detections(
    ground_truth: Sequence[dict],
    predictions: Sequence[dict],
    class_names: Sequence[str],
    confidence_threshold: float = 0.25,
    max_detections: int = 100,
) -> dict[str, Any]:
    """Run COCOeval (bbox) and return the detection metrics.

    Returns a dict with ``mAP50-95``, ``mAP50``, ``mAP75`` (COCO's area 'all', ``max_detections`` per image),
    ``per_class_AP`` (AP50-95 per class name; None for a class without ground truth, which COCO excludes from the
    mean), ``precision``/``recall`` (micro-averaged, IoU 0.5, detections scoring >= ``confidence_threshold``),
    ``per_class_precision``/``per_class_recall``, ``pr_curves`` (per class at IoU 0.5: COCO's 101 recall points and
    the interpolated precision; None without ground truth), ``confusion_matrix`` (see ``confusion_matrix``; rows
    true, columns predicted, last = background) and ``confusion_labels``.

    mAPs are None when no class has any ground truth (COCO would report -1). With ground truth but no
    predictions every AP is 0.
    """
    from pycocotools.cocoeval import COCOeval

    class_count = len(class_names)
    truth_coco, detection_coco = build_coco_objects(ground_truth, predictions, class_names)
    evaluator = COCOeval(truth_coco, detection_coco, iouType="bbox")
    evaluator.params.maxDets = [1, 10, max_detections]
    with contextlib.redirect_stdout(io.StringIO()):  # evaluate/accumulate print progress and timings
        evaluator.evaluate()
        evaluator.accumulate()

    # precision: [IoU thresholds, recall points, classes, area ranges, max-detection settings];
    # area index 0 is 'all' and the last maxDets entry is max_detections — exactly what summarize() reads
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    iou_thresholds = evaluator.params.iouThrs
    index_50 = int(np.argmin(np.abs(iou_thresholds - 0.5)))
    index_75 = int(np.argmin(np.abs(iou_thresholds - 0.75)))

    per_class_ap = {str(name): _mean_valid(precision[:, :, index]) for index, name in enumerate(class_names)}
    pr_curves: dict[str, dict | None] = {}
    for index, name in enumerate(class_names):
        curve = precision[index_50, :, index]
        pr_curves[str(name)] = (
            None if (curve <= -1).all()
            else {"recall": evaluator.params.recThrs.tolist(), "precision": curve.tolist()}
        )

    true_positives, false_positives, truth_counts = _precision_recall_at_threshold(
        evaluator, class_count, confidence_threshold)
    matrix = confusion_matrix(ground_truth, predictions, class_count, confidence_threshold)
    return {
        "mAP50-95": _mean_valid(precision),
        "mAP50": _mean_valid(precision[index_50]),
        "mAP75": _mean_valid(precision[index_75]),
        "per_class_AP": per_class_ap,
        "precision": _ratio(true_positives.sum(), true_positives.sum() + false_positives.sum()),
        "recall": _ratio(true_positives.sum(), truth_counts.sum()),
        "per_class_precision": {
            str(name): _ratio(true_positives[index], true_positives[index] + false_positives[index])
            for index, name in enumerate(class_names)
        },
        "per_class_recall": {
            str(name): (_ratio(true_positives[index], truth_counts[index]) if truth_counts[index] else None)
            for index, name in enumerate(class_names)
        },
        "confidence_threshold": float(confidence_threshold),
        "pr_curves": pr_curves,
        "confusion_matrix": matrix.tolist(),
        "confusion_labels": [str(name) for name in class_names] + ["background"],
    }


def is_missing(value: float | None) -> bool:
    """True for an AP that COCO leaves undefined (None here, NaN in some callers)."""
    return value is None or (isinstance(value, float) and math.isnan(value))
