"""Train / validation / test splits and k folds (stratified for classes, grouped on request)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import (GroupKFold, GroupShuffleSplit, KFold, StratifiedGroupKFold, StratifiedKFold,
                                     train_test_split)

from ..errors import ConfigError, DataError


def _stratify_on(y: pd.Series, kind: str, positions: np.ndarray):
    if kind in ("regression", "multilabel"):  # multi-label rows: random splits (no single class to stratify on)
        return None
    labels = y.to_numpy()[positions]
    counts = pd.Series(labels).value_counts()
    return labels if counts.min() >= 2 else None  # sklearn cannot stratify a class seen once


def holdout(positions: np.ndarray, fraction: float, y: pd.Series, kind: str, groups, seed: int):
    if fraction <= 0 or len(positions) < 2:
        return positions, positions[:0]
    if groups is not None:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        keep, held = next(splitter.split(positions, groups=groups[positions]))
        return positions[keep], positions[held]
    keep, held = train_test_split(positions, test_size=fraction, random_state=seed,
                                  stratify=_stratify_on(y, kind, positions))
    return np.sort(keep), np.sort(held)


def split(y: pd.Series, kind: str, *, validation_fraction: float, test_fraction: float, seed: int,
          groups: np.ndarray | None = None, has_validation: bool = False, has_test: bool = False):
    """Row positions (train, validation, test) over the rows whose target is present.

    The test split is cut first from all rows, so `test_fraction=0.2, seed=0` gives the same test
    rows as `train_test_split(X, y, test_size=0.2, random_state=0)` for regression.
    """
    positions = np.flatnonzero(y.notna().to_numpy())
    rest, test = (positions, positions[:0]) if has_test else holdout(positions, test_fraction, y, kind, groups, seed)
    if has_validation:
        return rest, rest[:0], test
    # validation_fraction is a share of all rows; convert to a share of what is left after the test cut.
    share = validation_fraction / max(1e-9, 1 - (0 if has_test else test_fraction))
    train, validation = holdout(rest, min(share, 0.5), y, kind, groups, seed + 1)
    if len(train) == 0:
        raise DataError(f"only {len(positions)} usable rows: nothing left to train on after the splits")
    return train, validation, test


def folds(y: pd.Series, kind: str, k: int, *, seed: int, groups: np.ndarray | None = None):
    """k (train, test) position pairs over rows with a target; stratified and/or grouped."""
    if k < 2:
        raise ConfigError(f"--cv: got {k}; need at least 2 folds")
    positions = np.flatnonzero(y.notna().to_numpy())
    labels = y.to_numpy()[positions]
    group_values = groups[positions] if groups is not None else None
    if kind not in ("regression", "multilabel"):
        smallest = pd.Series(labels).value_counts().min()
        if smallest < k:
            raise DataError(f"the smallest class has {smallest} rows; cannot make {k} stratified folds")
        splitter = (StratifiedGroupKFold(k, shuffle=True, random_state=seed) if group_values is not None
                    else StratifiedKFold(k, shuffle=True, random_state=seed))
    else:
        splitter = GroupKFold(k) if group_values is not None else KFold(k, shuffle=True, random_state=seed)
    return [(positions[a], positions[b]) for a, b in splitter.split(positions, labels, group_values)]
