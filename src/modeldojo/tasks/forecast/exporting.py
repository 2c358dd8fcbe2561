"""`dojo export RUN` for a forecast: the "forecast" format, a self-contained folder of data files (the history, the
chosen models and weights, the quantile offsets, the stored forecast: JSON and Parquet, nothing pickled) that
`dojo predict` and `dojo serve` answer from, refitting the chosen statistical models or LightGBM on new history.

Parity: the export's forecasts of the held-out rows against the run's own, value by value (1e-9 relative) and on
MASE. The statistical models are served this way by design (a per-series model has no graph to convert); an ONNX
graph of the global LightGBM is not built yet (its recursive lag features would still be computed here).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import series as series_module

TOLERANCE = 1e-9


@dataclass
class ForecastParity:
    rows: int
    max_relative_diff: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def explain(self) -> str:
        return (f"(forecast) on {self.rows} forecast rows: largest relative difference {self.max_relative_diff:.2e} "
                f"(allowed {TOLERANCE:g})")


def export_folder(task, folder: Path, frame: pd.DataFrame, y: pd.Series):
    """Parity on the next horizon of every series (up to 512 rows), the forecast the export will serve: the
    held-out rows lie inside the history the run now holds (train.refit_full), so they cannot be forecast."""
    from .task import future_steps

    task.save(Path(folder))
    manifest = {"kind": task.kind, "target": task.target, "config": task.config.to_dict()}
    steps = future_steps(task.history, task.layout.frequency, task.layout.horizon).head(512)
    rows = _user_rows(steps, task.layout, task.history)
    if rows is None:  # known covariates: their future values are the user's to give; compare on the history
        rows = _history_rows(task.history, task.layout)
    exported = runtime(folder, manifest)(rows)
    original = task.predict(rows)
    before, after = np.asarray(original.values, float), np.asarray(exported.values, float)
    difference = np.abs(before - after) / np.maximum(np.abs(before), 1.0)
    both = np.isfinite(before) & np.isfinite(after)
    same_missing = bool((np.isfinite(before) == np.isfinite(after)).all())
    largest = float(difference[both].max()) if both.any() else 0.0
    report = ForecastParity(int(np.isfinite(before).sum()), largest, same_missing and largest <= TOLERANCE)
    return {"backend": "forecast", "weights": task.weights, "horizon": task.layout.horizon}, report


def _user_rows(steps: pd.DataFrame, layout, history: pd.DataFrame) -> pd.DataFrame | None:
    """Forecast steps in the user's columns (id columns, time); None when known covariates would be needed."""
    from .predicting import _output_table

    if any(column != series_module.HOLIDAY for column in layout.known):
        return None
    table = _output_table(steps.assign(prediction=np.nan), layout, [])
    for column in layout.static:  # per-series constants, from the history
        table[column] = steps["unique_id"].map(history.groupby("unique_id")[column].first()).to_numpy()
    return table.drop(columns=["prediction"])


def _history_rows(history: pd.DataFrame, layout, series: int = 5) -> pd.DataFrame:
    """The first series' history in the user's columns, their last horizon without the target (to forecast, from
    the covariates the history holds)."""
    from .predicting import _output_table

    history = history[history["unique_id"].isin(history["unique_id"].unique()[:series])].reset_index(drop=True)
    offset = pd.tseries.frequencies.to_offset(layout.frequency)
    cut = history.groupby("unique_id")["ds"].transform("max") - offset * layout.horizon
    table = _output_table(history.assign(prediction=np.nan), layout, []).drop(columns=["prediction"])
    table[layout.target] = history["y"].where(history["ds"] <= cut).to_numpy()
    for column in [*layout.known, *layout.static]:
        if column != series_module.HOLIDAY:
            table[column] = history[column].to_numpy()
    return table


def runtime(folder: Path, manifest: dict[str, Any]):
    """predict(frame or records) → Prediction from an export folder."""
    from .task import ForecastTask

    meta = {"kind": manifest["kind"], "target": manifest["target"], "config": manifest.get("config")}
    task = ForecastTask.load(Path(folder), meta)

    def predict(rows):
        if not isinstance(rows, pd.DataFrame):
            rows = pd.DataFrame.from_records(list(rows))
            rows = rows.reindex(columns=list(dict.fromkeys([*task.input_columns, *rows.columns])))
        return task.predict(rows)

    return predict
