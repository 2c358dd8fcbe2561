"""What the shared training loop needs for detection: letterboxed batches with their boxes, box-aware
augmentation, the FCOS loss, and validation mAP (pycocotools) for early stopping and the best checkpoint."""
from __future__ import annotations

import numpy as np
import torch

from . import frames
from .boxes import BoxAugmentation
from .metrics import evaluate_detections

MIN_SCORE = 0.05  # candidates below this never reach NMS (mAP counts every box above it, as COCO tools do)
MAX_DETECTIONS = 100


class LetterboxStore:
    """One split's images letterboxed to `size` (uint8, kept in memory within `cache_mb`, else decoded per batch)
    and their boxes moved into the letterboxed frame; boxes sticking out of the image are clipped to it."""

    def __init__(self, cells: list, base, size: int, boxes: list[np.ndarray] | None, cache_mb: int) -> None:
        self.cells, self.base, self.size = cells, base, size
        self.geometries: list = [None] * len(cells)
        self.original_boxes = boxes
        self.cache = None
        if len(cells) * 3 * size * size <= cache_mb * 2 ** 20:
            self.cache = [self._decode(index) for index in range(len(cells))]

    def _decode(self, index: int) -> np.ndarray:
        from ...data.images import describe_cell, open_image

        try:
            pixels, geometry = frames.letterboxed(open_image(self.cells[index], self.base), self.size)
        except Exception as error:  # checked before training; this guards files changed since
            raise ValueError(f"{describe_cell(self.cells[index], self.base)}: {error}") from error
        self.geometries[index] = geometry
        return pixels

    def __len__(self) -> int:
        return len(self.cells)

    def pixels(self, indices) -> torch.Tensor:
        arrays = [self.cache[i] if self.cache is not None else self._decode(i) for i in indices]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)

    def boxes(self, index: int) -> np.ndarray:
        """(N, 4) boxes in letterboxed pixels (the image must have been decoded once)."""
        if self.geometries[index] is None:
            self._decode(index)
        geometry, original = self.geometries[index], self.original_boxes[index]
        clipped = np.clip(original, 0, [geometry.original_width, geometry.original_height] * 2)
        return frames.to_letterbox(clipped, geometry)


def box_arrays(cells, names: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`boxes` cells → per image (N, 4) float boxes and (N,) class ids."""
    index_of = {name: i for i, name in enumerate(names)}
    boxes, classes = [], []
    for row, cell in enumerate(cells):
        parsed = frames.parse_boxes(cell, f"row {row}")
        boxes.append(np.array([box["box"] for box in parsed], dtype=np.float64).reshape(-1, 4))
        unknown = sorted({box["class"] for box in parsed} - set(index_of))
        if unknown:
            from ...errors import DataError

            raise DataError(f"row {row}: class(es) {unknown} are not among the training classes {names}")
        classes.append(np.array([index_of[box["class"]] for box in parsed], dtype=np.int64))
    return boxes, classes


def augmentation(preset: str, size: int, flip: bool) -> BoxAugmentation | None:
    if preset == "none":
        return None
    return BoxAugmentation(size, flip_probability=0.5 if flip else 0.0, scale_range=(0.5, 1.0),
                           colour_jitter=0.2, mosaic_probability=0.5 if preset == "strong" else 0.0)


def detect_batch(model, pixels: torch.Tensor, size: int, iou: float):
    """Letterboxed pixels → per image (boxes, scores, class ids) as numpy, in letterboxed pixels."""
    found = detect(model, pixels, size, iou)
    return [(d.boxes.float().cpu().numpy(), d.scores.float().cpu().numpy(), d.class_ids.cpu().numpy()) for d in found]


def detect(model, pixels: torch.Tensor, size: int, iou: float):
    """Per-image Detections of either family (FCOS runs NMS at `iou`; RT-DETR's set prediction needs none)."""
    if getattr(model, "uses_nms", True):
        return model.detect(pixels, size, score_threshold=MIN_SCORE, iou_threshold=iou, max_detections=MAX_DETECTIONS)
    return model.detect(pixels, size, score_threshold=MIN_SCORE, max_detections=MAX_DETECTIONS)


class DetectionTrainee:
    monitor = "mAP50-95"

    def __init__(self, task, store: LetterboxStore, classes: list[np.ndarray], validation) -> None:
        self.task, self.store, self.classes, self.validation = task, store, classes, validation
        self.model = task.model
        data = task.config.data
        self.augment = augmentation(data.augment, task.image_size, data.horizontal_flip)

    def step_batches(self, epoch: int) -> list[list[int]]:
        from ...training.batches import shuffled

        config = self.task.config.train
        return shuffled(len(self.store), config.batch_size * config.gradient_accumulation, config.seed, epoch)

    def collate(self, indices, device):
        pixels = self.store.pixels(indices).to(device)
        boxes = [torch.as_tensor(self.store.boxes(i), dtype=torch.float32, device=device) for i in indices]
        classes = [torch.as_tensor(self.classes[i], device=device) for i in indices]
        if self.augment is not None:
            pixels, boxes, classes = self.augment(pixels, boxes, classes)
        return {"pixels": pixels, "boxes": boxes, "classes": classes}

    def loss(self, model, batch):
        # `model` may be the DDP / PEFT wrapper: its forward is what trains, so the loss goes through the module
        # that owns compute_loss with the wrapper's parameters (PEFT forwards attribute access to the model).
        return model.compute_loss(batch["pixels"], batch["boxes"], batch["classes"])["loss"]

    def evaluate(self, model) -> dict[str, float]:
        if self.validation is None:
            return {}
        store, classes = self.validation
        device = next(model.parameters()).device
        truth, predicted, losses = [], [], []
        for start in range(0, len(store), 16):
            indices = list(range(start, min(len(store), start + 16)))
            pixels = store.pixels(indices).to(device)
            boxes = [torch.as_tensor(store.boxes(i), dtype=torch.float32, device=device) for i in indices]
            labels = [torch.as_tensor(classes[i], device=device) for i in indices]
            losses.append(float(model.compute_loss(pixels, boxes, labels)["loss"]) * len(indices))
            found = detect(model, pixels, self.task.image_size, self.task.config.evaluate.nms_iou)
            for index, detections in zip(indices, found):
                truth.append({"width": self.task.image_size, "height": self.task.image_size,
                              "boxes": store.boxes(index), "class_ids": classes[index]})
                predicted.append({"boxes": detections.boxes.float().cpu().numpy(),
                                  "scores": detections.scores.float().cpu().numpy(),
                                  "class_ids": detections.class_ids.cpu().numpy()})
        scores = evaluate_detections(truth, predicted, self.task.classes,
                                     self.task.config.evaluate.confidence_threshold)
        return {"loss": sum(losses) / max(1, len(store)), "mAP50-95": scores["mAP50-95"] or 0.0,
                "mAP50": scores["mAP50"] or 0.0}
