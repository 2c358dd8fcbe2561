"""Forecast accuracy, per series and overall: MASE (primary), sMAPE, RMSE, WAPE, the scaled weighted quantile loss
(a CRPS estimate over the predicted quantiles) and the coverage of the central interval.

MASE and the quantile loss are scaled per series by the mean absolute seasonal difference of that series' history,
so series of any size weigh the same; a row's scale travels with the prediction (Prediction.context["scale"]).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

def per_series(actual: np.ndarray, predicted: np.ndarray, series: np.ndarray, scale: np.ndarray,
               quantiles: dict[float, np.ndarray]) -> pd.DataFrame:
    """One row per series: rows, MASE, sMAPE, RMSE, WAPE, scaled quantile loss, coverage."""
    frame = pd.DataFrame({"series": series, "y": actual, "prediction": predicted, "scale": scale})
    frame["abs_error"] = (frame["y"] - frame["prediction"]).abs()
    frame["scaled_error"] = frame["abs_error"] / frame["scale"]
    denominator = (frame["y"].abs() + frame["prediction"].abs())
    frame["smape_term"] = np.where(denominator > 0, 2 * frame["abs_error"] / denominator.where(denominator > 0, 1), 0)
    if quantiles:
        loss = sum(_pinball(actual, values, level) for level, values in quantiles.items()) / len(quantiles)
        frame["quantile_term"] = loss / scale
        low, high = min(quantiles), max(quantiles)
        frame["covered"] = (actual >= quantiles[low]) & (actual <= quantiles[high])
    grouped = frame.groupby("series", sort=False)
    table = pd.DataFrame({"rows": grouped.size(), "mase": grouped["scaled_error"].mean(),
                          "smape": grouped["smape_term"].mean(),
                          "rmse": grouped.apply(lambda g: float(np.sqrt(((g["y"] - g["prediction"]) ** 2).mean())),
                                                include_groups=False),
                          "wape": grouped["abs_error"].sum() / grouped["y"].apply(lambda y: y.abs().sum()).replace(0,
                                                                                                                   np.nan)})
    if quantiles:
        table["scaled_quantile_loss"] = grouped["quantile_term"].mean() * 2  # x2: equals MAE/scale at the median
        table["coverage"] = grouped["covered"].mean()
    return table


def _pinball(actual: np.ndarray, predicted: np.ndarray, level: float) -> np.ndarray:
    difference = actual - predicted
    return np.maximum(level * difference, (level - 1) * difference)


def scores(actual: np.ndarray, predicted: np.ndarray, context: dict[str, Any],
           quantiles: dict[str, np.ndarray]) -> dict[str, Any]:
    """The test metrics: per-series means (MASE, sMAPE, scaled quantile loss) and pooled ones (RMSE, WAPE,
    coverage), plus the per-series table."""
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    series = np.asarray(context.get("series", np.zeros(len(actual))))
    scale = np.asarray(context.get("scale", np.ones(len(actual))), dtype=float)
    levels = {float(name[1:]): np.asarray(values, dtype=float) for name, values in quantiles.items()}
    table = per_series(actual, predicted, series, scale, levels)
    out: dict[str, Any] = {
        "mase": float(table["mase"].mean()), "smape": float(table["smape"].mean()),
        "rmse": float(np.sqrt(np.mean((actual - predicted) ** 2))),
        "wape": float(np.abs(actual - predicted).sum() / max(np.abs(actual).sum(), 1e-12)),
        "mae": float(np.mean(np.abs(actual - predicted))), "series": int(len(table)), "rows": int(len(actual))}
    if levels:
        low, high = min(levels), max(levels)
        out["scaled_quantile_loss"] = float(table["scaled_quantile_loss"].mean())
        out[f"coverage_{round((high - low) * 100)}"] = float(((actual >= levels[low]) & (actual <= levels[high])).mean())
    out["per_series"] = table.reset_index().round(4).to_dict(orient="records")
    return out
