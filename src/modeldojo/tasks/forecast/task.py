"""The forecast task: a long table of series (time, id columns, target, covariates) → a backtested, probabilistic
forecast of the next horizon of every series.

Rows and the shared pieces: the test split is the last horizon of each series (split_rows, never random); fit()
backtests the candidates on the training rows (engine.select), keeps the weighted ensemble and its conformal
quantiles, and forecasts the next horizon. predict() reads rows of series keys and timestamps (and known
covariates): rows with a target are history to forecast from (replacing the stored history of their series), rows
without one are the steps to forecast. The model folder holds only data files (JSON and Parquet): the history, the
choice of models and weights, the quantile offsets and the stored forecast; nothing is pickled.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import DataError
from ..base import TASKS, Prediction, Task
from . import checks as checks_module, engine, series as series_module
from .codec import ForecastCodec
from .models import READS_KNOWN, READS_STATIC, Spec

STATE = "forecast.json"
LAYOUT = "forecast_layout"  # frame.attrs key


@TASKS.register("forecast")
class ForecastTask(Task):
    name = "forecast"
    supported_kinds = ("forecast",)
    row_label_checks = False
    reads_history = True
    no_cross_validation = ("a forecast is validated by its rolling-origin backtest (forecast.backtest_windows, "
                           "in the run's report), never by random folds")
    no_tuning = ("a forecast run already searches its models: the rolling-origin backtest picks and weighs them "
                 "(forecast.models, forecast.backtest_windows); use `dojo train`")
    codec = ForecastCodec
    export_formats = ("forecast",)
    onnx_shared_parity = False
    quantizable = False

    def __init__(self, config, kind, target):
        super().__init__(config, kind, target)
        self.layout: series_module.Layout | None = None
        self.weights: dict[str, float] = {}
        self.offsets = pd.DataFrame()
        self.history = pd.DataFrame()
        self.stored = pd.DataFrame()  # the forecast after the stored history (when it needs no future inputs)
        self.backtest = pd.DataFrame()
        self.facts: dict[str, Any] = {}

    # -- the data ------------------------------------------------------------------------
    @classmethod
    def claims(cls, config):
        return bool(config.forecast.time_column)

    @classmethod
    def detect(cls, frame, target):
        return 0.0  # a table with dates is still a table: forecasting is asked for (--time or task.name)

    @classmethod
    def normalize(cls, frame, config):
        settings = config.forecast
        time = settings.time_column or series_module.find_time_column(frame)
        if time and time in frame.columns and not config.data.target and not settings.id_columns:
            numeric = [c for c in frame.columns if c != time and pd.api.types.is_numeric_dtype(frame[c])]
            if len(numeric) >= 2 and len(numeric) == frame.shape[1] - 1:
                return series_module.widen_to_long(frame, time)
        return frame

    @classmethod
    def check_data(cls, frame, config, label_errors):
        report, layout = checks_module.check_series(frame, config)
        if layout is not None and not report.errors:  # split_rows and fit read it instead of checking again
            frame.attrs[LAYOUT] = layout.to_dict()
        return report

    @classmethod
    def target_values(cls, frame, target, kind, separator):
        return pd.to_numeric(frame[target], errors="coerce")

    @classmethod
    def split_rows(cls, frame, y, config):
        """Test: each series' last horizon (series too short for it and a backtest stay whole in training)."""
        layout = _checked_layout(frame, config)
        long = series_module.to_long(frame, layout)
        positions = np.arange(len(frame))
        if config.data.test_path or config.data.test_fraction == 0:
            return positions, positions[:0], positions[:0]
        step = pd.tseries.frequencies.to_offset(layout.frequency)
        last = long.groupby("unique_id")["ds"].transform("max")
        first = long.groupby("unique_id")["ds"].transform("min")
        cut = last - step * layout.horizon
        windows, step_size = config.forecast.backtest_windows, config.forecast.backtest_step or layout.horizon
        needed = checks_module.minimum_length(layout.season_length, layout.horizon, windows, step_size)
        long_enough = (first + step * needed) <= cut
        test = (long["ds"] > cut) & long_enough
        return positions[~test.to_numpy()], positions[:0], positions[test.to_numpy()]

    @classmethod
    def example(cls, kind, seed=0):
        rng = np.random.default_rng(seed)
        rows = []
        for store, level in (("north", 50.0), ("south", 80.0), ("east", 30.0)):
            for month in range(60):
                value = level + 0.4 * month + 10 * np.sin(2 * np.pi * month / 12) + rng.normal(0, 2)
                rows.append({"month": pd.Timestamp("2019-01-01") + pd.DateOffset(months=month), "store": store,
                             "sales": round(value, 2)})
        overrides = {"forecast.time_column": "month", "forecast.id_columns": ["store"], "forecast.horizon": 6,
                     "forecast.backtest_windows": 2, "forecast.models": ["seasonal_naive", "theta"]}
        return pd.DataFrame(rows), "sales", overrides

    @classmethod
    def example_inputs(cls, frame, target):
        """The six months after the example's data, for two of its stores."""
        months = pd.date_range(frame["month"].max() + pd.DateOffset(months=1), periods=6, freq="MS")
        return pd.DataFrame([{"month": month, "store": store} for store in ("north", "east") for month in months])

    # -- fitting -------------------------------------------------------------------------
    def _spec(self, horizon: int | None = None) -> Spec:
        layout = self.layout
        return Spec(layout.frequency, layout.season_length, horizon or layout.horizon, list(layout.known),
                    list(layout.static), threads=self.config.train.threads or 2, seed=self.config.train.seed,
                    max_history=self.config.forecast.max_history or max(20 * layout.season_length, 100))

    def fit(self, train, y_train, validation, y_validation, events):
        from ... import events as ev

        frame = train.assign(**{self.target: y_train.to_numpy()})
        frame.attrs = dict(train.attrs)
        self.layout = layout = _checked_layout(frame, self.config)
        settings = self.config.forecast
        long = series_module.regularise(series_module.to_long(frame, layout), layout, settings.fill_gaps)
        step = settings.backtest_step or layout.horizon
        needed = checks_module.minimum_length(layout.season_length, layout.horizon, settings.backtest_windows, step)
        sizes = long.groupby("unique_id")["y"].transform("size")
        candidates = checks_module.candidate_models(layout, self.config)

        def progress(name: str, done: int, total: int) -> None:
            events.emit(ev.STAGE, name="backtest", detail=f"{name} ({done + 1}/{total})")
            events.emit(ev.PROGRESS, name="backtest models", completed=done, total=total)

        scored = long[sizes >= needed]
        # The forecast after the history comes out of the backtest's own pass where the future inputs are ours
        # (none, or holidays) and the windows do not overlap it (models.backtest).
        future = self._own_future(scored, layout.horizon, steps_only=True) \
            if self._future_known_by_us() and step >= layout.horizon else None
        fitted = engine.select(scored, self._spec(), candidates, settings.backtest_windows, step,
                               list(settings.quantiles), settings.time_budget, progress, future)
        self._require_covariates_read(fitted.weights)
        self.weights, self.offsets, self.backtest, self.history = fitted.weights, fitted.offsets, fitted.backtest, long
        if self._future_known_by_us():
            parts = []
            if fitted.future is not None:
                parts.append(engine.assemble(fitted.future, scored, self._spec(), self.weights, self.offsets))
            rest = long[~long["unique_id"].isin(set(fitted.future["unique_id"]))] if fitted.future is not None \
                else long
            if len(rest):  # series too short for the backtest, or no shared pass: fitted on their own
                events.emit(ev.STAGE, name="forecast", detail="fitting the chosen models on the whole history")
                parts.append(engine.final_forecast(long, self._spec(), self.weights, self.offsets,
                                                   self._own_future(rest, layout.horizon),
                                                   list(rest["unique_id"].unique())))
            self.stored = pd.concat(parts, ignore_index=True)
        self.facts = {"frequency": layout.frequency, "season_length": layout.season_length,
                      "horizon": layout.horizon, "series": int(long["unique_id"].nunique()),
                      "backtest_windows": settings.backtest_windows, "backtest_step": step,
                      **engine.summary(fitted)}
        return {**self.facts, "backtest_mase_ensemble": fitted.scores["ensemble"]}

    def _require_covariates_read(self, weights: dict[str, float]) -> None:
        for column in self.layout.known + self.layout.static:
            readers = READS_KNOWN if column in self.layout.known else READS_STATIC
            if not set(weights) & set(readers):
                raise DataError(f"covariate {column!r} is not read by the chosen models ({', '.join(weights)}); "
                                f"models that read it: {', '.join(readers)}: set forecast.models to them, or leave "
                                f"the column out with --drop {column}")

    def _future_known_by_us(self) -> bool:
        """The future covariates are ours to compute (none, or only the holiday calendar)."""
        return all(column == series_module.HOLIDAY for column in self.layout.known)

    def _own_future(self, history: pd.DataFrame, horizon: int, steps_only: bool = False) -> pd.DataFrame | None:
        """The forecast steps' rows (unique_id, ds, and holiday when the holiday covariate is the only known
        one); None when the models need no future inputs (unless `steps_only`)."""
        if not self.layout.known and not steps_only:
            return None
        steps = future_steps(history, self.layout.frequency, horizon)
        return series_module.add_holidays(steps, self.layout) if self.layout.known else steps

    # -- predicting ----------------------------------------------------------------------
    def predict(self, frame):
        from .predicting import forecast_rows

        return forecast_rows(self, frame)

    @classmethod
    def scores(cls, kind, actual, prediction, separator):
        from .metrics import scores

        return scores(actual, prediction.values, prediction.context, prediction.columns)

    @classmethod
    def primary_metric(cls, kind):
        return "mase"

    @classmethod
    def worst(cls, frame, kind, y, prediction, count, separator):
        table = pd.DataFrame(cls.scores(kind, y.to_numpy(), prediction, separator)["per_series"])
        return table.sort_values("mase", ascending=False).head(count).reset_index(drop=True)

    def extra_evaluation(self, frame, y, prediction, events):
        from .report import sections

        written = sections(self, frame, y, prediction)
        if self.config.train.refit_full:
            self._absorb(frame, y, events)
        return {"backtest_mase": self.facts.get("backtest_mase", {})}, written

    def _absorb(self, frame: pd.DataFrame, y: pd.Series, events) -> None:
        """After the test: the test rows join the history and the stored forecast starts from the end of the data
        (train.refit_full), which is what `dojo predict` and `dojo serve` should answer from."""
        from ... import events as ev

        events.emit(ev.STAGE, name="forecast", detail="refitting on the whole data, test rows included")
        rows = series_module.to_long(frame.assign(**{self.target: y.to_numpy()}), self.layout)
        self.history = series_module.regularise(pd.concat([self.history, rows], ignore_index=True), self.layout,
                                                self.config.forecast.fill_gaps)
        if self._future_known_by_us():
            self.stored = engine.final_forecast(self.history, self._spec(), self.weights, self.offsets,
                                                self._own_future(self.history, self.layout.horizon))
        self.facts["history_end"] = str(self.history["ds"].max())

    @property
    def input_columns(self):
        return self.layout.inputs if self.layout else []

    def describe(self):
        members = ", ".join(f"{name} {weight:.2f}" for name, weight in self.weights.items())
        return {**super().describe(), "learner": f"ensemble({members})" if len(self.weights) > 1 else members,
                "features": self.input_columns,
                **{k: v for k, v in self.facts.items() if k in ("frequency", "horizon", "series", "season_length")}}

    def export_format(self, folder, format, quantize, frame, y):
        from .exporting import export_folder

        return export_folder(self, folder, frame, y)

    @classmethod
    def exported_runtime(cls, folder, manifest, threads=0):
        from .exporting import runtime

        return runtime(folder, manifest)

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        state = {"layout": self.layout.to_dict(), "weights": self.weights, "facts": self.facts,
                 "offsets": {str(step): row for step, row in self.offsets.to_dict(orient="index").items()}}
        (directory / STATE).write_text(json.dumps(state, indent=2, default=float), encoding="utf-8")
        self.history.to_parquet(directory / "history.parquet", index=False)
        self.backtest.to_parquet(directory / "backtest.parquet", index=False)
        if not self.stored.empty:
            self.stored.to_parquet(directory / "forecast.parquet", index=False)

    @classmethod
    def load(cls, directory, meta):
        from ...config import Config

        directory = Path(directory)
        task = cls(Config.from_dict(meta.get("config")), meta["kind"], meta["target"])
        state = json.loads((directory / STATE).read_text(encoding="utf-8"))
        task.layout = series_module.Layout.from_dict(state["layout"])
        task.weights, task.facts = state["weights"], state["facts"]
        task.offsets = pd.DataFrame.from_dict(state["offsets"], orient="index")
        task.offsets.index = task.offsets.index.astype(int)
        task.history = pd.read_parquet(directory / "history.parquet")
        task.backtest = pd.read_parquet(directory / "backtest.parquet")
        if (directory / "forecast.parquet").is_file():
            task.stored = pd.read_parquet(directory / "forecast.parquet")
        return task


def _checked_layout(frame: pd.DataFrame, config) -> series_module.Layout:
    """The layout `dojo check` found for these rows (check_data leaves it on the frame), else checked now."""
    if LAYOUT in frame.attrs:
        return series_module.Layout.from_dict(frame.attrs[LAYOUT])
    report, layout = checks_module.check_series(frame, config)
    if report.errors:
        raise DataError("\n".join(f.message for f in report.errors))
    return layout


def future_steps(history: pd.DataFrame, frequency: str, horizon: int) -> pd.DataFrame:
    """unique_id, ds: the `horizon` steps after each series' last timestamp."""
    offset = pd.tseries.frequencies.to_offset(frequency)
    last = history.groupby("unique_id", sort=False)["ds"].max()
    rows = [(uid, time) for uid, end in last.items()
            for time in pd.date_range(end + offset, periods=horizon, freq=frequency)]
    return pd.DataFrame(rows, columns=["unique_id", "ds"])
