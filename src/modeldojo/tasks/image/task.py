"""The image-classification task: a pretrained vision backbone + a new head, trained by the shared loop."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...data.balance import class_weights
from ...data.images import base_folder, image_columns
from ...errors import ConfigError, DataError
from ...events import STAGE, EventBus
from ...evaluation import metrics as metrics_module
from ..base import TASKS, Prediction, Task, neural_search_space
from .codec import ImageCodec

# backbones / pipeline import torch: loaded on first use, so a tabular-only install can list every task.

STATE_FILE = "image.json"
PREDICT_BATCH = 64


class _Trainee:
    """What the shared loop needs: shuffled step batches, augmented + normalised pixels, loss, metrics."""

    monitor = "loss"

    def __init__(self, task: "ImageTask", store, labels: np.ndarray, weights, validation) -> None:
        import torch

        from . import pipeline

        self.task, self.store, self.labels, self.validation = task, store, labels, validation
        self.model = task.model
        data = task.config.data
        self.augment = pipeline.augmenter(data.augment, task.image_size, data.horizontal_flip)
        self.loss_function = torch.nn.CrossEntropyLoss(
            weight=None if weights is None else torch.as_tensor(weights, dtype=torch.float32))

    def step_batches(self, epoch: int) -> list[list[int]]:
        from ...training.batches import shuffled

        config = self.task.config.train
        return shuffled(len(self.store), config.batch_size * config.gradient_accumulation, config.seed, epoch)

    def collate(self, indices, device):
        import torch

        from . import pipeline

        pixels = self.store.batch(indices).to(device).float().div_(255)
        if self.augment is not None:
            self.augment.to(device)
            pixels = self.augment(pixels)
        else:
            pixels = pipeline.centre(pixels, self.task.image_size)
        spec = self.task.model.spec
        return {"pixels": pipeline.normalise(pixels, spec.mean, spec.std),
                "labels": torch.as_tensor(self.labels[indices], device=device)}

    def loss(self, model, batch):
        return self.loss_function(model(batch["pixels"]).float(), batch["labels"])

    def evaluate(self, model) -> dict[str, float]:
        if self.validation is None:
            return {}
        store, labels = self.validation
        probabilities = self.task._probabilities(model, store)
        return metrics_module.validation_scores(labels, probabilities)


@TASKS.register("image")
class ImageTask(Task):
    name = "image"
    neural = True
    codec = ImageCodec
    supported_kinds = ("binary", "multiclass")
    row_label_checks = False  # the table-model label-error check cannot read pixels

    @classmethod
    def detect(cls, frame, target):
        return 0.95 if image_columns(frame, {target}) else 0.0

    @classmethod
    def search_space(cls, config, kind):
        return neural_search_space(1.0e-4, 3.0e-3)

    @classmethod
    def example(cls, kind: str, seed: int = 0):
        from . import tiny

        rng = np.random.default_rng(seed)
        patterns = ["rows", "columns"] if kind == "binary" else ["rows", "columns", "dots"]
        rows = []
        for index in range(120):
            label = patterns[index % len(patterns)]
            image = rng.integers(0, 60, (20, 20)).astype(np.uint8)  # dark noise …
            if label == "rows":  # … with bright stripes one way or the other, or a dot grid
                image[::4, :] = 230
            elif label == "columns":
                image[:, ::4] = 230
            else:
                image[::4, ::4] = 255
            rows.append({"image": image, "pattern": label})
        folder = tiny.build(Path(tempfile.gettempdir()) / "modeldojo-tiny-resnet-v1")
        return pd.DataFrame(rows), "pattern", {"model.name": str(folder), "train.epochs": 6,
                                                "train.learning_rate": 3e-3, "train.batch_size": 16,
                                                "data.augment": "none", "data.image_cache_mb": 64}

    # -- fitting -------------------------------------------------------------------------
    def _column(self, frame: pd.DataFrame) -> str:
        wanted = self.config.data.image_column
        if wanted:
            if wanted not in frame.columns:
                raise DataError(f"data.image_column {wanted!r} not found; columns: {', '.join(map(str, frame.columns))}")
            return wanted
        found = image_columns(frame, {self.target})
        if not found:
            raise DataError("no image column: expected a column of image file paths (.jpg, .png, …), arrays or PIL "
                            "images; set data.image_column")
        return found[0]

    def _store(self, frame: pd.DataFrame, stored: int):
        from . import pipeline

        return pipeline.ImageStore(frame[self.image_column].tolist(), base_folder(frame), stored,
                                   self.config.data.image_cache_mb)

    def fit(self, train, y_train, validation, y_validation, events: EventBus) -> dict[str, Any]:
        import torch

        from ...training import strategies
        from ...training.loop import fit as run_loop
        from . import backbones, pipeline

        if self.kind not in self.supported_kinds:
            raise ConfigError(f"the image task does {' and '.join(self.supported_kinds)} classification, not {self.kind}")
        torch.manual_seed(self.config.train.seed)
        self.image_column = self._column(train)
        self.model_name = backbones.default_backbone() if self.config.model.name == "auto" else self.config.model.name
        has_validation = validation is not None and len(validation) > 0
        self.classes = sorted(set(y_train) | (set(y_validation) if has_validation else set()))
        codes = {label: index for index, label in enumerate(self.classes)}
        events.emit(STAGE, name="model", detail=f"{self.model_name} ({len(self.classes)} classes)")
        self.model = backbones.build(self.model_name, self.classes, self.config.train.dropout)
        sides = _sample_sides(train[self.image_column].tolist(), base_folder(train))
        self.image_size = self.config.model.image_size or pipeline.choose_size(self.model.spec.native_size, sides)
        stored = round(self.image_size * pipeline.CROP_HEADROOM) if self.config.data.augment != "none" \
            else self.image_size
        events.emit(STAGE, name="images", detail=f"input {self.image_size}×{self.image_size} (median image side "
                    f"{int(np.median(sides)) if sides else '?'}, backbone's own {self.model.spec.native_size}); "
                    f"augmentation {self.config.data.augment}")
        store = self._store(train, stored)
        labels = y_train.map(codes).to_numpy(dtype=np.int64)
        weights = class_weights(y_train, labels, len(self.classes), self.config.data.class_weights)
        label_issues = self._label_check(store, labels, train, events)
        validation_data = (self._store(validation, self.image_size),
                           y_validation.map(codes).to_numpy(dtype=np.int64)) if has_validation else None
        strategy = strategies.STRATEGIES.get(strategies.named(self.config.finetune, self.default_strategy))(
            self.config.finetune)
        self.model = strategy.prepare(self.model, self.model.head_names)
        trainable = strategies.trainable_summary(self.model)
        events.emit(STAGE, name="strategy", detail=f"{strategy.name}: {trainable['trainable_parameters']:,} of "
                    f"{trainable['total_parameters']:,} parameters train ({trainable['trainable_percent']}%)")
        trainee = _Trainee(self, store, labels, weights, validation_data)
        checkpoint_dir = self.workdir / "checkpoints" if self.workdir else None
        result = run_loop(trainee, self.config.train, events, checkpoint_dir)
        self.model = strategy.finalize(trainee.model).cpu().eval()
        return {"model": self.model_name, "strategy": strategy.name, **trainable, "image_size": self.image_size,
                "augment": self.config.data.augment, "suspected_label_errors": len(label_issues),
                **result.summary()}

    def _label_check(self, store, labels, train: pd.DataFrame, events: EventBus) -> list[dict]:
        if not self.config.data.label_error_check:
            return []
        from ...data.images import describe_cell
        from .label_check import suspected_label_errors

        base = base_folder(train)
        names = [describe_cell(cell, base) if isinstance(cell, str) else f"row {i}"
                 for i, cell in enumerate(train[self.image_column].tolist())]
        issues = suspected_label_errors(self.model, store, self.image_size, labels, self.classes, names,
                                        self.config.train.seed)
        if issues:
            shown = ", ".join(f"{i['image']} ({i['given']} → {i['suggested']}?)" for i in issues[:3])
            events.emit(STAGE, name="label check", detail=f"{len(issues)} suspected label errors "
                        f"(cleanlab on frozen features), e.g. {shown}")
            if self.workdir is not None:
                (self.workdir / "label_issues.json").write_text(json.dumps(issues, indent=2), encoding="utf-8")
        return issues

    # -- predicting ----------------------------------------------------------------------
    def _probabilities(self, model, store) -> np.ndarray:
        import torch

        from . import pipeline

        device = next(model.parameters()).device
        spec = model.spec if hasattr(model, "spec") else self.model.spec
        out = np.zeros((len(store), len(self.classes)), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(store), PREDICT_BATCH):
                indices = list(range(start, min(len(store), start + PREDICT_BATCH)))
                pixels = pipeline.centre(store.batch(indices).to(device).float().div_(255), self.image_size)
                logits = model(pipeline.normalise(pixels, spec.mean, spec.std))
                out[start:start + len(indices)] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out

    def predict(self, frame: pd.DataFrame) -> Prediction:
        if self.image_column not in frame.columns:
            raise DataError(f"missing image column {self.image_column!r}")
        probabilities = self._probabilities(self.model, self._store(frame, self.image_size))
        labels = np.asarray(self.classes, dtype=object)[probabilities.argmax(axis=1)]
        return Prediction(labels, probabilities, list(self.classes))

    def embeddings(self, frame: pd.DataFrame) -> np.ndarray:
        """The backbone's pooled feature vector of each row's image (what the head reads, captured on its way
        into the head, so every backbone family works alike): `dojo monitor`'s image drift."""
        import torch

        from . import pipeline

        if self.image_column not in frame.columns:
            raise DataError(f"missing image column {self.image_column!r}")
        store = self._store(frame, self.image_size)
        model, spec = self.model, self.model.spec
        modules = dict(model.named_modules())
        head = next((modules[name] for name in model.head_names if name in modules), None)
        if head is None:  # a backbone whose head this task cannot find: no embeddings, columns tested one by one
            return None
        captured: list[torch.Tensor] = []
        hook = head.register_forward_pre_hook(lambda _module, inputs: captured.append(inputs[0]))
        device, out = next(model.parameters()).device, None
        try:
            with torch.inference_mode():
                for start in range(0, len(store), PREDICT_BATCH):
                    indices = list(range(start, min(len(store), start + PREDICT_BATCH)))
                    pixels = pipeline.centre(store.batch(indices).to(device).float().div_(255), self.image_size)
                    captured.clear()
                    model(pipeline.normalise(pixels, spec.mean, spec.std))
                    vectors = captured[0].reshape(len(indices), -1).float().cpu().numpy()
                    out = np.zeros((len(store), vectors.shape[1])) if out is None else out
                    out[start:start + len(indices)] = vectors
        finally:
            hook.remove()
        return out if out is not None else np.zeros((0, 0))

    @property
    def input_columns(self):
        return [self.image_column]

    def _strategy_name(self) -> str:
        from ...training import strategies

        return strategies.named(self.config.finetune, self.default_strategy)

    def describe(self):
        return {**super().describe(), "learner": self.model_name, "strategy": self._strategy_name(),
                "features": [self.image_column], "classes": self.classes, "image_size": self.image_size}

    # -- export ----------------------------------------------------------------------------
    def export_onnx(self, folder: Path) -> dict[str, Any]:
        """model.onnx: normalised pixels (batch × 3 × size × size) → logits; decoding and normalisation are
        in the manifest and run with PIL + numpy (data/images.py), as in predict."""
        import torch

        from ...export import onnx_format

        model = self.model.float().eval().cpu()
        example = torch.zeros((2, 3, self.image_size, self.image_size))
        onnx_format.from_torch(model, (example,), folder / onnx_format.FILE, ["pixels"], "logits",
                               {"pixels": {0: "batch"}})
        spec = model.spec
        return {"image_column": self.image_column, "image_size": self.image_size, "mean": list(spec.mean),
                "std": list(spec.std), "resize": "shorter side bicubic, centre crop", "batch_size": PREDICT_BATCH}

    @classmethod
    def onnx_feeds(cls, folder: Path, preprocessing: dict[str, Any]):
        from ...data.images import open_image, to_square

        column, size = preprocessing["image_column"], preprocessing["image_size"]
        mean = np.asarray(preprocessing["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(preprocessing["std"], dtype=np.float32).reshape(1, 3, 1, 1)
        batch = preprocessing.get("batch_size", PREDICT_BATCH)

        def feeds(frame: pd.DataFrame):
            if column not in frame.columns:
                raise DataError(f"missing image column {column!r}")
            cells, base = frame[column].tolist(), base_folder(frame)
            for start in range(0, len(cells), batch):
                rows = np.arange(start, min(len(cells), start + batch))
                pixels = np.stack([to_square(open_image(cells[i], base), size) for i in rows]).astype(np.float32)
                yield rows, {"pixels": (pixels / 255 - mean) / std}

        return feeds

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        from . import backbones

        backbones.save(self.model, directory / "model")
        state = {"kind": self.kind, "classes": self.classes, "image_column": self.image_column,
                 "image_size": self.image_size, "base_model": self.model_name}
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> "ImageTask":
        from ...config import Config
        from . import backbones

        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
        task = cls(Config.from_dict(meta.get("config", {})), state["kind"], meta["target"])
        task.classes, task.image_column = state["classes"], state["image_column"]
        task.image_size, task.model_name = state["image_size"], state["base_model"]
        task.model = backbones.load(directory / "model", task.classes)
        return task


def _sample_sides(cells: list, base, count: int = 200) -> list[int]:
    """Shorter sides of up to `count` images (file headers only)."""
    from ...data.images import shorter_side

    sides = []
    for cell in cells[:count]:
        try:
            sides.append(shorter_side(cell, base))
        except (OSError, ValueError):
            continue  # unreadable files are the checks' business
    return sides
