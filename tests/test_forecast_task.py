"""The forecast task: synthetic series with known seasonality and trend, trained in seconds."""
import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("statsforecast")
pytest.importorskip("mlforecast")

import modeldojo as dojo  # noqa: E402
from modeldojo.errors import DataError  # noqa: E402
from modeldojo.tasks.forecast import engine, models  # noqa: E402

QUICK = {"forecast.models": ["seasonal_naive", "theta"], "forecast.backtest_windows": 2}


def sales(stores=("a", "b", "c"), months=60, seed=0, temperature=False) -> pd.DataFrame:
    """Monthly sales: level + trend + yearly season + noise; with `temperature`, a known driver of sales."""
    rng = np.random.default_rng(seed)
    rows = []
    for number, store in enumerate(stores):
        for month in range(months):
            heat = 15 + 10 * np.sin(2 * np.pi * month / 12) + rng.normal(0, 3)
            value = 40 + 20 * number + 0.5 * month + 8 * np.sin(2 * np.pi * month / 12) + rng.normal(0, 1)
            row = {"ds": (pd.Timestamp("2019-01-01") + pd.DateOffset(months=month)).strftime("%Y-%m-%d"),
                   "store": store, "y": round(value + (2.0 * heat if temperature else 0.0), 3)}
            if temperature:
                row["temperature"] = round(heat, 2)
            rows.append(row)
    return pd.DataFrame(rows)


def train(frame, tmp_path, **overrides):
    settings = {"forecast.time_column": "ds", "forecast.id_columns": ["store"], "forecast.horizon": 6, **QUICK,
                **overrides}
    return dojo.train(frame, target="y", runs_dir=str(tmp_path), tracking=False, name="sales", overwrite=True,
                      overrides=settings)


def test_learns_trend_and_season_better_than_seasonal_naive(tmp_path):
    result = train(sales(), tmp_path, **{"forecast.models": ["seasonal_naive", "theta", "ets", "lightgbm"]})
    assert result.run.status()["status"] == "completed"
    backtest = result.info["backtest_mase"]
    assert backtest["ensemble"] < backtest["seasonal_naive"]
    assert result.metrics["mase"] < 1.0 and result.metrics["series"] == 3 and result.metrics["rows"] == 18
    assert 0.0 <= result.metrics["coverage_80"] <= 1.0
    assert (result.path / "report.html").read_text(encoding="utf-8").count("<img") >= 2


def test_the_test_split_is_each_series_last_horizon(tmp_path):
    frame = sales()
    result = train(frame, tmp_path)
    facts = json.loads((result.path / "data.json").read_text())
    assert facts["test_rows"] == 18 and facts["train_rows"] == len(frame) - 18
    # after the test the history holds every row, and the stored forecast starts after the data's end
    model = dojo.load(result.path)
    assert str(model._task.history["ds"].max().date()) == "2023-12-01"


def test_backtest_windows_never_see_rows_after_their_cutoff():
    from modeldojo.tasks.forecast.task import future_steps

    frame = sales(months=48).rename(columns={"store": "unique_id"})
    frame["ds"] = pd.to_datetime(frame["ds"])
    spec = models.Spec("MS", 12, 6)
    future = future_steps(frame, "MS", 6)
    for name in ("seasonal_naive", "theta", "ets", "lightgbm"):
        for steps in (None, future):  # with the extra window after the history (placeholder targets) too
            clean, ahead = models.backtest(name, frame, spec, windows=3, step=6, future=steps)
            assert (ahead is None) == (steps is None)
            for cutoff in sorted(clean["cutoff"].unique()):
                # wreck every row after this window's cutoff: the window's forecasts must not move
                spoiled = frame.copy()
                spoiled.loc[spoiled["ds"] > cutoff, "y"] = 1e6
                window = models.backtest(name, spoiled, spec, windows=3, step=6, future=steps)[0]
                mine = clean[clean["cutoff"] == cutoff].reset_index(drop=True)
                theirs = window[window["cutoff"] == cutoff].reset_index(drop=True)
                np.testing.assert_allclose(mine[name], theirs[name], rtol=1e-9, err_msg=f"{name} at {cutoff}")
                assert (mine["ds"] > cutoff).all() and len(mine) == 18
            if ahead is not None:  # the forecast after the history: the next 6 months of each series
                assert len(ahead) == 18 and ahead["ds"].min() == pd.Timestamp("2023-01-01")
                assert np.isfinite(ahead[name]).all()


def test_quantiles_are_monotone_and_predict_forecasts_from_new_history(tmp_path):
    frame = sales()
    result = train(frame, tmp_path)
    future = pd.DataFrame({"store": ["a"] * 3, "ds": ["2024-01-01", "2024-02-01", "2024-03-01"]})
    prediction = result.model.predict_frame(future)
    levels = np.column_stack([prediction.columns[name] for name in sorted(prediction.columns, key=lambda c: float(c[1:]))])
    assert np.isfinite(prediction.values).all()
    assert (np.diff(levels, axis=1) >= -1e-9).all()
    # history rows (with the target) replace the stored history: the next horizon of that series is forecast
    history = frame[frame["store"] == "b"].head(40)
    table = result.model.predict_frame(history).table
    assert list(table.columns[:3]) == ["store", "ds", "prediction"] and len(table) == 6
    assert str(pd.Timestamp(table["ds"].iloc[0]).date()) == "2022-05-01"


def test_a_covariate_no_chosen_model_reads_stops_the_run(tmp_path):
    frame = sales(temperature=True)
    with pytest.raises(DataError, match="covariate 'temperature'.*lightgbm"):
        train(frame, tmp_path, **{"forecast.models": ["ets", "theta"]})
    assert not (tmp_path / "sales").exists() or json.loads((tmp_path / "sales" / "run.json").read_text())[
        "status"] != "completed"


def test_known_covariate_is_used_and_needed_for_the_future(tmp_path):
    frame = sales(temperature=True, months=72)
    result = train(frame, tmp_path, **{"forecast.models": []})
    assert set(result.info["weights"]) <= {"lightgbm", "arima"}
    without = train(frame.drop(columns=["temperature"]), tmp_path / "without", **{"forecast.models": ["lightgbm"]})
    assert result.metrics["mase"] < without.metrics["mase"]
    with pytest.raises(DataError, match="temperature.*missing"):
        result.model.predict_frame(pd.DataFrame({"store": ["a"], "ds": ["2025-01-01"], "temperature": [None]}))


def test_checks_name_lines_and_columns(tmp_path):
    frame = sales(stores=("a",), months=40)
    frame.loc[3, "ds"] = "not a date"
    frame.loc[7, "ds"] = frame.loc[6, "ds"]
    path = tmp_path / "sales.csv"
    frame.to_csv(path, index=False)
    report = dojo.check(str(path), target="y", overrides={"forecast.time_column": "ds", "forecast.id_columns": ["store"]})
    messages = " ".join(f.message for f in report.errors)
    assert "line 5" in messages and "'ds'" in messages  # header is line 1: row 3 is line 5
    assert "line 8" in messages and "line 9" in messages
    gappy = sales(stores=("a",), months=40).drop(index=[10, 11])
    report = dojo.check(gappy, target="y", overrides={"forecast.time_column": "ds", "forecast.horizon": 3})
    assert not report.errors
    assert any(f.code == "gaps" and "2 missing" in f.message for f in report.warnings)
    assert any("frequency MS" in f.message for f in report.findings)


def test_wide_table_and_holidays(tmp_path):
    long = sales()
    wide = long.pivot(index="ds", columns="store", values="y").reset_index()
    result = dojo.train(wide, runs_dir=str(tmp_path), tracking=False, name="wide",
                        overrides={"forecast.time_column": "ds", "forecast.horizon": 6, **QUICK})
    assert result.metrics["series"] == 3
    daily = pd.DataFrame({"ds": pd.date_range("2024-01-01", periods=120, freq="D")})
    daily["y"] = 10 + (daily["ds"].dt.dayofweek >= 5) * 5.0
    from modeldojo.tasks.forecast import series

    layout = series.Layout("ds", [], "y", known=[series.HOLIDAY], frequency="D", holidays="JP")
    with_holidays = series.add_holidays(series.to_long(daily, layout), layout)
    assert with_holidays.loc[with_holidays["ds"] == "2024-01-01", series.HOLIDAY].item() == 1.0  # 元日
    assert with_holidays[series.HOLIDAY].sum() >= 5


def test_greedy_ensemble_weights_prefer_the_better_model():
    table = pd.DataFrame({"unique_id": ["a"] * 4, "cutoff": [1] * 4, "y": [1.0, 2.0, 3.0, 4.0], "scale": 1.0,
                          "good": [1.1, 2.1, 2.9, 4.0], "bad": [3.0, 0.0, 5.0, 1.0]})
    weights = engine.greedy_ensemble(table, ["good", "bad"])
    assert weights == {"good": 1.0}


def test_japanese_cp932_file_with_japanese_months(tmp_path):
    frame = sales()
    months = pd.to_datetime(frame["ds"])
    japanese = pd.DataFrame({"年月": [f"{m.year}年{m.month}月" for m in months],
                             "店舗": frame["store"].map({"a": "東京", "b": "大阪", "c": "名古屋"}), "売上": frame["y"]})
    path = tmp_path / "売上.csv"
    japanese.to_csv(path, index=False, encoding="cp932")
    result = dojo.train(str(path), target="売上", runs_dir=str(tmp_path), tracking=False, name="uriage",
                        overrides={"forecast.time_column": "年月", "forecast.id_columns": ["店舗"],
                                   "forecast.horizon": 6, **QUICK})
    assert result.metrics["series"] == 3
    table = result.model.predict_frame(pd.DataFrame({"店舗": ["東京"], "年月": ["2024年1月"]}))
    assert np.isfinite(table.values).all()


def test_holiday_covariate_is_computed_for_the_future_too(tmp_path):
    days = pd.date_range("2023-01-01", periods=200, freq="D")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"ds": days.strftime("%Y-%m-%d"), "y": 100 + 10 * (days.dayofweek >= 5) +
                          rng.normal(0, 1, len(days)), "holiday": 0})  # a user's own column of that name
    result = dojo.train(frame.drop(columns=["holiday"]), target="y", runs_dir=str(tmp_path), tracking=False,
                        name="daily", overrides={"forecast.time_column": "ds", "forecast.horizon": 7,
                                                 "forecast.holidays": "JP", "forecast.models": ["lightgbm"],
                                                 "forecast.backtest_windows": 2})
    assert not result.model._task.stored.empty  # the holiday covariate of the next week is ours to compute
    table = result.model.predict_frame(frame.drop(columns=["holiday"]).tail(60)).table
    assert len(table) == 7 and np.isfinite(table["prediction"]).all()
    with_users_column = dojo.train(frame, target="y", runs_dir=str(tmp_path), tracking=False, name="own",
                                   overrides={"forecast.time_column": "ds", "forecast.horizon": 7,
                                              "forecast.holidays": "JP", "forecast.backtest_windows": 2})
    assert "dojo_public_holiday" in with_users_column.model._task.layout.known


def test_evaluate_on_actuals_that_arrived_after_the_data(tmp_path):
    full = sales(months=66)
    months = pd.to_datetime(full["ds"])
    result = train(full[months < "2024-01-01"], tmp_path)
    assert "ds" in (result.path / "MODEL_CARD.md").read_text(encoding="utf-8")  # the card lists the inputs
    evaluated = dojo.evaluate(result.path, data=full[months >= "2024-01-01"])
    assert evaluated["metrics"]["rows"] == 18 and evaluated["metrics"]["mase"] < 2
