"""The parity rule on synthetic predictions (issue 12): the metric drop is judged against the allowed drop plus
what the changed rows explain by chance on that many rows — deterministic, no model, no ONNX Runtime."""
import numpy as np
import pandas as pd
import pytest

from modeldojo.evaluation import metrics
from modeldojo.export import parity
from modeldojo.tasks.base import Prediction

CLASSES = ["bad", "good", "mid"]
INT8 = parity.TOLERANCES["int8"]
pytestmark = pytest.mark.filterwarnings("ignore:.*(not in y_true|single label).*:UserWarning")  # tiny synthetic sets


class Fixed:
    """Model-like: predicts a fixed Prediction for the frame's rows."""

    def __init__(self, prediction):
        self.prediction = prediction

    def predict(self, frame):
        return self.prediction


def labels(values, shift=0.0):
    """One-hot-ish probabilities whose argmax is `values` (shift: how far every probability moves)."""
    index = np.array([CLASSES.index(v) for v in values])
    probabilities = np.full((len(values), 3), 0.3)
    probabilities[np.arange(len(values)), index] = 0.4
    probabilities[:, 0] += shift
    return Prediction(np.array(values, dtype=object), probabilities, CLASSES)


def judge(y, before, after, kind="multiclass", tolerance=INT8):
    frame = pd.DataFrame({"x": np.arange(len(y))})
    return parity.check(Fixed(before), Fixed(after), frame, pd.Series(y, dtype=object), kind, "|", tolerance)


def flipped(values, rows, to="mid"):
    out = list(values)
    for row in rows:
        out[row] = to
    return out


def test_one_flip_on_18_rows_passes_and_says_why():
    y = ["good", "bad"] * 9
    report = judge(y, labels(y), labels(flipped(y, [0])))
    assert report.rows == 18 and report.changed_rows == 1
    assert report.metric_drop == pytest.approx(1 / 18)  # 5.6 points against an allowed 0.5
    assert report.passed and report.metric_drop <= report.metric_drop_limit
    assert report.metric_drop_limit == pytest.approx(INT8["max_metric_drop"] + report.metric_drop_noise)
    assert report.decided_by == "both within tolerance"
    text = report.explain()
    assert "on 18 rows" in text and "1 of 18 labels changed" in text and "chance on 18 rows" in text


def test_the_issue_12_numbers_pass():
    """Label agreement 0.7222 (5 of 18 changed), accuracy 0.6111 → 0.4444: within what chance explains."""
    y = ["good"] * 11 + ["bad"] * 7
    before = ["good"] * 11 + ["good"] * 7  # 11 right
    after = flipped(before, [0, 1, 2, 3])  # 4 right rows lost ...
    after[11] = "bad"  # ... and 1 gained: 8 right, 5 rows changed
    report = judge(y, labels(before), labels(after))
    assert (report.changed_rows, round(report.agreement, 4)) == (5, 0.7222)
    assert (round(report.original, 4), round(report.exported, 4)) == (0.6111, 0.4444)
    assert report.passed


def test_a_systematically_worse_export_fails_on_many_rows():
    y = ["good"] * 500
    before = flipped(y, range(0, 500, 10), to="bad")  # 90% right
    after = flipped(before, [row for row in range(500) if row % 10][:200])  # 200 right rows (40%) made wrong
    report = judge(y, labels(before), labels(after))
    assert report.changed_rows == 200 and report.metric_drop == pytest.approx(0.4)
    assert not report.passed and report.decided_by == "accuracy drop beyond the allowed drop plus chance"
    assert report.metric_drop_noise < 0.1  # 500 rows resolve it
    assert "decided by: accuracy drop" in report.explain()


def test_ten_flips_all_for_the_worse_fail_even_on_18_rows_but_a_balanced_mix_passes():
    y = ["good"] * 18
    worse = judge(y, labels(y), labels(flipped(y, range(10))))
    assert not worse.passed and worse.changed_rows == 10
    before = flipped(y, range(5, 10), to="bad")  # rows 5-9 wrong
    after = flipped(y, range(5))  # rows 0-4 made wrong, rows 5-9 made right
    mixed = judge(y, labels(before), labels(after))
    assert mixed.changed_rows == 10 and mixed.metric_drop == 0 and mixed.passed


def test_a_probability_shift_fails_whatever_the_labels():
    y = ["good", "bad", "mid"] * 6
    report = judge(y, labels(y), labels(y, shift=0.2))
    assert report.changed_rows == 0 and report.metric_drop == 0 and report.metric_drop_noise == 0
    assert not report.passed and report.decided_by == "largest probability difference"


def test_identical_predictions_allow_nothing_extra():
    """fp32 stays strict: no changed rows, no allowance beyond the configured drop."""
    y = ["good", "bad"] * 9
    report = judge(y, labels(flipped(y, [0])), labels(flipped(y, [0])), tolerance=parity.TOLERANCES[None])
    assert report.passed and report.metric_drop_noise == 0
    assert report.metric_drop_limit == parity.TOLERANCES[None]["max_metric_drop"]


def test_the_allowance_is_deterministic():
    y = ["good", "bad", "mid"] * 20
    after = flipped(y, range(0, 60, 4))
    first, second = (judge(y, labels(y), labels(after)).metric_drop_noise for _ in range(2))
    assert first == second > 0


def test_regression_parity_is_unchanged():
    y = np.linspace(1, 100, 40)
    exact = judge(y, Prediction(y + 1), Prediction(y + 1 + 1e-7), kind="regression", tolerance=parity.TOLERANCES[None])
    assert exact.passed and exact.changed_rows == 0 and exact.metric_drop_noise < 1e-6
    off = judge(y, Prediction(y + 1), Prediction(y * 1.01 + 1), kind="regression", tolerance=parity.TOLERANCES[None])
    assert not off.passed and off.decided_by.startswith("largest relative value difference")
    assert off.compared == "relative value" and off.changed_rows > 0


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel", "regression"])
def test_the_swapped_metric_is_the_reported_metric(kind):
    """The allowance's fast metric equals metrics.compute's main metric on either model's predictions."""
    rng = np.random.default_rng(0)
    n = 60
    if kind == "regression":
        y = rng.normal(size=n)
        predictions = [Prediction(y + rng.normal(size=n) * s) for s in (0.5, 0.7)]
    elif kind == "multilabel":
        y = np.array(["a|b", "a", "", "b", "c"] * 12, dtype=object)
        predictions = [Prediction(rng.choice(["a|b", "a", "", "b"], n).astype(object), rng.random((n, 2)), ["a", "b"])
                       for _ in range(2)]
    else:
        classes = CLASSES[:2] if kind == "binary" else CLASSES
        y = rng.choice(classes, n).astype(object)
        predictions = []
        for _ in range(2):
            probabilities = rng.dirichlet(np.ones(len(classes)), n)
            predictions.append(Prediction(np.array(classes, dtype=object)[probabilities.argmax(1)], probabilities,
                                          classes))
    metric = metrics.PRIMARY[kind]
    score = parity._swapped_metric(kind, metric, y, predictions[0], predictions[1], "|")
    for index, mask in ((0, np.zeros((1, n), bool)), (1, np.ones((1, n), bool))):
        p = predictions[index]
        expected = metrics.compute(kind, y, p.values, p.probabilities, p.classes, "|")[metric]
        assert score(mask)[0] == pytest.approx(expected)
