"""Forecasting rows: history rows (with a target) replace the stored history of their series; rows without a target
are the steps to forecast (with their known covariates). With no such rows, the next horizon of every series in
the history rows is forecast. The stored forecast answers whatever it can (the stored history, no new covariates);
the rest is forecast by the run's chosen models and weights, fitted on the history at hand."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...data.readers import source_name
from ...errors import DataError
from ..base import Prediction
from . import engine, series as series_module


def forecast_rows(task, frame: pd.DataFrame) -> Prediction:
    layout, source = task.layout, source_name(frame)
    if len(frame) == 0:  # a server's warm-up, an empty file
        return Prediction(np.zeros(0), columns={q: np.zeros(0) for q in task.offsets.columns})
    long = series_module.to_long(frame, layout)
    unreadable = np.flatnonzero(long["ds"].isna().to_numpy())
    if len(unreadable):
        raise DataError(f"{source}: column {layout.time!r}: {len(unreadable)} timestamp(s) missing or unreadable "
                        f"({series_module.where(frame, unreadable)})")
    has_target = long["y"].notna().to_numpy()
    given = long[has_target]
    history, replaced = task.history, set()
    if len(given):
        duplicated = np.flatnonzero(long.duplicated(["unique_id", "ds"], keep=False).to_numpy() & has_target)
        if len(duplicated):
            raise DataError(f"{source}: history rows share a series and timestamp "
                            f"({series_module.where(frame, duplicated)})")
        new = series_module.regularise(given, layout, task.config.forecast.fill_gaps)
        _require_long_enough(task, new, source)
        replaced = set(new["unique_id"])
        history = pd.concat([history[~history["unique_id"].isin(replaced)], new], ignore_index=True)
    wanted = long[~has_target]
    generated = wanted.empty
    if generated:
        if given.empty:
            raise DataError(f"{source}: no rows to forecast: give rows of series and timestamps to forecast "
                            f"(without {layout.target!r}), or history rows with it")
        from .task import future_steps

        wanted = future_steps(history[history["unique_id"].isin(replaced)], layout.frequency, layout.horizon)
    steps = _steps(wanted, history, layout, frame if not generated else None, source)
    forecasts = _forecasts(task, history, wanted, steps, replaced, long[~has_target], source)
    rows = wanted[["unique_id", "ds"]].merge(forecasts, on=["unique_id", "ds"], how="left")
    quantiles = [c for c in task.offsets.columns]
    scale = engine.seasonal_scale(history, layout.season_length)
    if generated:
        table = _output_table(rows, layout, quantiles)
        values = np.full(len(frame), np.nan)
        columns = {q: np.full(len(frame), np.nan) for q in quantiles}
        context = {"series": long["unique_id"].to_numpy(), "scale": long["unique_id"].map(scale).to_numpy(dtype=float)}
        return Prediction(values, columns=columns, table=table, context=context)
    values = np.full(len(frame), np.nan)
    positions = np.flatnonzero(~has_target)
    values[positions] = rows["prediction"].to_numpy(dtype=float)
    columns = {}
    for q in quantiles:
        columns[q] = np.full(len(frame), np.nan)
        columns[q][positions] = rows[q].to_numpy(dtype=float)
    table = frame.iloc[positions].reset_index(drop=True).drop(columns=[layout.target], errors="ignore")
    keys = [*layout.ids, layout.time]  # the series' keys and time first, as in a generated forecast
    table = table[[*keys, *[c for c in table.columns if c not in keys]]]
    table["prediction"] = values[positions]
    for q in quantiles:
        table[q] = columns[q][positions]
    context = {"series": long["unique_id"].to_numpy(), "scale": long["unique_id"].map(scale).to_numpy(dtype=float)}
    return Prediction(values, columns=columns, table=table if has_target.any() else None, context=context)


def _require_long_enough(task, history: pd.DataFrame, source: str) -> None:
    """History given for a series must be long enough for the chosen models (LightGBM's lags reach two seasons
    back; seasonal naive one season)."""
    season = task.layout.season_length
    needed = 2 * season + 1 if "lightgbm" in task.weights else season + 1
    sizes = history.groupby("unique_id").size()
    short = sizes[sizes < needed]
    if len(short):
        raise DataError(f"{source}: series {', '.join(map(repr, short.index[:5]))} have {int(short.iloc[0])} "
                        f"history row(s); the run's models ({', '.join(task.weights)}) need at least {needed} "
                        f"(season {season}) to forecast from")


def _steps(wanted: pd.DataFrame, history: pd.DataFrame, layout, frame, source: str) -> np.ndarray:
    """Each wanted row's step after its series' last history timestamp (1 = the next one); errors name rows."""
    last = history.groupby("unique_id")["ds"].max()
    unknown = ~wanted["unique_id"].isin(last.index)
    if unknown.any():
        names = sorted(set(wanted.loc[unknown, "unique_id"]))
        raise DataError(f"{source}: series {', '.join(map(repr, names[:5]))} have no history (not in training and "
                        f"no rows with {layout.target!r} given); known series: "
                        f"{', '.join(map(repr, list(last.index[:5])))}")
    offset = pd.tseries.frequencies.to_offset(layout.frequency)
    steps = np.zeros(len(wanted), dtype=int)
    for uid, group in wanted.groupby("unique_id", sort=False):
        end = last[uid]
        grid = pd.date_range(end, max(group["ds"].max(), end), freq=offset)
        found = grid.get_indexer(pd.DatetimeIndex(group["ds"]))
        steps[np.flatnonzero((wanted["unique_id"] == uid).to_numpy())] = found
        bad = found <= 0
        if bad.any():
            where = series_module.where(frame, np.flatnonzero((wanted["unique_id"] == uid).to_numpy())[bad]) \
                if frame is not None else "generated steps"
            raise DataError(f"{source}: series {uid!r}: timestamp(s) {group['ds'][bad].iloc[0]} ({where}) are not "
                            f"{layout.frequency} steps after its history, which ends at {end}")
    return steps


def _forecasts(task, history, wanted, steps, replaced, future_rows, source) -> pd.DataFrame:
    layout = task.layout
    horizon = int(steps.max())
    stored = task.stored
    usable = not stored.empty and horizon <= int(stored["step"].max())
    from_store = wanted["unique_id"].isin(set(stored["unique_id"]) if usable else set()) & \
        ~wanted["unique_id"].isin(replaced)
    parts = []
    if from_store.any():
        parts.append(stored[stored["unique_id"].isin(set(wanted.loc[from_store, "unique_id"]))])
    rest = sorted(set(wanted.loc[~from_store.to_numpy(), "unique_id"]))
    if rest:
        future = _future(task, history[history["unique_id"].isin(rest)], future_rows, horizon, source)
        parts.append(engine.final_forecast(history, task._spec(horizon), task.weights, task.offsets, future, rest))
    return pd.concat(parts, ignore_index=True)


def _future(task, history, future_rows, horizon, source) -> pd.DataFrame | None:
    """The covariates of every step up to `horizon` for each series (the models need all of them)."""
    from .task import future_steps

    layout = task.layout
    if not layout.known:
        return None
    steps = future_steps(history, layout.frequency, horizon)
    given = [c for c in layout.known if c != series_module.HOLIDAY]
    if given:
        rows = future_rows.drop_duplicates(["unique_id", "ds"])[["unique_id", "ds", *given]]
        steps = steps.merge(rows, on=["unique_id", "ds"], how="left")
        missing = steps[steps[given].isna().any(axis=1)]
        if len(missing):
            first = missing.iloc[0]
            raise DataError(f"{source}: known covariate(s) {', '.join(map(repr, given))} missing for "
                            f"{len(missing)} forecast step(s), e.g. series {first['unique_id']!r} at {first['ds']}: "
                            "the models need every step up to the last one asked for (rows without the target: "
                            "`dojo predict --future FILE`, or rows in the request)")
    return series_module.add_holidays(steps, layout)


def _output_table(rows: pd.DataFrame, layout, quantiles: list[str]) -> pd.DataFrame:
    """The generated forecast in the user's own columns: id columns, time, prediction, quantiles."""
    table = pd.DataFrame()
    if layout.ids:
        parts = rows["unique_id"].str.split(series_module.SEPARATOR, regex=False, expand=True)
        for index, column in enumerate(layout.ids):
            table[column] = parts[index]
    table[layout.time] = rows["ds"].to_numpy()
    table["prediction"] = rows["prediction"].to_numpy()
    for q in quantiles:
        table[q] = rows[q].to_numpy()
    return table
