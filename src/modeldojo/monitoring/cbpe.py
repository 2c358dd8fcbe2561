"""Confidence-based performance estimation (CBPE, the idea behind NannyML's estimator).

Without labels, a calibrated classifier still says how often it expects to be right: if a row's predicted
class has probability 0.8, it is correct with probability 0.8. Summing such expectations gives the
expected confusion matrix and so the expected accuracy / F1 of a chunk. This stays right under covariate
shift (the inputs move, P(label | inputs) does not) as long as the probabilities stay calibrated; it
cannot see concept drift (P(label | inputs) changing), which only labels reveal.

Alert band: NannyML derives its thresholds from the spread over a handful of reference chunks (as few as
2), which is noisy enough that it alerted on an unshifted chunk. Here the band is the 0.5 % / 99.5 %
quantiles of the *estimated* metric over `bootstrap` (default 500) chunks of `chunk_size` rows resampled
from the reference, i.e. how far the estimate wanders on unshifted data of that chunk size.
"""
from __future__ import annotations

import numpy as np

METRICS = ("accuracy", "f1", "macro_f1")


def _as_matrix(probabilities, classes) -> np.ndarray:
    """(rows, classes) probabilities; a 1-d input is P(classes[1]) of a binary classifier."""
    probabilities = np.asarray(probabilities, dtype=float)
    if probabilities.ndim == 1:
        if len(classes) != 2:
            raise ValueError("1-d probabilities need exactly 2 classes (they are P(classes[1]))")
        probabilities = np.column_stack([1.0 - probabilities, probabilities])
    if probabilities.shape[1] != len(classes):
        raise ValueError(f"{probabilities.shape[1]} probability columns for {len(classes)} classes")
    return probabilities


def _expected_f1_per_class(probabilities: np.ndarray) -> np.ndarray:
    """Expected F1 of each class from the expected confusion counts. For class c with predicted class
    = argmax: TP = sum of p_c over rows predicted c, FP = sum of (1 - p_c) over them, FN = sum of p_c over
    rows predicted otherwise. (A ratio of expectations: close to the expected ratio for chunks of
    hundreds of rows.)"""
    predicted = probabilities.argmax(axis=1)
    scores = []
    for index in range(probabilities.shape[1]):
        chosen = predicted == index
        true_positive = probabilities[chosen, index].sum()
        false_positive = (1.0 - probabilities[chosen, index]).sum()
        false_negative = probabilities[~chosen, index].sum()
        denominator = 2.0 * true_positive + false_positive + false_negative
        scores.append(2.0 * true_positive / denominator if denominator > 0 else 0.0)
    return np.array(scores)


def estimate(probabilities, classes, metric: str = "accuracy") -> float:
    """Expected metric of a chunk from calibrated probabilities alone.

    accuracy: mean over rows of the probability of the predicted (argmax) class.
    f1: binary only, F1 of the positive class classes[1]. macro_f1: mean of the per-class F1.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    probabilities = _as_matrix(probabilities, classes)
    if metric == "accuracy":
        return float(probabilities.max(axis=1).mean())
    per_class = _expected_f1_per_class(probabilities)
    if metric == "f1":
        if len(classes) != 2:
            raise ValueError("metric 'f1' is binary only; use 'macro_f1'")
        return float(per_class[1])
    return float(per_class.mean())


def realised(probabilities, labels, classes, metric: str = "accuracy") -> float:
    """The same metric computed with the true labels (predicted class = argmax of the probabilities)."""
    probabilities = _as_matrix(probabilities, classes)
    predicted = probabilities.argmax(axis=1)
    index_of = {label: index for index, label in enumerate(classes)}
    truth = np.array([index_of[label] for label in labels])
    if metric == "accuracy":
        return float(np.mean(predicted == truth))
    scores = []
    for index in range(len(classes)):
        true_positive = np.sum((predicted == index) & (truth == index))
        wrong = np.sum((predicted == index) != (truth == index))  # FP + FN
        denominator = 2 * true_positive + wrong
        scores.append(2.0 * true_positive / denominator if denominator else 0.0)
    return float(scores[1]) if metric == "f1" else float(np.mean(scores))


def thresholds(reference_probabilities, reference_labels, classes, chunk_size: int, metric: str = "accuracy",
               bootstrap: int = 500, seed: int = 0, level: float = 0.99) -> tuple:
    """(lower, upper) alert band for the estimated metric of a `chunk_size`-row chunk: the (1 - level)/2
    and (1 + level)/2 quantiles of the estimate over `bootstrap` chunks resampled (with replacement)
    from the reference. reference_labels are not needed for the band (the alerts are on the estimate);
    they are accepted so the band and `monitor`'s calibration check use the same inputs."""
    probabilities = _as_matrix(reference_probabilities, classes)
    generator = np.random.default_rng(seed)
    estimates = np.array([
        estimate(probabilities[generator.integers(0, len(probabilities), chunk_size)], classes, metric)
        for _ in range(bootstrap)])
    tail = (1.0 - level) / 2.0
    lower, upper = np.quantile(estimates, [tail, 1.0 - tail])
    return float(lower), float(upper)


def monitor(reference_probabilities, reference_labels, current_probabilities, classes, chunk_size: int,
            metric: str = "accuracy", current_labels=None, bootstrap: int = 500, seed: int = 0,
            level: float = 0.99) -> dict:
    """Estimated metric per consecutive `chunk_size`-row chunk of the current data (a shorter last chunk
    is kept), the reference band, an alert flag per chunk (estimate outside the band), and, when
    current_labels are given, the realised metric beside each estimate.

    Also reports the reference's realised vs estimated metric: a large gap means the probabilities are
    not calibrated, and every estimate below inherits that bias (recalibrate on held-out data first)."""
    reference = _as_matrix(reference_probabilities, classes)
    current = _as_matrix(current_probabilities, classes)
    lower, upper = thresholds(reference, reference_labels, classes, chunk_size, metric, bootstrap, seed, level)
    chunks = []
    for start in range(0, len(current), chunk_size):
        stop = min(start + chunk_size, len(current))
        value = estimate(current[start:stop], classes, metric)
        chunk = {"start": start, "stop": stop, "estimated": value, "lower": lower, "upper": upper,
                 "alert": bool(value < lower or value > upper)}
        if current_labels is not None:
            chunk["realised"] = realised(current[start:stop], list(current_labels)[start:stop], classes, metric)
        chunks.append(chunk)
    reference_estimated = estimate(reference, classes, metric)
    reference_realised = (realised(reference, reference_labels, classes, metric)
                          if reference_labels is not None else None)
    return {"metric": metric, "chunk_size": chunk_size, "lower": lower, "upper": upper, "chunks": chunks,
            "alerts": sum(chunk["alert"] for chunk in chunks),
            "reference_estimated": reference_estimated, "reference_realised": reference_realised}
