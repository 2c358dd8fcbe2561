"""An exported model, run with ONNX Runtime: no torch model, no pickle — the manifest, the preprocessing
files the task wrote, and model.onnx."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import tasks
from ..errors import NotFoundError
from ..tasks.base import Prediction
from . import onnx_format

MANIFEST = "manifest.json"


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise NotFoundError(f"{folder}: not an export folder (no {MANIFEST})")
    return json.loads(path.read_text(encoding="utf-8"))


class ExportedModel:
    def __init__(self, folder: str | Path, manifest: dict | None = None) -> None:
        self.folder = Path(folder)
        self.manifest = manifest or read_manifest(self.folder)
        self.session = onnx_format.session(self.folder / onnx_format.FILE)
        self.task_class = tasks.get(self.manifest["task"])
        self.classes = self.manifest.get("classes")

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        preprocessing = self.manifest["preprocessing"]
        out = np.zeros((len(frame), len(self.classes)), dtype=np.float64)
        for rows, feed in self.task_class.onnx_feeds(self.folder, preprocessing, frame):
            logits = self.session.run(None, feed)[0].astype(np.float64)
            out[rows] = _activate(logits, self.manifest["kind"])
        return out

    def predict(self, frame: pd.DataFrame) -> Prediction:
        probabilities = self.predict_proba(frame)
        names = np.asarray(self.classes, dtype=object)
        if self.manifest["kind"] == "multilabel":
            preprocessing = self.manifest["preprocessing"]
            separator, threshold = preprocessing.get("separator", "|"), preprocessing.get("threshold", 0.5)
            labels = np.array([separator.join(names[row >= threshold]) for row in probabilities], dtype=object)
        else:
            labels = names[probabilities.argmax(axis=1)]
        return Prediction(labels, probabilities, list(self.classes))


def _activate(logits: np.ndarray, kind: str) -> np.ndarray:
    if kind == "multilabel":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = logits - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)
