"""The `forecast` settings group (time-series forecasting), kept beside config.py to keep that module short."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .config_fields import Group, setting
from .errors import ConfigError

# The forecasting models (tasks/forecast/models.py builds them); listed here so that validating a config imports
# no task.
FORECAST_MODELS = ("seasonal_naive", "ets", "theta", "dynamic_theta", "ces", "arima", "lightgbm")

@dataclass
class ForecastConfig(Group):
    section = "forecast"
    time_column: str | None = setting(None, "Forecasting: the timestamp column (`--time ds`); setting it chooses "
                                            "the forecast task.")
    id_columns: list[str] = setting([], "Forecasting: the column(s) naming a series (`--id store product`); empty = "
                                        "one series, or a wide table (one numeric column per series) when no "
                                        "target is given.")
    horizon: int = setting(0, "Forecasting: steps to forecast (`--horizon 28`); 0 = by frequency (monthly 12, "
                              "quarterly 8, weekly 13, daily 14, hourly 48, otherwise 10).", minimum=0)
    frequency: str = setting("auto", "Forecasting: pandas frequency of the series (MS, QS, W-SUN, D, h, 30min ...); "
                                     "auto = inferred from the timestamps and stated in `dojo check`.")
    season_length: int = setting(0, "Forecasting: steps per season; 0 = by frequency (12 monthly, 4 quarterly, 52 "
                                    "weekly, 7 daily, 24 hourly, 48 half-hourly).", minimum=0)
    models: list[str] = setting([], "Forecasting: candidates seasonal_naive, ets, theta, dynamic_theta, ces, arima, "
                                    "lightgbm; empty = seasonal_naive, dynamic_theta, ces, lightgbm, ets (with "
                                    "covariates: the models that read "
                                    "them, lightgbm and arima). The backtest picks a weighted ensemble of them.")
    quantiles: list[float] = setting([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
                                     "Forecasting: quantile levels predicted beside the point forecast (conformal, "
                                     "from the backtest errors).")
    max_history: int = setting(0, "Forecasting: the statistical models fit on each series' most recent steps only; "
                                  "0 = 20 seasons (at least 100 steps). On aus_retail (monthly, ~400 steps) this "
                                  "took a run from 57 to 42 s and lowered the backtest MASE (docs/benchmarks.md).",
                               minimum=0)
    backtest_windows: int = setting(3, "Forecasting: rolling-origin backtest windows that choose and weigh the "
                                       "models and calibrate the quantiles.", minimum=1)
    backtest_step: int = setting(0, "Forecasting: steps between backtest origins; 0 = the horizon.", minimum=0)
    time_budget: float = setting(0, "Forecasting: seconds for backtesting candidates (cheapest first); candidates "
                                    "not started within it are skipped and listed; 0 = no limit.", minimum=0)
    known_covariates: list[str] = setting([], "Forecasting: columns known in advance for the forecast steps "
                                              "(prices, promotions, temperature forecasts); their future values "
                                              "come with `dojo predict --future`. Other non-target columns that "
                                              "vary within a series are known covariates too; constant ones are "
                                              "static (store type). Each is used by a chosen model or the run "
                                              "stops.")
    static_covariates: list[str] = setting([], "Forecasting: per-series constant columns (store type, region).")
    holidays: str | None = setting(None, "Forecasting: add a public-holiday covariate for this country (JP, US, "
                                         "DE ... from the `holidays` package; daily or finer: is a holiday, "
                                         "coarser: holidays in the period).")
    fill_gaps: Literal["interpolate", "zero", "error"] = setting(
        "interpolate", "Forecasting: missing timestamps inside a series (reported by `dojo check`): linear "
                       "interpolation, zero (no sales that day), or stop with an error.")

    def validate(self) -> None:
        for level in self.quantiles:
            if not 0 < level < 1:
                raise ConfigError(f"forecast.quantiles: {level!r} is not between 0 and 1")
        for name in self.models:
            if name not in FORECAST_MODELS:
                raise ConfigError(f"forecast.models: unknown model {name!r}; allowed: {', '.join(FORECAST_MODELS)}")
