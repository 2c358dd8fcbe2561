"""Train / validation / test splits and k folds (stratified for classes, grouped on request)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.model_selection import (GroupKFold, GroupShuffleSplit, KFold, StratifiedGroupKFold, StratifiedKFold,
                                     train_test_split)

from ..errors import ConfigError, DataError

# Fewer training rows and a learner has nothing to fit (LightGBM: "Check failed: (num_data) > (0)").
MIN_TRAIN_ROWS = 2
# Fewer held-out rows and scores such as R² are undefined (NaN): a cross-validation fold, a tuning trial's validation.
MIN_SCORED_ROWS = 2
WHAT_TO_DO = ("add rows, or lower data.test_fraction / data.validation_fraction (0 turns that split off; "
              "data.test_path / data.validation_path take separate files)")


def _stratify_on(y: pd.Series, kind: str, positions: np.ndarray, held: int):
    if kind in ("regression", "multilabel"):  # multi-label rows: random splits (no single class to stratify on)
        return None
    labels = y.to_numpy()[positions]
    counts = pd.Series(labels).value_counts()
    # sklearn cannot stratify a class seen once, nor give every class a row in a part smaller than the class count
    return labels if counts.min() >= 2 and min(held, len(positions) - held) >= len(counts) else None


def _cut(rows: int, fraction: float, grouped: bool = False) -> int:
    """Rows `holdout` takes out of `rows` (counted as train_test_split counts them; none out of one row), or
    groups out of `rows` groups (GroupShuffleSplit: a share of one group is that group)."""
    return math.ceil(fraction * rows) if fraction > 0 and (rows >= 2 or grouped) else 0


def _validation_share(validation_fraction: float, test_fraction: float, has_test: bool) -> float:
    """validation_fraction is a share of all rows; as a share of what is left after the test cut."""
    return min(validation_fraction / max(1e-9, 1 - (0 if has_test else test_fraction)), 0.5)


def sizes(rows: int, *, validation_fraction: float, test_fraction: float, has_validation: bool = False,
          has_test: bool = False, grouped: bool = False) -> tuple[int, int, int]:
    """(train, validation, test) row counts that `split` makes out of `rows` usable rows (or groups)."""
    test = 0 if has_test else _cut(rows, test_fraction, grouped)
    validation = 0 if has_validation else _cut(rows - test, _validation_share(validation_fraction, test_fraction,
                                                                                has_test), grouped)
    return rows - test - validation, validation, test


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def require_rows(rows: int, *, validation_fraction: float, test_fraction: float, has_validation: bool = False,
                 has_test: bool = False, unit: str = "row") -> None:
    """DataError, before any compute, unless `rows` usable rows (or groups) leave enough to train on."""
    options = dict(validation_fraction=validation_fraction, test_fraction=test_fraction,
                   has_validation=has_validation, has_test=has_test, grouped=unit != "row")
    least = MIN_TRAIN_ROWS if unit == "row" else 1
    if sizes(rows, **options)[0] >= least:
        return
    needed = next(n for n in range(rows + 1, rows + 100_000) if sizes(n, **options)[0] >= least)
    train, validation, test = sizes(needed, **options)
    parts = ([f"{_plural(test, 'test ' + unit)} (data.test_fraction={test_fraction})"] if test else []) + \
            ([f"{_plural(validation, 'validation ' + unit)} (data.validation_fraction={validation_fraction})"]
             if validation else []) + [_plural(train, "training " + unit)]
    have = _plural(rows, "usable " + unit) + (" (with a target)" if unit == "row" else " (data.group_column)")
    listed = f"{', '.join(parts[:-1])} and {parts[-1]}" if len(parts) > 1 else parts[0]
    raise DataError(f"only {have}, but the train/validation/test split needs at least {needed}: {listed}; "
                    f"{WHAT_TO_DO}")


def holdout(positions: np.ndarray, fraction: float, y: pd.Series, kind: str, groups, seed: int):
    if fraction <= 0 or len(positions) < 2:
        return positions, positions[:0]
    if groups is not None:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        keep, held = next(splitter.split(positions, groups=groups[positions]))
        return positions[keep], positions[held]
    keep, held = train_test_split(positions, test_size=fraction, random_state=seed,
                                  stratify=_stratify_on(y, kind, positions, _cut(len(positions), fraction)))
    return np.sort(keep), np.sort(held)


def split(y: pd.Series, kind: str, *, validation_fraction: float, test_fraction: float, seed: int,
          groups: np.ndarray | None = None, has_validation: bool = False, has_test: bool = False):
    """Row positions (train, validation, test) over the rows whose target is present.

    The test split is cut first from all rows, so `test_fraction=0.2, seed=0` gives the same test
    rows as `train_test_split(X, y, test_size=0.2, random_state=0)` for regression.
    """
    positions = np.flatnonzero(y.notna().to_numpy())
    options = dict(validation_fraction=validation_fraction, test_fraction=test_fraction,
                   has_validation=has_validation, has_test=has_test)
    require_rows(len(positions), **options)  # a clear message, not a learner failing on an empty split
    if groups is not None:
        require_rows(len(set(groups[positions])), **options, unit="group")
    rest, test = (positions, positions[:0]) if has_test else holdout(positions, test_fraction, y, kind, groups, seed)
    if has_validation:
        train, validation = rest, rest[:0]
    else:
        train, validation = holdout(rest, _validation_share(validation_fraction, test_fraction, has_test), y, kind,
                                    groups, seed + 1)
    if len(train) < MIN_TRAIN_ROWS:  # grouped splits count groups, not rows
        raise DataError(f"only {len(train)} of {len(positions)} usable rows are left to train on after the splits "
                        f"(at least {MIN_TRAIN_ROWS} needed); {WHAT_TO_DO}")
    if kind in ("binary", "multiclass") and y.iloc[train].nunique() < 2:
        raise DataError(f"the training split holds a single class ({y.iloc[train].iloc[0]!r}) of the "
                        f"{y.iloc[positions].nunique()} in {len(positions)} usable rows; {WHAT_TO_DO}")
    return train, validation, test


def _fold_train_rows(rows: int, k: int, validation_fraction: float) -> int:
    """Training rows of a fold's model: the rows outside the (largest) held-out fold, less its validation cut."""
    rest = rows - math.ceil(rows / k)
    return rest - _cut(rest, validation_fraction)


def folds(y: pd.Series, kind: str, k: int, *, seed: int, groups: np.ndarray | None = None,
          validation_fraction: float = 0.0):
    """k (train, test) position pairs over rows with a target; stratified and/or grouped.

    `validation_fraction`: the share each fold's training rows give up for validation (only to check, before any
    compute, that enough rows are left to train on)."""
    if k < 2:
        raise ConfigError(f"--cv: got {k}; need at least 2 folds")
    positions = np.flatnonzero(y.notna().to_numpy())
    labels = y.to_numpy()[positions]
    group_values = groups[positions] if groups is not None else None
    todo = "add rows or change the number of folds (--cv / tune.cv)"
    if group_values is not None and len(set(group_values)) < k:
        raise DataError(f"only {len(set(group_values))} groups (data.group_column) in {len(positions)} usable rows: "
                        f"{k} grouped folds need at least {k}; {todo}")
    if len(positions) < MIN_SCORED_ROWS * k or \
            _fold_train_rows(len(positions), k, validation_fraction) < MIN_TRAIN_ROWS:
        needed = next(n for n in range(max(MIN_SCORED_ROWS * k, len(positions) + 1), len(positions) + 100_000)
                      if _fold_train_rows(n, k, validation_fraction) >= MIN_TRAIN_ROWS)
        raise DataError(f"only {len(positions)} usable rows (with a target): {k}-fold cross-validation needs at least "
                        f"{needed} (each fold holds out {MIN_SCORED_ROWS} or more rows to score, and leaves "
                        f"{MIN_TRAIN_ROWS} or more to train on after data.validation_fraction={validation_fraction}); "
                        f"{todo}, or lower data.validation_fraction")
    if kind not in ("regression", "multilabel"):
        counts = pd.Series(labels).value_counts()
        if counts.min() < k:
            raise DataError(f"class {counts.index[-1]!r} has {counts.min()} row(s): {k} stratified folds need at "
                            f"least {k} rows of every class (one in each fold); add rows of it or use fewer folds "
                            "(--cv / tune.cv)")
        splitter = (StratifiedGroupKFold(k, shuffle=True, random_state=seed) if group_values is not None
                    else StratifiedKFold(k, shuffle=True, random_state=seed))
    else:
        splitter = GroupKFold(k) if group_values is not None else KFold(k, shuffle=True, random_state=seed)
    return [(positions[a], positions[b]) for a, b in splitter.split(positions, labels, group_values)]
