"""Hyperparameter search: space validation, samplers, study files, resume, every task, the CLI."""
import json

import pandas as pd
import pytest

import modeldojo as dojo
from modeldojo import tasks
from modeldojo.config import Config
from modeldojo.errors import ConfigError
from modeldojo.tuning import space

pytest.importorskip("optuna")
tasks.load_all()


@pytest.mark.parametrize("entry, message", [
    ({"train.learnig_rate": {"uniform": [0.1, 0.2]}}, "unknown setting"),
    ({"train.learning_rate": {"uniform": [0.2, 0.1]}}, "empty range"),
    ({"train.learning_rate": {"loguniform": [0.0, 0.1]}}, "low > 0"),
    ({"train.learning_rate": {"normal": [0, 1]}}, "expected one of"),
    ({"train.batch_size": {"choice": []}}, "non-empty list"),
    ({"train.optimizer": {"choice": ["adamw", "lion"]}}, "optimizer"),
    ({"model.nothing.here": {"int": [1, 3]}}, "not a setting"),
])
def test_bad_search_spaces_fail_before_any_trial(entry, message):
    with pytest.raises(ConfigError, match=message):
        space.parse(entry, Config())


def test_space_entries_of_dict_settings_and_grids():
    dimensions = space.parse({"model.params.num_leaves": {"int": [8, 32, 8]}, "train.batch_size": {"choice": [16, 32]}},
                             Config())
    assert [d.grid() for d in dimensions] == [[8, 16, 24, 32], [16, 32]]
    config = space.apply(Config().with_overrides({"model.params": {"max_bin": 63}}), {"model.params.num_leaves": 16})
    assert config.model.params == {"max_bin": 63, "num_leaves": 16}
    with pytest.raises(ConfigError, match="grid search needs choice or int"):
        space.parse({"train.learning_rate": {"uniform": [0.1, 0.2]}}, Config())[0].grid()


def _table(rows=300, seed=0):
    from sklearn.datasets import make_classification

    X, y = make_classification(rows, 6, n_informative=4, random_state=seed)
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(6)]).assign(label=y)


def test_grid_search_covers_the_grid_and_writes_a_trainable_best_config(tmp_path):
    data = tmp_path / "table.csv"
    _table().to_csv(data, index=False)
    grid = {"model.params.num_leaves": {"choice": [4, 16]}, "model.params.learning_rate": {"choice": [0.05, 0.2]}}
    result = dojo.tune(str(data), target="label", runs_dir=str(tmp_path / "runs"), tracking=False, name="grid",
                       overrides={"tune.search": "grid", "tune.trials": 50, "tune.space": grid, "tune.pruning": "none",
                                  "data.label_error_check": False})
    assert len(result.trials) == 4 and result.trials["state"].eq("complete").all()  # 2 × 2, not 50
    combos = set(zip(result.trials["model.params.num_leaves"], result.trials["model.params.learning_rate"]))
    assert combos == {(4, 0.05), (4, 0.2), (16, 0.05), (16, 0.2)}
    assert result.metric == "roc_auc" and result.direction == "maximize"
    assert result.best_value == result.trials["value"].max()
    study = json.loads((result.run.directory / "study.json").read_text())
    assert study["best_params"] == result.best_params and result.run.status()["status"] == "completed"
    best = Config.load(result.best_config)
    assert best.model.params == {"num_leaves": result.best_params["model.params.num_leaves"],
                                 "learning_rate": result.best_params["model.params.learning_rate"]}
    trained = dojo.train(config=best, overrides={"run.runs_dir": str(tmp_path / "runs"), "tracking.enabled": False})
    assert trained.run.status()["status"] == "completed"


def test_an_interrupted_study_resumes_where_it_stopped(tmp_path):
    frame = _table()
    settings = {"tune.search": "random", "data.label_error_check": False}
    first = dojo.tune(frame, target="label", runs_dir=str(tmp_path), tracking=False, name="s",
                      overrides={**settings, "tune.trials": 2})
    first.run.set_status("failed")  # as after a kill: the study database stays
    second = dojo.tune(frame, target="label", runs_dir=str(tmp_path), tracking=False, name="s",
                       overrides={**settings, "tune.trials": 5})
    assert len(second.trials) == 5 and list(second.trials["trial"]) == [0, 1, 2, 3, 4]
    assert second.trials.iloc[:2]["value"].tolist() == first.trials["value"].tolist()  # kept, not re-run


def test_cross_validated_trials_and_a_minimised_metric(tmp_path):
    result = dojo.tune(_table(), target="label", runs_dir=str(tmp_path), tracking=False, name="cv",
                       overrides={"tune.trials": 2, "tune.cv": 3, "tune.metric": "log_loss",
                                  "data.label_error_check": False})
    assert result.direction == "minimize" and len(result.trials) == 2 and 0 < result.best_value < 1


@pytest.mark.parametrize("task_name", [name for name in tasks.TASKS.names() if tasks.get(name).neural])
def test_every_neural_task_tunes_with_its_default_space(task_name, tmp_path):
    frame, target, settings = tasks.get(task_name).example("binary")
    result = dojo.tune(frame, target=target, task=task_name, runs_dir=str(tmp_path), tracking=False, name="n",
                       overrides={**settings, "tune.trials": 2, "train.epochs": 2, "data.label_error_check": False})
    assert len(result.trials) == 2 and "train.learning_rate" in result.best_params


def test_dojo_tune_command(tmp_path, capsys):
    from modeldojo.cli import main

    data = tmp_path / "table.csv"
    _table().to_csv(data, index=False)
    code = main(["tune", str(data), "--target", "label", "--trials", "3", "--search", "random", "--name", "c",
                 "--runs-dir", str(tmp_path / "runs"), "--json", "data.label_error_check=false"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["trials"] == 3 and printed["best_config"].endswith("best.yaml")
    assert main(["tune", str(data), "--target", "label", "--runs-dir", str(tmp_path / "runs"), "--name", "bad",
                 "tune.space={train.seed: {uniform: [2, 1]}}"]) == 2


def test_pruning_stops_trials_that_fall_behind(tmp_path):
    """Neural trials report validation accuracy each evaluation; hopeless learning rates are stopped."""
    frame, target, settings = tasks.get("text").example("multiclass")
    result = dojo.tune(frame, target=target, runs_dir=str(tmp_path), tracking=False, name="p", overrides={
        **settings, "tune.trials": 8, "tune.search": "random", "tune.pruning": "median", "train.epochs": 6,
        "train.eval_every": 4, "data.label_error_check": False,
        "tune.space": {"train.learning_rate": {"choice": [3e-3, 1e-7]}}})
    states = result.trials["state"].tolist()
    assert "pruned" in states and "complete" in states
    pruned = result.trials[result.trials["state"] == "pruned"]
    assert (pruned["train.learning_rate"] == 1e-7).all()  # only the hopeless ones
    assert result.best_params["train.learning_rate"] == 3e-3
