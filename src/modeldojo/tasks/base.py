"""The Task interface every task folder implements (tabular now; text, image, LLM later).

A task turns rows into a fitted model and back into predictions. Everything around it —
reading, checks, splits, metrics, reports, run folders, tracking — is shared and lives in
api.py, data/, evaluation/ and runs.py, so a new task only writes what is specific to it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..config import Config
from ..events import EventBus
from ..registry import Registry
from .codec import Codec

TASKS: Registry[type["Task"]] = Registry("task")


def neural_search_space(lowest_learning_rate: float, highest_learning_rate: float) -> dict[str, Any]:
    """The default `dojo tune` space of the fine-tuning tasks: learning rate (log), batch size, weight decay."""
    return {"train.learning_rate": {"loguniform": [lowest_learning_rate, highest_learning_rate]},
            "train.batch_size": {"choice": [16, 32]}, "train.weight_decay": {"choice": [0.0, 0.01, 0.1]}}


@dataclass
class Prediction:
    """Predicted values (regression) or labels (classification) plus class probabilities."""

    values: np.ndarray
    probabilities: np.ndarray | None = None  # shape (rows, classes), columns in `classes` order
    classes: list[str] | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. unseen categories counted per column

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame({"prediction": self.values})
        if self.probabilities is not None:
            for index, name in enumerate(self.classes):
                frame[f"probability_{name}"] = self.probabilities[:, index]
        return frame


class Task(ABC):
    """Fit / predict / save / load for one kind of data. Instances hold a fitted model."""

    name: ClassVar[str]
    supported_kinds: ClassVar[tuple[str, ...]] = ("regression", "binary", "multiclass")
    row_label_checks: ClassVar[bool] = True  # whether the table-model label-error check makes sense
    # A neural task trains with torch (tuning shares torch's threads between its workers).
    neural: ClassVar[bool] = False
    # How a served model of this task reads requests and writes answers (serving/ calls only this).
    codec: ClassVar[type[Codec]] = Codec

    def __init__(self, config: Config, kind: str, target: str) -> None:
        self.config, self.kind, self.target = config, kind, target
        self.classes: list[str] | None = None
        self.workdir: Path | None = None  # the run folder (checkpoints go here); None in cross-validation
        self.excluded_columns: list[str] = []  # left out by the data checks (constant, ID-like) or by the user

    # -- choosing a task ---------------------------------------------------------------
    @classmethod
    @abstractmethod
    def detect(cls, frame: pd.DataFrame, target: str | None) -> float:
        """How well this task fits the data, 0..1 (the highest wins when task.name is auto)."""

    @classmethod
    @abstractmethod
    def example(cls, kind: str, seed: int = 0) -> tuple[pd.DataFrame, str, dict[str, Any]]:
        """A small synthetic dataset, its target column and config overrides (e.g. a tiny model)
        that make it train in seconds: used by the task contract test."""

    @classmethod
    def search_space(cls, config: Config, kind: str) -> dict[str, Any]:
        """The default hyperparameter space for `dojo tune` (tuning/space.py format); {} = none."""
        return {}

    # Neural tasks' weights can be quantized; a task whose exported model has none (trees) says False.
    quantizable: ClassVar[bool] = True

    def export_onnx(self, folder: Path) -> dict[str, Any]:
        """Write model.onnx and the preprocessing files into `folder`; return the manifest's preprocessing."""
        from ..errors import ConfigError

        raise ConfigError(f"ONNX export of the {self.name} task is not built yet")

    # Optional method(folder) → preprocessing: an exact alternative export, used when the ONNX one fails
    # parity (tabular: the learner's native file when a converter rounded its thresholds).
    export_fallback = None

    @classmethod
    def onnx_feeds(cls, folder: Path, preprocessing: dict[str, Any]):
        """Load the exported preprocessing once; return feeds(frame) → iterator of (row positions,
        ONNX Runtime input dict) batches."""
        raise NotImplementedError

    @classmethod
    def exported_scorer(cls, folder: Path, manifest: dict[str, Any], threads: int = 0):
        """scores(frame or records) → (rows, classes) probabilities, or (rows,) values for regression, from an
        export folder. Default: model.onnx's logits through softmax / sigmoid."""
        from ..export import onnx_format

        session = onnx_format.session(Path(folder) / onnx_format.FILE, threads)
        feeds = cls.onnx_feeds(Path(folder), manifest["preprocessing"])
        kind, width = manifest["kind"], len(manifest.get("classes") or [])

        def scores(frame: pd.DataFrame | list[dict[str, Any]]):
            if not isinstance(frame, pd.DataFrame):  # a server's records
                frame = pd.DataFrame.from_records(frame, columns=manifest.get("inputs"))
            out = np.zeros((len(frame), width), dtype=np.float64)
            for rows, feed in feeds(frame):
                out[rows] = activate(session.run(None, feed)[0].astype(np.float64), kind)
            return out

        return scores

    @classmethod
    def default_params(cls, config: Config) -> dict[str, Any]:
        """Values `model.params.<name>` takes when the config leaves it out (tuning's baseline trial)."""
        return {}

    # -- the model ---------------------------------------------------------------------
    @abstractmethod
    def fit(self, train: pd.DataFrame, y_train: pd.Series, validation: pd.DataFrame | None,
            y_validation: pd.Series | None, events: EventBus) -> dict[str, Any]:
        """Fit on the training rows (y already validated for the kind); return facts for the run."""

    @abstractmethod
    def predict(self, frame: pd.DataFrame) -> Prediction: ...

    @property
    @abstractmethod
    def input_columns(self) -> list[str]:
        """The columns predict() reads (checked before predicting, listed in the model card)."""

    def feature_importance(self) -> dict[str, float] | None:
        return None

    def describe(self) -> dict[str, Any]:
        """What the model is, for the model card and `dojo runs`."""
        return {"task": self.name, "kind": self.kind, "target": self.target}

    # -- persistence (safe formats only: no pickle) -------------------------------------
    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the model into an empty directory (the caller makes it atomic)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> "Task": ...


def activate(logits, kind: str):
    """Logits → probabilities: independent sigmoids for multilabel, softmax otherwise."""
    if kind == "multilabel":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = logits - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)
