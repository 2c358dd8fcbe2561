import numpy as np
import pandas as pd
import pytest

from modeldojo.data.checks import run_checks
from modeldojo.data.readers import read
from modeldojo.data.target import infer_kind
from modeldojo.errors import DataError

from conftest import make_classification


def codes(report, severity=None):
    return {f.code for f in report.findings if severity is None or f.severity == severity}


def test_infer_kind():
    frame = pd.DataFrame({"r": np.linspace(0, 1, 100), "b": ["y", "n"] * 50, "m": list("abcd") * 25,
                          "i": [0, 1] * 50, "c": np.arange(100) % 5, "big": np.arange(100) * 3})
    assert [infer_kind(frame, c) for c in frame] == ["regression", "binary", "multiclass", "binary", "multiclass",
                                                     "regression"]
    assert infer_kind(frame, "c", "regression") == "regression"


def test_non_numeric_value_in_numeric_target_names_line_and_column(tmp_path):
    path = tmp_path / "prices.csv"
    values = [str(100 + i) for i in range(40)]
    values[16] = "n/a?"
    pd.DataFrame({"x": range(40), "price": values}).to_csv(path, index=False)
    with pytest.raises(DataError) as error:
        infer_kind(read(path), "price")
    message = str(error.value)
    assert "prices.csv, line 18, column 'price'" in message and "'n/a?'" in message and "expected a number" in message


def test_blocking_problems():
    base = make_classification(60)
    assert "missing_target" in codes(run_checks(base, "lable"), "error")
    assert "single_class" in codes(run_checks(base.assign(label="a"), "label"), "error")
    assert "target_all_missing" in codes(run_checks(base.assign(label=np.nan), "label", kind="regression"), "error")
    assert "empty" in codes(run_checks(base.iloc[:0], "label"), "error")
    message = run_checks(base, "lable").errors[0].message
    assert "Did you mean 'label'" in message


def test_warnings_for_common_problems():
    frame = make_classification(300, classes=("a", "b"))
    frame["row_id"] = np.arange(len(frame))
    frame["const"] = 1
    frame["mostly_missing"] = np.where(np.arange(300) % 10 == 0, 1.0, np.nan)
    frame["leak"] = frame["label"].map({"a": 0, "b": 1}) * 10 + np.random.default_rng(0).normal(0, .1, 300)
    frame["city"] = [f"c{i % 80}" for i in range(300)]
    frame = pd.concat([frame, frame.iloc[:5]], ignore_index=True)
    report = run_checks(frame, "label", label_errors=False)
    found = codes(report, "warning")
    assert {"id_like", "constant", "missing", "leakage", "high_cardinality", "duplicates"} <= found
    assert report.id_columns == ["row_id"] and report.constant_columns == ["const"]
    assert [f.column for f in report.findings if f.code == "leakage"] == ["leak"]


def test_imbalance_and_nan_targets():
    frame = make_classification(200)
    frame.loc[:159, "label"] = "a"
    frame.loc[160:, "label"] = "b"
    frame.loc[0, "label"] = np.nan
    report = run_checks(frame, "label", label_errors=False)
    assert {"imbalance", "target_missing"} <= codes(report, "warning")
    assert report.class_counts == {"a": 159, "b": 40}


def test_label_errors_are_found():
    frame = make_classification(400, seed=1)
    flipped = [5, 50, 123, 250, 333]
    frame.loc[flipped, "label"] = frame.loc[flipped, "label"].map({"a": "b", "b": "a"})
    report = run_checks(frame, "label")
    found = {issue["row"] for issue in report.label_issues}
    assert len(found & set(flipped)) >= 3
    assert "label_errors" in codes(report, "warning")


def test_infinite_regression_targets_are_dropped_with_a_warning():
    frame = pd.DataFrame({"x": np.arange(50.0), "y": np.arange(50.0)})
    frame.loc[[3, 7], "y"] = np.inf
    frame.loc[9, "y"] = np.nan
    report = run_checks(frame, "y", label_errors=False)
    [finding] = [f for f in report.findings if f.code == "target_missing"]
    assert "missing/NaN in 1 rows and infinite in 2" in finding.message and "line" not in finding.message
