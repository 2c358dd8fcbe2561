import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from modeldojo.data import balance, splits
from modeldojo.errors import DataError

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


def test_too_few_rows_say_how_many_the_split_needs():
    y = pd.Series([3.0, 6.0])  # `a,b,y` with two data rows: was LightGBMError "Check failed: (num_data) > (0)"
    with pytest.raises(DataError, match=r"only 2 usable rows \(with a target\), but the train/validation/test split "
                                        r"needs at least 4: 1 test row \(data.test_fraction=0.2\), 1 validation row "
                                        r"\(data.validation_fraction=0.1\) and 2 training rows; add rows, or lower"):
        splits.split(y, "regression", validation_fraction=0.1, test_fraction=0.2, seed=0)
    assert [len(p) for p in splits.split(y, "regression", validation_fraction=0, test_fraction=0, seed=0)] == [2, 0, 0]
    with pytest.raises(DataError, match="needs at least 3: 1 test row .* and 2 training rows"):
        splits.split(y, "regression", validation_fraction=0, test_fraction=0.2, seed=0)
    groups = np.array(["g"] * 10)
    with pytest.raises(DataError, match=r"only 1 usable group \(data.group_column\)"):
        splits.split(pd.Series(np.arange(10.0)), "regression", validation_fraction=0, test_fraction=0.2, seed=0,
                     groups=groups)


def test_sizes_are_the_split_sizes():
    for rows in range(1, 40):
        for test_fraction, validation_fraction in [(0.2, 0.1), (0.25, 0), (0, 0.3), (0.5, 0.2)]:
            expected = splits.sizes(rows, validation_fraction=validation_fraction, test_fraction=test_fraction)
            if expected[0] < splits.MIN_TRAIN_ROWS:
                continue
            parts = splits.split(pd.Series(np.arange(rows, dtype=float)), "regression", seed=0,
                                 validation_fraction=validation_fraction, test_fraction=test_fraction)
            assert tuple(map(len, parts)) == expected


def test_small_classification_splits_fall_back_to_random_or_say_why():
    y = pd.Series(list("abc") * 4)  # 12 rows, 3 classes: a 2-row validation split cannot hold every class
    train, validation, test = splits.split(y, "multiclass", validation_fraction=0.15, test_fraction=0, seed=0)
    assert len(validation) == 2 and y.iloc[train].nunique() >= 2  # was sklearn's "test_size = 2 should be ≥ 3"
    y = pd.Series(["a", "b", "a", "b"])
    outcomes = set()
    for seed in range(10):
        try:
            splits.split(y, "binary", validation_fraction=0.1, test_fraction=0.2, seed=seed)
            outcomes.add("ok")
        except DataError as error:
            assert "the training split holds a single class" in str(error)
            outcomes.add("single class")
    assert "ok" in outcomes


def test_folds_need_rows_and_rows_per_class():
    with pytest.raises(DataError, match=r"only 4 usable rows .* 5-fold cross-validation needs at least 10"):
        splits.folds(pd.Series(np.arange(4.0)), "regression", 5, seed=0)
    with pytest.raises(DataError, match="2-fold cross-validation needs at least 6 .*lower data.validation_fraction"):
        splits.folds(pd.Series(np.arange(4.0)), "regression", 2, seed=0, validation_fraction=0.1)
    with pytest.raises(DataError, match=r"class 'b' has 2 row\(s\): 3 stratified folds need at least 3 rows of every"):
        splits.folds(pd.Series(["a"] * 10 + ["b"] * 2), "binary", 3, seed=0)
    with pytest.raises(DataError, match=r"only 2 groups \(data.group_column\) in 10 usable rows: 3 grouped folds"):
        splits.folds(pd.Series(np.arange(10.0)), "regression", 3, seed=0, groups=np.array(list("ab") * 5))
