import numpy as np
import pandas as pd
import pytest

import modeldojo as dojo
from modeldojo.errors import DataError
from modeldojo.tasks.tabular.learners import LEARNERS
from modeldojo.tasks.tabular.preprocess import Preprocessor

SMALL = {"n_estimators": 30}  # boosted learners: few rounds keep the test fast


@pytest.mark.parametrize("learner", LEARNERS.names())
@pytest.mark.parametrize("kind", ["regression", "binary", "multiclass"])
def test_every_learner_fits_saves_and_reloads_identically(learner, kind, fast):
    from modeldojo.tasks.tabular import TabularTask

    frame, target, _ = TabularTask.example(kind, seed=1)
    params = SMALL if learner in ("lightgbm", "xgboost", "catboost") else {}
    if learner in ("random_forest", "extra_trees"):
        params = {"n_estimators": 20}
    result = dojo.train(frame, target=target, model=learner, params=params, name=f"{learner}-{kind}", **fast)
    reloaded = dojo.load(result.path)
    first, second = result.model.predict_frame(frame), reloaded.predict_frame(frame)
    assert np.array_equal(first.values, second.values)
    if kind != "regression":
        assert np.allclose(first.probabilities, second.probabilities, rtol=0, atol=1e-12)
        assert result.metrics["accuracy"] > 0.5
    else:
        assert result.metrics["r2"] > 0.3


def test_preprocessor_types_dates_and_unseen_categories():
    frame = pd.DataFrame({"n": [1, 2, None, 4], "t": ["1.5", "2", " 3", "4"], "c": ["a", "b", "a", None],
                          "d": ["2020-01-05", "2021-02-10", "2022-03-15", None], "flag": [True, False, True, True]})
    pre = Preprocessor().fit(frame)
    assert {c: s["type"] for c, s in pre.columns.items()} == {
        "n": "numeric", "t": "numeric", "c": "categorical", "d": "datetime", "flag": "numeric"}
    out, unseen = pre.transform(pd.DataFrame({"n": [1], "t": ["2"], "c": ["zzz"], "d": ["2020-07-01"],
                                              "flag": [False]}))
    assert unseen == {"c": 1} and pd.isna(out["c"][0])
    assert out["d_year"][0] == 2020 and out["d_month"][0] == 7
    assert Preprocessor.from_dict(pre.to_dict()).columns == pre.columns
    with pytest.raises(DataError, match="missing 1 column"):
        pre.transform(frame.drop(columns=["c"]))


def test_log_target_chosen_for_skewed_positive_target(fast):
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    frame = pd.DataFrame({"x": x, "y": np.exp(2 * x + rng.normal(0, 0.1, 300))})
    result = dojo.train(frame, target="y", params=SMALL, **fast)
    assert result.info["target_transform"] == "log"
    result = dojo.train(frame.assign(y=x), target="y", params=SMALL, name="plain", **fast)
    assert result.info["target_transform"] == "none"


def test_early_stopping_then_refit_on_train_and_validation(regression_frame, fast):
    result = dojo.train(regression_frame, target="price", **fast)
    assert result.info["best_rounds"] < 5000
    assert result.info["refit_rows"] == len(regression_frame) - result.metrics["rows"]


def test_class_weights_follow_config(fast):
    from conftest import make_classification

    frame = make_classification(300)
    frame.loc[:269, "label"] = "a"
    balanced = dojo.train(frame, target="label", name="bal", params=SMALL, **fast)
    unweighted = dojo.train(frame, target="label", name="none", params=SMALL,
                            overrides={"data.class_weights": "none"}, **fast)
    p_bal = balanced.model.predict_proba(frame)["b"].mean()
    p_none = unweighted.model.predict_proba(frame)["b"].mean()
    assert p_bal > p_none  # weighting lifts the minority class


def test_refit_when_only_the_training_rows_are_imbalanced():
    """class_weights=auto decides on the training rows; the refit on train+validation weighted the training rows
    only and crashed ("all the input arrays must have same number of dimensions")."""
    from conftest import make_classification
    from modeldojo.config import Config
    from modeldojo.events import EventBus
    from modeldojo.tasks.tabular import TabularTask

    frame = make_classification(120)
    train, validation = frame.iloc[:100].copy(), frame.iloc[100:].copy()
    train.loc[train.index[:80], "label"] = "a"  # 4:1 or more in training, about 1:1 in validation
    task = TabularTask(Config().with_overrides({"model.params": SMALL}), "binary", "label")
    info = task.fit(train.drop(columns="label"), train["label"], validation.drop(columns="label"),
                    validation["label"], EventBus())
    assert info["refit_rows"] == 120


def test_integer_labels_round_trip_as_text(fast):
    from conftest import make_classification

    frame = make_classification(200)
    frame["label"] = frame["label"].map({"a": 0, "b": 1})
    result = dojo.train(frame, target="label", params=SMALL, **fast)
    assert set(result.model.predict(frame)) <= {"0", "1"} and result.model.classes_ == ["0", "1"]
