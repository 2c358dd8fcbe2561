"""The object-detection task: find and box objects in images, trained by the shared loop.

Rows are images (frames.py): `image` and `boxes` (the target, a JSON list of {"class", "box"}); a YOLO folder, a
COCO json or Pascal VOC xml is read into them by `read_source`, so every shared piece (splits, runs, tuning,
tracking, serving) works through the Task interface. This class owns the box checks (box_checks.py), the metrics
(COCO mAP by pycocotools), the report's sections, the wire format (codec.py) and the ONNX export with NMS in the
graph and its box-by-box parity check (exporting.py).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import ConfigError, DataError
from ...events import STAGE, EventBus
from ..base import TASKS, Prediction, Task, neural_search_space
from . import frames
from .codec import DetectionCodec
from .frames import BOXES, IMAGE

STATE_FILE, MODEL_FOLDER = "detection.json", "detector"
PREDICT_BATCH = 16


@TASKS.register("detection")
class DetectionTask(Task):
    name = "detection"
    neural = True
    codec = DetectionCodec
    supported_kinds = ("detection",)
    row_label_checks = False
    default_target = BOXES
    # A new pyramid and head train from scratch on a pretrained backbone: a high learning rate with warmup and
    # cosine decay, and more epochs than fine-tuning a classifier (bench/detection.py measured these).
    setting_defaults = {"train.learning_rate": 2e-3, "train.epochs": 30, "train.schedule": "cosine",
                        "train.warmup": 0.1}
    onnx_shared_parity = False  # parity compares boxes, classes and scores per image, and mAP (exporting.py)

    def __init__(self, config, kind, target) -> None:
        super().__init__(config, kind, target)
        self.model = None
        self.model_name, self.image_size, self.image_column = "auto", 320, IMAGE

    # -- the data ------------------------------------------------------------------------
    @classmethod
    def read_source(cls, path: Path):
        return frames.read_frame(path) if path.exists() and frames.claims(path) else None

    @classmethod
    def detect(cls, frame, target):
        if frame.attrs.get("detection"):
            return 0.99
        column = target if target in frame.columns else BOXES
        return 0.97 if column in frame.columns and IMAGE in frame.columns and \
            frames.looks_like_boxes(frame[column]) else 0.0

    @classmethod
    def check_data(cls, frame, config, label_errors):
        from .box_checks import check_dataset

        target = config.data.target or BOXES
        if target not in frame.columns or IMAGE not in frame.columns:
            from ...data.checks import CheckReport

            report = CheckReport(frame.attrs.get("source", "<data>"), len(frame), frame.shape[1], target, "detection")
            report.add("columns", "error", f"detection rows need an {IMAGE!r} column and a {target!r} column of box "
                       f"lists; found {', '.join(map(str, frame.columns))}")
            return report
        report = check_dataset(frames.dataset_of(frame, target, frames.class_names(frame, target)))
        report.target, report.kind, report.rows, report.columns = target, "detection", len(frame), frame.shape[1]
        return report

    @classmethod
    def features(cls, frame, excluded):
        return [IMAGE]

    @classmethod
    def target_values(cls, frame, target, kind, separator):
        return frame[target].astype(object).where(frame[target].notna(), None)

    @classmethod
    def split_labels(cls, frame, y, kind):
        return y, "regression"  # splits.py: random, no strata (an image holds several classes)

    @classmethod
    def example(cls, kind: str, seed: int = 0):
        rng = np.random.default_rng(seed)
        rows = []
        for _ in range(40):  # bright squares and dark circles on noise: two classes a tiny detector learns fast
            image = rng.integers(90, 150, (64, 64, 3)).astype(np.uint8)
            boxes = []
            for shape in rng.choice(["square", "circle"], size=int(rng.integers(1, 3))):
                side = int(rng.integers(14, 24))
                x, y = int(rng.integers(0, 64 - side)), int(rng.integers(0, 64 - side))
                if shape == "square":
                    image[y:y + side, x:x + side] = 250
                else:
                    yy, xx = np.mgrid[:side, :side]
                    inside = (yy - side / 2 + 0.5) ** 2 + (xx - side / 2 + 0.5) ** 2 <= (side / 2) ** 2
                    image[y:y + side, x:x + side][inside] = 10
                boxes.append({"class": str(shape), "box": [x, y, x + side, y + side]})
            rows.append({IMAGE: image, BOXES: json.dumps(boxes)})
        return pd.DataFrame(rows), BOXES, {"model.name": "tiny", "model.image_size": 64, "train.epochs": 3,
                                           "train.learning_rate": 3e-3, "train.batch_size": 8,
                                           "data.augment": "none"}

    @classmethod
    def search_space(cls, config, kind):
        return neural_search_space(3.0e-4, 3.0e-3)

    # -- fitting -------------------------------------------------------------------------
    def _store(self, frame: pd.DataFrame, boxes):
        from ...data.images import base_folder
        from .trainee import LetterboxStore

        return LetterboxStore(frame[IMAGE].tolist(), base_folder(frame), self.image_size, boxes,
                              self.config.data.image_cache_mb)

    def fit(self, train, y_train, validation, y_validation, events: EventBus) -> dict[str, Any]:
        import torch

        from ...runs import world_size
        from ...training import strategies
        from ...training.loop import fit as run_loop
        from . import detectors
        from .trainee import DetectionTrainee, box_arrays

        if world_size() > 1:  # the loss runs through the detector's own method, outside a DDP forward
            raise ConfigError("detection trains in one process for now; launch without torchrun / accelerate")
        torch.manual_seed(self.config.train.seed)
        has_validation = validation is not None and len(validation) > 0
        # The layout's class list (its ids); for a table, every class its boxes name.
        labelled = list(y_train) + (list(y_validation) if has_validation else [])
        self.classes = frames.class_names(train, BOXES) if train.attrs.get("detection") else \
            frames.class_names(pd.DataFrame({BOXES: labelled}), BOXES)
        if not self.classes:
            raise DataError("no boxes to learn from: every training image is empty")
        self.image_size = self.config.model.image_size or frames.choose_size(_longer_sides(train))
        self.model_name = detectors.resolve(self.config.model.name)
        events.emit(STAGE, name="model", detail=f"{self.model_name} detector, {len(self.classes)} classes, "
                    f"input {self.image_size}×{self.image_size} (letterboxed); augmentation {self.config.data.augment}")
        self.model = detectors.build(self.model_name, self.classes, self.image_size)
        train_boxes, train_classes = box_arrays(y_train, self.classes)
        store = self._store(train, train_boxes)
        validation_data = None
        if has_validation:
            validation_boxes, validation_classes = box_arrays(y_validation, self.classes)
            validation_data = (self._store(validation, validation_boxes), validation_classes)
        strategy = strategies.STRATEGIES.get(strategies.named(self.config.finetune, self.default_strategy))(
            self.config.finetune)
        name = self.model.detector_name
        self.model = strategy.prepare(self.model, list(self.model.head_names))
        trainable = strategies.trainable_summary(self.model)
        events.emit(STAGE, name="strategy", detail=f"{strategy.name}: {trainable['trainable_parameters']:,} of "
                    f"{trainable['total_parameters']:,} parameters train ({trainable['trainable_percent']}%)")
        trainee = DetectionTrainee(self, store, train_classes, validation_data)
        checkpoint_dir = self.workdir / "checkpoints" if self.workdir else None
        result = run_loop(trainee, self.config.train, events, checkpoint_dir)
        self.model = strategy.finalize(trainee.model).cpu().eval()
        self.model.detector_name = name
        return {"model": self.model_name, "strategy": strategy.name, **trainable, "image_size": self.image_size,
                "augment": self.config.data.augment, "classes": len(self.classes), **result.summary()}

    # -- predicting ----------------------------------------------------------------------
    def predict(self, frame: pd.DataFrame) -> Prediction:
        import torch

        from .trainee import detect_batch

        evaluate = self.config.evaluate

        def detect(images):
            with torch.inference_mode():
                return detect_batch(self.model, torch.from_numpy(images), self.image_size, evaluate.nms_iou)

        return frames.predict_images(frame, IMAGE, self.image_size, detect, self.classes,
                                     evaluate.confidence_threshold, PREDICT_BATCH)

    @property
    def input_columns(self):
        return [IMAGE]

    @classmethod
    def scores(cls, kind, actual, prediction, separator):
        from .evaluation import score

        return score(actual, prediction)

    @classmethod
    def primary_metric(cls, kind):
        return "mAP50-95"

    @classmethod
    def worst(cls, frame, kind, y, prediction, count, separator):
        from .evaluation import worst_images

        return worst_images(frame, y, prediction, count)

    @classmethod
    def draw_predictions(cls, frame, prediction, folder):
        from ...data.images import base_folder, describe_cell, open_image
        from .report import draw_boxes

        folder.mkdir(parents=True, exist_ok=True)
        base, written = base_folder(frame), 0
        for row, (cell, boxes) in enumerate(zip(frame[IMAGE].tolist(), prediction.values)):
            name = Path(describe_cell(cell, base)).stem if isinstance(cell, str) else f"row-{row:05d}"
            image = draw_boxes(open_image(cell, base).convert("RGB"), [], json.loads(boxes), 1.0)
            image.save(folder / f"{name}.png")
            written += 1
        return written

    def extra_evaluation(self, frame, y, prediction, events):
        from .evaluation import report_sections

        return {}, report_sections(frame, y, prediction, self.config.evaluate.confidence_threshold)

    def describe(self):
        return {**super().describe(), "learner": f"{self.model_name} detector", "features": [IMAGE],
                "classes": self.classes, "image_size": self.image_size,
                "strategy": self.config.finetune.strategy}

    # -- export ----------------------------------------------------------------------------
    def export_format(self, folder, format, quantize, frame, y):
        from . import exporting

        if quantize:
            raise ConfigError("--quantize: detection exports are fp32 (box parity is checked to 0.5 px)")
        return exporting.export(self, Path(folder), frame, y)

    @classmethod
    def exported_runtime(cls, folder, manifest, threads=0):
        from . import exporting

        return exporting.runtime(Path(folder), manifest, threads)

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        from . import detectors

        detectors.save(self.model, Path(directory) / MODEL_FOLDER, self.classes, self.image_size)
        state = {"kind": self.kind, "classes": self.classes, "image_size": self.image_size,
                 "model": self.model_name}
        (Path(directory) / STATE_FILE).write_text(json.dumps(state, indent=2, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> "DetectionTask":
        from ...config import Config
        from . import detectors

        state = json.loads((Path(directory) / STATE_FILE).read_text(encoding="utf-8"))
        task = cls(Config.from_dict(meta.get("config", {})), state["kind"], meta["target"])
        task.classes, task.image_size, task.model_name = state["classes"], state["image_size"], state["model"]
        task.model = detectors.load(Path(directory) / MODEL_FOLDER)
        return task


def _longer_sides(frame: pd.DataFrame, count: int = 200) -> list[int]:
    if "width" in frame.columns and "height" in frame.columns:
        sides = np.maximum(frame["width"].to_numpy(dtype=float), frame["height"].to_numpy(dtype=float))
        return [int(side) for side in sides[:count] if np.isfinite(side)]
    from ...data.images import base_folder, open_image

    base, sides = base_folder(frame), []
    for cell in frame[IMAGE].tolist()[:count]:
        try:
            sides.append(max(open_image(cell, base).size))
        except Exception:  # noqa: BLE001 - unreadable images are the checks' business
            continue
    return sides
