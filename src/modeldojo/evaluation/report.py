"""A self-contained report.html: data checks, metrics, plots, error analysis, importance."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import plots

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left}th{background:#f3f3f3}.error{color:#b00020}.warning{color:#a15c00}.info{color:#555}
img{max-width:100%}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}"""


def _table(frame: pd.DataFrame, max_rows: int = 50) -> str:
    if frame is None or len(frame) == 0:
        return "<p><em>none</em></p>"
    return frame.head(max_rows).to_html(index=False, escape=True, float_format=lambda v: f"{v:.4g}", border=0)


def _image(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def checks_section(checks: dict[str, Any] | None) -> str:
    if not checks:
        return ""
    parts = [f"<h2>Data checks</h2><p>{checks['rows']} rows × {checks['columns']} columns from "
             f"<code>{html.escape(str(checks['source']))}</code>; target <code>{html.escape(str(checks['target']))}</code>"
             f" ({checks.get('kind')}).</p><ul>"]
    for finding in checks["findings"]:
        if finding["severity"] != "info" or finding["code"] == "class_balance":
            parts.append(f'<li class="{finding["severity"]}">{finding["severity"]}: {html.escape(finding["message"])}</li>')
    parts.append("</ul>")
    if checks.get("class_counts"):
        parts.append(_table(pd.DataFrame(list(checks["class_counts"].items()), columns=["class", "rows"])))
    if checks.get("label_issues"):
        parts.append("<h3>Suspected label errors</h3>" + _table(pd.DataFrame(checks["label_issues"])))
    parts.append("<details><summary>Columns</summary>" + _table(pd.DataFrame(checks["column_table"]), 500)
                 + "</details>")
    return "".join(parts)


def metrics_section(metrics: dict[str, Any], title: str = "Test metrics") -> str:
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    parts = [f"<h2>{html.escape(title)}</h2>",
             _table(pd.DataFrame({"metric": list(scalars), "value": list(scalars.values())}))]
    if "per_class" in metrics:
        per_class = pd.DataFrame(metrics["per_class"]).T.reset_index(names="class")
        parts.append("<h3>Per class</h3>" + _table(per_class))
    return "".join(parts)


def write(path: Path, *, title: str, summary: dict[str, Any], metrics: dict[str, Any], kind: str,
          actual=None, predicted=None, worst: pd.DataFrame | None = None,
          importance: dict[str, float] | None = None, checks: dict[str, Any] | None = None,
          cv: dict[str, Any] | None = None, history: list[dict[str, Any]] | None = None,
          images: tuple[str, Path | None] | None = None, sections: list[tuple[str, str]] = ()) -> Path:
    """`images` = (image column, folder its relative paths start from): the error analysis becomes a gallery.
    `sections`: the task's own (title, HTML) sections, placed after the metrics."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts.append(_table(pd.DataFrame({"": list(summary), "value": [str(v) for v in summary.values()]})))
    if metrics:
        parts.append(metrics_section(metrics))
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
    if cv:
        parts.append(f"<h2>{cv['folds']}-fold cross-validation</h2>" + _table(pd.DataFrame(cv["table"])))
    if metrics and kind != "regression" and "confusion_matrix" in metrics:
        matrix = metrics["confusion_matrix"]
        parts.append("<h2>Confusion matrix</h2>" + _image(plots.confusion_matrix(matrix["labels"], matrix["matrix"]),
                                                          "confusion matrix"))
    if kind == "regression" and actual is not None and len(actual):
        actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
        parts.append("<h2>Regression plots</h2>" + _image(plots.predicted_vs_actual(actual, predicted), "predicted vs actual")
                     + _image(plots.residuals(actual, predicted), "residuals"))
    if history:
        parts.append("<h2>Learning curves</h2>" + _image(plots.learning_curves(history), "learning curves"))
    if importance:
        parts.append("<h2>Feature importance</h2>" + _image(plots.feature_importance(importance), "feature importance"))
    if worst is not None and len(worst) and images is not None:
        from .gallery import worst_images

        column, base = images
        parts.append(f"<h2>Error analysis: the {len(worst)} worst predictions</h2>" + worst_images(worst, column, base)
                     + _table(worst.drop(columns=[column]).assign(image=[str(v)[:120] if isinstance(v, str) else
                                                                          "<in memory>" for v in worst[column]])))
    elif worst is not None and len(worst):
        parts.append(f"<h2>Error analysis: the {len(worst)} worst predictions</h2>" + _table(worst))
    parts.append(checks_section(checks))
    parts.append("</body></html>")
    path.write_text("".join(parts), encoding="utf-8")
    return path
