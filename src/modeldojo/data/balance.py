"""Class imbalance: per-row weights and random over/under-sampling of the training split."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.class_weight import compute_sample_weight

from .checks import IMBALANCE_WARNING


def imbalance_ratio(y: pd.Series) -> float:
    counts = y.value_counts()
    return float(counts.iloc[0] / counts.iloc[-1]) if len(counts) > 1 else 1.0


def sample_weights(y: pd.Series, mode: str) -> np.ndarray | None:
    """'balanced' weights each class by n / (k · count); 'auto' does so only when imbalance ≥ 3."""
    if mode == "none" or (mode == "auto" and imbalance_ratio(y) < IMBALANCE_WARNING):
        return None
    return compute_sample_weight("balanced", y.to_numpy())


def class_weights(y: pd.Series, codes: np.ndarray, classes: int, mode: str) -> list[float] | None:
    """Per-class loss weights (class code order) from the per-row weights above; None when not weighting."""
    rows = sample_weights(y, mode)
    if rows is None:
        return None
    return [float(rows[codes == c][0]) if (codes == c).any() else 1.0 for c in range(classes)]


def resample(positions: np.ndarray, y: pd.Series, mode: str, seed: int) -> np.ndarray:
    """Row positions after randomly over-sampling every class up to the largest, or down to the smallest."""
    if mode == "none":
        return positions
    rng = np.random.default_rng(seed)
    labels = y.to_numpy()[positions]
    classes, counts = np.unique(labels, return_counts=True)
    goal = counts.max() if mode == "oversample" else counts.min()
    chosen = []
    for label, count in zip(classes, counts):
        members = positions[labels == label]
        if count == goal:
            chosen.append(members)
        elif mode == "oversample":
            chosen.append(np.concatenate([members, rng.choice(members, goal - count, replace=True)]))
        else:
            chosen.append(rng.choice(members, goal, replace=False))
    return np.sort(np.concatenate(chosen))
