"""A self-contained report.html for an Optuna study: summary, best trial, search plots and the trials table.

Plots come from Optuna's own matplotlib visualisations, rendered to base64 PNG with the same helpers as the
evaluation report, so the file opens anywhere (no plotly, no JavaScript, no network). Every plot section
degrades to a short note instead of raising: a broken report must never fail the tuning run it describes.
"""
from __future__ import annotations

import base64
import html
import io
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..evaluation import plots
from ..evaluation.report import STYLE, _image, _table

MAX_TABLE_ROWS = 500  # enough for any sensible search; keeps a huge study's page loadable


def _note(text: str) -> str:
    return f"<p><em>{html.escape(text)}</em></p>"


def _state_name(trial) -> str:
    # Optuna's FAIL reads as "fail"; the report says "failed", alongside complete, pruned, running, waiting.
    name = trial.state.name.lower()
    return "failed" if name == "fail" else name


def _trial_value(trial) -> Any:
    # `trial.value` raises on multi-objective trials; `values` works for both and is None for failed/pruned ones.
    # A pruned trial carries its last intermediate (early-step) score: not comparable with finished ones.
    if trial.values is None or trial.state.name == "PRUNED":
        return None
    return trial.values[0] if len(trial.values) == 1 else ", ".join(f"{value:.4g}" for value in trial.values)


def _best_trial(study):
    try:
        return study.best_trial
    except (ValueError, RuntimeError):  # no completed trial yet, or a multi-objective study (no single best)
        return None


def _render(draw: Callable[[], Any], alt: str, tight_layout: bool = True) -> str:
    """Run one Optuna plotting function and return an <img>, or a note saying why there is none.

    `tight_layout=False` for figures whose colorbar Optuna places itself (the slice plot): tight_layout
    would slide the colorbar over the last panel, so only the saved bounding box is trimmed."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # reports are written on servers without a display
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning

    figures_before = set(plt.get_fignums())
    try:
        # Optuna calls plt.style.use("ggplot"), which would restyle every later plot in the process:
        # the rc_context of font_context restores the global rcParams afterwards (and sets the report fonts,
        # which draw Japanese parameter or metric names too).
        with plots.font_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)  # tight_layout and empty-legend chatter
            axes = np.ravel(draw())
            # Optuna logs a warning and returns empty axes when there is nothing to draw; say so instead.
            if not any(axis.lines or axis.collections or axis.patches for axis in axes):
                return _note(f"{alt}: not shown, Optuna had nothing to draw for this study.")
            figure = axes[0].figure
            if tight_layout:
                return _image(plots._encode(plt, figure), alt)
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", bbox_inches="tight")
            return _image(base64.b64encode(buffer.getvalue()).decode("ascii"), alt)
    except Exception as error:  # noqa: BLE001 - a plot must never break the report, let alone the run
        return _note(f"{alt}: not shown ({type(error).__name__}: {error}).")
    finally:
        # Close whatever this plot opened, including figures left behind by an exception.
        for number in set(plt.get_fignums()) - figures_before:
            plt.close(number)


def _plot_sections(study, metric: str, completed: list, parameter_names: list[str]) -> list[str]:
    from optuna.visualization import matplotlib as optuna_plots

    sections = ["<h2>Optimisation history</h2>", "<h2>Parameter importances</h2>", "<h2>Slice plot</h2>",
                "<h2>Parallel coordinates</h2>"]
    if len(study.directions) > 1:
        return [heading + _note("Not shown: plots need a single-objective study.") for heading in sections]
    if len(completed) < 2:
        why = f"Not shown: {len(completed)} completed trial(s); at least 2 are needed."
        return [heading + _note(why) for heading in sections]
    if not parameter_names:
        return [sections[0] + _render(lambda: optuna_plots.plot_optimization_history(study, target_name=metric),
                                      "optimisation history")] + [
            heading + _note("Not shown: the completed trials have no parameters.") for heading in sections[1:]]
    # Importance is relative between parameters: with one parameter (or one that never varied) it is
    # trivially 100 % and the plot says nothing.
    varied = [name for name in parameter_names
              if len({repr(trial.params.get(name)) for trial in completed}) > 1]
    if len(varied) < 2:
        importances = _note(f"Not shown: importances need at least 2 parameters that vary; "
                            f"{len(varied)} of {len(parameter_names)} varied.")
    elif len({trial.values[0] for trial in completed}) < 2:
        importances = _note(f"Not shown: every completed trial scored the same {metric}.")
    else:
        importances = _render(lambda: optuna_plots.plot_param_importances(study, target_name=metric),
                              "parameter importances")
    return [
        sections[0] + _render(lambda: optuna_plots.plot_optimization_history(study, target_name=metric),
                              "optimisation history"),
        sections[1] + importances,
        sections[2] + _render(lambda: optuna_plots.plot_slice(study, target_name=metric), "slice plot",
                              tight_layout=False),
        sections[3] + _render(lambda: optuna_plots.plot_parallel_coordinate(study, target_name=metric),
                              "parallel coordinates"),
    ]


def _trials_frame(trials: list, parameter_names: list[str], best_number: int | None) -> pd.DataFrame:
    rows = []
    for trial in trials:
        duration = trial.duration.total_seconds() if trial.duration is not None else None
        row = {"best": "★" if trial.number == best_number else "", "trial": trial.number,
               "state": _state_name(trial), "value": _trial_value(trial)}
        # Names as in Study.trials_dataframe() ("params_lr") but stripped to the key the user chose.
        row.update({name: trial.params.get(name) for name in parameter_names})
        row["duration_s"] = round(duration, 2) if duration is not None else None
        rows.append(row)
    # The best trial first, the rest in the order they ran.
    rows.sort(key=lambda row: (row["trial"] != best_number, row["trial"]))
    return pd.DataFrame(rows)


def write(path: Path, study, *, metric: str, direction: str, title: str,
          summary: dict[str, Any] | None = None) -> None:
    """Write report.html for `study` (an optuna.Study): summary table, best trial, optimisation history,
    parameter importances, a slice plot and a parallel-coordinates plot, and the trials table."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    completed = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    # First-seen order keeps the columns in the order the search space defines them.
    parameter_names = list(dict.fromkeys(name for trial in trials for name in trial.params))
    best = _best_trial(study)

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    summary = {"metric": metric, "direction": direction, **(summary or {})}
    parts.append(_table(pd.DataFrame({"": list(summary), "value": [str(value) for value in summary.values()]})))

    counts = {state: sum(_state_name(trial) == state for trial in trials)
              for state in ("complete", "pruned", "failed", "running", "waiting")}
    # The three outcomes always show (a zero is information); running/waiting only while a study is live.
    counts = {state: count for state, count in counts.items() if count or state in ("complete", "pruned", "failed")}
    parts.append("<h2>Trials by state</h2>"
                 + _table(pd.DataFrame({"state": list(counts), "trials": list(counts.values())})))

    parts.append("<h2>Best trial</h2>")
    if best is None:
        parts.append(_note("No best trial: no trial completed (or the study has several objectives)."))
    else:
        best_rows = {"trial": best.number, metric: _trial_value(best), **best.params}
        shown = [f"{value:.6g}" if isinstance(value, float) else str(value) for value in best_rows.values()]
        parts.append(_table(pd.DataFrame({"": list(best_rows), "value": shown})))

    parts.extend(_plot_sections(study, metric, completed, parameter_names))

    parts.append("<h2>Trials</h2>")
    if len(trials) > MAX_TABLE_ROWS:
        parts.append(_note(f"Showing {MAX_TABLE_ROWS} of {len(trials)} trials, best first."))
    parts.append(_table(_trials_frame(trials, parameter_names, best.number if best else None), MAX_TABLE_ROWS))
    parts.append("</body></html>")
    Path(path).write_text("".join(parts), encoding="utf-8")
