"""modeldojo.monitoring: drift tests on constructed distributions, corrections, CBPE, embedding MMD."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from modeldojo.monitoring import cbpe
from modeldojo.monitoring.drift import (_pool_rare, benjamini_hochberg, column_drift, embedding_drift, holm,
                                        prediction_drift, table_drift)


def _table(rows, generator, mean_shift=0.0, share_shift=0.0):
    shares = np.array([0.5, 0.3, 0.2])
    shares = shares + np.array([-share_shift, share_shift, 0.0])
    return pd.DataFrame({
        "normal": generator.normal(mean_shift, 1.0, rows),
        "skewed": generator.lognormal(0.0, 0.75, rows),
        "counts": generator.poisson(12, rows),
        "colour": generator.choice(["red", "green", "blue"], rows, p=shares),
        "size": generator.choice(list("abcdefgh"), rows, p=[.3, .2, .15, .1, .1, .1, .04, .01]),
    })


def test_same_distribution_no_drift_over_seeds():
    # Holm at 0.05 over 5 columns: ~5 % of unshifted datasets alarm by design, so count datasets over
    # enough seeds for that to be measurable (expected ~5 of 100; <= 9 is about 2 sd above).
    alarms = 0
    for seed in range(100):
        generator = np.random.default_rng(seed)
        alarms += table_drift(_table(2000, generator), _table(2000, generator)).dataset_drift
    assert alarms <= 9


def test_mean_shift_caught_and_kinds_inferred():
    generator = np.random.default_rng(1)
    report = table_drift(_table(2000, generator), _table(2000, generator, mean_shift=0.3))
    assert report.drifted == ["normal"] and report.dataset_drift
    kinds = {column["column"]: column["kind"] for column in report.columns}
    assert kinds == {"normal": "numeric", "skewed": "numeric", "counts": "numeric",
                     "colour": "categorical", "size": "categorical"}
    assert report.to_dict()["share_drifted"] == pytest.approx(1 / 5)


def test_categorical_share_shift_caught():
    generator = np.random.default_rng(2)
    report = table_drift(_table(2000, generator), _table(2000, generator, share_shift=0.1))
    assert "colour" in report.drifted
    colour = next(column for column in report.columns if column["column"] == "colour")
    assert colour["test"] == "chi2_contingency" and colour["jensen_shannon"] > 0 and colour["psi"] > 0


def test_negligible_shift_at_scale_not_flagged_by_floor():
    generator = np.random.default_rng(3)
    reference = pd.DataFrame({"x": generator.normal(0, 1, 50000)})
    current = pd.DataFrame({"x": generator.normal(0.03, 1, 50000)})
    column = table_drift(reference, current).columns[0]
    assert column["p_value"] < 0.05  # statistically "real" ...
    assert column["effect_size"] < column["floor"] and not column["drifted"]  # ... but negligible


def test_holm_and_benjamini_hochberg_known_values():
    p_values = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> 0.02, 0.03, 0.06, 0.06 (running max)
    assert np.allclose(holm(p_values), [0.03, 0.06, 0.06, 0.02])
    # BH: sorted p*4/i -> 0.02, 0.02, 0.04, 0.04 (running min from the top)
    assert np.allclose(benjamini_hochberg(p_values), [0.02, 0.04, 0.04, 0.02])
    assert np.allclose(holm([0.5, 0.9]), [1.0, 1.0])  # 0.5 * 2 caps at 1; monotonicity lifts 0.9 to 1
    random_p = np.random.default_rng(0).random(30) ** 3
    assert np.allclose(benjamini_hochberg(random_p), stats.false_discovery_control(random_p))
    adjusted = holm([0.01, np.nan, 0.02])  # untested columns are not counted
    assert np.isnan(adjusted[1]) and np.allclose(adjusted[[0, 2]], [0.02, 0.02])


def test_all_missing_column_does_not_crash():
    generator = np.random.default_rng(4)
    reference = pd.DataFrame({"x": generator.normal(size=500), "y": generator.normal(size=500)})
    current = pd.DataFrame({"x": [np.nan] * 500, "y": generator.normal(size=500)})
    report = table_drift(reference, current, kinds={"x": "numeric"})
    column = report.columns[0]
    assert column["current_missing_share"] == 1.0 and not column["drifted"] and np.isnan(column["p_value"])
    assert column_drift(pd.Series([None] * 10), pd.Series(["a"] * 10), "categorical")["test"] == "not_tested"


def test_new_categories_in_current():
    generator = np.random.default_rng(5)
    reference = pd.Series(generator.choice(["a", "b", "c"], 3000))
    current = pd.Series(np.concatenate([generator.choice(["a", "b", "c"], 2700), ["new"] * 300]))
    result = column_drift(reference, current, "categorical")
    assert result["categories"] == 4 and result["p_value"] < 1e-6 and result["effect_size"] > 0.1
    rare = pd.Series(np.concatenate([generator.choice(["a", "b", "c"], 2998), ["x", "y"]]))
    assert column_drift(reference, rare, "categorical")["p_value"] > 0.001  # two stray rows: pooled, no alarm


def test_prediction_drift():
    generator = np.random.default_rng(6)
    assert prediction_drift(generator.normal(size=3000), generator.normal(0.5, 1, 3000), "regression")["drifted"]
    classes = prediction_drift(generator.choice([0, 1], 3000), generator.choice([0, 1], 3000), "classification")
    assert classes["kind"] == "categorical" and not classes["drifted"]


def test_cbpe_calibrated_classifier():
    generator = np.random.default_rng(7)
    probabilities = generator.dirichlet([0.6, 0.6, 0.6], 20000)
    labels = np.array([generator.choice(3, p=row) for row in probabilities])
    classes = [0, 1, 2]
    assert abs(cbpe.estimate(probabilities, classes) - cbpe.realised(probabilities, labels, classes)) < 0.02
    positive = generator.beta(2, 2, 20000)
    binary_labels = (generator.random(20000) < positive).astype(int)
    for metric in ("accuracy", "f1", "macro_f1"):
        assert abs(cbpe.estimate(positive, [0, 1], metric)
                   - cbpe.realised(positive, binary_labels, [0, 1], metric)) < 0.02
    lower, upper = cbpe.thresholds(probabilities[:10000], labels[:10000], classes, 1000, bootstrap=200)
    result = cbpe.monitor(probabilities[:10000], labels[:10000], probabilities[10000:], classes, 1000,
                          current_labels=labels[10000:], bootstrap=200)
    assert lower < result["chunks"][0]["estimated"] < upper or result["alerts"] <= 1
    assert result["alerts"] <= 1 and len(result["chunks"]) == 10 and "realised" in result["chunks"][0]
    confident = np.column_stack([np.full(1000, 0.98), np.full(1000, 0.01), np.full(1000, 0.01)])
    assert cbpe.monitor(probabilities[:10000], None, confident, classes, 1000, bootstrap=200)["alerts"] == 1


def test_embedding_mmd():
    generator = np.random.default_rng(8)
    reference = generator.normal(size=(800, 16))
    assert not embedding_drift(reference, generator.normal(size=(800, 16)), permutations=100)["drifted"]
    shifted = embedding_drift(reference, generator.normal(0.3, 1, size=(800, 16)), permutations=100)
    assert shifted["drifted"] and shifted["p_value"] < 0.02


def test_uniform_location_shift_needs_the_t_test():
    # +0.1 sd on a uniform column at 5,000 rows among 11 unshifted columns. KS alone is weak for a
    # location shift of a flat distribution: here its p (0.027) x 12 columns would not pass Holm, so
    # KS-only missed it; Welch's t (p 0.00025, x 2 for the in-column Bonferroni) catches it.
    generator = np.random.default_rng(25)
    reference = {"uniform": generator.uniform(0, 100, 5000)}
    current = {"uniform": generator.uniform(0, 100, 5000) + 10 / np.sqrt(12)}
    others = np.random.default_rng(1000)
    for index in range(11):
        reference[f"noise{index}"] = others.normal(size=5000)
        current[f"noise{index}"] = others.normal(size=5000)
    report = table_drift(pd.DataFrame(reference), pd.DataFrame(current))
    uniform = report.columns[0]
    assert uniform["ks_p_value"] * 12 > 0.05 and uniform["location_p_value"] * 2 * 12 < 0.05
    assert uniform["p_value"] == pytest.approx(2 * min(uniform["ks_p_value"], uniform["location_p_value"]))
    assert uniform["test"] == "ks_2samp+welch_t (bonferroni)" and report.drifted == ["uniform"]


def test_spread_change_with_the_same_mean_still_caught_by_ks():
    generator = np.random.default_rng(11)
    result = column_drift(pd.Series(generator.normal(0, 1, 5000)), pd.Series(generator.normal(0, 1.4, 5000)),
                          "numeric")
    assert result["location_p_value"] > 0.01 and result["ks_p_value"] < 1e-10 and result["p_value"] < 1e-9


def test_numeric_null_calibrated_at_small_samples():
    # The combined KS + t p-value must not be anti-conservative where both tests are least asymptotic:
    # 500 rows, skewed and tied (count) data.
    generator = np.random.default_rng(12)
    for draw in (lambda: generator.lognormal(0, 0.75, 500), lambda: generator.poisson(12, 500)):
        p_values = np.array([column_drift(pd.Series(draw()), pd.Series(draw()), "numeric")["p_value"]
                             for _ in range(400)])
        assert np.mean(p_values < 0.05) <= 0.07 and np.mean(p_values < 0.01) <= 0.02


def test_constant_numeric_columns():
    same = column_drift(pd.Series([3.0] * 50), pd.Series([3.0] * 50), "numeric")
    assert same["p_value"] == 1.0 and np.isnan(same["location_p_value"]) and not np.isnan(same["ks_p_value"])
    moved = column_drift(pd.Series([3.0] * 50), pd.Series([4.0] * 50), "numeric")
    assert moved["p_value"] < 1e-10


def test_sparse_categories_pooled_and_calibrated():
    # 100 equally likely categories at 500 rows per sample: expected counts ~2.5 per cell, where the
    # chi-squared approximation fails unpooled. After pooling every expected count is >= 5 and the
    # null rejection rate stays at its level.
    generator = np.random.default_rng(13)
    categories = np.array([f"c{index}" for index in range(100)])
    p_values = []
    for _ in range(300):
        result = column_drift(pd.Series(generator.choice(categories, 500)),
                              pd.Series(generator.choice(categories, 500)), "categorical")
        assert result["tested_categories"] < result["categories"]
        p_values.append(result["p_value"])
    assert np.mean(np.array(p_values) < 0.05) <= 0.08
    table = _pool_rare(np.vstack([generator.multinomial(500, np.full(100, 0.01)) for _ in range(2)]).astype(float))
    expected = table.sum(axis=0)[None, :] * table.sum(axis=1)[:, None] / table.sum()
    assert expected.min() >= 5


def test_infinities_count_as_missing_and_small_samples_use_ks_alone():
    rng = np.random.default_rng(0)
    reference = pd.Series(np.r_[rng.normal(size=500), [np.inf, -np.inf]])
    current = pd.Series(rng.normal(size=500))
    result = column_drift(reference, current, "numeric")
    assert np.isfinite(result["p_value"]) and np.isfinite(result["effect_size"])
    assert result["reference_missing_share"] == pytest.approx(2 / 502)
    small = column_drift(pd.Series(rng.lognormal(size=10)), pd.Series(rng.lognormal(size=10)), "numeric")
    assert np.isnan(small["location_p_value"]) and small["p_value"] == small["ks_p_value"]
