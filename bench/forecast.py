"""Forecasting: modeldojo's zero-config forecast against statsforecast's models and AutoGluon-TimeSeries, on the same
rolling-origin backtest (3 outer windows, one horizon apart, aligned to each series' end), scored by one function
(bench/forecast_peers.py's `score_backtest`: mean MASE over series and windows, the geometric mean of MASE relative
to seasonal naive, 80 % interval coverage).

For each outer window, ours is a whole `modeldojo.train` on the rows up to the cutoff (its own checks, its inner
3-window backtest that picks and weighs the models and calibrates the quantiles, the final fit, the run folder
written), then `predict` of the next horizon; its wall time is all of that. Peers come from forecast_peers.py's JSON
(run it first; AutoGluon runs in its own virtual environment there).

Covariates: daily vic_elec (h=14; daily max temperature and the holiday flag, their actual values standing in for
the forecasts a user would pass) — the LightGBM model with them as known covariates against the same model without.

    nice -n 10 .venv/bin/python bench/forecast_peers.py --datasets aus_retail tourism --out bench-forecast-peers.json
    nice -n 10 .venv/bin/python bench/forecast.py --peers bench-forecast-peers.json --out bench-forecast.json
    nice -n 10 .venv/bin/python bench/forecast.py --datasets vic_elec_daily --out bench-forecast-vic.json
    # smoke (~1 min): one window of tourism
    nice -n 10 .venv/bin/python bench/forecast.py --datasets tourism --windows 1 --out /tmp/forecast-smoke.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forecast_peers import load_dataset, score_backtest, statsforecast_backtest, statsforecast_models  # noqa: E402

from modeldojo import api  # noqa: E402

warnings.filterwarnings("ignore")


def cutoffs(frame: pd.DataFrame, horizon: int, windows: int, freq: str) -> list[pd.Series]:
    """Per window (oldest first): each series' cutoff, the last timestamp it may train on."""
    offset = pd.tseries.frequencies.to_offset(freq)
    last = frame.groupby("unique_id")["ds"].max()
    return [last - offset * (horizon * (windows - index)) for index in range(windows)]


def ours(frame: pd.DataFrame, freq: str, horizon: int, windows: int, overrides: dict | None = None,
         covariates: list[str] = ()) -> tuple[pd.DataFrame, list[float], dict]:
    """Rolling-origin forecasts of the zero-config train → predict, and each window's wall seconds."""
    rows, seconds, facts = [], [], {}
    for cutoff in cutoffs(frame, horizon, windows, freq):
        limit = frame["unique_id"].map(cutoff)
        history = frame[frame["ds"] <= limit].reset_index(drop=True)
        future = frame[(frame["ds"] > limit) & (frame["ds"] <= limit + pd.tseries.frequencies.to_offset(freq)
                                                  * horizon)]
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            result = api.train(history[["unique_id", "ds", "y", *covariates]], "y", overrides={
                "forecast.time_column": "ds", "forecast.id_columns": ["unique_id"], "forecast.horizon": horizon,
                "forecast.frequency": freq, "data.test_fraction": 0, "tracking.enabled": False,
                "run.runs_dir": folder, "evaluate.report": False, **(overrides or {})})
            prediction = result.model.predict_frame(future[["unique_id", "ds", *covariates]].reset_index(drop=True))
            seconds.append(time.perf_counter() - started)
            facts = {k: result.info.get(k) for k in ("weights", "backtest_mase", "backtest_seconds")}
        rows.append(pd.DataFrame({"unique_id": future["unique_id"].to_numpy(), "ds": future["ds"].to_numpy(),
                                  "cutoff": future["unique_id"].map(cutoff).to_numpy(),
                                  "mean": prediction.values, "lo": prediction.columns["q0.1"],
                                  "hi": prediction.columns["q0.9"]}))
        print(f"  window {len(seconds)}/{windows}: {seconds[-1]:.1f} s, weights {facts.get('weights')}", flush=True)
    return pd.concat(rows, ignore_index=True), seconds, facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["aus_retail", "tourism"])
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--peers", help="forecast_peers.py's JSON, for the comparison table")
    parser.add_argument("--out", default="bench-forecast.json")
    parser.add_argument("--models", nargs="+", help="forecast.models for ours (default: its zero-config choice)")
    args = parser.parse_args()
    peers = json.loads(Path(args.peers).read_text()) if args.peers else {}
    report = {}
    for name in args.datasets:
        frame, freq, horizon, season = load_dataset(name)
        print(f"{name}: {frame['unique_id'].nunique()} series, h={horizon}, season {season}", flush=True)
        if name == "vic_elec_daily":
            report[name] = covariate_comparison(frame, freq, horizon, season, args.windows)
            continue
        # seasonal naive, scored here too: the reference of the geometric-mean ratio (same windows, same scorer)
        naive = statsforecast_backtest(frame, statsforecast_models(season)["SeasonalNaive"], freq, horizon)[0]
        baseline = score_backtest(frame, naive, season)
        settings = {"forecast.models": args.models} if args.models else {}
        forecasts, seconds, facts = ours(frame, freq, horizon, args.windows, settings)
        scores = score_backtest(frame, forecasts, season, baseline)
        scores.pop("per_series_mase")
        report[name] = {"modeldojo": {**scores, "wall_seconds": round(sum(seconds), 1),
                                      "window_seconds": [round(s, 1) for s in seconds], "last_window": facts}}
        print_comparison(name, report[name]["modeldojo"], peers)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.out}")


def covariate_comparison(frame, freq, horizon, season, windows) -> dict:
    """LightGBM with temperature and holidays as known covariates against LightGBM without them."""
    out = {}
    for label, covariates in (("lightgbm with covariates", ["temperature_max", "holiday"]),
                              ("lightgbm without covariates", [])):
        forecasts, seconds, _ = ours(frame, freq, horizon, windows, {"forecast.models": ["lightgbm"]}, covariates)
        scores = score_backtest(frame, forecasts, season)
        scores.pop("per_series_mase")
        out[label] = {**scores, "wall_seconds": round(sum(seconds), 1)}
        print(f"  {label}: mean MASE {scores['mean_mase']:.3f}, coverage80 {scores['coverage80']:.3f}, "
              f"{sum(seconds):.1f} s", flush=True)
    return out


def print_comparison(name: str, mine: dict, peers: dict) -> None:
    systems = peers.get("datasets", {}).get(name, {}).get("systems", {})
    rows = [(system, values) for system, values in systems.items() if isinstance(values, dict)
            and "mean_mase" in values] + [("modeldojo (zero-config)", mine)]
    print(f"{'system':<28} {'mean MASE':>10} {'gmean rel SN':>13} {'cover80':>8} {'wall s':>8}")
    for system, values in rows:
        gmean, coverage = values.get("gmean_relative_mase"), values.get("coverage80")
        wall = values.get("wall_seconds")
        print(f"{system:<28} {values['mean_mase']:>10.3f} {gmean if gmean is None else round(gmean, 3)!s:>13} "
              f"{coverage if coverage is None else round(coverage, 3)!s:>8} {wall if wall is None else round(wall, 1)!s:>8}")
    best = {system: values for system, values in rows if system.startswith("AutoGluon")}
    for system, values in best.items():
        if values.get("wall_seconds"):
            print(f"  vs {system}: MASE {mine['mean_mase'] - values['mean_mase']:+.3f}, wall time ratio "
                  f"{mine['wall_seconds'] / values['wall_seconds']:.2f}")


if __name__ == "__main__":
    main()
