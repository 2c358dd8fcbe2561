"""An exported model: the manifest, the preprocessing files the task wrote, and model.onnx run with ONNX
Runtime (or, where a tabular learner has no faithful ONNX converter, its native model file) — no torch model,
no pickle. The server and `dojo predict` on an export folder both run this."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import tasks
from ..data import normalize
from ..errors import NotFoundError
from ..tasks.base import Prediction

MANIFEST = "manifest.json"


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise NotFoundError(f"{folder}: not an export folder (no {MANIFEST})")
    return json.loads(path.read_text(encoding="utf-8"))


def is_export(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


class ExportedModel:
    """Model-like (predict / predict_proba / features / kind / target / classes) over an export folder.
    `threads`: ONNX Runtime intra-op threads (0 = its default, one per core)."""

    def __init__(self, folder: str | Path, manifest: dict | None = None, threads: int = 0) -> None:
        self.folder = Path(folder)
        self.manifest = manifest or read_manifest(self.folder)
        tasks.load_all()
        self.task_class = tasks.get(self.manifest["task"])
        self.kind, self.target = self.manifest["kind"], self.manifest.get("target")
        self.classes = self.manifest.get("classes")
        self.features = list(self.manifest.get("inputs") or [])
        # A format of the task's own (a chat model's merged weights) predicts through the task's runtime.
        self._runtime = self.task_class.exported_runtime(self.folder, self.manifest, threads)
        self._scores = None if self._runtime else self.task_class.exported_scorer(self.folder, self.manifest, threads)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        if self.kind == "regression":
            raise TypeError("predict_proba: this is a regression model; use predict")
        return self._scores(self._normalized(frame))

    def _normalized(self, rows):
        """Cells as training read them (full-width digits, Japanese dates: data/normalize.py's recorded plan)."""
        plan = self.manifest.get("normalization")
        if isinstance(rows, pd.DataFrame):
            return normalize.apply_plan(rows, plan)
        return normalize.apply_plan_to_records(list(rows), plan)

    def predict(self, frame: pd.DataFrame | list[dict]) -> Prediction:
        """`frame` may also be records (dicts), as a server receives them; each task reads them its way
        (tabular: cell by cell, with no DataFrame whose column types depend on the batch)."""
        frame = self._normalized(frame)
        if self._runtime is not None:
            return self._runtime(frame)
        scores = self._scores(frame)
        if self.kind == "regression":
            return Prediction(np.asarray(scores, dtype=float))
        names = np.asarray(self.classes, dtype=object)
        if self.kind == "multilabel":
            preprocessing = self.manifest["preprocessing"]
            separator, threshold = preprocessing.get("separator", "|"), preprocessing.get("threshold", 0.5)
            labels = np.array([separator.join(names[row >= threshold]) for row in scores], dtype=object)
        else:
            labels = names[scores.argmax(axis=1)]
        return Prediction(labels, scores, list(self.classes))

    predict_frame = predict  # the name Model gives its full prediction: the server calls either alike
