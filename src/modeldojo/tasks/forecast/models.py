"""The forecasting models, each a kept library behind one small interface: statsforecast's SeasonalNaive, AutoETS,
AutoTheta and AutoARIMA (one model per series), and mlforecast's global LightGBM on lags, rolling means and calendar
features (one model for all series).

Every model answers two questions the same way: `backtest` (rolling-origin forecasts, one per window, from the data
strictly before each cutoff) and `forecast` (the next `horizon` steps after the history). Frames are long:
unique_id, ds, y, then covariate columns.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


# Models that read covariates, and which: a covariate that no chosen model reads stops the run (never dropped).
READS_KNOWN = ("lightgbm", "arima")
READS_STATIC = ("lightgbm",)


@dataclass
class Spec:
    """What every model needs to know about the series."""

    frequency: str
    season_length: int
    horizon: int
    known: list[str] = field(default_factory=list)  # known-future covariate columns
    static: list[str] = field(default_factory=list)  # per-series constant columns
    threads: int = 1
    seed: int = 0
    max_history: int = 0  # statistical models fit on each series' last steps only; 0 = all
    lightgbm_params: dict[str, Any] = field(default_factory=dict)


def _statsforecast_model(name: str, season: int):
    from statsforecast.models import AutoARIMA, AutoCES, AutoETS, AutoTheta, DynamicOptimizedTheta, SeasonalNaive

    return {"seasonal_naive": lambda: SeasonalNaive(season_length=season),
            "ets": lambda: AutoETS(season_length=season, alias="ets"),
            "theta": lambda: AutoTheta(season_length=season, alias="theta"),
            "dynamic_theta": lambda: DynamicOptimizedTheta(season_length=season, alias="dynamic_theta"),
            "ces": lambda: AutoCES(season_length=season, alias="ces"),
            "arima": lambda: AutoARIMA(season_length=season, alias="arima")}[name]()


def _statsforecast(names: list[str], spec: Spec):
    from statsforecast import StatsForecast

    models = [_statsforecast_model(name, spec.season_length) for name in names]
    for model, name in zip(models, names):
        model.alias = name
    # A series one model cannot fit (constant, too short for its seasonality) gets the seasonal naive forecast
    # instead of failing the whole run.
    from statsforecast.models import SeasonalNaive

    return StatsForecast(models=models, freq=spec.frequency, n_jobs=max(1, spec.threads),
                         fallback_model=SeasonalNaive(season_length=spec.season_length))


def _lags(season: int) -> list[int]:
    """Lags 1..season (capped at 24) plus one and two seasons back (hourly: a day and a week)."""
    lags = set(range(1, min(season, 24) + 1)) | {season, 2 * season}
    if season == 24:
        lags |= {168}
    return sorted(lags)


_CALENDAR = {"M": ["month"], "Q": ["quarter"], "W": ["week"], "D": ["dayofweek", "month"], "B": ["dayofweek"],
             "h": ["hour", "dayofweek"], "H": ["hour", "dayofweek"], "min": ["hour", "minute", "dayofweek"],
             "T": ["hour", "minute", "dayofweek"]}


def _calendar_features(frequency: str) -> list[str]:
    code = pd.tseries.frequencies.to_offset(frequency).name.split("-")[0]
    for prefix, features in _CALENDAR.items():
        if code.rstrip("SE").endswith(prefix) or code == prefix:
            return features
    return []


def _mlforecast(spec: Spec):
    import lightgbm
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean
    from mlforecast.target_transforms import Differences, LocalStandardScaler

    # One LightGBM thread: these tables are small, and with 2 threads on a busy 2-core machine one fit of
    # aus_retail took 13.9 s against 1.2 s with one (OpenMP threads spin while they wait for a core).
    params = {"n_estimators": 400, "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20,
              "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8, "verbosity": -1,
              "random_state": spec.seed, "n_jobs": 1, **spec.lightgbm_params}
    season = spec.season_length
    transforms = {1: [RollingMean(window_size=max(2, season))]}
    if season > 1:
        transforms[season] = [RollingMean(window_size=max(2, season))]
    # Differences first: the trees then learn changes, which extrapolate where levels would be clipped to the
    # training range; the scaler puts every series on one scale so that one model serves them all.
    return MLForecast(models={"lightgbm": lightgbm.LGBMRegressor(**params)}, freq=spec.frequency,
                      lags=_lags(season), lag_transforms=transforms,
                      date_features=_calendar_features(spec.frequency),
                      target_transforms=[Differences([1]), LocalStandardScaler()])


def _columns(frame: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    keep = ["unique_id", "ds", "y", *spec.known, *spec.static]
    return frame[[column for column in keep if column in frame.columns]]


def backtest(name: str, frame: pd.DataFrame, spec: Spec, windows: int, step: int,
             future: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Rolling-origin forecasts: (unique_id, ds, cutoff, y, <name>; the forecast after the whole history or None).

    Each window's forecasts come from rows up to its cutoff only (cutoffs counted back from each series' own end,
    as statsforecast and mlforecast both do). With `future` (unique_id, ds and any known covariates of the next
    horizon; needs step >= horizon), those rows join the data as one more window whose cutoff is the end of the
    history, with placeholder targets no window ever trains on: the final forecast then comes from the same fit
    as the backtest (statsforecast: the parameters fitted at the first cutoff, carried forward) instead of a
    second full fit, which halved the time of AutoETS on aus_retail."""
    if future is not None:
        ends = frame.groupby("unique_id", sort=False)["ds"].max()
        last = frame.groupby("unique_id", sort=False)["y"].last()
        placeholders = future.assign(y=future["unique_id"].map(last).to_numpy())
        frame = pd.concat([frame, placeholders[[c for c in frame.columns if c in placeholders.columns]]],
                          ignore_index=True).sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
        windows += 1
    result = _backtest(name, frame, spec, windows, step)[["unique_id", "ds", "cutoff", "y", name]]
    if future is None:
        return result, None
    final = result["cutoff"].to_numpy() == result["unique_id"].map(ends).to_numpy()  # the window that starts at the history's end
    return result[~final].reset_index(drop=True), result.loc[final, ["unique_id", "ds", name]].reset_index(drop=True)


def _backtest(name: str, frame: pd.DataFrame, spec: Spec, windows: int, step: int) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "lightgbm":
            result = _mlforecast(spec).cross_validation(
                _columns(frame, spec), n_windows=windows, h=spec.horizon, step_size=step,
                static_features=list(spec.static), refit=True)
        else:
            data = frame[["unique_id", "ds", "y", *(spec.known if name in READS_KNOWN else [])]]
            # refit=False: each series' model is fitted at the first cutoff and only updated with the later
            # windows' observations, as its forecasts would be in production between refits (3x faster for ETS).
            result = _statsforecast([name], spec).cross_validation(
                h=spec.horizon, df=data, n_windows=windows, step_size=step, refit=False,
                input_size=spec.max_history or None)
    return result


def forecast(name: str, history: pd.DataFrame, spec: Spec, future: pd.DataFrame | None,
             ids: list[str] | None = None) -> pd.DataFrame:
    """unique_id, ds, <name>: the next `spec.horizon` steps after the history of the series `ids` (None: all).
    `future` holds the known-future covariates of those steps (unique_id, ds, columns). The global model always
    learns from every series' history, so a series' forecast does not depend on which others are asked for."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "lightgbm":
            model = _mlforecast(spec).fit(_columns(history, spec), static_features=list(spec.static))
            exogenous = future[["unique_id", "ds", *spec.known]] if spec.known else None
            result = model.predict(spec.horizon, X_df=exogenous, ids=ids)
        else:
            history = history if ids is None else history[history["unique_id"].isin(set(ids))]
            if spec.max_history:
                history = history.groupby("unique_id", sort=False).tail(spec.max_history)
            columns = ["unique_id", "ds", "y", *(spec.known if name in READS_KNOWN else [])]
            exogenous = future[["unique_id", "ds", *spec.known]] if spec.known and name in READS_KNOWN else None
            result = _statsforecast([name], spec).forecast(h=spec.horizon, df=history[columns], X_df=exogenous)
    return result.reset_index(drop=True)[["unique_id", "ds", name]]
