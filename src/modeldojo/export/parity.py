"""Parity: the exported model against the original on the same rows — largest probability difference
(regression: largest relative value difference),
label agreement, and the task metric on both. Beyond the tolerance the export is refused."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..data.target import label_matrix, label_sets
from ..evaluation import metrics as metrics_module

# Defaults (docs/export.md): fp32 must match to float noise; int8 weights may move probabilities a little
# but must not cost more than half a point of the metric.
TOLERANCES = {None: {"max_abs_diff": 1e-4, "max_metric_drop": 0.001},
              "int8": {"max_abs_diff": 0.15, "max_metric_drop": 0.005},
              "fp16": {"max_abs_diff": 0.01, "max_metric_drop": 0.002}}
# The metric-drop rule counts the rows it was measured on. On n rows one changed label moves accuracy by 1/n
# (5.6 points on 18 rows, against an allowed drop of 0.5), so a measured drop fails the export only when it
# exceeds the allowed drop plus what the changed rows can produce by chance. "By chance" is a paired
# randomization test: SWAPS times, each row's two predictions are swapped between the models with probability
# 1/2 (for an export that only adds noise, either model is as likely to hold either prediction); the drops of
# the swapped pairs spread around 0, and NOISE_Z of their standard deviations is the allowance. For accuracy
# that is McNemar's test: d rows that changed between right and wrong allow about 3·√d/n, so one flip never
# fails an export, and on 18 rows it takes 10 or more changed rows, nearly all for the worse. A systematic loss
# fails on any row count (200 of 500 rows flipped for the worse: drop 0.4 against 0.005 + 0.09). Identical
# predictions allow nothing extra: fp32 (and regression, whose values must stay within max_abs_diff) stays
# strict, and max_abs_diff is judged on its own whatever the row count.
SWAPS, NOISE_Z, SEED = 1000, 3.0, 0


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
    changed_rows: int = 0  # rows whose label (regression: value, beyond max_abs_diff) differs
    metric_drop: float = 0.0
    metric_drop_noise: float = 0.0  # NOISE_Z standard deviations of the drop under random row swaps
    metric_drop_limit: float = 0.0  # max_metric_drop_allowed + metric_drop_noise: what the drop is judged against
    decided_by: str = ""  # which criterion failed the export, or "both within tolerance"

    def to_dict(self) -> dict:
        return asdict(self)

    def explain(self) -> str:
        unit = "values" if self.compared == "relative value" else "labels"
        return (f"on {self.rows} rows: largest {self.compared} difference {self.max_abs_diff:.2e} (allowed "
                f"{self.max_abs_diff_allowed:.2e}); {self.changed_rows} of {self.rows} {unit} changed (agreement "
                f"{self.agreement:.4f}); {self.metric} {self.original:.4f} → {self.exported:.4f}, drop "
                f"{self.metric_drop:.4f} judged against {self.metric_drop_limit:.4f} = allowed "
                f"{self.max_metric_drop_allowed} + {self.metric_drop_noise:.4f} chance on {self.rows} rows "
                f"({NOISE_Z:g} s.d. of the drop with rows swapped at random between the models); "
                f"decided by: {self.decided_by}")


def check(original, exported, frame, y, kind: str, separator: str, tolerance: dict) -> ParityReport:
    """`original` and `exported` predict `frame` (→ Prediction); their metrics come from the rows with a label."""
    from ..api import _score

    metric = metrics_module.PRIMARY[kind]
    from ..tasks.base import Task

    task = type(original) if isinstance(original, Task) else Task  # the task's own metrics, as training scored it
    before, reference, _, labelled = _score(task, original.predict, frame, y, kind, separator)
    after, candidate, _, _ = _score(task, exported.predict, frame, y, kind, separator)
    rows = len(reference.values)
    if kind == "regression":
        # Values have the target's units: compare relative to each value (absolute below 1).
        expected, got = np.asarray(reference.values, float), np.asarray(candidate.values, float)
        scale = np.maximum(np.abs(expected), 1.0)
        difference = float((np.abs(expected - got) / scale).max()) if rows else 0.0
        changed = int((~(np.abs(expected - got) / scale <= tolerance["max_abs_diff"])).sum())
    else:
        difference = float(np.abs(reference.probabilities - candidate.probabilities).max()) if rows else 0.0
        changed = int((np.asarray(reference.values) != np.asarray(candidate.values)).sum())
    agreement = 1.0 - changed / rows if rows else 1.0
    before_value, after_value = float(before.get(metric, float("nan"))), float(after.get(metric, float("nan")))
    drop = (after_value - before_value) if metric in metrics_module.LOWER_IS_BETTER else (before_value - after_value)
    noise = _drop_noise(kind, metric, labelled.to_numpy(), reference, candidate, separator) if drop == drop else 0.0
    limit = tolerance["max_metric_drop"] + noise
    compared = "relative value" if kind == "regression" else "probability"
    failed = ([f"largest {compared} difference"] if difference > tolerance["max_abs_diff"] else []) + \
        ([f"{metric} drop beyond the allowed drop plus chance"] if drop > limit else [])  # NaN metric: not judged
    return ParityReport(rows, difference, agreement, metric, before_value, after_value, tolerance["max_abs_diff"],
                        tolerance["max_metric_drop"], not failed, compared, changed, drop, noise, limit,
                        " and ".join(failed) or "both within tolerance")


def _drop_noise(kind: str, metric: str, y: np.ndarray, reference, candidate, separator: str) -> float:
    """NOISE_Z standard deviations of the metric drop when each row's two predictions are swapped between the
    models at random (seeded: the same predictions always get the same allowance). 0 where they agree."""
    score = _swapped_metric(kind, metric, y, reference, candidate, separator)
    if score is None or not len(y):
        return 0.0
    swap = np.random.default_rng(SEED).random((SWAPS, len(y))) < 0.5
    drops = score(swap) - score(~swap)  # the original's role, with the export's predictions where swapped
    drops = drops[np.isfinite(drops)]
    return float(NOISE_Z * drops.std()) if len(drops) else 0.0


def _swapped_metric(kind, metric, y, reference, candidate, separator):
    """metric(mask) for a (swaps × rows) mask: the primary metric of the reference's predictions with the
    candidate's on the masked rows, one value per swap — computed as metrics.compute computes it."""
    if kind == "multiclass" and metric == "accuracy":
        right = [np.asarray(p.values, dtype=object) == y for p in (reference, candidate)]
        return lambda mask: np.where(mask, right[1], right[0]).mean(axis=1)
    if kind == "regression" and metric == "r2":
        total = float(((y.astype(float) - y.astype(float).mean()) ** 2).sum())
        if len(y) < 2 or total == 0:
            return None
        error = [(y.astype(float) - np.asarray(p.values, float)) ** 2 for p in (reference, candidate)]
        return lambda mask: 1 - np.where(mask, error[1], error[0]).sum(axis=1) / total
    if kind == "binary" and metric == "roc_auc":
        classes = list(reference.classes or [])
        if len(classes) != 2 or set(y) - set(classes) or len(set(y)) < 2:
            return None  # metrics.compute has no ROC-AUC here either
        positive = y == classes[1]
        scores = [np.asarray(p.probabilities)[:, 1] for p in (reference, candidate)]

        def auc(mask):  # Mann-Whitney: ties count ½, as roc_auc_score counts them
            from scipy.stats import rankdata

            ranks = rankdata(np.where(mask, scores[1], scores[0]), axis=1)
            n_pos, n_neg = int(positive.sum()), int((~positive).sum())
            return (ranks[:, positive].sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        return auc
    if kind == "multilabel" and metric == "f1_micro":
        known = list(reference.classes or [])
        labels = known + sorted({label for row in label_sets(list(y), separator) for label in row} - set(known))
        truth = label_matrix(list(y), labels, separator).astype(bool)
        counts = []
        for p in (reference, candidate):
            guess = label_matrix(list(p.values), labels, separator).astype(bool)
            counts.append(np.stack([(truth & guess).sum(1), (~truth & guess).sum(1), (truth & ~guess).sum(1)]))

        def f1(mask):
            tp, fp, fn = (np.where(mask, counts[1][i], counts[0][i]).sum(axis=1) for i in range(3))
            denominator = 2 * tp + fp + fn
            return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
        return f1
    return None  # another metric: no allowance, the drop is judged as measured
