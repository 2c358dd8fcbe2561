import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from modeldojo.data import balance, splits

from conftest import make_classification


def test_test_split_matches_sklearn_for_regression():
    y = pd.Series(np.arange(100, dtype=float))
    train, validation, test = splits.split(y, "regression", validation_fraction=0.1, test_fraction=0.2, seed=0)
    _, expected = train_test_split(np.arange(100), test_size=0.2, random_state=0)
    assert sorted(test) == sorted(expected)
    assert len(validation) == 10 and len(train) == 70
    assert not set(train) & set(validation) | set(train) & set(test)


def test_stratified_and_reproducible():
    y = make_classification(400, classes=("a", "b", "c"))["label"]
    y[:300] = "a"
    first = splits.split(y, "multiclass", validation_fraction=0.1, test_fraction=0.25, seed=3)
    second = splits.split(y, "multiclass", validation_fraction=0.1, test_fraction=0.25, seed=3)
    assert all((a == b).all() for a, b in zip(first, second))
    shares = y.iloc[first[2]].value_counts(normalize=True)
    assert abs(shares["a"] - y.value_counts(normalize=True)["a"]) < 0.02


def test_rows_without_target_are_left_out():
    y = pd.Series([1.0, np.nan] * 50)
    parts = splits.split(y, "regression", validation_fraction=0.1, test_fraction=0.2, seed=0)
    assert all(y.iloc[part].notna().all() for part in parts)


def test_grouped_split_and_folds_keep_groups_together():
    y = pd.Series(np.random.default_rng(0).normal(size=200))
    groups = np.repeat(np.arange(40), 5).astype(str)
    train, validation, test = splits.split(y, "regression", validation_fraction=0.1, test_fraction=0.2, seed=0,
                                           groups=groups)
    assert not set(groups[train]) & set(groups[test]) and not set(groups[train]) & set(groups[validation])
    for fold_train, fold_test in splits.folds(y, "regression", 5, seed=0, groups=groups):
        assert not set(groups[fold_train]) & set(groups[fold_test])


def test_stratified_folds_cover_every_row_once():
    y = make_classification(100)["label"]
    tests = np.concatenate([test for _, test in splits.folds(y, "binary", 4, seed=0)])
    assert sorted(tests) == list(range(100))


def test_class_weights_and_resampling():
    y = pd.Series(["a"] * 90 + ["b"] * 10)
    weights = balance.sample_weights(y, "auto")
    assert weights[0] * 90 == pytest.approx(weights[-1] * 10)
    assert balance.sample_weights(pd.Series(["a", "b"] * 10), "auto") is None
    assert balance.sample_weights(y, "none") is None
    over = balance.resample(np.arange(100), y, "oversample", 0)
    assert (y.iloc[over].value_counts() == 90).all()
    under = balance.resample(np.arange(100), y, "undersample", 0)
    assert (y.iloc[under].value_counts() == 10).all()
