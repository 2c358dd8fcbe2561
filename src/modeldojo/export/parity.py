"""Parity: the exported model against the original on the same rows — largest probability difference
(regression: largest relative value difference),
label agreement, and the task metric on both. Beyond the tolerance the export is refused."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..evaluation import metrics as metrics_module

# Defaults (docs/export.md): fp32 must match to float noise; int8 weights may move probabilities a little
# but must not cost more than half a point of the metric.
TOLERANCES = {None: {"max_abs_diff": 1e-4, "max_metric_drop": 0.001},
              "int8": {"max_abs_diff": 0.15, "max_metric_drop": 0.005},
              "fp16": {"max_abs_diff": 0.01, "max_metric_drop": 0.002}}


@dataclass
class ParityReport:
    rows: int
    max_abs_diff: float
    agreement: float
    metric: str
    original: float
    exported: float
    max_abs_diff_allowed: float
    max_metric_drop_allowed: float
    passed: bool
    compared: str = "probability"

    def to_dict(self) -> dict:
        return asdict(self)

    def explain(self) -> str:
        return (f"on {self.rows} rows: largest {self.compared} difference {self.max_abs_diff:.2e} (allowed "
                f"{self.max_abs_diff_allowed:.2e}), label agreement {self.agreement:.4f}, {self.metric} "
                f"{self.original:.4f} → {self.exported:.4f} (allowed drop {self.max_metric_drop_allowed})")


def check(original, exported, frame, y, kind: str, separator: str, tolerance: dict) -> ParityReport:
    """`original` and `exported` predict `frame` (→ Prediction); their metrics come from the rows with a label."""
    from ..api import _score

    metric = metrics_module.PRIMARY[kind]
    before, reference, _, _ = _score(original.predict, frame, y, kind, separator)
    after, candidate, _, _ = _score(exported.predict, frame, y, kind, separator)
    rows = len(reference.values)
    if kind == "regression":
        # Values have the target's units: compare relative to each value (absolute below 1).
        expected, got = np.asarray(reference.values, float), np.asarray(candidate.values, float)
        scale = np.maximum(np.abs(expected), 1.0)
        difference = float((np.abs(expected - got) / scale).max()) if rows else 0.0
        agreement = float(np.mean(np.abs(expected - got) / scale <= tolerance["max_abs_diff"])) if rows else 1.0
    else:
        difference = float(np.abs(reference.probabilities - candidate.probabilities).max()) if rows else 0.0
        agreement = float(np.mean(np.asarray(reference.values) == np.asarray(candidate.values))) if rows else 1.0
    before_value, after_value = float(before.get(metric, float("nan"))), float(after.get(metric, float("nan")))
    drop = (after_value - before_value) if metric in metrics_module.LOWER_IS_BETTER else (before_value - after_value)
    passed = difference <= tolerance["max_abs_diff"] and not drop > tolerance["max_metric_drop"]
    return ParityReport(rows, difference, agreement, metric, before_value, after_value, tolerance["max_abs_diff"],
                        tolerance["max_metric_drop"], passed,
                        "relative value" if kind == "regression" else "probability")
