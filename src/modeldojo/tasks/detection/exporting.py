"""`dojo export` for detection: model.onnx with NMS inside the graph (onnx_export.py), the letterbox parameters
in the manifest, and a parity check on every held-out image before the export is accepted.

Parity compares the run's model (torch) with the export (ONNX Runtime) after NMS and after mapping the boxes back
to each image's own pixels, the way users receive them: per image the same number of detections and the same
classes, each box within 0.5 px and each score within 1e-4 of its match, and — when the images have labels —
mAP50-95 equal within 0.001. Both sides letterbox with the same PIL code (frames.py), so the check isolates
the network and the NMS.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..base import Prediction
from . import frames

MODEL_FILE = "model.onnx"
BOX_TOLERANCE, SCORE_TOLERANCE, MAP_TOLERANCE = 0.5, 1e-4, 1e-3
PREDICT_BATCH = 16


@dataclass
class DetectionParity:
    rows: int  # images compared
    detections: int  # boxes compared (torch side)
    max_box_diff: float  # px, in the original images
    max_score_diff: float
    map_original: float | None
    map_exported: float | None
    passed: bool
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def explain(self) -> str:
        text = (f"(onnx with NMS) on {self.rows} held-out images, {self.detections} detections: largest box "
                f"difference {self.max_box_diff:.2e} px (allowed {BOX_TOLERANCE}), largest score difference "
                f"{self.max_score_diff:.2e} (allowed {SCORE_TOLERANCE:g})")
        if self.map_original is not None:
            text += f", mAP50-95 {self.map_original:.4f} → {self.map_exported:.4f}"
        return text + ("; " + "; ".join(self.problems[:5]) if self.problems else "")


def export(task, folder: Path, frame: pd.DataFrame, y: pd.Series):
    """Write model.onnx into `folder`; return (manifest details, DetectionParity) measured on `frame`."""
    from .onnx_export import INPUT_NAME, OUTPUT_NAMES
    from .trainee import MAX_DETECTIONS, MIN_SCORE

    evaluate = task.config.evaluate
    task.model.float().eval().cpu().export_onnx(folder / MODEL_FILE, task.image_size, score_threshold=MIN_SCORE,
                                                iou_threshold=evaluate.nms_iou, max_detections=MAX_DETECTIONS)
    details = {"image_column": frames.IMAGE, "image_size": task.image_size, "classes": list(task.classes),
               "letterbox": {"size": task.image_size, "pad_value": frames.PAD_VALUE, "resize": "PIL bilinear",
                             "placement": "centred", "input": f"{INPUT_NAME}: N×3×{task.image_size}×"
                             f"{task.image_size} RGB float in [0, 1]"},
               "outputs": list(OUTPUT_NAMES), "box_format": "xyxy pixels, exclusive edges",
               "score_threshold_in_graph": MIN_SCORE, "confidence_threshold": evaluate.confidence_threshold,
               "nms_iou": evaluate.nms_iou, "max_detections": MAX_DETECTIONS}
    expected = task.predict(frame)
    actual = runtime(folder, {"preprocessing": details}, threads=0)(frame)
    return details, compare(expected, actual, list(y))


def compare(expected: Prediction, actual: Prediction, truth: list) -> DetectionParity:
    from .onnx_export import match_detections

    triples = [[(found["boxes"], found["scores"], found["class_ids"]) for found in prediction.notes["detections"]]
               for prediction in (expected, actual)]
    worst_box, worst_score, problems = match_detections(*triples, BOX_TOLERANCE, SCORE_TOLERANCE)
    count = sum(len(found["scores"]) for found in expected.notes["detections"])
    map_original = map_exported = None
    if truth and all(cell is not None for cell in truth):
        from .evaluation import score

        map_original, map_exported = score(truth, expected)["mAP50-95"], score(truth, actual)["mAP50-95"]
        if abs(map_original - map_exported) > MAP_TOLERANCE:
            problems.append(f"mAP50-95 {map_original:.4f} vs {map_exported:.4f}")
    return DetectionParity(len(expected.values), count, worst_box, worst_score, map_original, map_exported,
                           not problems, problems)


def runtime(folder: Path, manifest: dict[str, Any], threads: int = 0):
    """predict(frame or records) → Prediction from model.onnx (ONNX Runtime, PIL, numpy: no torch)."""
    from ...export import onnx_format
    from .onnx_export import INPUT_NAME, OUTPUT_NAMES

    details = manifest["preprocessing"]
    session = onnx_format.session(Path(folder) / MODEL_FILE, threads)
    column = details["image_column"]

    def detect(images):
        boxes, scores, class_ids, batch_index = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
        return [(boxes[batch_index == image], scores[batch_index == image].astype(np.float64),
                 class_ids[batch_index == image]) for image in range(len(images))]

    def predict(rows) -> Prediction:
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(list(rows), columns=[column])
        return frames.predict_images(frame, column, details["image_size"], detect, details["classes"],
                                     details["confidence_threshold"], PREDICT_BATCH)

    return predict
