"""`dojo retrain`: a challenger is promoted only when it is better on the same held-out rows; worse, equal within
the margin, or failed challengers never are, and the decision is stored on both versions."""
import numpy as np
import pandas as pd
import pytest

import modeldojo as dojo
from modeldojo import versions
from modeldojo.retraining import paired_interval


def table(rows, seed, noise=0.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    label = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "yes", "no")
    flip = rng.random(rows) < noise
    label[flip] = np.where(label[flip] == "yes", "no", "yes")
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "d": x[:, 3], "label": label})


@pytest.fixture
def champion(tmp_path):
    table(120, 0, noise=0.25).to_csv(tmp_path / "old.csv", index=False)  # little, noisy data: a weak champion
    dojo.train(str(tmp_path / "old.csv"), target="label", runs_dir=str(tmp_path / "runs"), name="v1",
               overrides={"data.label_error_check": False, "model.name": "decision_tree"})
    versions.register("v1", "churn", runs_dir=tmp_path / "runs")
    return tmp_path


def test_paired_interval():
    rng = np.random.default_rng(0)
    champion = rng.random(2000) < 0.7
    better = champion | (rng.random(2000) < 0.2)
    mean, lower, upper = paired_interval(better.astype(float), champion.astype(float))
    assert lower > 0 and lower < mean < upper
    mean, lower, upper = paired_interval(champion.astype(float), champion.astype(float))
    assert lower == upper == 0.0


def test_a_better_challenger_is_promoted_and_a_worse_one_is_not(champion):
    from modeldojo.cli import main

    runs = champion / "runs"
    table(3000, 1).to_csv(champion / "clean.csv", index=False)  # much more, clean data
    decision = dojo.retrain("churn", str(champion / "clean.csv"), runs_dir=runs)  # export parity required
    assert decision["promoted"], decision["reason"]
    assert decision["interval"][0] > 0 and decision["held_out_rows"] > 20 and decision["parity"]
    assert versions.resolve("models:/churn@champion", runs).name == decision["challenger_run"]
    client = versions.client(runs)
    assert client.get_model_version("churn", "1").tags["modeldojo.decision.promoted"] == "True"

    shuffled = table(400, 2)
    shuffled["label"] = np.random.default_rng(3).permutation(shuffled["label"].to_numpy())  # labels that mean nothing
    shuffled.to_csv(champion / "noise.csv", index=False)
    assert main(["retrain", "churn", "--data", str(champion / "noise.csv"), "--runs-dir", str(runs), "--no-export",
                 "-q"]) == 0
    assert versions.resolve("models:/churn@champion", runs).name == decision["challenger_run"]  # unchanged


def test_an_equal_challenger_within_the_margin_is_not_promoted(champion):
    from modeldojo.retraining import retrain

    table(60, 4, noise=0.25).to_csv(champion / "same.csv", index=False)
    decision = retrain("churn", str(champion / "same.csv"), runs_dir=champion / "runs", margin=0.02, export=False)
    assert not decision["promoted"] and "margin" in decision["reason"]
    assert versions.resolve("models:/churn@champion", champion / "runs").name == "v1"
