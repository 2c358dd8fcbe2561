"""Choosing and combining forecasting models on a rolling-origin backtest, and calibrating their quantiles there.

1. Every candidate model forecasts the same backtest windows (models.backtest).
2. A greedy ensemble (Caruana et al. 2004, the selection AutoGluon also uses) picks weights on those forecasts by
   mean MASE; a single model is the ensemble with one member.
3. Quantiles are conformal: the backtest errors of the ensemble, scaled by each series' MASE scale, give per-step
   empirical quantiles that are added to the point forecast (so they hold for every model, whether or not the
   library computes intervals for it).
4. The models with weight are fitted on the whole history and forecast the next horizon.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from . import models as forecast_models

ENSEMBLE_ROUNDS = 20


def seasonal_scale(history: pd.DataFrame, season: int) -> pd.Series:
    """Per series: the mean absolute seasonal difference of its history (MASE's denominator); lag 1 where the
    history is shorter than two seasons; never zero (a constant series gets 1, so its errors count as they are)."""
    def scale(values: np.ndarray) -> float:
        lag = season if len(values) > season else 1
        differences = np.abs(values[lag:] - values[:-lag]) if len(values) > lag else np.array([])
        differences = differences[np.isfinite(differences)]
        value = float(differences.mean()) if len(differences) else 0.0
        return value if value > 0 else 1.0

    return history.groupby("unique_id", sort=False)["y"].apply(lambda y: scale(y.to_numpy(dtype=float)))


def window_scales(frame: pd.DataFrame, cutoffs: pd.DataFrame, season: int) -> pd.DataFrame:
    """unique_id, cutoff, scale: each backtest window's MASE scale from that series' rows up to its cutoff."""
    rows = []
    for cutoff, group in cutoffs.groupby("cutoff"):
        ids = group["unique_id"].unique()
        history = frame[frame["unique_id"].isin(ids) & (frame["ds"] <= cutoff)]
        scales = seasonal_scale(history, season)
        rows.append(pd.DataFrame({"unique_id": scales.index, "cutoff": cutoff, "scale": scales.to_numpy()}))
    return pd.concat(rows, ignore_index=True)


def _scaled_errors(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Per (series, window): mean |error| / scale of each column: the MASE terms averaged by mean_mase."""
    errors = table[columns].sub(table["y"], axis=0).abs().div(table["scale"], axis=0)
    errors[["unique_id", "cutoff"]] = table[["unique_id", "cutoff"]]
    return errors.groupby(["unique_id", "cutoff"], sort=False)[columns].mean()


def greedy_ensemble(table: pd.DataFrame, names: list[str], rounds: int = ENSEMBLE_ROUNDS) -> dict[str, float]:
    """Weights (summing to 1) by forward selection with replacement on the backtest's mean MASE."""
    values = {name: table[name].to_numpy(dtype=float) for name in names}
    actual, scale = table["y"].to_numpy(dtype=float), table["scale"].to_numpy(dtype=float)
    keys = table["unique_id"].astype(str) + "|" + table["cutoff"].astype(str)
    codes, uniques = pd.factorize(keys)
    counts = np.bincount(codes)

    def score(prediction: np.ndarray) -> float:
        terms = np.bincount(codes, weights=np.abs(prediction - actual) / scale) / counts
        return float(terms.mean())

    chosen: list[str] = []
    history: list[float] = []
    total = np.zeros(len(table))
    for _ in range(rounds):
        trials = {name: score((total + values[name]) / (len(chosen) + 1)) for name in names}
        name = min(trials, key=trials.get)
        chosen.append(name)
        history.append(trials[name])
        total += values[name]
    # Rounds after the best score only add noise: keep the prefix that reached it.
    best = int(np.argmin(history)) + 1
    weights = pd.Series(chosen[:best]).value_counts(normalize=True)
    return {name: float(weight) for name, weight in weights.items()}


def combine(table: pd.DataFrame, weights: dict[str, float]) -> np.ndarray:
    return sum(table[name].to_numpy(dtype=float) * weight for name, weight in weights.items())


def conformal_offsets(table: pd.DataFrame, point: np.ndarray, horizon: int,
                      quantiles: list[float]) -> pd.DataFrame:
    """Rows = steps 1..horizon, columns = quantile levels: scaled error quantiles to add to the point forecast
    (times the series' scale). Steps with fewer than 50 backtest errors pool every step, the errors divided by
    sqrt(step) and multiplied back (uncertainty that grows like a random walk's).

    Errors grow as series move away from the past they were calibrated on (tourism's later windows are harder than
    its earlier ones: 80 % intervals covered 75 %), so the offsets are widened by the factor that makes the
    intervals from the earlier windows cover the latest window as they should (never narrowed)."""
    step = table.groupby(["unique_id", "cutoff"], sort=False).cumcount().to_numpy() + 1
    errors = (table["y"].to_numpy(dtype=float) - point) / table["scale"].to_numpy(dtype=float)
    cutoffs = table["cutoff"].to_numpy()
    finite = np.isfinite(errors)
    errors, step, cutoffs = errors[finite], step[finite], cutoffs[finite]
    offsets = _step_quantiles(errors, step, horizon, quantiles)
    latest = cutoffs == cutoffs.max() if len(cutoffs) else np.zeros(0, dtype=bool)
    if latest.any() and (~latest).any() and len(quantiles) >= 2:
        earlier = _step_quantiles(errors[~latest], step[~latest], horizon, quantiles)
        low, high = earlier.iloc[:, 0].to_numpy(), earlier.iloc[:, -1].to_numpy()
        nominal = max(quantiles) - min(quantiles)
        errors_now, steps_now = errors[latest], step[latest] - 1
        for factor in np.arange(1.0, 3.001, 0.05):
            inside = (errors_now >= low[steps_now] * factor) & (errors_now <= high[steps_now] * factor)
            if inside.mean() >= nominal:
                break
        offsets = offsets * factor
    return offsets


def _step_quantiles(errors: np.ndarray, step: np.ndarray, horizon: int, quantiles: list[float]) -> pd.DataFrame:
    rows = {}
    pooled = errors / np.sqrt(step)
    for k in range(1, horizon + 1):
        mine = errors[step == k]
        if len(mine) >= 50:
            rows[k] = np.quantile(mine, quantiles)
        elif len(pooled):
            rows[k] = np.quantile(pooled, quantiles) * np.sqrt(k)
        else:
            rows[k] = np.zeros(len(quantiles))
    return pd.DataFrame.from_dict(rows, orient="index", columns=[quantile_name(q) for q in quantiles])


def quantile_name(level: float) -> str:
    return f"q{level:g}"


@dataclass
class Fitted:
    weights: dict[str, float]
    scores: dict[str, float]  # mean backtest MASE per candidate and for the ensemble
    backtest: pd.DataFrame  # unique_id, ds, cutoff, y, scale, <models>, ensemble, quantile columns
    offsets: pd.DataFrame  # conformal_offsets
    skipped: dict[str, str] = field(default_factory=dict)  # candidate → why it was not tried
    seconds: dict[str, float] = field(default_factory=dict)
    future: pd.DataFrame | None = None  # unique_id, ds, <candidates>: their forecasts after the whole history


def select(frame: pd.DataFrame, spec: forecast_models.Spec, candidates: list[str], windows: int, step: int,
           quantiles: list[float], time_budget: float = 0,
           progress: Callable[[str, int, int], None] | None = None, future: pd.DataFrame | None = None) -> Fitted:
    """Backtest every candidate (cheapest first; later ones are skipped once `time_budget` seconds are spent),
    then choose the ensemble and calibrate its quantiles. With `future` (the next horizon's rows, see
    models.backtest) each candidate's forecast after the whole history comes from the same pass."""
    started, tables, seconds, skipped, futures = time.perf_counter(), {}, {}, {}, {}
    for number, name in enumerate(candidates):
        if time_budget and tables and time.perf_counter() - started > time_budget:
            skipped[name] = f"time budget of {time_budget:g} s spent"
            continue
        if progress:
            progress(name, number, len(candidates))
        begun = time.perf_counter()
        tables[name], futures[name] = forecast_models.backtest(name, frame, spec, windows, step, future)
        seconds[name] = round(time.perf_counter() - begun, 2)
    names = list(tables)
    table = tables[names[0]].drop(columns=names[0])
    for name in names:
        table = table.merge(tables[name][["unique_id", "ds", "cutoff", name]], on=["unique_id", "ds", "cutoff"],
                            how="left")
        table[name] = table[name].fillna(table[names[0]] if name != names[0] else table["y"])
    table = table.sort_values(["unique_id", "cutoff", "ds"]).reset_index(drop=True)
    scales = window_scales(frame, table[["unique_id", "cutoff"]].drop_duplicates(), spec.season_length)
    table = table.merge(scales, on=["unique_id", "cutoff"], how="left")
    weights = greedy_ensemble(table, names)
    table["ensemble"] = combine(table, weights)
    errors = _scaled_errors(table, [*names, "ensemble"])
    scores = {name: float(errors[name].mean()) for name in [*names, "ensemble"]}
    offsets = conformal_offsets(table, table["ensemble"].to_numpy(), spec.horizon, quantiles)
    step_index = table.groupby(["unique_id", "cutoff"], sort=False).cumcount().to_numpy() + 1
    for column in offsets.columns:
        table[column] = table["ensemble"] + offsets[column].reindex(step_index).to_numpy() * table["scale"]
    forecasts = None
    if future is not None:
        forecasts = future[["unique_id", "ds"]]
        for name in weights:
            forecasts = forecasts.merge(futures[name], on=["unique_id", "ds"], how="left")
    return Fitted(weights, scores, table, offsets, skipped, seconds, forecasts)


def final_forecast(history: pd.DataFrame, spec: forecast_models.Spec, weights: dict[str, float],
                   offsets: pd.DataFrame, future: pd.DataFrame | None, ids: list[str] | None = None) -> pd.DataFrame:
    """unique_id, ds, step, prediction, <members>, quantile columns: the next `spec.horizon` steps after the
    history of the series `ids` (None: every series)."""
    result = None
    for name in weights:
        forecast = forecast_models.forecast(name, history, spec, future, ids)
        result = forecast if result is None else result.merge(forecast, on=["unique_id", "ds"], how="outer")
    return assemble(result, history, spec, weights, offsets)


def assemble(result: pd.DataFrame, history: pd.DataFrame, spec: forecast_models.Spec, weights: dict[str, float],
             offsets: pd.DataFrame) -> pd.DataFrame:
    """The members' forecasts (unique_id, ds, <members>) → step, weighted prediction, conformal quantiles."""
    result = result.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    result["step"] = result.groupby("unique_id", sort=False).cumcount() + 1
    result["prediction"] = combine(result, weights)
    scale = seasonal_scale(history, spec.season_length)
    row_scale = result["unique_id"].map(scale).to_numpy(dtype=float)
    steps = offsets_for(offsets, result["step"].to_numpy())
    for column in offsets.columns:
        result[column] = result["prediction"] + steps[column].to_numpy() * row_scale
    return result


def offsets_for(offsets: pd.DataFrame, steps: np.ndarray) -> pd.DataFrame:
    """The offsets of these steps; beyond the calibrated horizon the last step's, grown like sqrt(step)."""
    last = int(offsets.index.max())
    clipped = np.minimum(steps, last)
    growth = np.sqrt(np.maximum(steps, 1) / np.maximum(clipped, 1))
    return offsets.reindex(clipped).reset_index(drop=True).mul(growth, axis=0)


def summary(fitted: Fitted) -> dict[str, Any]:
    return {"weights": fitted.weights, "backtest_mase": fitted.scores, "skipped": fitted.skipped,
            "backtest_seconds": fitted.seconds}
