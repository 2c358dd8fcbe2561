"""Tabular export. The feature encoding travels as JSON (the Preprocessor's column types and category lists);
the learner goes to ONNX where a converter reproduces it, else its native file runs in its own library:

- LightGBM → ONNX (onnxmltools), categorical splits included: categoricals enter as their category codes,
  as LightGBM itself sees them.
- XGBoost → ONNX (onnxmltools) on numeric features; its categorical splits have no converter → native JSON.
- CatBoost → native .cbm: CatBoost's own ONNX export refuses categorical features.
- scikit-learn learners → native skops: skl2onnx's trees send missing values down the wrong branch (a
  random forest on data with gaps differed by 0.95 in probability) and its HistGradientBoosting converter
  fails on categorical splits.

ONNX's tree operators compare float32: a LightGBM threshold between two data values closer than float32 can
tell apart (Ames' longitudes) sends a row down the other branch. The exporter's parity check catches it and
`export_fallback` writes the native file instead, keeping the rejected report in the manifest.

Native files are the run's own formats (text, JSON, .cbm, skops with its type check) — never pickle.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .learners import LEARNERS
from .preprocess import Preprocessor

NATIVE_FOLDER = "native"
INPUT = "features"
ML_OPSET = 15  # onnxmltools' tree converters stop at opset 15


def export(task, folder: Path) -> dict[str, Any]:
    """Write model.onnx or native/ into `folder`; return the manifest's preprocessing."""
    from ...export import onnx_format

    width = len(task.preprocessor.output_columns)
    converted, reason = _to_onnx(task.learner, task.kind, width)
    if converted is not None:
        onnx_format.save(converted, folder / onnx_format.FILE)
        output = "variable" if task.kind == "regression" else "probabilities"
        return {**_preprocessing(task), "backend": "onnx", "input": INPUT, "output": output}
    return export_native(task, folder, reason)


def export_native(task, folder: Path, reason: str) -> dict[str, Any]:
    native = folder / NATIVE_FOLDER
    native.mkdir()
    task.learner.save(native)
    return {**_preprocessing(task), "backend": "native", "why_native": reason}


def _preprocessing(task) -> dict[str, Any]:
    return {"preprocessor": task.preprocessor.to_dict(), "categorical": task.preprocessor.categorical_columns,
            "learner": task.learner_name, "target_transform": task.target_transform}


def _to_onnx(learner, kind: str, width: int):
    """(ModelProto, None) where a faithful converter exists, else (None, why not)."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    inputs = [(INPUT, FloatTensorType([None, width]))]
    if learner.name == "lightgbm":
        options = {} if kind == "regression" else {"zipmap": False}
        return onnxmltools.convert_lightgbm(learner.booster, initial_types=inputs, target_opset=ML_OPSET,
                                            **options), None
    if learner.name == "xgboost":
        if learner.categorical:
            return None, "XGBoost's categorical splits have no ONNX converter"
        booster = learner.booster.copy()
        booster.feature_names = None  # the converter only reads f0, f1, … names
        booster.feature_types = None
        return onnxmltools.convert_xgboost(booster, initial_types=inputs, target_opset=ML_OPSET), None
    if learner.name == "catboost":
        return None, "CatBoost's ONNX export refuses categorical features and returns ZipMap probabilities"
    return None, "skl2onnx trees route missing values differently from scikit-learn"


def scorer(folder: Path, manifest: dict[str, Any], threads: int = 0):
    """scores(frame or records): probabilities (rows, classes), or values (rows,) for regression."""
    preprocessing, kind = manifest["preprocessing"], manifest["kind"]
    preprocessor = Preprocessor.from_dict(preprocessing["preprocessor"])
    categorical = preprocessing["categorical"]
    if preprocessing["backend"] == "onnx":
        from ...export import onnx_format

        session = onnx_format.session(Path(folder) / onnx_format.FILE, threads)
        output = preprocessing["output"]

        def raw(matrix: np.ndarray) -> np.ndarray:
            result = session.run([output], {preprocessing["input"]: matrix.astype(np.float32)})[0]
            return np.asarray(result, dtype=np.float64)
    else:
        learner = LEARNERS.get(preprocessing["learner"])(kind, len(manifest.get("classes") or []), {}, 0, threads,
                                                         categorical)
        learner.load_model(Path(folder) / NATIVE_FOLDER)

        def raw(matrix: np.ndarray) -> np.ndarray:
            return learner.predict_codes(matrix, preprocessor)

    def scores(data: pd.DataFrame | list[dict]) -> np.ndarray:
        # encode(): cell by cell, ~100x cheaper than the pandas transform on a server's few-row batches;
        # records (the server's) are taken as they are, without a DataFrame.
        values = raw(preprocessor.encode(data))
        if kind == "regression":
            values = values.reshape(-1)
            return np.expm1(values) if preprocessing["target_transform"] == "log" else values
        return values

    return scores

