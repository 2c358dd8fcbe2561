"""The scikit-learn-shaped public model: fit / predict / predict_proba / evaluate / save / load."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import runs, tasks
from .data import readers
from .data.normalize import apply_plan, mask_personal_data
from .data.target import require_column
from .errors import NotFoundError
from .tasks.base import Prediction, Task


class Model:
    """`Model(target="price").fit("houses.csv").predict(new_rows)`; `Model.load(folder)`.

    fit() is a recorded run (runs/<name>/, tracked) exactly like `dojo train`.
    """

    def __init__(self, target: str | None = None, **settings: Any) -> None:
        self._settings = {"target": target, **settings}
        self._task: Task | None = None
        self.directory: Path | None = None
        self.meta: dict[str, Any] = {}
        self.run = None

    # -- building ------------------------------------------------------------------------
    def fit(self, data, target: str | None = None) -> "Model":
        from .api import train  # api builds Models; importing it lazily keeps the import graph one-way

        settings = dict(self._settings)
        if target is not None:
            settings["target"] = target
        result = train(data, **settings)
        self._task, self.directory, self.meta, self.run = result.model._task, result.model.directory, \
            result.model.meta, result.run
        return self

    @classmethod
    def from_task(cls, task: Task, directory: Path) -> "Model":
        model = cls(task.target)
        model._task, model.directory = task, Path(directory)
        model.meta = json.loads((model.directory / runs.META_FILE).read_text(encoding="utf-8"))
        return model

    @classmethod
    def load(cls, directory: str | Path) -> "Model":
        directory = Path(directory)
        meta_path = directory / runs.META_FILE
        if not meta_path.is_file():
            raise NotFoundError(f"{directory}: not a model folder (no {runs.META_FILE})")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        task = tasks.get(meta["task"]).load(directory, meta)
        model = cls(meta["target"])
        model._task, model.directory, model.meta = task, directory, meta
        return model

    def save(self, directory: str | Path) -> Path:
        """Copy the model folder (atomically) to a new place."""
        source = self._fitted_directory()

        def copy(temp: Path) -> None:
            for item in source.iterdir():
                if item.name != runs.META_FILE:
                    (shutil.copytree if item.is_dir() else shutil.copy2)(item, temp / item.name)

        return runs.save_model_atomically(Path(directory), copy, self.meta)

    # -- using ---------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.meta.get("kind", "")

    @property
    def target(self) -> str:
        return self.meta.get("target", self._settings.get("target"))

    @property
    def features(self) -> list[str]:
        return list(self.meta.get("features", []))

    @property
    def classes_(self) -> list[str] | None:
        return self._fitted().classes

    def predict_frame(self, data) -> Prediction:
        """Full prediction: values, class probabilities and notes (e.g. unseen categories per column)."""
        frame = data if isinstance(data, pd.DataFrame) and "source" in data.attrs else tasks.read(data)
        frame = self._normalize(frame)
        readers.require_columns(readers.source_name(frame), frame.columns, self.features)
        task = self._fitted()
        history = [self.target] if task.reads_history and self.target in frame.columns else []
        return task.predict(frame[self.features + history])

    def _normalize(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows in the task's own form (a chat model reads any chat layout), their cells normalised as the
        training cells were (data/normalize.py: the plan recorded with the model)."""
        from .config import Config

        task = type(self._fitted())
        if task.rewrites_rows():  # else the table's rows are the task's own
            frame = task.normalize(frame, Config.from_dict(self.meta.get("config", {})))
        frame = apply_plan(frame, self.meta.get("normalization"))
        # Read from the recorded config rather than building a Config on every prediction (the serving path).
        masked = self.meta.get("config", {}).get("data", {}).get("mask_pii", False)
        return mask_personal_data(frame) if masked else frame

    def predict(self, data) -> np.ndarray:
        return self.predict_frame(data).values

    def predict_proba(self, data) -> pd.DataFrame:
        prediction = self.predict_frame(data)
        if prediction.probabilities is None:
            raise TypeError(f"predict_proba needs a classifier; this model does {self.kind}")
        return pd.DataFrame(prediction.probabilities, columns=prediction.classes)

    def evaluate(self, data) -> dict[str, Any]:
        frame = self._normalize(tasks.read(data))
        require_column(frame, self.target, "target")
        separator = self.meta.get("config", {}).get("data", {}).get("label_separator", "|")
        task = type(self._fitted())
        y = task.target_values(frame, self.target, self.kind, separator)
        keep = y.notna().to_numpy()
        rows = frame[keep].reset_index(drop=True).pipe(_keep_attrs, frame)
        readers.require_columns(readers.source_name(frame), frame.columns, self.features)
        prediction = self._fitted().predict(rows[self.features])
        return task.scores(self.kind, y[keep].to_numpy(), prediction, separator)

    def feature_importance(self) -> dict[str, float] | None:
        return self._fitted().feature_importance()

    def _fitted(self) -> Task:
        if self._task is None:
            raise RuntimeError("this Model is not fitted yet: call fit() or Model.load()")
        return self._task

    def _fitted_directory(self) -> Path:
        self._fitted()
        return self.directory

    def __repr__(self) -> str:
        if self._task is None:
            return f"Model(target={self._settings.get('target')!r}, unfitted)"
        return f"Model(task={self.meta.get('task')!r}, kind={self.kind!r}, target={self.target!r}, path='{self.directory}')"


def _keep_attrs(frame: pd.DataFrame, original: pd.DataFrame) -> pd.DataFrame:
    frame.attrs = dict(original.attrs)
    return frame
