"""`dojo monitor RUN --data new.csv | --logs DIR`: is the world the model sees still the one it learned from?

Reference = the run's own training rows (its data file and seed rebuild the split); current = the new rows, or the
inputs of a prediction log (`dojo serve --log-predictions`). Reported:
- per-column drift (drift.table_drift: two-sample tests corrected across columns, flagged only past an effect-size
  floor, PSI beside); free-text and image columns are tested together on the model's own embeddings (the text
  encoder's or the image backbone's pooled vector: drift.embedding_drift, MMD with a permutation test), or listed
  as not tested when the task has no embeddings;
- drift of the model's predictions on both (the predicted value, or the predicted class);
- for classifiers, the accuracy estimated without labels (cbpe.monitor, chunk by chunk, against a band bootstrapped
  from the run's test rows);
- the realised test metrics where the new rows carry the target.
Written to <run>/monitoring/<time>/summary.json and report.html; `alert` is true when a column or the predictions
drifted or an estimate left its band, and `dojo monitor` then exits non-zero so a pipeline can stop on it.
"""
from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import tasks
from ..config import Config
from ..errors import ConfigError, DataError
from ..model import Model
from ..runs import Run, write_json
from . import cbpe, drift

EMBEDDING_SAMPLE = 500  # rows per side embedded for the text / image drift test (MMD's cost grows with the square)
EXIT_CODE = 7  # drift or a performance alert: not an error of the command, a signal for the pipeline


def _logged(logs, run: Run) -> list[dict]:
    """The log's answered requests for this run: a shared store holds other models' requests too."""
    from ..serving.prediction_log import read_logs

    entries = [entry for entry in read_logs(logs) if entry.get("status") == 200]
    ours = [entry for entry in entries
            if str((entry.get("model") or {}).get("source", "")).startswith(str(run.directory.resolve()))]
    names = {(entry.get("model") or {}).get("name") for entry in entries}
    if ours or len(names) <= 1:  # one model in the log (served from another folder or machine): it is this one
        return ours or entries
    raise ConfigError(f"the log holds requests to {len(names)} models ({', '.join(sorted(map(str, names)))}) and "
                      f"none served from run {run.name}'s folder; monitor the run that was served")


def _current_rows(model: Model, config: Config, data, logs, run: Run) -> pd.DataFrame:
    if (data is None) == (logs is None):
        raise ConfigError("dojo monitor: give the new rows, --data FILE or --logs DIR|URL (not both)")
    if logs is not None:
        entries = _logged(logs, run)
        rows = [row for entry in entries for row in entry.get("inputs") or []]
        if not rows:
            from ..serving.log_stores import is_database_url, redacted_url

            logs = redacted_url(str(logs)) if is_database_url(logs) else logs
            raise DataError(f"{logs}: no logged predictions to monitor (dojo serve --log-predictions {logs})")
        return pd.DataFrame.from_records(rows)
    frame = data if isinstance(data, pd.DataFrame) else tasks.read(data, format=config.data.format,
                                                                    delimiter=config.data.delimiter)
    return model._normalize(frame)


def _absolute_images(frame: pd.DataFrame, columns) -> pd.DataFrame:
    """Image paths relative to the new rows' file (or folder) made absolute: the rows are later re-read as a
    DataFrame (`Model.evaluate`), which forgets the file they came from."""
    from ..data.images import base_folder, resolve

    base, present = base_folder(frame), [c for c in columns if c in frame.columns]
    if base is None or not present:
        return frame
    out = frame.copy(deep=False)
    for column in present:
        out[column] = [str(resolve(cell, base)) if isinstance(cell, str) else cell for cell in frame[column]]
    out.attrs = dict(frame.attrs)
    return out


def monitor(reference: str | Path, data=None, *, logs: str | Path | None = None, runs_dir: str | Path = "runs",
            correction: str = "holm", alpha: float = 0.05, chunk_size: int = 0) -> dict[str, Any]:
    from .. import api

    run = Run.open(reference, runs_dir)
    model = Model.load(run.model_dir)
    config = Config.from_dict(model.meta["config"])
    if config.data.path is None:
        raise ConfigError(f"run {run.name} was trained from an in-memory DataFrame: its reference rows are unknown")
    prepared = api.prepare(config.data.path, config, run_checks=False)
    train_rows, _, test_rows = api._split(prepared)
    current = _current_rows(model, config, data, logs, run)
    checks = run.read_json("checks.json") or {}
    current = _absolute_images(current, checks.get("image_columns", []))
    untested = [c for c in model.features if c in set(checks.get("free_text", [])) | set(checks.get("image_columns", []))]
    columns = [c for c in model.features if c not in untested and c in current.columns]
    if not columns and not untested:
        raise DataError(f"the new rows have none of the model's columns ({', '.join(model.features)})")
    reference_rows = prepared.frame.iloc[train_rows]
    report = drift.table_drift(reference_rows[columns], current[columns], correction=correction, alpha=alpha)
    summary: dict[str, Any] = {"run": run.name, "reference_rows": int(len(train_rows)), "current_rows": len(current),
                               "drift": report.to_dict(), "untested_columns": untested}

    missing = [c for c in model.features if c not in current.columns]
    if untested and not missing:  # free text, images: drift of the model's own embeddings (MMD, permutation test)
        sample = EMBEDDING_SAMPLE
        then = reference_rows.sample(min(sample, len(reference_rows)), random_state=0)[model.features]
        now = current.sample(min(sample, len(current)), random_state=0)[model.features]
        vectors = model._fitted().embeddings(then)
        if vectors is not None:
            summary["embedding_drift"] = {"columns": untested, **drift.embedding_drift(
                vectors, model._fitted().embeddings(now), alpha=alpha)}
            summary["untested_columns"] = []
    if not missing:  # the model's view: drift of its predictions, and its estimated performance
        predicted_now = model.predict_frame(current[model.features])
        predicted_then = model.predict_frame(reference_rows[model.features])
        kind = "regression" if model.kind == "regression" else "classification"
        if model.kind in ("regression", "binary", "multiclass"):
            summary["prediction_drift"] = drift.prediction_drift(predicted_then.values, predicted_now.values, kind,
                                                                 alpha=alpha)
        if predicted_now.probabilities is not None and model.kind in ("binary", "multiclass") and len(test_rows):
            test = prepared.frame.iloc[test_rows]
            held_out = model.predict_frame(test[model.features])
            labels = prepared.y.iloc[test_rows].astype(str).tolist()
            size = chunk_size or max(50, min(1000, len(current)))
            summary["estimated_performance"] = cbpe.monitor(
                held_out.probabilities, labels, predicted_now.probabilities, [str(c) for c in predicted_now.classes],
                size, "accuracy",
                current_labels=current[model.target].astype(str).tolist() if model.target in current.columns
                and current[model.target].notna().all() else None)
    if model.target in current.columns and current[model.target].notna().any() and not missing:
        summary["realised"] = {k: v for k, v in model.evaluate(current).items() if isinstance(v, (int, float))}
    estimated = summary.get("estimated_performance")
    if estimated:  # an estimate above the band is good news, not an alert
        estimated["degraded_chunks"] = sum(chunk["estimated"] < chunk["lower"] for chunk in estimated["chunks"])
    summary["alert"] = bool(report.dataset_drift or summary.get("prediction_drift", {}).get("drifted")
                            or summary.get("embedding_drift", {}).get("drifted")
                            or (estimated or {}).get("degraded_chunks"))
    out = run.directory / "monitoring" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    (out / "report.html").write_text(_html(summary, reference_rows, current, report), encoding="utf-8")
    summary["folder"] = str(out)
    return summary


def _html(summary: dict[str, Any], reference: pd.DataFrame, current: pd.DataFrame, report) -> str:
    from ..evaluation.report import STYLE, _image, _table

    table = pd.DataFrame([{key: row.get(key) for key in ("column", "kind", "test", "p_value", "p_value_corrected",
                                                         "effect_name", "effect_size", "floor", "psi", "drifted")}
                          for row in report.columns])
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Monitoring {html.escape(summary['run'])}"
             f"</title><style>{STYLE}</style></head><body><h1>Monitoring {html.escape(summary['run'])}</h1>",
             f"<p>Reference: {summary['reference_rows']} training rows; current: {summary['current_rows']} rows. "
             f"<strong>{'ALERT' if summary['alert'] else 'no alert'}</strong>: {len(report.drifted)} of "
             f"{len(report.columns)} columns drifted ({report.correction} correction, α {report.alpha}; a column "
             "is flagged only when its corrected p-value is below α and its effect size reaches the floor).</p>",
             "<h2>Columns</h2>", _table(table, 500)]
    for column in report.drifted[:6]:
        parts.append(f"<h3>{html.escape(str(column))}</h3>" + _image(_histogram(reference[column], current[column]),
                                                                      f"distribution of {column}"))
    if "embedding_drift" in summary:
        found = summary["embedding_drift"]
        parts.append(f"<h2>Text and image drift (the model's embeddings)</h2><p>MMD² {found.get('statistic', 0):.4g}, "
                     f"permutation p-value {found.get('p_value', 1):.3g}: "
                     f"{'drifted' if found.get('drifted') else 'no drift'}.</p>")
    if "prediction_drift" in summary:
        parts.append("<h2>Predictions</h2>" + _table(pd.DataFrame([summary["prediction_drift"]])))
    if "estimated_performance" in summary:
        parts.append("<h2>Estimated accuracy without labels (CBPE)</h2>"
                     + _table(pd.DataFrame(summary["estimated_performance"]["chunks"])))
    if "realised" in summary:
        parts.append("<h2>Realised metrics (the new rows carry the target)</h2>"
                     + _table(pd.DataFrame([summary["realised"]])))
    if summary["untested_columns"]:
        parts.append(f"<p>Not tested (free text, images): {html.escape(', '.join(summary['untested_columns']))}</p>")
    return "".join(parts) + "</body></html>"


def _histogram(reference: pd.Series, current: pd.Series) -> str:
    from ..evaluation import plots

    @plots._with_report_fonts
    def draw() -> str:
        plt, (figure, axis) = plots._figure(6.0, 3.0)
        if pd.api.types.is_numeric_dtype(reference) and reference.nunique() > 10:
            values = pd.concat([reference, current]).dropna().to_numpy(dtype=float)
            bins = np.histogram_bin_edges(values, bins=30)
            axis.hist(reference.dropna(), bins=bins, alpha=0.5, density=True, label="reference")
            axis.hist(current.dropna(), bins=bins, alpha=0.5, density=True, label="current")
        else:
            shares = pd.DataFrame({"reference": reference.astype(str).value_counts(normalize=True),
                                   "current": current.astype(str).value_counts(normalize=True)}).fillna(0).head(20)
            shares.plot.bar(ax=axis)
        axis.legend(fontsize=8)
        return plots._encode(plt, figure)

    return draw()
