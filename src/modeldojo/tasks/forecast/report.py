"""The forecast report's own sections: the backtest (each candidate's MASE, the ensemble's weights, seconds), plots of
history, forecast and interval for the best and worst test series, and the per-series table."""
from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ...evaluation import plots
from ...evaluation.report import _image, _table
from .metrics import per_series
from .series import parse_times


def backtest_section(task) -> str:
    facts = task.facts
    scores = facts.get("backtest_mase", {})
    table = pd.DataFrame({"model": list(scores), "backtest MASE": list(scores.values()),
                          "weight": [task.weights.get(name, 0.0) if name != "ensemble" else 1.0 for name in scores],
                          "seconds": [facts.get("backtest_seconds", {}).get(name) for name in scores]})
    skipped = "".join(f"<li>{html.escape(name)}: {html.escape(why)}</li>" for name, why in
                      facts.get("skipped", {}).items())
    return (f"<p>Rolling-origin backtest on the training rows: {facts.get('backtest_windows')} windows, "
            f"{facts.get('backtest_step')} steps apart, each forecasting {facts.get('horizon')} steps from the rows "
            f"before its origin. The weighted ensemble is chosen there (greedy selection on mean MASE) and its "
            f"errors calibrate the quantiles.</p>" + _table(table) + (f"<p>Not tried:</p><ul>{skipped}</ul>"
                                                                      if skipped else ""))


@plots._with_report_fonts
def series_plot(history: pd.DataFrame, test: pd.DataFrame, title: str, season: int) -> str:
    plt, (figure, axis) = plots._figure(7.0, 3.2)
    recent = history.tail(max(4 * season, 24))
    axis.plot(recent["ds"], recent["y"], color="#444", linewidth=1, label="history")
    axis.plot(test["ds"], test["y"], color="#222", marker="o", markersize=3, linewidth=1, label="actual")
    axis.plot(test["ds"], test["prediction"], color="#1f77b4", linewidth=1.5, label="forecast")
    if "low" in test and test["low"].notna().any():
        axis.fill_between(test["ds"], test["low"], test["high"], color="#1f77b4", alpha=0.2, label="interval")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7, loc="upper left")
    figure.autofmt_xdate()
    return plots._encode(plt, figure)


def sections(task, frame: pd.DataFrame, y: pd.Series, prediction) -> list[tuple[str, str]]:
    out = [("Backtest", backtest_section(task))]
    series = np.asarray(prediction.context.get("series"))
    if len(series) == 0:
        return out
    levels = {float(name[1:]): np.asarray(values, dtype=float) for name, values in prediction.columns.items()}
    table = per_series(y.to_numpy(dtype=float), np.asarray(prediction.values, dtype=float), series,
                       np.asarray(prediction.context["scale"], dtype=float), levels)
    ranked = table.sort_values("mase")
    time = task.layout.time
    test = pd.DataFrame({"unique_id": series, "ds": parse_times(frame[time]).to_numpy(),
                         "y": y.to_numpy(dtype=float), "prediction": prediction.values})
    if levels:
        test["low"], test["high"] = levels[min(levels)], levels[max(levels)]
    shown = list(dict.fromkeys([*ranked.index[:2], *ranked.index[::-1][:2]]))
    images = []
    for uid in shown:
        label = "best" if uid in ranked.index[:2] else "worst"
        history = task.history[task.history["unique_id"] == uid]
        rows = test[test["unique_id"] == uid].sort_values("ds")
        images.append(_image(series_plot(history, rows, f"{uid} ({label}, MASE {table.loc[uid, 'mase']:.3f})",
                                         task.layout.season_length), f"forecast of {uid}"))
    interval = (f"{min(levels):g}–{max(levels):g} quantiles" if levels else "no quantiles")
    out.append(("Forecasts of the best and worst test series",
                f"<p>Shaded: the {interval}.</p>" + "".join(images)))
    out.append(("Per series (worst first)", _table(ranked[::-1].reset_index(), 100)))
    return out
