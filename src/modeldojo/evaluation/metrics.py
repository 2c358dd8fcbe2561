"""Metrics for classification and regression (scikit-learn underneath)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as sk

from ..data.target import DEFAULT_SEPARATOR, label_matrix, label_sets

PRIMARY = {"regression": "r2", "binary": "roc_auc", "multiclass": "accuracy", "multilabel": "f1_micro"}
# Metrics where lower is better (for comparisons in `dojo runs` and promotions later).
LOWER_IS_BETTER = {"rmse", "mae", "mape", "log_loss", "rmse_log", "hamming_loss", "loss", "perplexity", "mase", "smape",
                   "wape"}


def compute(kind: str, y_true, values, probabilities: np.ndarray | None = None,
            classes: list[str] | None = None, separator: str = DEFAULT_SEPARATOR) -> dict[str, Any]:
    """Flat scalar metrics plus nested per-class table and confusion matrix for classifiers."""
    if kind == "multilabel":
        return multilabel(list(y_true), list(values), probabilities, classes, separator)
    if kind == "regression":
        return regression(np.asarray(y_true, dtype=float), np.asarray(values, dtype=float))
    return classification(np.asarray(y_true, dtype=object), np.asarray(values, dtype=object), probabilities, classes)


def regression(y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    result = {
        "rmse": float(np.sqrt(sk.mean_squared_error(y, predicted))),
        "mae": float(sk.mean_absolute_error(y, predicted)),
        "r2": float(sk.r2_score(y, predicted)) if len(y) > 1 else float("nan"),
        "mape": float(sk.mean_absolute_percentage_error(y, predicted)),
        "rows": int(len(y)),
    }
    if np.all(y > 0) and np.all(predicted > 0):  # the usual house-price score: RMSE of log values
        result["rmse_log"] = float(np.sqrt(sk.mean_squared_error(np.log(y), np.log(predicted))))
    return result


def classification(y: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray | None,
                   classes: list[str] | None) -> dict[str, Any]:
    known = list(classes) if classes is not None else sorted(set(y) | set(predicted))
    unseen = sorted(set(y) - set(known))
    labels = known + unseen  # labels the model never learned still count (as errors) and get a row
    result: dict[str, Any] = {
        "accuracy": float(sk.accuracy_score(y, predicted)),
        "balanced_accuracy": float(sk.balanced_accuracy_score(y, predicted)),
        "rows": int(len(y)),
    }
    for average in ("macro", "weighted"):
        p, r, f, _ = sk.precision_recall_fscore_support(y, predicted, labels=labels, average=average, zero_division=0)
        result.update({f"precision_{average}": float(p), f"recall_{average}": float(r), f"f1_{average}": float(f)})
    if unseen:
        result["unseen_label_rows"] = int(np.isin(y, unseen).sum())
    elif probabilities is not None:  # probability scores are undefined for labels the model cannot output
        result.update(_probability_metrics(y, probabilities, labels))
    p, r, f, support = sk.precision_recall_fscore_support(y, predicted, labels=labels, zero_division=0)
    result["per_class"] = {label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                   "support": int(support[i])} for i, label in enumerate(labels)}
    result["confusion_matrix"] = {"labels": labels,
                                  "matrix": sk.confusion_matrix(y, predicted, labels=labels).tolist()}
    return result


def multilabel(y: list, predicted: list, probabilities: np.ndarray | None, classes: list[str] | None,
               separator: str = DEFAULT_SEPARATOR) -> dict[str, Any]:
    """Label-set metrics: exact-set accuracy, Hamming loss, micro/macro/samples F1, per-label table, ROC-AUC."""
    known = list(classes) if classes is not None else sorted({l for row in label_sets(y + predicted, separator)
                                                              for l in row})
    unseen = sorted({label for row in label_sets(y, separator) for label in row} - set(known))
    labels = known + unseen  # labels the model never learned count as missed and get a row
    truth, guess = label_matrix(y, labels, separator), label_matrix(predicted, labels, separator)
    result: dict[str, Any] = {"accuracy": float(sk.accuracy_score(truth, guess)),  # the whole set must match
                              "hamming_loss": float(sk.hamming_loss(truth, guess)), "rows": int(len(y))}
    for average in ("micro", "macro", "samples"):
        p, r, f, _ = sk.precision_recall_fscore_support(truth, guess, average=average, zero_division=0)
        result.update({f"precision_{average}": float(p), f"recall_{average}": float(r), f"f1_{average}": float(f)})
    if unseen:
        result["unseen_label_rows"] = int(truth[:, len(known):].any(axis=1).sum())
    elif probabilities is not None:
        scored = [i for i in range(len(known)) if 0 < truth[:, i].sum() < len(y)]  # AUC needs both outcomes
        if scored:
            result["roc_auc"] = float(np.mean([sk.roc_auc_score(truth[:, i], probabilities[:, i]) for i in scored]))
    p, r, f, support = sk.precision_recall_fscore_support(truth, guess, zero_division=0)
    result["per_class"] = {label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                   "support": int(support[i])} for i, label in enumerate(labels)}
    return result


def validation_scores(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """What a neural task's validation pass reports (class codes + softmax probabilities): loss, accuracy,
    macro-F1 and, for binary, ROC-AUC — the task's main metrics, so tuning can prune on what it optimises."""
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, 1)
    scores = classification(labels, probabilities.argmax(axis=1), probabilities, list(range(probabilities.shape[1])))
    return {"loss": float(-np.log(picked).mean()),
            **{k: scores[k] for k in ("accuracy", "f1_macro", "roc_auc") if k in scores}}


def _probability_metrics(y: np.ndarray, probabilities: np.ndarray, labels: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    present = set(y)
    clipped = np.clip(probabilities, 1e-15, 1)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    try:
        out["log_loss"] = float(sk.log_loss(y, clipped, labels=labels))
    except ValueError:
        pass
    if len(present) < 2:
        return out  # ROC-AUC is undefined with one class in the evaluation rows
    if len(labels) == 2:
        out["roc_auc"] = float(sk.roc_auc_score(y == labels[1], probabilities[:, 1]))
    elif present == set(labels):
        out["roc_auc"] = float(sk.roc_auc_score(y, clipped, multi_class="ovr", average="macro", labels=labels))
    return out


def scalar(metrics: dict[str, Any]) -> dict[str, float]:
    """Just the numbers (for tracking and tables)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def worst_predictions(frame: pd.DataFrame, kind: str, y_true: pd.Series, values: np.ndarray,
                      probabilities: np.ndarray | None, classes: list[str] | None, count: int,
                      separator: str = DEFAULT_SEPARATOR) -> pd.DataFrame:
    """The rows the model got most wrong, with their inputs — the start of any error analysis."""
    if count <= 0 or len(frame) == 0:
        return pd.DataFrame()
    table = frame.reset_index(drop=True).copy()
    table.insert(0, "actual", np.asarray(y_true))
    table.insert(1, "predicted", values)
    if kind == "regression":
        error = np.abs(np.asarray(y_true, dtype=float) - np.asarray(values, dtype=float))
        table.insert(2, "abs_error", error)
        order = np.argsort(-error)
    elif kind == "multilabel":  # mean distance between each label's probability and its 0/1 truth
        truth = label_matrix(list(y_true), list(classes), separator)
        error = np.abs(truth - probabilities).mean(axis=1)
        table.insert(2, "mean_label_error", error)
        order = np.argsort(-error)
    else:
        index = {label: i for i, label in enumerate(classes)}
        truth = np.array([index.get(label, -1) for label in np.asarray(y_true)])
        confidence = np.where(truth >= 0, probabilities[np.arange(len(truth)), np.maximum(truth, 0)], 0.0)
        table.insert(2, "probability_of_actual", confidence)
        order = np.argsort(confidence)
    return table.iloc[order[:count]]
