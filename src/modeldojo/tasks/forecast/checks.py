"""`dojo check` for series: unreadable timestamps, non-numeric targets, duplicate timestamps, timestamps off the
frequency's grid (errors); gaps, too-short series, covariate roles, the inferred frequency (stated). Every finding
names the file, its lines and the column, before any model is fitted."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...config import Config
from ...data.checks import CheckReport
from ...data.readers import source_name
from ...errors import DataError
from . import series as series_module
from .models import READS_KNOWN, READS_STATIC


def minimum_length(season: int, horizon: int, windows: int, step: int) -> int:
    """Rows a series needs to take part in the backtest: its windows plus two seasons (or 4 rows) to fit on."""
    return horizon + (windows - 1) * step + max(2 * season, 4)


def check_series(frame: pd.DataFrame, config: Config) -> tuple[CheckReport, series_module.Layout | None]:
    source = source_name(frame)
    report = CheckReport(source, len(frame), frame.shape[1], config.data.target, "forecast")
    try:
        layout = series_module.layout_for(frame, config)
    except DataError as error:
        report.add("layout", "error", str(error))
        return report, None
    long = series_module.to_long(frame, layout)
    time, target = layout.time, layout.target
    _column_table(frame, layout, report)

    unreadable = np.flatnonzero(long["ds"].isna().to_numpy() & frame[time].notna().to_numpy())
    missing_time = np.flatnonzero(frame[time].isna().to_numpy())
    if len(unreadable):
        report.add("time_unreadable", "error", f"{source}: column {time!r}: {len(unreadable)} timestamp(s) cannot be "
                   f"read as dates ({series_module.where(frame, unreadable)}; e.g. "
                   f"{frame[time].iloc[unreadable[0]]!r})", column=time)
    if len(missing_time):
        report.add("time_missing", "error", f"{source}: column {time!r}: {len(missing_time)} row(s) have no "
                   f"timestamp ({series_module.where(frame, missing_time)})", column=time)
    raw_target = frame[target]
    bad = np.flatnonzero(long["y"].isna().to_numpy() & raw_target.notna().to_numpy()
                         & (raw_target.astype(str).str.strip() != "").to_numpy())
    if len(bad):
        report.add("target_not_numeric", "error", f"{source}: target {target!r}: {len(bad)} value(s) are not "
                   f"numbers ({series_module.where(frame, bad)}; e.g. {raw_target.iloc[bad[0]]!r})", column=target)
    missing_target = np.flatnonzero(raw_target.isna().to_numpy())
    if len(missing_target):
        stop = config.forecast.fill_gaps == "error"
        report.add("target_missing", "error" if stop else "warning", f"{source}: target {target!r}: "
                   f"{len(missing_target)} missing value(s) ({series_module.where(frame, missing_target)}), "
                   + ("fill them or set forecast.fill_gaps to interpolate or zero" if stop else
                      f"filled as forecast.fill_gaps={config.forecast.fill_gaps} says"), column=target)
    duplicated = long.duplicated(["unique_id", "ds"], keep=False).to_numpy() & long["ds"].notna().to_numpy()
    if duplicated.any():
        positions = np.flatnonzero(duplicated)
        first = long.iloc[positions[0]]
        report.add("duplicate_timestamps", "error", f"{source}: {duplicated.sum()} rows share a series and "
                   f"timestamp with another row ({series_module.where(frame, positions)}; e.g. series "
                   f"{first['unique_id']!r} at {first['ds']}); aggregate them first or add the column that tells "
                   "them apart to --id", column=time)
    if report.errors:
        return report, layout

    valid = long.dropna(subset=["ds"])
    try:
        layout.frequency = config.forecast.frequency if config.forecast.frequency != "auto" else \
            series_module.infer_frequency(valid)
        pd.tseries.frequencies.to_offset(layout.frequency)
    except (DataError, ValueError) as error:
        report.add("frequency", "error", f"{source}: {error}", column=time)
        return report, layout
    layout.season_length = config.forecast.season_length or series_module.season_for(layout.frequency)
    layout.horizon = config.forecast.horizon or series_module.horizon_for(layout.frequency)
    positions = series_module.grid_positions(long, layout.frequency)
    off_grid = np.flatnonzero((positions < 0) & long["ds"].notna().to_numpy())
    if len(off_grid):
        report.add("irregular_timestamps", "error", f"{source}: column {time!r}: {len(off_grid)} timestamp(s) are "
                   f"not on the {layout.frequency} grid the other rows follow ({series_module.where(frame, off_grid)};"
                   f" e.g. {long['ds'].iloc[off_grid[0]]}); resample the data or set forecast.frequency", column=time)
        return report, layout
    spans = pd.DataFrame({"unique_id": long["unique_id"], "position": positions}).groupby("unique_id")["position"]
    sizes = spans.count()
    gaps = (spans.max() - spans.min() + 1 - sizes)
    if gaps.sum():
        worst = gaps.sort_values(ascending=False)
        named = ", ".join(f"{uid!r} ({count})" for uid, count in worst[worst > 0].head(5).items())
        severity = "error" if config.forecast.fill_gaps == "error" else "warning"
        report.add("gaps", severity, f"{source}: {int(gaps.sum())} missing timestamp(s) inside {int((gaps > 0).sum())}"
                   f" series at frequency {layout.frequency}: {named}; "
                   + ("set forecast.fill_gaps to interpolate or zero" if severity == "error" else
                      f"filled ({config.forecast.fill_gaps})"), column=time)
    step = config.forecast.backtest_step or layout.horizon
    needed = minimum_length(layout.season_length, layout.horizon, config.forecast.backtest_windows, step)
    short = (spans.max() - spans.min() + 1)
    short = short[short < needed + layout.horizon]  # the test split takes one horizon first
    if len(short) == len(sizes):
        report.add("series_too_short", "error", f"{source}: every series is shorter than the {needed + layout.horizon}"
                   f" steps a test horizon of {layout.horizon} and a {config.forecast.backtest_windows}-window "
                   f"backtest need (longest: {int(spans.count().max())}); lower --horizon or "
                   "forecast.backtest_windows", column=time)
    elif len(short):
        report.add("series_too_short", "warning", f"{source}: {len(short)} series are shorter than the "
                   f"{needed + layout.horizon} steps the test horizon and backtest need (e.g. "
                   f"{', '.join(map(repr, short.index[:3]))}): they are forecast but left out of the backtest and "
                   "the test", column=time)
    roles = [f"{c} (known future)" for c in layout.known] + [f"{c} (static)" for c in layout.static]
    report.add("series", "info", f"{source}: {len(sizes)} series, frequency {layout.frequency}, season "
               f"{layout.season_length}, horizon {layout.horizon}" + (f"; covariates: {', '.join(roles)}"
                                                                     if roles else ""))
    _require_readers(report, layout, config)
    return report, layout


def _column_table(frame: pd.DataFrame, layout: series_module.Layout, report: CheckReport) -> None:
    """`dojo check`'s Columns table, each column with its role in the series."""
    roles = {layout.time: "time", layout.target: "target", **{c: "series id" for c in layout.ids},
             **{c: "known-future covariate" for c in layout.known}, **{c: "static covariate" for c in layout.static}}
    for column in frame.columns:
        values = frame[column]
        missing = int(values.isna().sum())
        report.column_table.append({"column": str(column), "dtype": str(values.dtype), "missing": missing,
                                    "missing_pct": round(100 * missing / max(len(frame), 1), 2),
                                    "unique": int(values.nunique(dropna=True)),
                                    "notes": roles.get(column, "not used")})


def _require_readers(report: CheckReport, layout: series_module.Layout, config: Config) -> None:
    """A covariate must be read by a model the run may choose: stop before fitting when none of the configured
    candidates reads it, naming the column and the models that would."""
    candidates = candidate_models(layout, config)
    for column, readers in [*[(c, READS_KNOWN) for c in layout.known], *[(c, READS_STATIC) for c in layout.static]]:
        if not set(candidates) & set(readers):
            report.add("covariate_unused", "error", f"covariate {column!r} would be ignored by the chosen models "
                       f"({', '.join(candidates)}); models that read it: {', '.join(readers)} (set forecast.models), "
                       f"or leave the column out with --drop {column}", column=column)


def candidate_models(layout: series_module.Layout, config: Config) -> list[str]:
    if config.forecast.models:
        return list(config.forecast.models)
    if layout.known or layout.static:  # only models that read the covariates: none is silently ignored
        return ["lightgbm"] + (["arima"] if not layout.static else [])
    return ["seasonal_naive", "dynamic_theta", "ces", "lightgbm", "ets"]
