"""Test metrics, the worst images and the report's sections of a detection model's predictions.

A Prediction carries, per image, the boxes people read (`values`: at or above the confidence threshold, JSON)
and every box the model kept after NMS (`notes["detections"]`: raw arrays in the image's pixels). mAP is
computed on the latter, as COCO tools do, so it does not depend on the threshold; precision, recall and the
confusion matrix count boxes at the threshold.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from . import frames
from .metrics import evaluate_detections

SCALARS = ("mAP50-95", "mAP50", "mAP75", "precision", "recall")


def _records(actual, prediction) -> tuple[list[dict], list[dict], list[str]]:
    names = list(prediction.classes or [])
    index_of = {name: i for i, name in enumerate(names)}
    detections = prediction.notes.get("detections")
    truth, predicted = [], []
    for row, cell in enumerate(actual):
        boxes = [box for box in frames.parse_boxes(cell, f"row {row}") if box["class"] in index_of]
        found = detections[row] if detections is not None else _parsed(prediction.values[row], index_of)
        truth.append({"width": found.get("width", 1), "height": found.get("height", 1),
                      "boxes": np.array([box["box"] for box in boxes], dtype=float).reshape(-1, 4),
                      "class_ids": np.array([index_of[box["class"]] for box in boxes], dtype=int)})
        predicted.append(found)
    return truth, predicted, names


def _parsed(cell, index_of: dict[str, int]) -> dict[str, Any]:
    """A prediction's JSON boxes as arrays (predictions that carry no raw detections in their notes)."""
    items = (json.loads(cell) if isinstance(cell, str) else cell) or []
    boxes, scores = frames.parse_boxes(items, "prediction"), [item.get("score", 1.0) for item in items]
    return {"boxes": np.array([box["box"] for box in boxes], dtype=float).reshape(-1, 4),
            "class_ids": np.array([index_of.get(box["class"], 0) for box in boxes], dtype=int),
            "scores": np.array(scores, dtype=float)}


def full_metrics(actual, prediction, confidence: float) -> dict[str, Any]:
    truth, predicted, names = _records(actual, prediction)
    metrics = evaluate_detections(truth, predicted, names, confidence)
    counts = np.bincount(np.concatenate([t["class_ids"] for t in truth] or [np.zeros(0, int)]),
                         minlength=len(names))
    metrics["per_class_boxes"] = {name: int(count) for name, count in zip(names, counts)}
    return metrics


def score(actual, prediction, confidence: float | None = None) -> dict[str, Any]:
    """The run's test metrics: mAP50-95 / 50 / 75, precision and recall at the threshold, AP per class."""
    threshold = confidence if confidence is not None else prediction.notes.get("confidence_threshold", 0.25)
    metrics = full_metrics(actual, prediction, threshold)
    out = {"rows": len(actual), **{key: metrics[key] for key in SCALARS},
           "confidence_threshold": metrics["confidence_threshold"], "per_class_AP": metrics["per_class_AP"]}
    return {key: (0.0 if value is None and key in SCALARS else value) for key, value in out.items()}


def _gallery(frame: pd.DataFrame, actual, prediction, confidence: float) -> list[dict[str, Any]]:
    from .report import image_quality

    truth, predicted, names = _records(actual, prediction)
    items = []
    for row, (cell, known, found) in enumerate(zip(frame[frames.IMAGE].tolist(), truth, predicted)):
        truth_boxes = [{"class": names[c], "box": b.tolist()} for b, c in zip(known["boxes"], known["class_ids"])]
        predicted_boxes = [{"class": names[int(c)], "score": float(s), "box": np.asarray(b).tolist()}
                           for b, c, s in zip(found["boxes"], found["class_ids"], found["scores"])]
        items.append({"image": cell if isinstance(cell, str) else f"row {row}", "truth": truth_boxes,
                      "predicted": predicted_boxes, "row": row,
                      "score": image_quality(truth_boxes, predicted_boxes, confidence)})
    return sorted(items, key=lambda item: item["score"])


def worst_images(frame: pd.DataFrame, y, prediction, count: int) -> pd.DataFrame:
    threshold = prediction.notes.get("confidence_threshold", 0.25)
    items = _gallery(frame, list(y), prediction, threshold)[:count]
    return pd.DataFrame({"image": [item["image"] for item in items], "f1_at_iou_0.5": [item["score"] for item in items],
                         "true_boxes": [len(item["truth"]) for item in items],
                         "predicted_boxes": [sum(p["score"] >= threshold for p in item["predicted"]) for item in items]})


def report_sections(frame: pd.DataFrame, y, prediction, confidence: float) -> list[tuple[str, str]]:
    from ...data.images import base_folder, open_image
    from .report import sections

    metrics = full_metrics(list(y), prediction, confidence)
    gallery = _gallery(frame, list(y), prediction, confidence)
    base = base_folder(frame)
    for item in gallery[:24]:  # the report's images: paths resolved, in-memory images passed as they are
        cell = frame[frames.IMAGE].iloc[item["row"]]
        try:
            item["image"] = open_image(cell, base)
        except Exception:  # noqa: BLE001 - the gallery names what it cannot show
            pass
    return sections(metrics, gallery, list(prediction.classes or []))
