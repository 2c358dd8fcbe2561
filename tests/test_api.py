import numpy as np
import pytest

import modeldojo as dojo
from modeldojo.errors import ConfigError, DataError


def test_sklearn_shaped_model(binary_frame, tmp_path):
    model = dojo.Model(target="price", runs_dir=str(tmp_path / "runs"), tracking=False)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.predict(binary_frame)
    assert model.fit(binary_frame) is model
    probabilities = model.predict_proba(binary_frame)
    assert list(probabilities.columns) == ["high", "low"]
    assert np.allclose(probabilities.sum(axis=1), 1)
    assert set(model.predict(binary_frame)) <= {"high", "low"}
    assert model.evaluate(binary_frame)["accuracy"] > 0.7
    loaded = dojo.Model.load(model.save(tmp_path / "saved"))
    assert np.array_equal(loaded.predict(binary_frame), model.predict(binary_frame))
    assert "kind='binary'" in repr(loaded)


def test_missing_columns_at_prediction_are_listed(regression_frame, fast):
    result = dojo.train(regression_frame, target="price", **fast)
    with pytest.raises(DataError, match=r"missing 2 column\(s\).*'city', 'rooms'|missing 2 column\(s\).*'rooms'"):
        result.model.predict(regression_frame.drop(columns=["rooms", "city"]))


def test_unseen_categories_are_counted_not_fatal(regression_frame, fast):
    result = dojo.train(regression_frame, target="price", **fast)
    new = regression_frame.head(3).assign(city=["atlantis", "north", "atlantis"])
    prediction = result.model.predict_frame(new)
    assert prediction.notes == {"unseen_categories": {"city": 2}} and len(prediction.values) == 3


def test_unknown_columns_and_settings_fail_before_compute(regression_frame, fast):
    with pytest.raises(DataError, match="target column 'prise' not found. Did you mean 'price'"):
        dojo.train(regression_frame, target="prise", **fast)
    with pytest.raises(DataError, match="configured column 'nope' not found"):
        dojo.train(regression_frame, target="price", overrides={"data.drop_columns": ["nope"]}, **fast)
    with pytest.raises(ConfigError, match="unknown tabular learner"):
        dojo.train(regression_frame, target="price", model="lightgbn", **fast)
    with pytest.raises(ConfigError, match="unknown keyword"):
        dojo.train(regression_frame, target="price", epochz=3, **fast)
    with pytest.raises(ConfigError, match="no target column"):
        dojo.train(regression_frame, **fast)


def test_blocking_check_stops_before_a_run_exists(binary_frame, fast, tmp_path):
    with pytest.raises(DataError, match="single class"):
        dojo.train(binary_frame.assign(price="high"), target="price", **fast)
    assert not (tmp_path / "runs").exists()


def test_separate_validation_and_test_files(regression_frame, fast, write_csv):
    train = write_csv(regression_frame.iloc[:160], "train.csv")
    validation = write_csv(regression_frame.iloc[160:200], "validation.csv")
    test = write_csv(regression_frame.iloc[200:], "test.csv")
    result = dojo.train(train, target="price", overrides={"data.validation_path": validation,
                                                          "data.test_path": test}, **fast)
    assert result.metrics["rows"] == 40 and result.info["refit_rows"] == 200


def test_evaluate_on_data_and_cross_validation(regression_frame, fast, write_csv):
    path = write_csv(regression_frame)
    result = dojo.train(path, target="price", name="ev", **fast)
    from modeldojo.api import evaluate

    own = evaluate("ev", runs_dir=fast["runs_dir"])
    assert own["metrics"]["r2"] == pytest.approx(result.metrics["r2"])
    holdout = evaluate("ev", write_csv(regression_frame.iloc[:50], "holdout.csv"), runs_dir=fast["runs_dir"])
    assert holdout["metrics"]["rows"] == 50
    cv = evaluate("ev", cv=3, runs_dir=fast["runs_dir"])["cv"]
    assert cv["folds"] == 3 and len(cv["table"]) == 5 and cv["mean"]["r2"] > 0.5
    assert (result.path / "evaluation" / "report.html").is_file()


def test_evaluate_new_data_with_one_class_uses_the_models_features(binary_frame, fast, write_csv):
    from modeldojo.api import evaluate

    dojo.train(write_csv(binary_frame), target="price", name="b", **fast)
    only_high = binary_frame[binary_frame["price"] == "high"].head(8).copy()
    only_high["rooms"] = range(8)  # unique per row: must not be mistaken for an ID column here
    result = evaluate("b", write_csv(only_high, "high.csv"), runs_dir=fast["runs_dir"])
    assert result["metrics"]["rows"] == 8 and "roc_auc" not in result["metrics"]
