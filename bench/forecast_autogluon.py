"""AutoGluon-TimeSeries rolling-origin backtest, run INSIDE AutoGluon's own virtual environment.

Never import this from the project venv: `bench/forecast_peers.py` starts it as a subprocess with the
interpreter of `~/.cache/modeldojo-bench/autogluon-venv` (AutoGluon pins its own pandas, numpy,
statsforecast and torch, which must not meet the project's). It only needs pandas and AutoGluon.

For each outer window it trains a fresh `TimeSeriesPredictor` on each series' history strictly up to
that window's cutoff and forecasts the next `horizon` steps. The models are the non-hub part of
AutoGluon 1.6.3's default preset ("medium_quality" -> hyperparameters "light", see
`autogluon/timeseries/configs/hyperparameter_presets.py`): SeasonalNaive, ETS, Theta,
RecursiveTabular, DirectTabular, plus the WeightedEnsemble it fits on top. Chronos2/Toto2 are left
out because they load weights from a model hub, which this machine cannot reach.

Windows are aligned to each series' own end, exactly as statsforecast's `cross_validation` does:
window w (0 = oldest) of a series of length n tests positions
[n - horizon - (windows - 1 - w) * step, ... + horizon), and its cutoff is the last training date.

  python bench/forecast_autogluon.py --data series.csv --horizon 12 --windows 3 --step 12 \
      --freq MS --season-length 12 --out result.json [--time-limit 600]

Writes JSON: {"forecasts": [{unique_id, ds, cutoff, mean, q0.1, q0.9}, ...], "windows": [per-window
timings, models fitted, validation leaderboard, warnings], "versions": {...}}.
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

QUANTILE_LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
# The non-hub models of AutoGluon 1.6.3's default ("light") hyperparameter preset, default settings.
HYPERPARAMETERS = {"SeasonalNaive": {}, "ETS": {}, "Theta": {}, "RecursiveTabular": {}, "DirectTabular": {}}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="CSV with columns unique_id, ds, y")
    parser.add_argument("--horizon", type=int, required=True)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--step", type=int, default=None, help="distance between cutoffs (default: horizon)")
    parser.add_argument("--freq", required=True, help="pandas frequency string, e.g. MS, QS, D")
    parser.add_argument("--season-length", type=int, required=True)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--time-limit", type=int, default=None, help="seconds per window's fit (default: none)")
    return parser.parse_args()


def training_part(frame: pd.DataFrame, horizon: int, windows: int, step: int, window: int) -> pd.DataFrame:
    """Each series' rows before window `window`'s test span (window 0 is the oldest)."""
    # Count back from each series' own end so ragged series line up with statsforecast's windows.
    holdout = horizon + (windows - 1 - window) * step
    position_from_end = frame.groupby("unique_id").cumcount(ascending=False)
    return frame[position_from_end >= holdout]


class WarningCollector(logging.Handler):
    """Keeps AutoGluon's WARNING log lines (e.g. a model that failed and was skipped) for the report."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_window(frame: pd.DataFrame, arguments: argparse.Namespace, window: int, work_folder: Path) -> tuple[pd.DataFrame, dict]:
    from autogluon.timeseries import TimeSeriesDataFrame, TimeSeriesPredictor

    train = training_part(frame, arguments.horizon, arguments.windows, arguments.step, window)
    cutoffs = train.groupby("unique_id")["ds"].max()
    train_data = TimeSeriesDataFrame.from_data_frame(train, id_column="unique_id", timestamp_column="ds")

    collector = WarningCollector()
    autogluon_logger = logging.getLogger("autogluon")
    autogluon_logger.addHandler(collector)
    caught: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as python_warnings:
            warnings.simplefilter("always")
            started = time.perf_counter()
            predictor = TimeSeriesPredictor(
                target="y",
                prediction_length=arguments.horizon,
                eval_metric="MASE",
                eval_metric_seasonal_period=arguments.season_length,
                quantile_levels=QUANTILE_LEVELS,
                freq=arguments.freq,
                path=str(work_folder / f"window-{window}"),
                verbosity=0,
                log_to_file=False,
            )
            predictor.fit(
                train_data,
                hyperparameters=HYPERPARAMETERS,
                enable_ensemble=True,
                random_seed=0,
                time_limit=arguments.time_limit,
            )
            fitted = time.perf_counter()
            predictions = predictor.predict(train_data)
            predicted = time.perf_counter()
            caught = sorted({f"{w.category.__name__}: {w.message}" for w in python_warnings})
    finally:
        autogluon_logger.removeHandler(collector)

    leaderboard = predictor.leaderboard(silent=True)
    forecasts = predictions.reset_index().rename(columns={"item_id": "unique_id", "timestamp": "ds"})
    forecasts = forecasts[["unique_id", "ds", "mean", "0.1", "0.9"]].rename(columns={"0.1": "q0.1", "0.9": "q0.9"})
    forecasts["cutoff"] = forecasts["unique_id"].map(cutoffs)
    timing = {
        "window": window,
        "cutoffs": sorted({str(cutoff.date()) for cutoff in cutoffs}),
        "series": int(len(cutoffs)),
        "training_rows": int(len(train)),
        "fit_seconds": round(fitted - started, 3),
        "predict_seconds": round(predicted - fitted, 3),
        "wall_seconds": round(predicted - started, 3),
        "best_model": predictor.model_best,
        "models_fitted": predictor.model_names(),
        "models_requested": sorted(HYPERPARAMETERS),
        "validation_leaderboard": leaderboard[["model", "score_val", "fit_time_marginal", "pred_time_val"]]
        .round(4)
        .to_dict(orient="records"),
        "autogluon_warnings": collector.messages,
        "python_warnings": caught[:20],
    }
    return forecasts, timing


def main() -> None:
    arguments = parse_arguments()
    arguments.step = arguments.step or arguments.horizon
    frame = pd.read_csv(arguments.data, parse_dates=["ds"])[["unique_id", "ds", "y"]]
    frame = frame.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)

    all_forecasts, timings = [], []
    with tempfile.TemporaryDirectory(prefix="autogluon-backtest-") as work_folder:
        for window in range(arguments.windows):
            forecasts, timing = run_window(frame, arguments, window, Path(work_folder))
            all_forecasts.append(forecasts)
            timings.append(timing)
            print(f"window {window}: cutoffs {timing['cutoffs']}, fit {timing['fit_seconds']} s, "
                  f"predict {timing['predict_seconds']} s, best {timing['best_model']}", flush=True)

    import autogluon.timeseries
    import torch

    forecasts = pd.concat(all_forecasts, ignore_index=True)
    for column in ("ds", "cutoff"):
        forecasts[column] = forecasts[column].dt.strftime("%Y-%m-%d %H:%M:%S")
    result = {
        "forecasts": forecasts.to_dict(orient="records"),
        "windows": timings,
        "settings": {
            "horizon": arguments.horizon, "windows": arguments.windows, "step": arguments.step,
            "freq": arguments.freq, "season_length": arguments.season_length,
            "time_limit": arguments.time_limit, "hyperparameters": HYPERPARAMETERS,
            "quantile_levels": QUANTILE_LEVELS, "eval_metric": "MASE", "random_seed": 0,
        },
        "versions": {"autogluon.timeseries": autogluon.timeseries.__version__, "torch": torch.__version__,
                     "pandas": pd.__version__},
    }
    Path(arguments.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
